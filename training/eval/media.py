"""Media decoding for evaluation: uniformly spaced video and audio windows of a file.

Everything decodes through the preprocessing decoder (`preprocessing.decode`: the same ffmpeg
graphs and error handling that wrote the shards), then takes what the model sees at
evaluation: `num_windows` windows spread from the start to the end of the file (or of a
[start, end] segment), video centre-cropped to the model's grid, audio mono at a given rate.
A file that cannot be decoded raises VideoDecodeError with a one-line reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from preprocessing.decode import DecodeError, decode_audio, decode_square_rgb
from training.data.augment import audio_to_float, center_crop_resize

# decode_audio always passes -t; this many seconds means "to the end of the file".
_TO_THE_END_S = 1e7


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
) -> torch.Tensor:
    """`num_windows` uniformly spaced clips of `clip_seconds` from one video, as the model
    sees them at evaluation: `frames` frames (every stride-th frame at `fps`) centre-cropped
    to height x width. With `start`/`end` (seconds; either may be None = the video's own
    start/end) the windows are spread over that segment only (YouCook2 clips inside longer
    videos).

    The video is decoded once, at `fps` and with its short side scaled to max(height, width)
    (cheap: no full-resolution frame reaches Python). A video shorter than a window repeats
    its last frame. Returns uint8 [num_windows, frames, height, width, 3] (uint8 keeps a
    whole held-out set in memory 4x smaller; `to_model_input` makes the [-1, 1] floats).
    Raises VideoDecodeError with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path} not found")
    span = None
    if start is not None or end is not None:
        lo, hi = start or 0.0, float("inf") if end is None else end
        if not 0.0 <= lo < hi:
            raise VideoDecodeError(f"segment [{lo:g}, {hi:g}] s is empty or negative")
        span = (lo, hi)
    # e.g. 3.2 s at 10 fps = 32 decoded frames -> every 4th for an 8-frame model.
    stride = max(1, round(clip_seconds * fps / frames))
    video = _decode_square(path, fps, max(height, width), threads, span)  # [T, S, S, 3]
    starts = window_starts(len(video), (frames - 1) * stride + 1, num_windows)
    offsets = np.arange(frames) * stride
    index = np.minimum(np.add.outer(starts, offsets), len(video) - 1)  # [W, frames]
    clips = center_crop_resize(video[index.reshape(-1)], height, width)  # [W*frames, h, w, 3]
    # Back to uint8: exact when no resize happened (the usual case), else within 0.5/255.
    clips = clips.add_(1.0).mul_(127.5).round_().to(torch.uint8)
    return clips.reshape(num_windows, frames, height, width, 3)


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
    hi = _TO_THE_END_S if end is None else end
    if not 0.0 <= lo < hi:
        raise VideoDecodeError(f"segment [{lo:g}, {hi:g}] s is empty or negative")
    try:
        pcm = decode_audio(str(path), lo, hi - lo, rate)  # int16 [S]
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
    "to_model_input",
    "window_starts",
]
