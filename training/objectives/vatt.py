"""The VATT objective: NCE (video-audio) + lambda * MIL-NCE (video-text), spec section 3.

`LossConfig` holds its weights and temperature, `total_loss` combines the two contrastive
losses of `training.objectives.contrastive` on the model's common-space outputs, and
`VattObjective` is the family's entry in the objective seam (`training.objectives.base`):
the VATT model from a preset + overrides, loader batches -> (video, audio, text_ids), the
loss parts `nce_va` and `mil_nce_vt`, and the analytic FLOPs of a training clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.data.loader import ClipShape
from training.objectives.base import Objective
from training.objectives.contrastive import Gather, gather_with_grad, mil_nce, nce

NORMALIZE_MODES = ("paper", "official")


@dataclass(frozen=True)
class LossConfig:
    """Weights and temperature of the VATT objective."""

    # 0.07: the paper's temperature for both NCE and MIL-NCE.
    tau: float = 0.07
    # L = NCE_va + lambda * MILNCE_vt; the paper uses lambda = 1.
    lambda_vt: float = 1.0
    # "paper": NCE + lambda * MILNCE;
    # "official": the TF code's (NCE + lambda * MILNCE) / (1 + lambda).
    normalize: str = "paper"

    def __post_init__(self) -> None:
        if not self.tau > 0:
            raise ValueError(f"loss.tau={self.tau} must be > 0 (e.g. 0.07)")
        if self.lambda_vt < 0:
            raise ValueError(f"loss.lambda_vt={self.lambda_vt} must be >= 0")
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"loss.normalize={self.normalize!r}: choose one of {NORMALIZE_MODES}")


def total_loss(
    outputs: dict[str, torch.Tensor],
    cfg: LossConfig,
    text_mask: torch.Tensor | None = None,
    audio_mask: torch.Tensor | None = None,
    rank: int = 0,
    world_size: int = 1,
    gather: Gather = gather_with_grad,
) -> dict[str, torch.Tensor]:
    """L = NCE(video_va, audio_va) + lambda * MILNCE(video_vt, text_vt) [/ (1 + lambda)].

    Args:
        outputs: the model's video_va (B, d_va), audio_va (B, d_va), video_vt (B, d_vt),
            text_vt (B, K, d_vt).
        cfg: LossConfig.
        text_mask: (B,) or (B, K), 0 = no text; audio_mask: (B,), 0 = no audio.
        rank, world_size, gather: see `mil_nce`.
    Returns:
        {"loss": scalar with grad, "nce_va": detached, "mil_nce_vt": detached}.
    """
    group = {"rank": rank, "world_size": world_size, "gather": gather}
    nce_va = nce(outputs["video_va"], outputs["audio_va"], cfg.tau, audio_mask, **group)
    mil_nce_vt = mil_nce(outputs["video_vt"], outputs["text_vt"], cfg.tau, text_mask, **group)
    loss = nce_va + cfg.lambda_vt * mil_nce_vt
    if cfg.normalize == "official":
        loss = loss / (1.0 + cfg.lambda_vt)
    return {"loss": loss, "nce_va": nce_va.detach(), "mil_nce_vt": mil_nce_vt.detach()}


class VattObjective(Objective):
    """VATT in the objective seam: `model_cfg` (a `training.model.ModelConfig`), the loss
    weights, and the caption shape of a batch (for the FLOP count)."""

    name = "vatt"
    loss_parts = {"nce_va": "va", "mil_nce_vt": "vt"}

    def __init__(self, model_cfg, loss: LossConfig, *, captions: int = 5, words: int = 16):
        self.cfg, self.loss = model_cfg, loss
        self.captions, self.words = captions, words

    def build_model(self, fresh: bool) -> nn.Module:
        from training.model import VATT, build_model_from_config

        # A fresh run applies model.video_init (a 2-D ViT image checkpoint); a resumed one
        # loads its own weights next, so it needs no image file.
        return build_model_from_config(self.cfg) if fresh else VATT(self.cfg)

    def model_config(self):
        return self.cfg

    def clip_shape(self) -> ClipShape:
        return ClipShape.from_model(self.cfg)

    def model_inputs(self, batch: dict, device: torch.device, dtype: torch.dtype) -> dict:
        return {
            "video": batch["video"].to(device, dtype, non_blocking=True),  # (B, T, H, W, 3)
            "audio": batch["audio"].to(device, dtype, non_blocking=True),  # (B, S)
            "text_ids": batch["text_ids"].to(device, non_blocking=True),  # (B, K, L)
        }

    def losses(self, outputs, batch, device, *, rank: int, world_size: int) -> dict:
        return total_loss(
            {k: v.float() for k, v in outputs.items()},  # the loss in fp32 under bf16
            self.loss,
            text_mask=batch["text_mask"].to(device),
            audio_mask=batch["audio_mask"].to(device),
            rank=rank,
            world_size=world_size,
        )

    def flops_per_clip(self) -> float:
        from training.model.flops import forward_flops

        flops = forward_flops(self.cfg, captions=self.captions, words=self.words)
        return float(flops["training"])


__all__ = [
    "LossConfig",
    "NORMALIZE_MODES",
    "VattObjective",
    "gather_with_grad",
    "mil_nce",
    "nce",
    "total_loss",
]
