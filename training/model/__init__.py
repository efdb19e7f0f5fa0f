"""VATT model package: `build_model(preset, **overrides)`, configs and presets."""

from __future__ import annotations

import torch

from training.model.config import (
    HeadConfig,
    ModelConfig,
    TokenizerConfig,
    TransformerConfig,
)
from training.model.heads import convert_sync_batchnorm
from training.model.presets import DEFAULT_PRESET, PRESETS, SIZES, make_config, resolve_preset
from training.model.vatt import VATT


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
    cfg = make_config(preset, **overrides)
    if device is None:
        return VATT(cfg)
    with torch.device(device):
        return VATT(cfg)


__all__ = [
    "DEFAULT_PRESET",
    "HeadConfig",
    "ModelConfig",
    "PRESETS",
    "SIZES",
    "TokenizerConfig",
    "TransformerConfig",
    "VATT",
    "build_model",
    "convert_sync_batchnorm",
    "make_config",
    "resolve_preset",
]
