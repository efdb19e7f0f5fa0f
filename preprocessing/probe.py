"""ffprobe facts about one input file (duration, streams, fps, sample rate) for the manifest."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from fractions import Fraction

import ffmpeg


@dataclass
class ProbeFacts:
    duration: float
    has_video: bool
    has_audio: bool
    width: int
    height: int
    fps: float
    video_codec: str
    audio_codec: str
    sample_rate: int
    audio_channels: int
    file_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


class ProbeError(Exception):
    """The file cannot be used; the message is the one-line reason."""


def ffmpeg_reason(err: Exception) -> str:
    """The last meaningful line of ffmpeg's stderr, for a one-line error."""
    stderr = getattr(err, "stderr", b"") or b""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    if lines:
        return lines[-1]
    code = getattr(err, "returncode", None)
    return f"ffmpeg exited with code {code}" if code is not None else str(err)


def _rate(text: str | None) -> float:
    try:
        r = Fraction(text or "0")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(r) if r > 0 else 0.0


def probe(path: str) -> ProbeFacts:
    """Probe `path`; raise ProbeError with a human-readable reason if it is unusable as video."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ProbeError(f"cannot read file: {e.strerror}") from None
    if size == 0:
        raise ProbeError("empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise ProbeError("cannot read file: permission denied")
    try:
        info = ffmpeg.probe(path)
    except ffmpeg.Error as e:
        raise ProbeError(f"ffprobe cannot read it: {ffmpeg_reason(e)}") from None
    streams = info.get("streams", [])
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
        ),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None:
        raise ProbeError("no video stream")
    duration = 0.0
    for source in (info.get("format", {}), video):
        try:
            duration = float(source.get("duration", 0) or 0)
        except (TypeError, ValueError):
            duration = 0.0
        if duration > 0:
            break
    if duration <= 0:
        raise ProbeError("unknown or zero duration")
    return ProbeFacts(
        duration=duration,
        has_video=True,
        has_audio=audio is not None,
        width=int(video.get("width") or 0),
        height=int(video.get("height") or 0),
        fps=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
        video_codec=str(video.get("codec_name", "")),
        audio_codec=str(audio.get("codec_name", "")) if audio else "",
        sample_rate=int(audio.get("sample_rate") or 0) if audio else 0,
        audio_channels=int(audio.get("channels") or 0) if audio else 0,
        file_bytes=size,
    )
