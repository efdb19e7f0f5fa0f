"""ffprobe facts about one input file (duration, chosen streams, their start times, fps,
pixel aspect, sample rate) for the manifest, and how every ffmpeg/ffprobe call names a file."""

from __future__ import annotations

import os
import subprocess
from dataclasses import asdict, dataclass
from fractions import Fraction

import ffmpeg


def media_path(path: str) -> str:
    """The name ffmpeg and ffprobe get for a local file: absolute and behind the `file:`
    protocol, so a file called `-x.mp4` is not read as an option and `concat:a|b`,
    `http:...` or `subfile,,...` as a protocol."""
    return "file:" + os.path.abspath(path)


@dataclass
class ProbeFacts:
    duration: float  # seconds from the file's start (its earliest stream) to its end
    has_video: bool
    has_audio: bool
    width: int  # coded (storage) pixels; the display width is width * sar
    height: int
    sar: float  # sample (pixel) aspect ratio, 1.0 for square pixels
    fps: float
    video_codec: str
    audio_codec: str
    sample_rate: int
    audio_channels: int
    video_stream: int  # ffmpeg stream index decoded for video
    audio_stream: int  # ffmpeg stream index decoded for audio, -1 without audio
    audio_streams: int  # how many audio streams the file has (one is chosen)
    audio_language: str  # the chosen audio stream's language tag, "" when untagged
    video_start: float  # when the video / chosen audio stream starts on the file's timeline
    audio_start: float
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


def _float(value: object) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return x if x == x and abs(x) != float("inf") else 0.0


def _sar(text: str | None) -> float:
    """ffprobe's "sample_aspect_ratio" ("4:3"; "0:1" or absent means unknown = square)."""
    num, _, den = (text or "").partition(":")
    try:
        sar = Fraction(int(num), int(den))
    except (ValueError, ZeroDivisionError):
        return 1.0
    return float(sar) if sar > 0 else 1.0


def choose_audio(streams: list[dict]) -> dict | None:
    """The audio stream a player would play: the one marked default, else the first. A second
    language or commentary track is never mixed in."""
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    default = [s for s in audio if (s.get("disposition") or {}).get("default")]
    return (default or audio or [None])[0]


def _scan_duration(path: str) -> float:
    """End of the last packet, for a container whose header has no duration (a live-muxed
    WebM/MKV, a stream dump): ffprobe reads every packet's timestamp, nothing is decoded."""
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=pts_time,duration_time",
         "-of", "csv=p=0", media_path(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    end = 0.0
    for line in proc.stdout.splitlines():
        pts, _, dur = line.partition(",")
        end = max(end, _float(pts) + _float(dur))
    return end


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
        info = ffmpeg.probe(media_path(path))
    except ffmpeg.Error as e:
        raise ProbeError(f"ffprobe cannot read it: {ffmpeg_reason(e)}") from None
    streams = info.get("streams", [])
    fmt = info.get("format", {})
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
        ),
        None,
    )
    audio = choose_audio(streams)
    if video is None:
        raise ProbeError("no video stream")
    duration = _float(fmt.get("duration")) or _float(video.get("duration"))
    if duration <= 0:
        duration = _scan_duration(path) - _float(fmt.get("start_time"))
    if duration <= 0:
        raise ProbeError("unknown or zero duration (no timestamps in the header or packets)")
    origin = _float(fmt.get("start_time"))  # ffmpeg's time 0 of the file (-ss counts from it)
    return ProbeFacts(
        duration=duration,
        has_video=True,
        has_audio=audio is not None,
        width=int(video.get("width") or 0),
        height=int(video.get("height") or 0),
        sar=_sar(video.get("sample_aspect_ratio")),
        fps=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
        video_codec=str(video.get("codec_name", "")),
        audio_codec=str(audio.get("codec_name", "")) if audio else "",
        sample_rate=int(audio.get("sample_rate") or 0) if audio else 0,
        audio_channels=int(audio.get("channels") or 0) if audio else 0,
        video_stream=int(video.get("index", 0)),
        audio_stream=int(audio.get("index", -1)) if audio else -1,
        audio_streams=sum(1 for s in streams if s.get("codec_type") == "audio"),
        audio_language=str((audio.get("tags") or {}).get("language", "")) if audio else "",
        video_start=max(0.0, _float(video.get("start_time")) - origin),
        audio_start=max(0.0, _float(audio.get("start_time")) - origin) if audio else 0.0,
        file_bytes=size,
    )
