"""Common-space projection heads (video->va->vt, audio->va, text->vt) and SyncBN conversion.

BatchNorm placement, `HeadConfig.bn`:
- "paper" (VATT paper, section 3.3, as the spec reads it):
    video->va  Linear-BN-ReLU-Linear-BN
    audio->va  Linear-BN
    text->vt   Linear-BN
    va->vt     Linear-BN
- "official" (google-research/vatt `modeling/heads/bridge.py`, FACHead with `mlp_lib.ReluDenseBN`):
    video->va  Linear(no bias)-BN-ReLU-Linear(no bias)-BN   (same as the paper)
    audio->va  Linear(with bias), no BN
    text->vt   Linear(with bias), no BN
    va->vt     ReLU-Linear(no bias)-BN                     (a ReLU on the va embedding first)
A Linear followed by BN has no bias (BN's shift replaces it); a disabled BN is `nn.Identity`, so
the names of the other modules (and checkpoint keys) do not move.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from training.model.config import HeadConfig


def _bn(enabled: bool, dim: int, cfg: HeadConfig) -> nn.Module:
    if not enabled:
        return nn.Identity()
    return nn.BatchNorm1d(dim, eps=cfg.bn_eps, momentum=cfg.bn_momentum)


class MaskedBatchNorm1d(nn.Module):
    """BatchNorm1d whose training statistics come from the valid rows only (`valid` (B,) bool;
    None = all), applied to every row. Same parameters, buffers and state-dict keys as
    nn.BatchNorm1d, and the same numbers when every row is valid. On GPU ranks of a
    distributed run the statistics are summed over ranks (as SyncBatchNorm there), through a
    differentiable all-reduce; not a _BatchNorm subclass, so SyncBatchNorm conversion keeps it.
    """

    def __init__(self, dim: int, eps: float, momentum: float):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Args: x (B, D), valid (B,) bool or None. Returns (B, D)."""
        if not self.training:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        rows = (x if valid is None else x[valid]).float()  # (n, D): statistics in fp32
        stats = torch.cat([rows.sum(0), (rows * rows).sum(0), rows.new_full((1,), len(rows))])
        if (
            x.is_cuda
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        ):
            from torch.distributed.nn.functional import all_reduce

            stats = all_reduce(stats)  # (2D + 1,) summed over ranks, gradients flow back
        D = x.shape[1]
        count = stats[-1].clamp(min=1)
        mean = stats[:D] / count  # (D,)
        var = (stats[D : 2 * D] / count - mean * mean).clamp(min=0)  # biased, as BatchNorm
        with torch.no_grad():
            unbiased = var * count / (count - 1).clamp(min=1)
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), self.momentum)
            self.num_batches_tracked += 1
        y = (x.float() - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return y.to(x.dtype)


class LinearHead(nn.Module):
    """[ReLU] -> Linear -> [BN]: the single-layer projections."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        cfg: HeadConfig,
        use_bn: bool,
        pre_relu: bool,
        valid_only_bn: bool = False,
    ):
        super().__init__()
        self.act = nn.ReLU() if pre_relu else nn.Identity()
        self.fc = nn.Linear(d_in, d_out, bias=not use_bn)
        if use_bn and valid_only_bn:
            self.bn = MaskedBatchNorm1d(d_out, cfg.bn_eps, cfg.bn_momentum)
        else:
            self.bn = _bn(use_bn, d_out, cfg)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Args: x (B, d_in), valid (B,) rows for the BN statistics (masked BN only).
        Returns (B, d_out)."""
        x = self.fc(self.act(x))
        return self.bn(x, valid) if isinstance(self.bn, MaskedBatchNorm1d) else self.bn(x)


class VideoHead(nn.Module):
    """Video -> va (Linear-BN-ReLU-Linear-BN), then va -> vt (see module docstring)."""

    def __init__(self, d_model: int, cfg: HeadConfig):
        super().__init__()
        self.fc1 = nn.Linear(d_model, cfg.d_va, bias=False)
        self.bn1 = _bn(True, cfg.d_va, cfg)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(cfg.d_va, cfg.d_va, bias=False)
        self.bn2 = _bn(True, cfg.d_va, cfg)
        self.to_vt = LinearHead(cfg.d_va, cfg.d_vt, cfg, use_bn=True, pre_relu=cfg.bn == "official")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x (B, D) video representation. Returns (video_va (B, d_va), video_vt (B, d_vt))."""
        va = self.bn2(self.fc2(self.act(self.bn1(self.fc1(x)))))
        return va, self.to_vt(va)


def build_audio_head(d_model: int, cfg: HeadConfig) -> LinearHead:
    """Audio -> va: Linear(+BN in "paper" mode)."""
    return LinearHead(d_model, cfg.d_va, cfg, use_bn=cfg.bn == "paper", pre_relu=False)


def build_text_head(d_model: int, cfg: HeadConfig) -> LinearHead:
    """Text -> vt: Linear(+BN in "paper" mode; statistics over valid captions only with
    `text_bn_valid_only`)."""
    return LinearHead(
        d_model,
        cfg.d_vt,
        cfg,
        use_bn=cfg.bn == "paper",
        pre_relu=False,
        valid_only_bn=cfg.text_bn_valid_only,
    )


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Swap every BatchNorm for SyncBatchNorm, so head statistics cover the global batch.

    Call after `torch.distributed` is initialised and before wrapping in DDP/DeepSpeed; the
    model file itself stays free of distribution.
    """
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
