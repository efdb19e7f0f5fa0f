"""Media decoding for evaluation: uniformly spaced video and audio windows of a file.

Everything decodes through the preprocessing decoder (`preprocessing.decode`: the same ffmpeg
graphs and error handling that wrote the shards), then takes what the model sees at
evaluation: `num_windows` windows spread from the start to the end of the file (or of a
[start, end] segment), video centre-cropped to the model's grid (or `crops` square crops
along the long side: multi-view testing, e.g. 4 clips x 3 crops), audio mono at a given rate.
A file that cannot be decoded raises VideoDecodeError with a one-line reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from preprocessing.decode import (
    TO_THE_END_S,
    DecodeError,
    MediaRange,
    decode_audio,
    decode_frames,
    decode_square_rgb,
)
from preprocessing.shard_format import SampleError
from preprocessing.shard_format import decode_frames as decode_jpegs
from training.data.augment import audio_to_float, center_crop_resize


class VideoDecodeError(Exception):
    """A file cannot be decoded for evaluation; the message is the one-line reason."""


def _decode_square(
    path: Path, fps: float, side: int, threads: int, span: tuple[float, float] | None = None
) -> np.ndarray:
    """uint8 [T, side, side, 3]: every frame at `fps` (of [start, end] seconds when `span` is
    given), through the preprocessing decoder; VideoDecodeError with the reason."""
    start = None if span is None else span[0]
    duration = None if span is None or span[1] == float("inf") else span[1] - span[0]
    try:
        frames = decode_square_rgb(
            str(path), fps, side, start=start, duration=duration, threads=threads
        )
    except DecodeError as e:
        raise VideoDecodeError(f"ffmpeg cannot decode it: {str(e).split(': ', 1)[-1]}") from None
    if len(frames) == 0:
        where = "" if span is None else f" in [{span[0]:g}, {span[1]:g}] s"
        raise VideoDecodeError(f"no video frames decoded{where}")
    return frames


def _decode_full(
    path: Path, fps: float, short_side: int, threads: int, span: tuple[float, float] | None
) -> np.ndarray:
    """uint8 [T, H0, W0, 3]: every frame at `fps`, short side `short_side`, aspect kept (the
    long side holds the spatial crops), through the shards' JPEG path at the best quality."""
    start = 0.0 if span is None else span[0]
    end = TO_THE_END_S if span is None or span[1] == float("inf") else span[1]
    media = MediaRange(str(path), start, end - start)
    try:
        jpegs = decode_frames(media, fps, short_side, 2, threads)
        frames = decode_jpegs(jpegs) if jpegs else np.zeros((0, 1, 1, 3), np.uint8)
    except (DecodeError, SampleError) as e:
        raise VideoDecodeError(f"ffmpeg cannot decode it: {str(e).split(': ', 1)[-1]}") from None
    if len(frames) == 0:
        where = "" if span is None else f" in [{span[0]:g}, {span[1]:g}] s"
        raise VideoDecodeError(f"no video frames decoded{where}")
    return frames


def spatial_crops(frames: np.ndarray, crops: int, height: int, width: int) -> list[torch.Tensor]:
    """`crops` square crops spaced evenly along the long side (1: the centre; 3: the usual
    left/centre/right, or top/centre/bottom for portrait video), each resized to
    height x width. frames: uint8 [T, H0, W0, 3] -> float [T, height, width, 3] each."""
    _, h0, w0, _ = frames.shape
    side = min(h0, w0)
    offsets = (
        [round(o) for o in np.linspace(0, max(h0, w0) - side, crops)]
        if crops > 1
        else [(max(h0, w0) - side) // 2]
    )
    out = []
    for o in offsets:
        square = frames[:, o : o + side] if h0 > w0 else frames[:, :, o : o + side]
        out.append(center_crop_resize(square, height, width))  # scale only: it is square
    return out


def window_starts(num_frames: int, span: int, num_windows: int) -> list[int]:
    """First frame of each of `num_windows` windows of `span` frames, uniformly spaced from
    the start to the end of the video (DMVR's linspace sampling); one window is centred.
    A video shorter than a window gets windows starting at 0."""
    last = max(0, num_frames - span)
    if num_windows == 1:
        return [last // 2]
    return [round(s) for s in np.linspace(0, last, num_windows)]


def decode_windows(
    path: str | Path,
    *,
    num_windows: int,
    clip_seconds: float,
    frames: int,
    height: int,
    width: int,
    fps: float = 10.0,
    threads: int = 1,
    start: float | None = None,
    end: float | None = None,
    crops: int = 1,
) -> torch.Tensor:
    """`num_windows` uniformly spaced clips of `clip_seconds` from one video, as the model
    sees them at evaluation: `frames` frames (every stride-th frame at `fps`) centre-cropped
    to height x width. With `start`/`end` (seconds; either may be None = the video's own
    start/end) the windows are spread over that segment only (YouCook2 clips inside longer
    videos).

    The video is decoded once, at `fps` and with its short side scaled to max(height, width)
    (cheap: no full-resolution frame reaches Python). A video shorter than a window repeats
    its last frame. With `crops` > 1 every window gives that many square crops along the
    long side (`spatial_crops`; views = windows x crops, crops varying fastest). Returns
    uint8 [num_windows * crops, frames, height, width, 3] (uint8 keeps a whole held-out set
    in memory 4x smaller; `to_model_input` makes the [-1, 1] floats). Raises
    VideoDecodeError with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path} not found")
    span = None
    if start is not None or end is not None:
        lo, hi = start or 0.0, float("inf") if end is None else end
        if not 0.0 <= lo < hi:
            raise VideoDecodeError(f"segment [{lo:g}, {hi:g}] s is empty or negative")
        span = (lo, hi)
    if crops < 1:
        raise ValueError(f"crops={crops} must be >= 1")
    # e.g. 3.2 s at 10 fps = 32 decoded frames -> every 4th for an 8-frame model.
    stride = max(1, round(clip_seconds * fps / frames))
    side = max(height, width)
    if crops == 1:
        video = _decode_square(path, fps, side, threads, span)  # [T, S, S, 3]
    else:
        video = _decode_full(path, fps, side + side % 2, threads, span)  # [T, H0, W0, 3]
    starts = window_starts(len(video), (frames - 1) * stride + 1, num_windows)
    offsets = np.arange(frames) * stride
    index = np.minimum(np.add.outer(starts, offsets), len(video) - 1)  # [W, frames]
    picked = video[index.reshape(-1)]  # [W*frames, H0, W0, 3]
    if crops == 1:
        clips = center_crop_resize(picked, height, width)  # [W*frames, h, w, 3]
    else:
        views = spatial_crops(picked, crops, height, width)  # crops x [W*frames, h, w, 3]
        clips = torch.stack(views, dim=1)  # [W*frames, crops, h, w, 3]
        clips = clips.reshape(num_windows, frames, crops, height, width, 3).transpose(1, 2)
    # Back to uint8: exact when no resize happened (the usual case), else within 0.5/255.
    clips = clips.add_(1.0).mul_(127.5).round_().to(torch.uint8)
    return clips.reshape(num_windows * crops, frames, height, width, 3)


def to_model_input(clips: torch.Tensor) -> torch.Tensor:
    """uint8 clips [..., 3] -> float32 in [-1, 1] (the same map as training.data.augment)."""
    return clips.float().div_(127.5).sub_(1.0)


def decode_audio_windows(
    path: str | Path,
    *,
    samples: int,
    rate: int,
    num_windows: int,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """`num_windows` uniformly spaced windows of `samples` samples of a file's audio (or of
    its [start, end] seconds), mono and resampled to `rate` by ffmpeg.

    Spaced like the video windows (`window_starts`: first at the start, last at the end);
    audio shorter than a window is padded with silence, as the training loader does.
    Returns float32 (num_windows, samples) in [-1, 1]. Raises VideoDecodeError with a
    one-line reason (missing file, no audio stream, nothing decoded)."""
    path = Path(path)
    if samples < 1 or rate < 1 or num_windows < 1:
        raise ValueError(f"samples={samples}, rate={rate}, num_windows={num_windows} must be >= 1")
    if not path.is_file():
        raise VideoDecodeError(f"{path} not found")
    lo = start or 0.0
    hi = TO_THE_END_S if end is None else end
    if not 0.0 <= lo < hi:
        raise VideoDecodeError(f"segment [{lo:g}, {hi:g}] s is empty or negative")
    try:
        pcm = decode_audio(MediaRange(str(path), lo, hi - lo), rate)  # int16 [S]
    except DecodeError as e:
        reason = str(e)
        # ffmpeg's last stderr line for a file without audio is about its stream map.
        if any(s in reason for s in ("matches no streams", "trailing '?'", "any stream")):
            reason = "no audio stream"
        raise VideoDecodeError(reason) from None
    if len(pcm) == 0:
        raise VideoDecodeError(
            "no audio decoded" + ("" if end is None else f" in [{lo:g}, {hi:g}] s")
        )
    wave = audio_to_float(pcm).numpy()  # float32 [S]
    if len(wave) < samples:  # shorter than a window: silence after its end
        wave = np.concatenate([wave, np.zeros(samples - len(wave), np.float32)])
    starts = window_starts(len(wave), samples, num_windows)
    index = np.add.outer(starts, np.arange(samples))  # [W, samples]
    return wave[index]  # [W, samples]


__all__ = [
    "VideoDecodeError",
    "decode_audio_windows",
    "decode_windows",
    "spatial_crops",
    "to_model_input",
    "window_starts",
]
