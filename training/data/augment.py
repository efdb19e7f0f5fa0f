"""Per-clip video/audio transforms: training augmentation (spec section 1) and the
evaluation centre crop. Inputs are decoded shard arrays (uint8 frames, int16 audio);
outputs are float32 tensors in [-1, 1], channels last: video [T, H, W, 3], audio [S].

Training: `augment_clip` (random resized crop, horizontal flip, colour jitter, waveform
noise), every draw from an explicit torch/numpy generator. Evaluation: `center_crop_resize`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from training.config_io import require_at_least


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only augmentation (spec section 1); evaluation uses a centre crop."""

    # Random resized crop: fraction of the frame area and aspect ratio range (Inception-style).
    crop_area: tuple[float, float] = (0.08, 1.0)
    crop_aspect: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    # Colour jitter strengths (torchvision semantics): factor in [1-s, 1+s], hue shift in [-h, h].
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    # "scale": brightness multiplies by a factor in [1-s, 1+s] (torchvision). "add": adds a
    # delta in [-s, s] (TF's random_brightness; DMVR's color_default_augm uses s = 32/255).
    brightness_mode: str = "scale"
    # Probability that a clip gets the colour jitter at all (DMVR applies it with 0.8); below 1
    # one extra draw per clip decides, so the default's draws are unchanged.
    jitter_prob: float = 1.0
    # Gaussian noise on the waveform, std = audio_noise * max|x| (spec: 0.01); 0 disables.
    audio_noise: float = 0.01

    def __post_init__(self) -> None:
        lo, hi = self.crop_area
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"augment.crop_area={self.crop_area}: need 0 < min <= max <= 1")
        lo, hi = self.crop_aspect
        if not 0.0 < lo <= hi:
            raise ValueError(f"augment.crop_aspect={self.crop_aspect}: need 0 < min <= max")
        require_at_least(
            self, "augment", ("brightness", "contrast", "saturation", "audio_noise"), 0
        )
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"augment.hue={self.hue} must be in [0, 0.5]")
        if self.brightness_mode not in ("scale", "add"):
            raise ValueError(f"augment.brightness_mode={self.brightness_mode!r}: scale or add")
        if not 0.0 <= self.jitter_prob <= 1.0:
            raise ValueError(f"augment.jitter_prob={self.jitter_prob} must be in [0, 1]")


def _as_float_frames(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W] in [0, 1] (the layout interpolate wants).

    Made contiguous while still uint8 (a quarter of the bytes): interpolate and the colour
    ops run ~1.5-2x slower on the channels-last strides a bare permute leaves."""
    x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    return x.permute(0, 3, 1, 2).contiguous().float().div_(255.0)


def _to_model_range(x: torch.Tensor) -> torch.Tensor:
    """float [T, 3, H, W] in [0, 1] -> float32 [T, H, W, 3] in [-1, 1]."""
    return x.clamp_(0.0, 1.0).mul_(2.0).sub_(1.0).permute(0, 2, 3, 1).contiguous()


def center_crop_resize(frames: np.ndarray | torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Evaluation transform: scale so the frame covers height x width, take the centre crop.

    frames: uint8 [T, H, W, 3]. Returns float32 [T, height, width, 3] in [-1, 1].
    """
    x = _as_float_frames(frames)
    _, _, h, w = x.shape
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - height) // 2, (nw - width) // 2
    return _to_model_range(x[:, :, top : top + height, left : left + width])


def audio_to_float(audio: np.ndarray | torch.Tensor) -> torch.Tensor:
    """int16 [S] -> float32 [S] in [-1, 1]."""
    return torch.as_tensor(np.asarray(audio)).float().div_(32768.0)


def pool_audio(audio: torch.Tensor, stride: int) -> torch.Tensor:
    """Average-pool a waveform by `stride` (a box low-pass then decimation): lets a model
    trained at a lower rate (the debug preset) take 48 kHz shard audio. [S] -> [S // stride]."""
    if stride == 1:
        return audio
    n = audio.shape[-1] // stride * stride
    return audio[..., :n].reshape(*audio.shape[:-1], n // stride, stride).mean(-1)


# --- Training augmentation (spec section 1) ------------------------------------------------
# Every random draw goes through an explicit generator (torch.Generator or
# numpy.random.Generator), so a loader worker seeded from (seed, step, rank, worker) replays
# exactly. One draw per clip: the crop box, the flip and the jitter factors are shared by all
# frames, so the clip stays temporally coherent.

Generator = torch.Generator | np.random.Generator


def _uniform(gen: Generator, lo: float, hi: float) -> float:
    if isinstance(gen, np.random.Generator):
        return float(gen.uniform(lo, hi))
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _randint(gen: Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] (both ends included)."""
    if isinstance(gen, np.random.Generator):
        return int(gen.integers(lo, hi + 1))
    return int(torch.randint(lo, hi + 1, (), generator=gen))


def _normal(gen: Generator, n: int) -> torch.Tensor:
    if isinstance(gen, np.random.Generator):
        return torch.from_numpy(gen.standard_normal(n, dtype=np.float32))
    return torch.randn(n, generator=gen)


def random_resized_crop_box(
    height: int,
    width: int,
    area: tuple[float, float],
    aspect: tuple[float, float],
    gen: Generator,
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """Inception-style crop box (top, left, h, w) of a height x width frame.

    Area is a fraction of the frame's, aspect (w / h) is drawn log-uniformly; after `attempts`
    boxes that do not fit, fall back to the largest centred box whose aspect is in range
    (torchvision's RandomResizedCrop.get_params)."""
    frame_area = height * width
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    for _ in range(attempts):
        target = frame_area * _uniform(gen, area[0], area[1])
        ratio = math.exp(_uniform(gen, log_lo, log_hi))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return _randint(gen, 0, height - h), _randint(gen, 0, width - w), h, w
    ratio = width / height
    if ratio < aspect[0]:
        w, h = width, min(height, round(width / aspect[0]))
    elif ratio > aspect[1]:
        h, w = height, min(width, round(height * aspect[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


# Colour ops on float [T, 3, H, W] in [0, 1], torchvision's definitions (functional_tensor).
def _grayscale(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def _blend_(x: torch.Tensor, other: torch.Tensor | float, ratio: float) -> torch.Tensor:
    """ratio * x + (1 - ratio) * other, clipped to [0, 1], in place on x (ours to modify)."""
    x.mul_(ratio)
    if isinstance(other, torch.Tensor):
        x.add_(other, alpha=1.0 - ratio)
    elif other:
        x.add_((1.0 - ratio) * other)
    return x.clamp_(0.0, 1.0)


def adjust_hue(x: torch.Tensor, delta: float) -> torch.Tensor:
    """Rotate the hue of float RGB [..., 3, H, W] in [0, 1] by `delta` turns.

    The values of torchvision's adjust_hue (RGB -> HSV, h += delta mod 1, HSV -> RGB), fused:
    saturation and value do not change, so channel n in (5, 3, 1) for (R, G, B) is
    max - chroma * clip(min(k, 4 - k), 0, 1) with k = (n + 6h) mod 6, the closed form of the
    six-sextant table. Grey pixels (chroma 0) stay as they are."""
    r, g, b = x.unbind(-3)
    maxc = x.amax(-3)
    chroma = maxc - x.amin(-3)
    safe = torch.where(chroma == 0, 1.0, chroma)
    # Hue in sextants, torchvision's branches (ties go to red, then green).
    h6 = torch.where(
        maxc == r,
        (g - b) / safe,
        torch.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    h6.add_(6.0 * delta)
    out = torch.empty_like(x)
    for i, n in enumerate((5.0, 3.0, 1.0)):
        k = torch.remainder(h6 + n, 6.0)
        k = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
        torch.sub(maxc, k.mul_(chroma), out=out.select(-3, i))
    return out


def color_jitter(x: torch.Tensor, cfg: AugmentConfig, gen: Generator) -> torch.Tensor:
    """Brightness, contrast, saturation, hue in that fixed order, one factor each per clip.

    x: float [T, 3, H, W] in [0, 1], modified in place. A zero strength skips that op (no
    draw, exact identity); the values are `draw_jitter`'s.
    """
    b, c, s, h = draw_jitter(cfg, gen)
    if cfg.brightness > 0:
        if cfg.brightness_mode == "add":
            x = x.add_(b).clamp_(0.0, 1.0)
        else:
            x = _blend_(x, 0.0, b)
    if cfg.contrast > 0:
        # Per-frame mean grey level, as torchvision does for each image of a batch.
        x = _blend_(x, _grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), c)
    if cfg.saturation > 0:
        x = _blend_(x, _grayscale(x), s)
    if cfg.hue > 0:
        x = adjust_hue(x, h)
    return x


def jitter_identity(cfg: AugmentConfig) -> tuple[float, float, float, float]:
    """The jitter values that change nothing: brightness factor 1 (or delta 0 with "add"),
    contrast and saturation factors 1, hue shift 0."""
    return (0.0 if cfg.brightness_mode == "add" else 1.0, 1.0, 1.0, 0.0)


def draw_jitter(cfg: AugmentConfig, gen: Generator) -> tuple[float, float, float, float]:
    """One clip's colour jitter values (brightness, contrast, saturation, hue), drawn in that
    order; a zero strength draws nothing. With `jitter_prob` < 1 one draw first decides whether
    the clip is jittered at all (the values are then still drawn, so the stream stays aligned)."""
    apply = cfg.jitter_prob >= 1.0 or _uniform(gen, 0.0, 1.0) < cfg.jitter_prob
    b, c, s, h = jitter_identity(cfg)
    if cfg.brightness > 0:
        if cfg.brightness_mode == "add":
            b = _uniform(gen, -cfg.brightness, cfg.brightness)
        else:
            b = _uniform(gen, max(0.0, 1 - cfg.brightness), 1 + cfg.brightness)
    if cfg.contrast > 0:
        c = _uniform(gen, max(0.0, 1 - cfg.contrast), 1 + cfg.contrast)
    if cfg.saturation > 0:
        s = _uniform(gen, max(0.0, 1 - cfg.saturation), 1 + cfg.saturation)
    if cfg.hue > 0:
        h = _uniform(gen, -cfg.hue, cfg.hue)
    return (b, c, s, h) if apply else jitter_identity(cfg)


def add_audio_noise(audio: torch.Tensor, strength: float, gen: Generator) -> torch.Tensor:
    """x + N(0, (strength * max|x|)^2), clipped to [-1, 1]; silence stays silent."""
    if strength <= 0 or audio.numel() == 0:
        return audio
    std = strength * float(audio.abs().max())
    if std == 0.0:
        return audio
    return (audio + std * _normal(gen, audio.numel()).view_as(audio)).clamp_(-1.0, 1.0)


def augment_clip(
    frames: np.ndarray | torch.Tensor,
    audio: torch.Tensor,
    cfg: AugmentConfig,
    height: int,
    width: int,
    gen: Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training transform of one clip (cfg: `AugmentConfig`).

    frames: uint8 [T, H0, W0, 3]; audio: float [S] in [-1, 1].
    Returns video float32 [T, height, width, 3] in [-1, 1] and audio float32 [S] in [-1, 1].
    Order: crop box -> crop + resize (so the rest works on the small tensor) -> flip -> jitter.
    """
    u8 = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.asarray(frames))
    _, h0, w0, _ = u8.shape
    top, left, h, w = random_resized_crop_box(h0, w0, cfg.crop_area, cfg.crop_aspect, gen)
    # Crop while still uint8: only the box is converted to float.
    x = _as_float_frames(u8[:, top : top + h, left : left + w])  # [T, 3, h, w]
    if (h, w) != (height, width):
        x = F.interpolate(
            x, size=(height, width), mode="bilinear", antialias=True, align_corners=False
        )
    if cfg.flip and _uniform(gen, 0.0, 1.0) < 0.5:
        x = x.flip(-1)
    x = color_jitter(x, cfg, gen)
    audio = add_audio_noise(audio.float(), cfg.audio_noise, gen)
    return _to_model_range(x), audio


# --- The split training transform (the loader's path) ----------------------------------------
# `augment_clip` above does everything on one clip in float32 on a CPU; the loader splits the
# same transform in two so a few CPU cores can feed a GPU:
#   in the loader worker, uint8: `draw_clip_params` (every random draw of the clip, from the
#     worker's generator, in augment_clip's order), then `crop_resize_flip_u8`;
#   on the training device, batched: `augment_batch` (colour jitter with each clip's own
#     factors, [-1, 1] scaling, audio to float, pooling and noise from each clip's own seed).
# The distribution is the same; the only difference is that the resized crop is rounded to
# uint8 before jitter (at most 1/255 per pixel before jitter; measured in tests/test_loader.py).


@dataclass(frozen=True)
class ClipParams:
    """One clip's random draws: crop box (top, left, h, w), flip, the four jitter values, and
    the seed of its waveform noise."""

    box: tuple[int, int, int, int]
    flip: bool
    jitter: tuple[float, float, float, float]
    noise_seed: int


def draw_clip_params(height: int, width: int, cfg: AugmentConfig, gen: Generator) -> ClipParams:
    """Every random draw of one clip of height x width frames, in augment_clip's order (a
    zero strength draws nothing, as there)."""
    box = random_resized_crop_box(height, width, cfg.crop_area, cfg.crop_aspect, gen)
    flip = bool(cfg.flip and _uniform(gen, 0.0, 1.0) < 0.5)
    jitter = draw_jitter(cfg, gen)
    seed = _randint(gen, 0, 2**62) if cfg.audio_noise > 0 else 0
    return ClipParams(box, flip, jitter, seed)


def crop_resize_flip_u8(
    frames: np.ndarray | torch.Tensor, params: ClipParams, height: int, width: int
) -> torch.Tensor:
    """uint8 [T, H0, W0, 3] -> the clip's crop box resized (bilinear, antialiased, in uint8:
    torch's vectorised channels-last path) to uint8 [T, height, width, 3], flipped if drawn."""
    u8 = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.asarray(frames))
    top, left, h, w = params.box
    x = u8[:, top : top + h, left : left + w].permute(0, 3, 1, 2)  # [T, 3, h, w], channels last
    if (h, w) != (height, width):
        x = F.interpolate(
            x.contiguous(memory_format=torch.channels_last),
            size=(height, width),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
    if params.flip:
        x = x.flip(-1)
    return x.permute(0, 2, 3, 1).contiguous()


def _gray(x: torch.Tensor) -> torch.Tensor:
    """float [..., 3, H, W] -> [..., 1, H, W] (torchvision's luma weights)."""
    r, g, b = x.unbind(-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


# BT.601 limited range ("tv") -> full-range RGB: luma 16..235, chroma 16..240 around 128, and
# the Kr = 0.299, Kb = 0.114 matrix; the same conversion swscale does for the RGB decode path
# (`preprocessing.shard_format.RGB_SWS`).
_Y_SCALE, _C_SCALE = 255.0 / 219.0, 255.0 / 224.0
_CR_R, _CB_G, _CR_G, _CB_B = 1.402, 0.344136, 0.714136, 1.772


def _upsample2x(c: torch.Tensor, dim: int) -> torch.Tensor:
    """Double `dim` of a chroma plane whose samples sit between two output samples: output
    2i and 2i + 1 take 3/4 of sample i and 1/4 of its neighbour before / after (edges repeat).
    [..., n, ...] -> [..., 2n, ...] along `dim` (negative)."""
    n = c.shape[dim]
    before = torch.cat([c.narrow(dim, 0, 1), c.narrow(dim, 0, n - 1)], dim=dim)
    after = torch.cat([c.narrow(dim, 1, n - 1), c.narrow(dim, n - 1, 1)], dim=dim)
    near = c * 0.75
    pair = torch.stack([near + before * 0.25, near + after * 0.25], dim=dim)
    return pair.flatten(dim - 1, dim)  # [..., n, 2, ...] -> [..., 2n, ...]


def yuv_to_rgb(y: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """YUV planes -> float32 RGB [..., 3, H, W] in [0, 1], on the planes' device.

    y: uint8 [..., H, W] luma; uv: uint8 (Cb, Cr) [..., 2, H/2, W/2] (4:2:0) or
    [..., 2, H, W] (4:4:4); BT.601 limited range. 4:2:0 chroma is upsampled bilinearly with
    each chroma sample centred on its 2x2 luma block (edges repeat): swscale's own
    assumption, both when preprocessing wrote the planes and in the RGB decode path, which
    this matches to rounding (tests/test_loader.py)."""
    c = uv.float().sub_(128.0).mul_(_C_SCALE)  # [..., 2, h, w]
    full = c if c.shape[-2:] == y.shape[-2:] else _upsample2x(_upsample2x(c, -2), -1)
    cb, cr = full.unbind(-3)
    luma = y.float().sub_(16.0).mul_(_Y_SCALE)  # [..., H, W]
    rgb = torch.stack([luma + _CR_R * cr, luma - _CB_G * cb - _CR_G * cr, luma + _CB_B * cb], -3)
    return rgb.div_(255.0).clamp_(0.0, 1.0)  # [..., 3, H, W]


def yuv_to_rgb_u8(y: torch.Tensor, uv: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """`yuv_to_rgb` for one clip on the CPU, as uint8 [T, H, W, 3] RGB (mirrored when
    `flip`): how a batch that mixes YUV clips with RGB ones is made whole in the loader."""
    rgb = yuv_to_rgb(y, uv)  # [T, 3, H, W]
    if flip:
        rgb = rgb.flip(-1)
    return rgb.mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def augment_batch(
    video: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    audio: torch.Tensor,
    jitter: torch.Tensor,
    noise_seed: torch.Tensor,
    cfg: AugmentConfig,
    audio_stride: int = 1,
    flip: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The device half of the training transform, batched, on whatever device the inputs are.

    video uint8 [B, T, H, W, 3] RGB (cropped, resized, flipped), or a pair of YUV planes
    (Y uint8 [B, T, H, W], CbCr uint8 [B, T, 2, H/2, W/2] or [B, T, 2, H, W], cropped and
    resized, not yet flipped: converted here by `yuv_to_rgb`, then mirrored where `flip`
    [B] bool says);
    audio int16 [B, S * audio_stride]; jitter float [B, 4] (`ClipParams.jitter`);
    noise_seed int64 [B].
    Returns video float32 [B, T, H, W, 3] and audio float32 [B, S], both in [-1, 1].
    Colour jitter is augment_clip's: brightness, contrast (per-frame mean grey), saturation,
    hue, each clipped to [0, 1], with each clip's own factors (shared by its frames)."""
    if isinstance(video, tuple):
        x = yuv_to_rgb(*video)  # [B, T, 3, H, W]
        if flip is not None:  # no host sync: a select, not a branch on the flags
            x = torch.where(flip.to(x.device).view(-1, 1, 1, 1, 1), x.flip(-1), x)
    else:
        x = video.permute(0, 1, 4, 2, 3).float().div_(255.0)  # [B, T, 3, H, W]
    f = jitter.to(x.device, torch.float32).view(-1, 4, 1, 1, 1, 1).unbind(1)  # 4 x [B,1,1,1,1]
    if cfg.brightness > 0:
        x = (x.add_(f[0]) if cfg.brightness_mode == "add" else x.mul_(f[0])).clamp_(0.0, 1.0)
    if cfg.contrast > 0:
        mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True)
        x = x.mul_(f[1]).add_((1.0 - f[1]) * mean).clamp_(0.0, 1.0)
    if cfg.saturation > 0:
        gray = _gray(x)  # of x before the blend (x is modified in place)
        x = x.mul_(f[2]).add_((1.0 - f[2]) * gray).clamp_(0.0, 1.0)
    if cfg.hue > 0:
        x = adjust_hue(x, f[3].view(-1, 1, 1, 1))
    video_out = x.clamp_(0.0, 1.0).mul_(2.0).sub_(1.0).permute(0, 1, 3, 4, 2).contiguous()

    wave = pool_audio(audio.float().div_(32768.0), audio_stride)  # [B, S]
    if cfg.audio_noise > 0 and wave.numel():
        std = cfg.audio_noise * wave.abs().amax(dim=1, keepdim=True)  # silence stays silent
        noise = torch.empty_like(wave)
        for i, seed in enumerate(noise_seed.tolist()):
            gen = torch.Generator(device=wave.device).manual_seed(int(seed))
            noise[i] = torch.randn(wave.shape[1], generator=gen, device=wave.device)
        wave = (wave + std * noise).clamp_(-1.0, 1.0)
    return video_out, wave
