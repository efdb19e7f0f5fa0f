"""Analytic forward/training FLOPs per example for a ModelConfig at a DropToken rate and input.

Convention: one multiply-add = 2 FLOPs (as `torch.utils.flop_counter`). Counted: every matmul
(patch/voxel embedding, qkv, attention scores QK^T and the weighted sum AV, output projection,
MLP, heads). Not counted (<1% at the paper sizes): LayerNorm, GELU, softmax, residual adds,
biases, embedding lookups, the relative-position bias and BatchNorm. Training = 3 x forward
(backward = 2 x forward), the usual estimate.

Per layer with N tokens of width d and MLP width f: 8 N d^2 (qkv + proj) + 4 N d f (MLP)
+ 4 N^2 d (attention), i.e. 24 N d^2 + 4 N^2 d when f = 4d, the spec's formula. The patch
embedding runs on all tokens (DropToken acts after it); the blocks see the kept tokens + the
aggregation token. Check: ViT-Base at 32x224x224 (1568 + 1 tokens) = 364.7 GFLOP forward, and
163.5 GFLOP at DropToken 0.5 (785 tokens), reproducing the spec.

ViViT video backbones (`video_backbone_flops`) on t time slices of s tokens + the aggregation
token: Model 2 = t spatial encoders on 1 + s tokens + a temporal encoder on 1 + t tokens;
Models 3/4 attend within groups (s + 1 keys over space, t + 1 over time) plus one global
query, with Model 3 paying a second qkv + proj per layer and Model 4 splitting its heads.
"""

from __future__ import annotations

import dataclasses

from training.model.config import ModelConfig, TransformerConfig
from training.model.droptoken import num_kept


def transformer_flops(num_tokens: int, size: TransformerConfig) -> int:
    """Forward FLOPs of the encoder blocks on a sequence of `num_tokens` tokens."""
    n, d, f = num_tokens, size.d_model, size.d_ff
    per_layer = 8 * n * d * d + 4 * n * d * f + 4 * n * n * d
    return size.num_layers * per_layer


def _grid_attention_flops(grid: tuple[int, int], d: int, axis: str) -> int:
    """QK^T + AV FLOPs of `vivit.grid_attention` at width d (all heads together)."""
    t, s = grid
    group = s if axis == "space" else t
    # Each grid token: its group + the aggregation key; the aggregation query: all 1 + t*s.
    return 4 * t * s * (group + 1) * d + 4 * (1 + t * s) * d


def video_backbone_flops(cfg: ModelConfig, grid: tuple[int, int]) -> int:
    """Forward FLOPs of the video encoder for `cfg.video_backbone` on a (t, s) token grid."""
    t, s = grid
    size = cfg.video
    n, d, f = 1 + t * s, size.d_model, size.d_ff
    if cfg.video_backbone == "joint":
        return transformer_flops(n, size)
    if cfg.video_backbone == "factorised_encoder":
        temporal = dataclasses.replace(size, num_layers=cfg.video_temporal_layers)
        return t * transformer_flops(1 + s, size) + transformer_flops(1 + t, temporal)
    dense = 8 * n * d * d + 4 * n * d * f  # qkv + proj, MLP
    space = _grid_attention_flops(grid, d, "space")
    time = _grid_attention_flops(grid, d, "time")
    if cfg.video_backbone == "factorised_self_attention":
        per_layer = dense + 8 * n * d * d + space + time  # a second qkv + proj for time
    else:  # factorised_dot_product: half the heads (width d/2) on each axis
        per_layer = dense + (space + time) // 2
    return size.num_layers * per_layer


def kept_video_grid(cfg: ModelConfig, grid: tuple[int, int], rate: float) -> tuple[int, int]:
    """The (t, s) grid left after video DropToken at `rate` ((1, N') for single tokens)."""
    t, s = grid
    unit = cfg.video_droptoken_unit
    if unit == "tube":
        return t, num_kept(s, rate)
    if unit == "frame":
        return num_kept(t, rate), s
    kept = num_kept(t * s, rate)
    return (t, s) if kept == t * s else (1, kept)


def forward_flops(
    cfg: ModelConfig,
    droptoken_rate: float | None = None,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    audio_samples: int | None = None,
    captions: int | None = None,
    words: int | None = None,
) -> dict:
    """Forward FLOPs per example, per tower and part.

    Args:
        cfg: the model config; input sizes default to its tokenizer's trained grid.
        droptoken_rate: dropped fraction of video/audio tokens (default cfg.droptoken_rate;
            0 for evaluation).
        frames, height, width, audio_samples, captions, words: input size overrides.
    Returns:
        {"video"|"audio"|"text": {"tokens", "patch_embed", "blocks", "head", "total"},
         "forward": total forward FLOPs, "training": 3 x forward}. "tokens" is the sequence
        length the blocks see (kept tokens + aggregation token; per caption for text); for
        ViViT's Model 2 the encoders see shorter sequences (`video_backbone_flops`).
    """
    tok = cfg.tokenizer
    rate = cfg.droptoken_rate if droptoken_rate is None else droptoken_rate
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"droptoken_rate={rate} must be in [0, 1)")
    frames = frames or tok.frames
    height = height or tok.height
    width = width or tok.width
    audio_samples = audio_samples or tok.audio_samples
    captions = captions or tok.captions
    words = words or tok.words
    pt, ph, pw = tok.video_patch
    filter_t = cfg.video_patch[0]  # 1 for frame sampling: the grid is the same, the filter thinner
    if frames % pt or height % ph or width % pw or audio_samples % tok.audio_patch:
        raise ValueError(
            f"input {frames}x{height}x{width}, {audio_samples} samples is not a multiple of the "
            f"patches {tok.video_patch} / {tok.audio_patch}"
        )
    head = cfg.head
    dv, da, dt = cfg.video.d_model, cfg.audio.d_model, cfg.text.d_model

    grid = (frames // pt, (height // ph) * (width // pw))
    n_video = grid[0] * grid[1]
    kept = kept_video_grid(cfg, grid, rate)
    video = {
        "tokens": kept[0] * kept[1] + 1,
        "patch_embed": 2 * n_video * (filter_t * ph * pw * 3) * dv,
        "blocks": video_backbone_flops(cfg, kept),
        "head": 2 * (dv * head.d_va + head.d_va * head.d_va + head.d_va * head.d_vt),
    }
    n_audio = audio_samples // tok.audio_patch
    audio_tokens = num_kept(n_audio, rate) + 1
    audio = {
        "tokens": audio_tokens,
        "patch_embed": 2 * n_audio * tok.audio_patch * da,
        "blocks": transformer_flops(audio_tokens, cfg.audio),
        "head": 2 * da * head.d_va,
    }
    text = {
        "tokens": words + 1,
        "patch_embed": 0,  # an embedding lookup, no arithmetic
        "blocks": captions * transformer_flops(words + 1, cfg.text),
        "head": captions * 2 * dt * head.d_vt,
    }
    result: dict = {"video": video, "audio": audio, "text": text}
    for part in (video, audio, text):
        part["total"] = part["patch_embed"] + part["blocks"] + part["head"]
    result["forward"] = video["total"] + audio["total"] + text["total"]
    result["training"] = 3 * result["forward"]
    return result
