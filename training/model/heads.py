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
from torch import nn

from training.model.config import HeadConfig


def _bn(enabled: bool, dim: int, cfg: HeadConfig) -> nn.Module:
    if not enabled:
        return nn.Identity()
    return nn.BatchNorm1d(dim, eps=cfg.bn_eps, momentum=cfg.bn_momentum)


class LinearHead(nn.Module):
    """[ReLU] -> Linear -> [BN]: the single-layer projections."""

    def __init__(self, d_in: int, d_out: int, cfg: HeadConfig, use_bn: bool, pre_relu: bool):
        super().__init__()
        self.act = nn.ReLU() if pre_relu else nn.Identity()
        self.fc = nn.Linear(d_in, d_out, bias=not use_bn)
        self.bn = _bn(use_bn, d_out, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, d_in). Returns (B, d_out)."""
        return self.bn(self.fc(self.act(x)))


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
    """Text -> vt: Linear(+BN in "paper" mode)."""
    return LinearHead(d_model, cfg.d_vt, cfg, use_bn=cfg.bn == "paper", pre_relu=False)


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Swap every BatchNorm for SyncBatchNorm, so head statistics cover the global batch.

    Call after `torch.distributed` is initialised and before wrapping in DDP/DeepSpeed; the
    model file itself stays free of distribution.
    """
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
