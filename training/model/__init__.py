"""VATT model package: `build_model(preset, **overrides)`, configs, presets, ViViT variants."""

from __future__ import annotations

import torch

from training.model.alpro import ALPRO_PRESETS, Alpro, AlproConfig, make_alpro_config
from training.model.config import (
    HeadConfig,
    ModelConfig,
    TokenizerConfig,
    TransformerConfig,
)
from training.model.heads import convert_sync_batchnorm
from training.model.image_init import init_video_from_image, load_image_checkpoint
from training.model.presets import DEFAULT_PRESET, PRESETS, SIZES, make_config, resolve_preset
from training.model.vatt import VATT, with_video_grid


def build_model_from_config(cfg: ModelConfig, device: torch.device | str | None = None) -> VATT:
    """VATT(cfg), then the video tower from `cfg.video_init` (a 2-D ViT checkpoint) if set.

    Use this to start a run; restoring a checkpoint builds `VATT(cfg)` and loads its weights,
    so the image file is not needed then.
    """
    if device is None:
        model = VATT(cfg)
    else:
        with torch.device(device):
            model = VATT(cfg)
    if cfg.video_init:
        state = load_image_checkpoint(cfg.video_init)
        init_video_from_image(model, state, cfg.video_init_mode, source=cfg.video_init)
    return model


def build_model(
    preset: str = DEFAULT_PRESET, *, device: torch.device | str | None = None, **overrides
) -> VATT:
    """Build a VATT model from a preset name plus config overrides.

    Args:
        preset: one of PRESETS (case-insensitive), e.g. "MBS", "BBS", "LBS", "MA-Medium", "debug".
        device: where to allocate parameters; "meta" builds a shape-only model instantly.
        **overrides: ModelConfig fields; a dict updates a nested config, e.g.
            `build_model("LBS", video={"num_layers": 2}, droptoken_rate=0.25)`.
    Returns:
        The VATT module (its `cfg` rebuilds it).
    """
    return build_model_from_config(make_config(preset, **overrides), device)


# Architectures a checkpoint or export may hold, by the name it records ("architecture";
# a missing name means VATT, which is what every older file holds).
ARCHITECTURES: dict[str, tuple[type, type]] = {
    "vatt": (VATT, ModelConfig),
    "alpro": (Alpro, AlproConfig),
}
DEFAULT_ARCHITECTURE = "vatt"


def build_architecture(architecture: str | None, config: dict, device=None) -> torch.nn.Module:
    """An untrained model of a stored architecture from its config dict (weights are loaded
    next by the caller; `device="meta"` skips the random init). ValueError names an unknown
    architecture."""
    name = architecture or DEFAULT_ARCHITECTURE
    if name not in ARCHITECTURES:
        raise ValueError(f"architecture {name!r}: not one of {', '.join(ARCHITECTURES)}")
    model_cls, config_cls = ARCHITECTURES[name]
    cfg = config_cls.from_dict(config)
    if device is None:
        return model_cls(cfg)
    with torch.device(device):
        return model_cls(cfg)


__all__ = [
    "ALPRO_PRESETS",
    "ARCHITECTURES",
    "Alpro",
    "AlproConfig",
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_PRESET",
    "HeadConfig",
    "ModelConfig",
    "PRESETS",
    "SIZES",
    "TokenizerConfig",
    "TransformerConfig",
    "VATT",
    "build_architecture",
    "build_model",
    "build_model_from_config",
    "convert_sync_batchnorm",
    "make_alpro_config",
    "make_config",
    "resolve_preset",
    "with_video_grid",
]
