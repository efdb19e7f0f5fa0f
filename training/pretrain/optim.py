"""Pretraining optimizer (spec section 4): Adam, linear warm-up, then a quarter-period cosine.

lr(step) rises linearly from lr / warmup_steps to lr over the first `warmup_steps` steps,
then follows  end + (lr - end) * cos(pi/2 * p),  p = (step - warmup) / (decay - warmup),
reaching `end_lr` at `decay_steps` (a quarter of a cosine period, so it never comes back up)
and staying there. The paper: 1e-4, 10k warm-up steps, 5e-5 at step 500k. `schedule:
half_cosine` is the official code's curve instead (the `official` preset, with 5k warm-up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULES = ("quarter_cosine", "half_cosine")


@dataclass(frozen=True)
class OptimConfig:
    """Adam + linear warm-up + quarter-period cosine (spec section 4)."""

    lr: float = 1e-4
    end_lr: float = 5e-5  # value at `decay_steps`, held afterwards
    warmup_steps: int = 10_000
    decay_steps: int = 500_000  # step where the quarter cosine reaches end_lr
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0  # the paper uses none
    grad_clip: float = 0.0  # max global grad norm; 0 = off (the paper does not clip)
    # After warm-up: "quarter_cosine" (the paper, as the spec reads it; module docstring) or
    # "half_cosine" (the official code's schedules.py: end + (lr - end) * (1 + cos(pi p)) / 2,
    # the full half period from lr down to end_lr at decay_steps).
    schedule: str = "quarter_cosine"

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.end_lr < 0:
            raise ValueError(f"optim.lr={self.lr}, end_lr={self.end_lr}: need lr > 0, end_lr >= 0")
        if self.warmup_steps < 0 or self.decay_steps < 1:
            raise ValueError("optim.warmup_steps must be >= 0 and optim.decay_steps >= 1")
        if not all(0.0 <= b < 1.0 for b in self.betas) or len(self.betas) != 2:
            raise ValueError(f"optim.betas={self.betas}: two numbers in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule={self.schedule!r}: choose one of {SCHEDULES}")
        if self.eps <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("optim.eps must be > 0; weight_decay and grad_clip >= 0")


def lr_at(step: int, cfg: OptimConfig) -> float:
    """Learning rate of optimizer step `step` (0-based)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.decay_steps - cfg.warmup_steps)
    p = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.schedule == "half_cosine":
        return cfg.end_lr + (cfg.lr - cfg.end_lr) * 0.5 * (1.0 + math.cos(math.pi * p))
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
