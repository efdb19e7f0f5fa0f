"""Named model sizes (Small/Base/Medium/Large) and presets (BBS, MBS, LBS, MA-Medium, debug)."""

from __future__ import annotations

from training.model.config import HeadConfig, ModelConfig, TokenizerConfig, TransformerConfig

# (layers, d_model, d_ff, heads), spec section 2 / paper Table 1.
SIZES: dict[str, TransformerConfig] = {
    "small": TransformerConfig(6, 512, 2048, 8),
    "base": TransformerConfig(12, 768, 3072, 12),
    "medium": TransformerConfig(12, 1024, 4096, 16),
    "large": TransformerConfig(24, 1024, 4096, 16),
}

# Paper parameter counts (millions) for comparison in docs/tests/model-info.
PAPER_SIZE_PARAMS_M = {"small": 20.9, "base": 87.9, "medium": 155.0, "large": 306.1}
PAPER_PRESET_PARAMS_M = {"BBS": 197.0, "MBS": 264.0, "LBS": 415.0, "MA-Medium": 155.0}

# Debug: the smallest model with every structural piece (3 towers, relative bias, BN heads).
# 8 frames x 64x64 -> 2x4x4 = 32 video tokens; 6400 samples -> 50 audio tokens; a 4096-word
# vocabulary. A CPU forward+backward on a batch of 2 takes a few tens of milliseconds.
DEBUG_TOKENIZER = TokenizerConfig(
    frames=8, height=64, width=64, audio_samples=6400, vocab_size=4096
)
DEBUG_SIZE = TransformerConfig(num_layers=2, d_model=64, d_ff=256, num_heads=4)


def _towers(video: str, audio: str, text: str) -> dict:
    return {"video": SIZES[video], "audio": SIZES[audio], "text": SIZES[text]}


PRESETS: dict[str, ModelConfig] = {
    "BBS": ModelConfig(name="BBS", **_towers("base", "base", "small")),
    "MBS": ModelConfig(name="MBS", **_towers("medium", "base", "small")),
    "LBS": ModelConfig(name="LBS", **_towers("large", "base", "small")),
    "MA-Medium": ModelConfig(
        name="MA-Medium", shared_backbone=True, **_towers("medium", "medium", "medium")
    ),
    "debug": ModelConfig(
        name="debug",
        tokenizer=DEBUG_TOKENIZER,
        video=DEBUG_SIZE,
        audio=DEBUG_SIZE,
        text=DEBUG_SIZE,
        # Small common spaces keep the debug heads in proportion to d_model=64.
        head=HeadConfig(d_va=64, d_vt=32),
    ),
}
DEFAULT_PRESET = "MBS"


def resolve_preset(name: str) -> str:
    """Canonical preset name for `name` (case-insensitive; "MA" and "VATT-" prefixes accepted)."""
    key = name.strip().lower().removeprefix("vatt-")
    aliases = {p.lower(): p for p in PRESETS}
    aliases["ma"] = "MA-Medium"
    if key not in aliases:
        raise ValueError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return aliases[key]


def make_config(preset: str = DEFAULT_PRESET, **overrides) -> ModelConfig:
    """The preset's ModelConfig with `overrides` applied (see `ModelConfig.replace`)."""
    return PRESETS[resolve_preset(preset)].replace(**overrides)
