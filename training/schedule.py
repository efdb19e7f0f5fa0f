"""Learning-rate schedule (spec section 4): linear warm-up, then a quarter-period cosine.

lr(step) rises linearly from lr / warmup_steps to lr over the first `warmup_steps` steps,
then follows  end + (lr - end) * cos(pi/2 * p),  p = (step - warmup) / (decay - warmup),
reaching `end_lr` at `decay_steps` (a quarter of a cosine period, so it never comes back up)
and staying there. The paper: 1e-4, 10k warm-up steps, 5e-5 at step 500k.
"""

from __future__ import annotations

import math

import torch

from training.config import OptimConfig


def lr_at(step: int, cfg: OptimConfig) -> float:
    """Learning rate of optimizer step `step` (0-based)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.decay_steps - cfg.warmup_steps)
    p = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.end_lr + (cfg.lr - cfg.end_lr) * math.cos(0.5 * math.pi * p)


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig, fused: bool = False):
    """torch AdamW (Adam when weight_decay = 0) and a LambdaLR that follows `lr_at`.

    A torch optimizer rather than DeepSpeed's FusedAdam/CPUAdam: those JIT-compile a C++ op
    on first use (~85 s on CPU); on GPU `fused=True` gives torch's fused kernel instead.
    """
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        fused=fused,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_at(step, cfg) / cfg.lr)
    return opt, sched
