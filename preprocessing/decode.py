"""ffmpeg (through ffmpeg-python) decoding of a time range: frames at a fixed fps and short
side, and mono 16-bit PCM at a fixed rate.

Frames leave ffmpeg either already JPEG-encoded (`-f mjpeg`, concatenated JPEG images;
`split_jpegs` finds the frame boundaries) for JPEG shards, or as planar yuv420p in a y4m
stream (`split_y4m`) for the H.264 encoder (`preprocessing.encode`): no RGB array crosses the
pipe. One ffmpeg process decodes a video's whole span once for all its windows.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import ffmpeg
import numpy as np

from preprocessing.probe import ffmpeg_reason, media_path


class DecodeError(Exception):
    """ffmpeg could not decode the range; the message is the one-line reason."""


# ffmpeg always gets a -t (see `_input`): a range this long means "to the end of the file".
TO_THE_END_S = 1e7


@dataclass(frozen=True)
class MediaRange:
    """The input of one decode: [start, start + duration) seconds of `path`'s timeline
    (by default the whole file). `seek_from` is where input seeking becomes safe, the video
    stream's start (see `_input`); every decoder of the range reads it the same way."""

    path: str
    start: float = 0.0
    duration: float = TO_THE_END_S
    seek_from: float = 0.0


@dataclass
class DecodedSpan:
    """Frames and audio of [start, start + duration) of one file."""

    start: float
    # one JPEG per frame, or (frame_format "yuv420p") one uint8 [height * 3 // 2, width]
    # planar frame each; frame i at time start + i / fps
    frames: list
    audio: (
        np.ndarray | None
    )  # int16 [S], sample j at time start + j / sample_rate; None = no audio stream
    fps: float
    sample_rate: int
    width: int = 0  # set for yuv420p frames
    height: int = 0


def scale_filter_args(short_side: int) -> dict:
    """Scale so the shorter side of the *displayed* picture is `short_side` (even sizes).

    `dar` is ffmpeg's display aspect (storage width x pixel aspect / height), so a file with
    non-square pixels (SAR != 1, e.g. anamorphic DV or phone footage) is not squashed; the
    output pixels are square (`setsar=1` follows)."""
    return {
        "w": f"if(gte(dar,1),2*round({short_side}*dar/2),{short_side})",
        "h": f"if(gte(dar,1),{short_side},2*round({short_side}/dar/2))",
    }


def crop_filter_args(max_aspect: float) -> dict:
    """Centre-crop the long side so the displayed aspect is at most `max_aspect`: a 400x16
    banner would otherwise become 6400x256 frames. Cropped before scaling, in storage
    pixels (`sar` converts), so no oversized intermediate frame exists either."""
    return {
        "w": f"min(iw,2*trunc(ih*{max_aspect}/sar/2))",
        "h": f"min(ih,2*trunc(iw*sar*{max_aspect}/2))",
    }


def split_jpegs(buf: bytes) -> list[bytes]:
    """Split a concatenation of baseline JPEG images (ffmpeg's mjpeg muxer output).

    Walks the marker segments of each image to its scan, then finds the end-of-image marker;
    inside entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so
    the first FFD9 after the scan header is the image's end."""
    frames: list[bytes] = []
    i, n = 0, len(buf)
    while i < n:
        if buf[i : i + 2] != b"\xff\xd8":
            raise DecodeError(f"corrupt JPEG stream from ffmpeg at byte {i}")
        j = i + 2
        while True:
            while j < n and buf[j] == 0xFF and j + 1 < n and buf[j + 1] == 0xFF:
                j += 1  # fill bytes
            if j + 4 > n or buf[j] != 0xFF:
                raise DecodeError(f"truncated JPEG header at byte {j}")
            marker = buf[j + 1]
            seg_len = int.from_bytes(buf[j + 2 : j + 4], "big")
            j += 2 + seg_len
            if marker == 0xDA:  # start of scan
                break
        end = buf.find(b"\xff\xd9", j)
        if end < 0:
            raise DecodeError("truncated JPEG scan (no end-of-image marker)")
        frames.append(buf[i : end + 2])
        i = end + 2
    return frames


def split_y4m(buf: bytes) -> tuple[list[np.ndarray], int, int]:
    """A yuv4mpegpipe stream (4:2:0) -> (frames, width, height); each frame a uint8
    [height * 3 // 2, width] view of the planar Y, U, V data."""
    end = buf.find(b"\n")
    header = buf[:end].split() if end > 0 else []
    if not header or header[0] != b"YUV4MPEG2":
        raise DecodeError("ffmpeg gave no y4m stream")
    fields = {f[:1]: f[1:] for f in header[1:]}
    width, height = int(fields[b"W"]), int(fields[b"H"])
    colour = fields.get(b"C", b"420").decode()
    if not colour.startswith("420") or width % 2 or height % 2:
        raise DecodeError(f"y4m stream is C{colour} {width}x{height}, expected even 4:2:0")
    size = width * height * 3 // 2
    frames, pos = [], end + 1
    while pos < len(buf):
        line = buf.find(b"\n", pos)
        if line < 0 or not buf.startswith(b"FRAME", pos):
            raise DecodeError(f"corrupt y4m stream from ffmpeg at byte {pos}")
        start = line + 1
        if start + size > len(buf):
            break  # a truncated last frame
        frames.append(np.frombuffer(buf, np.uint8, size, start).reshape(height * 3 // 2, width))
        pos = start + size
    return frames, width, height


def _input(media: MediaRange, threads: int):
    """(input node, output options) reading `media`'s range of the file's timeline.

    Input seeking (-ss before -i) is fast, but a demuxer that seeks by video keyframes
    (Matroska/WebM cues) lands on the first keyframe when the target lies before it, dropping
    the audio packets in between. So up to `seek_from` (when the video stream starts) the
    file is read from its start and cut on the output side instead. The input -t only bounds
    reading (ffmpeg counts it from each stream's first frame, so a delayed stream would run
    long); the output -t, applied after the filters, cuts the range exactly."""
    name, start, duration = media_path(media.path), media.start, media.duration
    cut = {"t": f"{duration:.3f}"}
    if start > media.seek_from:
        node = ffmpeg.input(name, ss=f"{start:.3f}", t=f"{duration:.3f}", threads=threads)
        return node, cut
    node = ffmpeg.input(name, t=f"{start + duration:.3f}", threads=threads)
    return node, {"ss": f"{start:.3f}", **cut}


def _pick(node, stream: int | None, kind: str):
    """One stream of the input: by ffmpeg index (what probe chose), else the first of `kind`."""
    return node[str(stream)] if stream is not None and stream >= 0 else node[kind]


def _video(
    media: MediaRange,
    fps: float,
    short_side: int,
    threads: int,
    *,
    stream: int | None = None,
    max_aspect: float | None = None,
    full_range: bool = False,
):
    """The video graph shared by the pipeline and the decode-only benchmark limit, and the
    output options it needs. Frame i is at start + i / fps on the file's timeline: `fps`
    with start_time=0 repeats the first frame where the video starts later than the range.

    Colours: the frames come out as BT.601 YUV, limited range (or full with `full_range`:
    JPEG's), whatever the source's matrix and range (read from its tags; untagged = BT.601).
    Without this a BT.709 source (most HD video) would be stored as BT.709 YUV that every
    reader decodes as BT.601: greens ~25/255 too bright, reds too dark."""
    node, out = _input(media, threads)
    video = _pick(node, stream, "v").filter("fps", fps=fps, start_time=0)
    if max_aspect is not None:
        video = video.filter("crop", **crop_filter_args(max_aspect))
    video = video.filter(
        "scale", **scale_filter_args(short_side), **colour_filter_args(full_range)
    ).filter("setsar", 1)
    return video, out


def colour_filter_args(full_range: bool = False) -> dict:
    """scale options converting any source to BT.601 YUV (the shards' colours; see `_video`)."""
    return {
        "in_color_matrix": "auto",
        "out_color_matrix": "bt601",
        "out_range": "pc" if full_range else "tv",
    }


def _run(stream, threads: int, what: str) -> bytes:
    """Run an ffmpeg-python graph with `threads` threads for decoder, filters and encoder.

    Ray schedules a task on that many CPUs; ffmpeg's default (a thread per core) would
    oversubscribe the node. -filter_threads is a global option, so it goes before the inputs
    (ffmpeg-python's global_args would put it after the output, where ffmpeg ignores it)."""
    cmd = stream.compile()
    cmd[1:1] = ["-nostdin", "-hide_banner", "-loglevel", "error", "-filter_threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise DecodeError(f"{what} decode failed: {ffmpeg_reason(proc)}")
    return proc.stdout


def decode_frames(
    media: MediaRange,
    fps: float,
    short_side: int,
    qscale: int,
    threads: int = 1,
    *,
    stream: int | None = None,
    max_aspect: float | None = None,
    frame_format: str = "jpeg",
) -> list:
    """Frames of `media`'s range at `fps`, shorter side `short_side`: JPEGs (`frame_format`
    "jpeg"), or "yuv420p" planar arrays (see `split_y4m`)."""
    video, out = _video(
        media, fps, short_side, threads,
        stream=stream, max_aspect=max_aspect, full_range=frame_format != "yuv420p",
    )  # fmt: skip
    if frame_format == "yuv420p":
        raw = _run(
            video.output("pipe:", format="yuv4mpegpipe", pix_fmt="yuv420p", **out),
            threads,
            "video",
        )
        return split_y4m(raw)  # type: ignore[return-value]
    stream_out = video.output(
        "pipe:", format="mjpeg", threads=threads, **{"q:v": qscale, "pix_fmt": "yuvj420p"}, **out
    )
    return split_jpegs(_run(stream_out, threads, "video"))


def decode_audio(
    media: MediaRange, sample_rate: int, threads: int = 1, *, stream: int | None = None
) -> np.ndarray:
    """Mono int16 PCM of `media`'s range at `sample_rate`, on the file's timeline: sample j
    is at start + j / sample_rate. `aresample` with first_pts=0 pads silence where the audio
    stream starts late (edit lists, a delayed track) and fills gaps inside it."""
    node, out = _input(media, threads)
    graph = (
        _pick(node, stream, "a")
        .filter("aresample", sample_rate, **{"async": 1, "first_pts": 0})
        .output("pipe:", format="s16le", acodec="pcm_s16le", ac=1, ar=sample_rate, **out)
    )
    return np.frombuffer(_run(graph, threads, "audio"), dtype="<i2").copy()


def decode_span(
    media: MediaRange,
    *,
    fps: float,
    short_side: int,
    sample_rate: int,
    qscale: int,
    has_audio: bool,
    threads: int = 1,
    video_stream: int | None = None,
    audio_stream: int | None = None,
    max_aspect: float | None = None,
    frame_format: str = "jpeg",
) -> DecodedSpan:
    """Frames and audio of `media`'s range. The streams are the ones `probe` chose (default:
    the first of each kind); `media.seek_from` is the video stream's start (see `_input`)."""
    frames = decode_frames(
        media, fps, short_side, qscale, threads,
        stream=video_stream, max_aspect=max_aspect, frame_format=frame_format,
    )  # fmt: skip
    width = height = 0
    if frame_format == "yuv420p":
        frames, width, height = frames
    audio = decode_audio(media, sample_rate, threads, stream=audio_stream) if has_audio else None
    return DecodedSpan(media.start, frames, audio, fps, sample_rate, width, height)


def decode_square_rgb(
    path: str,
    fps: float,
    side: int,
    *,
    start: float | None = None,
    duration: float | None = None,
    threads: int = 1,
) -> np.ndarray:
    """Every frame at `fps` of the whole file, or of [start, start + duration) seconds (either
    may be None: the file's own start / end), scaled to cover side x side and centre-cropped.

    Returns uint8 [T, side, side, 3] (evaluation clips). Cropping inside ffmpeg makes the
    output size known in advance (raw RGB carries no header) and keeps the pipe small.
    Input-side -ss/-t: ffmpeg seeks to the keyframe before `start` and decodes from there,
    discarding frames before it (exact, and cheap for a segment deep inside a long video)."""
    seek = {} if start is None else {"ss": f"{start:.3f}"}
    if duration is not None:
        seek["t"] = f"{duration:.3f}"
    stream = (
        ffmpeg.input(path, threads=threads, **seek)
        .video.filter("fps", fps=fps)
        # "increase" makes both sides >= side (ffmpeg takes the max), so the crop always fits.
        # RGB straight from the scaler with the source's matrix and swscale's accurate path:
        # the colours the loader gets from a shard (shard_format.RGB_SWS); the conversion
        # ffmpeg would insert by itself is ~2/255 darker in R and B.
        .filter(
            "scale",
            w=side,
            h=side,
            force_original_aspect_ratio="increase",
            flags="bicubic+accurate_rnd+full_chroma_int",
            in_color_matrix="auto",
            out_range="pc",
        )
        .filter("format", "rgb24")
        .filter("crop", side, side)
        .output("pipe:", format="rawvideo", pix_fmt="rgb24", threads=threads)
    )
    raw = _run(stream, threads, "video")
    frame_bytes = side * side * 3
    n = len(raw) // frame_bytes
    return np.frombuffer(raw, np.uint8, n * frame_bytes).reshape(n, side, side, 3)


def decode_span_raw(
    media: MediaRange,
    *,
    fps: float,
    short_side: int,
    sample_rate: int,
    has_audio: bool,
    threads: int = 1,
) -> tuple[int, int]:
    """The decode-only limit for benchmarks: the same decode to raw RGB + PCM in memory,
    nothing else. Returns (video bytes, audio bytes)."""
    video_graph, out = _video(media, fps, short_side, threads)
    video = _run(
        video_graph.output("pipe:", format="rawvideo", pix_fmt="rgb24", threads=threads, **out),
        threads,
        "video",
    )
    audio = decode_audio(media, sample_rate, threads) if has_audio else np.zeros(0, np.int16)
    return len(video), audio.nbytes
