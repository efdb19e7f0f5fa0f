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
"""

from __future__ import annotations

from training.model.config import ModelConfig, TransformerConfig
from training.model.droptoken import num_kept


def transformer_flops(num_tokens: int, size: TransformerConfig) -> int:
    """Forward FLOPs of the encoder blocks on a sequence of `num_tokens` tokens."""
    n, d, f = num_tokens, size.d_model, size.d_ff
    per_layer = 8 * n * d * d + 4 * n * d * f + 4 * n * n * d
    return size.num_layers * per_layer


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
        length the blocks see (kept tokens + aggregation token; per caption for text).
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
    if frames % pt or height % ph or width % pw or audio_samples % tok.audio_patch:
        raise ValueError(
            f"input {frames}x{height}x{width}, {audio_samples} samples is not a multiple of the "
            f"patches {tok.video_patch} / {tok.audio_patch}"
        )
    head = cfg.head
    dv, da, dt = cfg.video.d_model, cfg.audio.d_model, cfg.text.d_model

    n_video = (frames // pt) * (height // ph) * (width // pw)
    video_tokens = num_kept(n_video, rate) + 1
    video = {
        "tokens": video_tokens,
        "patch_embed": 2 * n_video * (pt * ph * pw * 3) * dv,
        "blocks": transformer_flops(video_tokens, cfg.video),
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
