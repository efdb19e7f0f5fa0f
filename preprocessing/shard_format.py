"""The shard sample contract (schema v2, reads v1 too): member names, the JSON metadata, keys,
encode/decode.

Produced here, consumed by the training loader, evaluation and `vatt inspect`. One sample =
three tar members sharing a key (full description: docs/shard-format.md):
  video, one of
    <key>.mp4    the window's frames as one H.264 stream (mp4), starting on a key frame, so any
                 crop of the window decodes this member alone (schema v2 default);
    <key>.mjpeg  T baseline JPEG frames concatenated (ffmpeg's mjpeg stream format);
                 `frame_sizes` in the JSON gives each frame's byte length (v1, and v2 "jpeg").
  audio (mono at `sample_rate`; zeros when the input has no audio stream, then audio_mask = 0),
  one of
    <key>.opus   Ogg Opus (v2 default)   <key>.m4a  AAC in mp4
    <key>.flac   FLAC (lossless)         <key>.npy  int16 waveform [S], np.save format (v1)
  <key>.json   metadata (SCHEMA_FIELDS; v2 adds `video_codec`, `audio_codec`), captions
               nearest first.

Compressed members are decoded in-process with PyAV (FFmpeg's libraries, no subprocess).

Reading is guarded (`read_shard`, `parse_meta`, `decode_sample`): a shard may come from
anywhere, so every size a header claims is checked before anything is allocated, and every
problem becomes a one-line reason instead of an exception deep in a decoder.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np

SCHEMA_VERSION = 2
VIDEO_MEMBER = "mjpeg"  # the v1 members (still written by video_codec="jpeg" / "pcm")
AUDIO_MEMBER = "npy"
META_MEMBER = "json"
# codec (the JSON's video_codec / audio_codec) -> member extension
VIDEO_CODECS = {"h264": "mp4", "mjpeg": "mjpeg"}
AUDIO_CODECS = {"opus": "opus", "aac": "m4a", "flac": "flac", "pcm_s16le": "npy"}
# extension -> PyAV container format of the audio members
_AUDIO_FORMATS = {"opus": "ogg", "m4a": "mp4", "flac": "flac"}
SCHEMA_FIELDS = (
    "schema_version",
    "key",
    "source",
    "video_id",
    "clip_id",
    "start",
    "end",
    "fps",
    "num_frames",
    "height",
    "width",
    "frame_sizes",
    "sample_rate",
    "num_samples",
    "audio_mask",
    "speech_ratio",
    "text_mask",
    "captions",
    "labels",
    "segment",
    "audio_stream",
)
V2_FIELDS = ("video_codec", "audio_codec")

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

# Decompression guards: the most a well-formed sample holds (a 4 s window of 256-pixel frames
# is a few MB). A hostile shard cannot make a reader allocate more: a member over the limit,
# an .npy header claiming more samples than its window, a JPEG claiming more pixels, or a
# compressed stream (a gzip named .tar inflating a huge member) is refused with a reason.
MAX_MEMBER_BYTES = 256 << 20
MAX_FRAME_PIXELS = 1 << 24  # 4096 x 4096
MAX_FRAMES = 4096  # frames of a video member decoded whole (a window holds tens)
AUDIO_SLACK_S = 1.0  # .npy may exceed (end - start) x sample_rate by this much
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_MEMBER = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's rule: key up to the first dot


class SampleError(ValueError):
    """A sample or a shard cannot be used; the message is the one-line reason."""


def key_prefix(clip_id: str) -> str:
    """The clip's part of its sample keys: the id itself when it holds only [A-Za-z0-9_-];
    else the id with every other character replaced by `_`, plus `-` and 8 hex digits of the
    id's SHA-1, so ids that differ only there (`my video` / `my_video`, two non-ASCII ids)
    keep distinct keys. Depends on the id alone: stable across runs and machines."""
    safe = _UNSAFE.sub("_", clip_id)
    if safe == clip_id:
        return safe
    return f"{safe}-{hashlib.sha1(clip_id.encode('utf-8')).hexdigest()[:8]}"


def sample_key(clip_id: str, start: float) -> str:
    """`<key_prefix(clip id)>_<start in ms, 8 digits>`: unique per window, stable across runs,
    and free of dots (webdataset splits a member name at its first dot)."""
    return f"{key_prefix(clip_id)}_{round(start * 1000):08d}"


def encode_audio(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(audio, dtype="<i2"), allow_pickle=False)
    return buf.getvalue()


def codecs(meta: dict) -> tuple[str, str]:
    """(video codec, audio codec) of a sample's metadata: v1 samples are mjpeg + int16 PCM."""
    return meta.get("video_codec", "mjpeg"), meta.get("audio_codec", "pcm_s16le")


def members(meta: dict) -> tuple[str, str]:
    """(video member, audio member) extensions of a sample (see the module docstring)."""
    video, audio = codecs(meta)
    return VIDEO_CODECS[video], AUDIO_CODECS[audio]


def encode_sample(meta: dict, video: list[bytes] | bytes, audio: np.ndarray | bytes) -> dict:
    """A webdataset.TarWriter sample dict (bytes per member). `video` is the encoded member
    (or a list of JPEG frames), `audio` the encoded member or an int16 waveform (`.npy`)."""
    fields = SCHEMA_FIELDS + (V2_FIELDS if meta.get("schema_version", 1) >= 2 else ())
    missing = [f for f in fields if f not in meta]
    if missing:
        raise ValueError(f"sample metadata lacks {missing}")
    vcodec, acodec = codecs(meta)
    if vcodec not in VIDEO_CODECS or acodec not in AUDIO_CODECS:
        raise ValueError(f"unknown codecs {vcodec!r} / {acodec!r}")
    return {
        "__key__": meta["key"],
        VIDEO_CODECS[vcodec]: b"".join(video) if isinstance(video, list) else video,
        AUDIO_CODECS[acodec]: encode_audio(audio) if isinstance(audio, np.ndarray) else audio,
        META_MEMBER: json.dumps(meta, ensure_ascii=False).encode("utf-8"),
    }


def split_frames(video: bytes, frame_sizes: list[int]) -> list[bytes]:
    """Cut the `.mjpeg` member into per-frame JPEG bytes using the JSON's frame_sizes."""
    if sum(frame_sizes) != len(video):
        raise SampleError(
            f"frame_sizes sum to {sum(frame_sizes)} bytes but the video member has {len(video)}"
        )
    out, pos = [], 0
    for size in frame_sizes:
        out.append(video[pos : pos + size])
        pos += size
    return out


def decode_frames(
    jpegs: list[bytes], size: tuple[int, int] | None = None, max_pixels: int = MAX_FRAME_PIXELS
) -> np.ndarray:
    """JPEG frames -> uint8 [T, H, W, 3] (Pillow). Each header is read first: a frame larger
    than `max_pixels`, or not of `size` (width, height) when given, is refused before its
    pixels are decoded."""
    from PIL import Image

    arrays = []
    for i, data in enumerate(jpegs):
        try:
            image = Image.open(io.BytesIO(data))  # reads the header only
        except Image.DecompressionBombError as e:  # Pillow's own check, at twice its limit
            raise SampleError(f"frame {i}: header claims too many pixels ({e})") from None
        except (OSError, SyntaxError) as e:
            raise SampleError(f"frame {i}: not a readable JPEG ({e})") from None
        width, height = image.size
        if width * height > max_pixels:
            raise SampleError(f"frame {i}: header claims {width}x{height} pixels, over the limit")
        if size is not None and (width, height) != tuple(size):
            raise SampleError(
                f"frame {i} is {width}x{height}, the metadata says {size[0]}x{size[1]}"
            )
        arrays.append(np.asarray(image.convert("RGB")))
    return np.stack(arrays) if arrays else np.zeros((0, 0, 0, 3), np.uint8)


def decode_audio(data: bytes, max_samples: int | None = None) -> np.ndarray:
    """An `.npy` member -> int16 [S]. The header is checked before any data is read: 1-D
    little-endian int16, at most `max_samples`, and exactly as many bytes as it claims."""
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(buf)
    except (ValueError, OSError, SyntaxError) as e:
        raise SampleError(f"audio is not a readable .npy ({e})") from None
    if dtype != np.dtype("<i2") or len(shape) != 1:
        raise SampleError(f"audio is {dtype} {shape}, expected int16 [S]")
    if max_samples is not None and shape[0] > max_samples:
        raise SampleError(
            f"audio header claims {shape[0]} samples, over the window's {max_samples}"
        )
    if len(data) - buf.tell() != 2 * shape[0]:
        raise SampleError(
            f"audio header claims {shape[0]} samples, the member holds {len(data) - buf.tell()} bytes"
        )
    return np.frombuffer(data, dtype="<i2", count=shape[0], offset=buf.tell()).copy()


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


# Field -> (check, what it must be): the fields readers use, with the types they rely on.
_META_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "source": (lambda x: isinstance(x, str), "a string"),
    "video_id": (lambda x: isinstance(x, str), "a string"),
    "start": (_number, "a number"),
    "end": (_number, "a number"),
    "fps": (lambda x: _number(x) and x > 0, "a positive number"),
    "num_frames": (_count, "a count"),
    "height": (lambda x: _count(x) and x > 0, "a positive integer"),
    "width": (lambda x: _count(x) and x > 0, "a positive integer"),
    "frame_sizes": (lambda x: isinstance(x, list) and all(_count(n) for n in x), "a list of sizes"),
    "sample_rate": (lambda x: _count(x) and x > 0, "a positive integer"),
    "num_samples": (_count, "a count"),
    "audio_mask": (lambda x: x in (0, 1), "0 or 1"),
    "text_mask": (lambda x: x in (0, 1), "0 or 1"),
    "speech_ratio": (_number, "a number"),
    "captions": (
        lambda x: (
            isinstance(x, list)
            and all(isinstance(c, dict) and isinstance(c.get("text"), str) for c in x)
        ),
        "a list of {text, start, end}",
    ),
    "labels": (lambda x: isinstance(x, list), "a list"),
}


def parse_meta(raw: bytes | str | dict) -> dict:
    """The `.json` member, checked: an object whose fields have the types readers rely on
    and agree with each other; SampleError naming the first field that does not."""
    if isinstance(raw, (bytes, str)):
        try:
            meta = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SampleError(f"metadata is not valid JSON ({e})") from None
    else:
        meta = raw
    if not isinstance(meta, dict):
        raise SampleError(f"metadata is a JSON {type(meta).__name__}, not an object")
    for field, (ok, what) in _META_CHECKS.items():
        if field not in meta:
            raise SampleError(f"metadata lacks {field!r}")
        if not ok(meta[field]):
            raise SampleError(f"metadata {field!r} is {meta[field]!r:.60}, expected {what}")
    if meta.get("schema_version", 1) >= 2:
        for field in V2_FIELDS:
            if field not in meta:
                raise SampleError(f"metadata lacks {field!r}")
    vcodec, acodec = codecs(meta)
    if vcodec not in VIDEO_CODECS:
        raise SampleError(
            f"metadata 'video_codec' is {vcodec!r:.40}, expected one of {list(VIDEO_CODECS)}"
        )
    if acodec not in AUDIO_CODECS:
        raise SampleError(
            f"metadata 'audio_codec' is {acodec!r:.40}, expected one of {list(AUDIO_CODECS)}"
        )
    if vcodec == "mjpeg" and len(meta["frame_sizes"]) != meta["num_frames"]:
        raise SampleError(
            f"frame_sizes has {len(meta['frame_sizes'])} entries, num_frames says {meta['num_frames']}"
        )
    if meta["end"] <= meta["start"]:
        raise SampleError(f"window end {meta['end']} is not after its start {meta['start']}")
    return meta


def max_audio_samples(meta: dict) -> int:
    """The most samples a window's `.npy` may hold (its length plus AUDIO_SLACK_S)."""
    return math.ceil((meta["end"] - meta["start"] + AUDIO_SLACK_S) * meta["sample_rate"])


def sparse_frame_indices(
    num_stored: int, sparse_frames: int, rng: np.random.Generator | None = None
) -> list[int]:
    """ALPRO's sparse sampling over a WebVid sample's stored frames: split them into
    `sparse_frames` equal segments (np.linspace bounds, as the release does) and take one
    frame of each, at random with `rng` (training) or the segment's middle one without
    (evaluation). Fewer stored frames than segments repeat frames, never fail.

    Args:
        num_stored: frames in the sample (`num_frames`), >= 1.
        sparse_frames: frames wanted (the sample's `sparse_frames`, ALPRO's num_frm = 4).
        rng: numpy Generator for a random frame per segment; None = middle frames.
    Returns:
        `sparse_frames` indices into the stored frames, non-decreasing.
    """
    if num_stored < 1 or sparse_frames < 1:
        raise ValueError(
            f"need num_stored >= 1 and sparse_frames >= 1, got {num_stored}, {sparse_frames}"
        )
    bounds = np.linspace(0, num_stored, sparse_frames + 1)
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        first, last = int(lo), max(int(lo), int(np.ceil(hi)) - 1)  # inclusive frame range
        pick = int(rng.integers(first, last + 1)) if rng is not None else (first + last + 1) // 2
        out.append(min(pick, num_stored - 1))
    return out


def _av_error() -> tuple[type[BaseException], ...]:
    import av

    return (av.error.FFmpegError, OSError, ValueError, EOFError)


def _select(frames: slice | list[int] | None, total: int) -> list[int]:
    """Frame indices of a selection (a slice, a list of indices, None = all) of `total`
    frames; SampleError for an index outside them."""
    if frames is None:
        return list(range(total))
    if isinstance(frames, slice):
        return list(range(total)[frames])
    bad = [i for i in frames if not -total <= i < total]
    if bad:
        raise SampleError(f"frame index {bad[0]} is outside the sample's {total} frames")
    return [i % total for i in frames]


# Every H.264 member holds BT.601 limited-range ("tv") YUV: preprocessing converts every source
# to it (`preprocessing.decode`), and the JPEG members are BT.601 full range by definition. The
# RGB conversion says so explicitly rather than trusting the stream's tags, so every decode path
# (this one, the JPEG one, ffmpeg's evaluation decode) gives the same colours. swscale's accurate
# path (full chroma interpolation, accurate rounding): its fast one is ~2/255 darker in R and B.
RGB_SWS = (
    "flags=bilinear+accurate_rnd+full_chroma_int:in_color_matrix=bt601:in_range=tv:out_range=pc"
)


# The training loader can take the crop as YUV planes instead (`pix_fmt` yuv420p / yuv444p):
# swscale then only resizes the planes (no colour conversion: ~40% less decode time), and the
# conversion to RGB runs batched on the training device (`training.data.augment.yuv_to_rgb`,
# the same BT.601 limited-range matrix as `RGB_SWS`). 4:2:0 also halves the hand-off's bytes,
# at the cost of chroma detail finer than half the output size (docs/shard-format.md).
YUV_SWS = "flags=bilinear+accurate_rnd+full_chroma_int"
PIX_FMTS = ("rgb24", "yuv420p", "yuv444p")


class YuvPlanes(NamedTuple):
    """Frames as YUV planes, BT.601 limited range: luma uint8 [t, H, W] and chroma (Cb, Cr)
    uint8 [t, 2, H/2, W/2] (4:2:0, each sample centred on its 2x2 luma block, as swscale
    assumes) or [t, 2, H, W] (4:4:4)."""

    y: np.ndarray
    uv: np.ndarray


def _plane(plane, h: int, w: int) -> np.ndarray:
    """An FFmpeg plane -> a uint8 [h, w] view (its rows are padded to line_size bytes)."""
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w]


def _frame_graph(stream, crop, out_size, flip: bool, width: int, height: int, pix_fmt: str):
    """(frame -> its picture, (H, W)): the whole frame, or the crop box (top, left, h, w)
    resized to `out_size` (height, width), mirrored when `flip`, in one FFmpeg graph on one
    thread (crop, swscale bilinear, which filters when it shrinks, then hflip). The picture
    is RGB uint8 [H, W, 3] (the BT.601 -> RGB conversion in the same swscale pass), or for a
    YUV `pix_fmt` the (Y [H, W], Cb, Cr) planes (chroma [H/2, W/2] for yuv420p, H and W even).
    Views, valid until the next frame: copy them."""
    import av

    graph = av.filter.Graph()
    graph.threads = 1  # the loader's cost is per core; FFmpeg would add threads of its own
    chain = [graph.add_buffer(template=stream)]
    out_h, out_w = height, width
    if crop is not None:
        top, left, h, w = (int(v) for v in crop)
        if not (
            0 <= top and 0 <= left and 0 < h and 0 < w and top + h <= height and left + w <= width
        ):
            raise SampleError(f"crop box {crop} is outside the {width}x{height} frame")
        out_h, out_w = out_size if out_size is not None else (h, w)
        # exact=1: the luma box is cut where asked; 4:2:0 chroma starts at the even pixel at or
        # before it (at most half a chroma sample off, on both paths alike).
        chain.append(graph.add("crop", f"{w}:{h}:{left}:{top}:exact=1"))
    if pix_fmt not in PIX_FMTS:
        raise ValueError(f"pix_fmt={pix_fmt!r}: one of {', '.join(PIX_FMTS)}")
    if pix_fmt == "yuv420p" and (out_h % 2 or out_w % 2):
        raise ValueError(f"yuv420p output needs an even size, got {out_w}x{out_h}")
    yuv = pix_fmt != "rgb24"
    chain.append(graph.add("scale", f"{out_w}:{out_h}:{YUV_SWS if yuv else RGB_SWS}"))
    chain.append(graph.add("format", pix_fmt))
    if flip:
        chain.append(graph.add("hflip"))
    chain.append(graph.add("buffersink"))
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    graph.configure()

    def convert(frame):
        graph.push(frame)
        planes = graph.pull().planes
        if yuv:
            ch, cw = (out_h // 2, out_w // 2) if pix_fmt == "yuv420p" else (out_h, out_w)
            return (
                _plane(planes[0], out_h, out_w),
                _plane(planes[1], ch, cw),
                _plane(planes[2], ch, cw),
            )
        return _plane(planes[0], out_h, out_w * 3).reshape(out_h, out_w, 3)

    return convert, (out_h, out_w)


def decode_h264(
    data: bytes,
    size: tuple[int, int] | None = None,
    frames: slice | list[int] | None = None,
    num_frames: int | None = None,
    max_pixels: int = MAX_FRAME_PIXELS,
    crop: tuple[int, int, int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    flip: bool = False,
    pix_fmt: str = "rgb24",
) -> np.ndarray | YuvPlanes:
    """An `.mp4` H.264 member -> uint8 [t, H, W, 3] RGB, in-process (PyAV, one thread); with
    `pix_fmt` yuv420p / yuv444p, the planes instead (`YuvPlanes`), for a consumer that
    converts to RGB itself (the training loader, on its device).

    With `crop` (top, left, h, w) and `out_size` (height, width), the box is cut and resized
    inside FFmpeg (crop + swscale bilinear, which filters when it shrinks, + RGB conversion in
    one pass), and mirrored left-right there too with `flip`: what the training loader does,
    several times cheaper than converting whole frames to RGB and resizing them after.
    Colours: BT.601 limited range -> full-range RGB, whatever the stream's tags (`RGB_SWS`).

    `frames` selects frames (a slice or a list of indices over the member's frames): decoding
    runs from the window's key frame up to the last selected frame and only those are
    converted to RGB (an index listed twice is decoded once).
    The stream header is checked first: H.264, at most `max_pixels`, of `size` (width, height)
    when given; a member with fewer frames than the selection needs is refused."""
    import av

    total = num_frames
    try:
        container = av.open(io.BytesIO(data), format="mp4")
    except _av_error() as e:
        raise SampleError(
            f"video is not a readable mp4 ({' '.join(str(e).split())[:120]})"
        ) from None
    with container:
        if not container.streams.video:
            raise SampleError("video member has no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx.name != "h264":
            raise SampleError(f"video member is {ctx.name}, expected h264")
        width, height = ctx.width, ctx.height
        if width * height > max_pixels:
            raise SampleError(f"video header claims {width}x{height} pixels, over the limit")
        if size is not None and (width, height) != tuple(size):
            raise SampleError(f"video is {width}x{height}, the metadata says {size[0]}x{size[1]}")
        ctx.thread_count = 1
        ctx.thread_type = "NONE"
        convert, (out_h, out_w) = _frame_graph(stream, crop, out_size, flip, width, height, pix_fmt)
        yuv = pix_fmt != "rgb24"
        whole = frames is None and num_frames is None
        if total is None:
            total = stream.frames or MAX_FRAME_PIXELS
        wanted = [] if whole else _select(frames, total)
        # frame index -> its positions in the output (a list may repeat an index)
        where: dict[int, list[int]] = {}
        for pos, j in enumerate(wanted):
            where.setdefault(j, []).append(pos)
        last = max(wanted) if wanted else -1
        out = _frames_out(len(wanted), out_h, out_w, pix_fmt)
        got: list = []  # whole: every frame's picture, copied
        i = -1
        try:
            for i, frame in enumerate(container.decode(stream)):
                if whole:
                    if i >= MAX_FRAMES:
                        raise SampleError(f"video member holds over {MAX_FRAMES} frames")
                    picture = convert(frame)  # views into FFmpeg's frame: copied
                    got.append(tuple(p.copy() for p in picture) if yuv else picture.copy())
                    continue
                if i > last:
                    break
                if i in where:
                    picture = convert(frame)
                    for pos in where[i]:
                        _put(out, pos, picture)
        except _av_error() as e:
            why = " ".join(str(e).split())[:120]
            raise SampleError(f"video frame {i + 1}: cannot decode ({why})") from None
    if whole:
        if not got:
            return _frames_out(0, 0, 0, pix_fmt)
        out = _frames_out(len(got), out_h, out_w, pix_fmt)
        for pos, picture in enumerate(got):
            _put(out, pos, picture)
        return out
    if wanted and i < last:
        raise SampleError(f"video member holds {i + 1} frames, the crop needs frame {last}")
    return out


def _frames_out(n: int, h: int, w: int, pix_fmt: str) -> np.ndarray | YuvPlanes:
    """Room for n frames: RGB uint8 [n, h, w, 3], or luma [n, h, w] + chroma [n, 2, h', w']."""
    if pix_fmt == "rgb24":
        return np.empty((n, h, w, 3), np.uint8)
    ch, cw = (h // 2, w // 2) if pix_fmt == "yuv420p" else (h, w)
    return YuvPlanes(np.empty((n, h, w), np.uint8), np.empty((n, 2, ch, cw), np.uint8))


def _put(out: np.ndarray | YuvPlanes, pos: int, picture) -> None:
    """Copy one converted frame (RGB view, or Y/Cb/Cr plane views) to position `pos`."""
    if isinstance(out, YuvPlanes):
        out.y[pos], out.uv[pos, 0], out.uv[pos, 1] = picture
    else:
        out[pos] = picture


def _float_to_s16(x: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> int16, rounded and clipped as swresample does (lrintf)."""
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype("<i2")


def decode_compressed_audio(
    data: bytes,
    ext: str,
    sample_rate: int,
    max_samples: int | None = None,
    until: int | None = None,
) -> np.ndarray:
    """An `.opus` / `.m4a` / `.flac` member -> int16 mono [S] at `sample_rate` (PyAV).
    Decoding stops with SampleError as soon as it passes `max_samples`, and quietly once it
    holds `until` samples (a reader that needs only the start: then S may be < the member's).

    Mono frames already at `sample_rate` (what our encoders write) are converted to int16 in
    one numpy pass, bit-identical to swresample's and a third of the decode's cost cheaper
    than a resampler call per frame; anything else goes through swresample."""
    import av

    def fail(e) -> SampleError:
        return SampleError(f"audio .{ext}: cannot decode ({' '.join(str(e).split())[:120]})")

    try:
        container = av.open(io.BytesIO(data), format=_AUDIO_FORMATS[ext])
    except _av_error() as e:
        raise SampleError(
            f"audio is not a readable .{ext} ({' '.join(str(e).split())[:120]})"
        ) from None
    parts: list[np.ndarray] = []
    count = 0
    resampler = None  # made at the first frame that is not mono float / s16 at sample_rate
    with container:
        if not container.streams.audio:
            raise SampleError(f"audio .{ext} member has no audio stream")
        stream = container.streams.audio[0]
        try:
            for frame in container.decode(stream):
                fmt = frame.format.name
                if (
                    resampler is None
                    and frame.sample_rate == sample_rate
                    and frame.layout.nb_channels == 1
                    and fmt in ("flt", "fltp", "s16", "s16p")
                ):
                    x = frame.to_ndarray().reshape(-1)
                    parts.append(_float_to_s16(x) if fmt[0] == "f" else x)
                else:
                    if resampler is None:  # the frames so far are kept as they are
                        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
                    parts.extend(o.to_ndarray().reshape(-1) for o in resampler.resample(frame))
                count = sum(len(p) for p in parts) if resampler else count + len(parts[-1])
                if max_samples is not None and count > max_samples:
                    raise SampleError(f"audio holds over {max_samples} samples, the window's most")
                if until is not None and count >= until:
                    break
            else:
                if resampler is not None:
                    parts.extend(o.to_ndarray().reshape(-1) for o in resampler.resample(None))
        except _av_error() as e:
            raise fail(e) from None
    return np.concatenate(parts).astype("<i2", copy=False) if parts else np.zeros(0, "<i2")


# A lossy codec's decoded length differs from the window's by its framing (a few ms): it is
# trimmed / zero-padded to num_samples; a shortfall beyond this fraction is an error.
LOSSY_SHORTFALL = 0.05


def decode_audio_member(data: bytes, meta: dict, until: int | None = None) -> np.ndarray:
    """The sample's audio member (any codec) -> int16 [num_samples]. With `until`, a compressed
    member is decoded only as far as its first `until` samples (the rest are zeros): for a
    reader that needs only the start of the window."""
    ext = members(meta)[1]
    limit = max_audio_samples(meta)
    want = meta["num_samples"]
    if ext == AUDIO_MEMBER:
        audio = decode_audio(data, limit)
        if len(audio) != want:
            raise SampleError(f"audio has {len(audio)} samples, num_samples says {want}")
        return audio
    until = None if until is None or until >= want else max(0, until)
    audio = decode_compressed_audio(data, ext, meta["sample_rate"], limit, until)
    stopped = until is not None and len(audio) >= until
    if not stopped and len(audio) < want * (1 - LOSSY_SHORTFALL):
        raise SampleError(f"audio has {len(audio)} samples, num_samples says {want}")
    if len(audio) >= want:
        return audio[:want]
    return np.pad(audio, (0, want - len(audio)))


def decode_video_member(
    data: bytes,
    meta: dict,
    frames: slice | list[int] | None = None,
    crop: tuple[int, int, int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    flip: bool = False,
    pix_fmt: str = "rgb24",
) -> np.ndarray | YuvPlanes:
    """The sample's video member (any codec) -> uint8 [t, H, W, 3], only `frames` (a slice,
    or a list of indices such as `sparse_frame_indices` gives) decoded. `crop`/`out_size`/
    `flip`, and `pix_fmt` (YUV planes out instead of RGB), are applied inside the decoder for
    H.264 only (see `decode_h264`); JPEG frames come whole, unflipped and RGB."""
    size = (meta["width"], meta["height"])
    if members(meta)[0] == VIDEO_MEMBER:
        jpegs = split_frames(data, meta["frame_sizes"])
        if frames is not None:
            jpegs = [jpegs[i] for i in _select(frames, len(jpegs))]
        return decode_frames(jpegs, size)
    return decode_h264(
        data,
        size,
        frames,
        meta["num_frames"],
        crop=crop,
        out_size=out_size,
        flip=flip,
        pix_fmt=pix_fmt,
    )


def decode_sample(
    sample: dict,
    frames: slice | list[int] | None = None,
    crop: tuple[int, int, int, int] | None = None,
    out_size: tuple[int, int] | None = None,
    flip: bool = False,
    audio_until: int | None = None,
    pix_fmt: str = "rgb24",
) -> dict:
    """A raw sample (member -> bytes) -> {key, meta, video [T,H,W,3] uint8, audio [S] int16,
    cropped, flipped}, schema v1 or v2, any codec. `frames` selects frames (a slice, or a list
    of indices such as `sparse_frame_indices` gives) so only those are decoded (JPEG) or
    converted (H.264). An H.264 member is cropped, resized and flipped inside the decoder
    (`cropped` / `flipped` say whether that happened; JPEG frames come whole). With
    `audio_until`, compressed audio is decoded only as far as that sample (the rest of the
    waveform is zeros). With a YUV `pix_fmt`, an H.264 member's video comes as `YuvPlanes`
    (the training loader's hand-off; JPEG stays RGB). Guarded: SampleError (a ValueError)
    with a one-line reason for any member that is missing or malformed."""
    if META_MEMBER not in sample:
        raise SampleError(f"missing member .{META_MEMBER}")
    meta = parse_meta(sample[META_MEMBER])
    missing = [f".{m}" for m in members(meta) if m not in sample]
    if missing:
        raise SampleError(f"missing member {', '.join(missing)}")
    vext, aext = members(meta)
    video = decode_video_member(sample[vext], meta, frames, crop, out_size, flip, pix_fmt)
    audio = sample[aext]
    if isinstance(audio, bytes):
        audio = decode_audio_member(audio, meta, audio_until)
    else:
        audio = np.asarray(audio)
    inside = vext != VIDEO_MEMBER  # H.264: crop / resize / flip done by the decoder
    return {
        "key": sample["__key__"], "meta": meta, "video": video, "audio": audio,
        "cropped": crop is not None and inside, "flipped": flip and inside,
    }  # fmt: skip


def list_shards(path: str) -> list[str]:
    """A shard file, or every `*.tar` under a folder (or its `shards/`), sorted. `path` may be
    an object-store URI (s3://, gs://, ...; see storage.py); then URIs are returned."""
    from pathlib import Path

    from preprocessing import storage

    if storage.is_uri(path):
        if path.split("?")[0].endswith(".tar"):
            return [path]
        return storage.list_files(storage.join(path, "shards"), ".tar") or storage.list_files(
            path, ".tar"
        )
    p = Path(path)
    if p.is_file():
        return [str(p)]
    folder = p / "shards" if (p / "shards").is_dir() else p
    return [str(f) for f in sorted(folder.glob("*.tar"))]


def iter_samples(shards: list[str]):
    """Raw samples (member -> bytes) from shards with plain `webdataset.WebDataset` (trusted
    shards, e.g. just written; `read_shards` is the guarded reader)."""
    import webdataset as wds

    return iter(wds.WebDataset(shards, shardshuffle=False, empty_check=False))


class _Prepend:
    """A read-only stream whose first bytes were already read (to look at the magic)."""

    def __init__(self, head: bytes, rest) -> None:
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.rest.read(n)
        if n < 0:
            out, self.head = self.head + self.rest.read(), b""
            return out
        out, self.head = self.head[:n], self.head[n:]
        return out + (self.rest.read(n - len(out)) if len(out) < n else b"")


def read_shard(url: str, on_problem: Callable[[str, str], None]) -> Iterator[dict]:
    """The raw samples of one shard (a path or a URI): {__key__, __url__, member: bytes},
    read as a plain tar stream, guarded (module docstring). Every problem is reported as
    (where, reason) and reading goes on where it can: a member over MAX_MEMBER_BYTES is
    skipped unread, a key seen before in the shard is refused, a truncated tar ends the shard."""
    from preprocessing import storage

    try:
        fsys, path = storage.filesystem(url)
        stream = fsys.open_input_stream(path)
    except (OSError, ValueError) as e:
        on_problem(url, f"cannot open ({e})")
        return
    with stream:
        head = stream.read(512)
        kind = next((k for magic, k in _COMPRESSED.items() if head.startswith(magic)), None)
        if kind:
            on_problem(url, f"{kind}-compressed stream, not a plain tar; not read")
            return
        seen: set[str] = set()
        sample: dict | None = None
        bad = ""  # why the sample being gathered is refused ("" = fine so far)
        members = 0
        try:
            tar = tarfile.open(fileobj=_Prepend(head, stream), mode="r|")
            for info in tar:
                members += 1
                tar.members = []  # a stream: keep no index of what was read
                match = _MEMBER.match(info.name)
                if not info.isreg() or not match:
                    what = "not a regular file" if not info.isreg() else "without an extension"
                    on_problem(f"{url}:{info.name}", f"member {what}; skipped")
                    continue
                key, ext = match[1], match[2].lower()
                if sample is None or key != sample["__key__"] or ext in sample:
                    if sample is not None and bad:
                        on_problem(f"{url}:{sample['__key__']}", bad)
                    elif sample is not None:
                        yield sample
                    sample, bad = {"__key__": key, "__url__": url}, ""
                    if key in seen:
                        bad = "key repeated in this shard; the later sample is skipped"
                    seen.add(key)
                if info.size > MAX_MEMBER_BYTES:
                    bad = bad or f".{ext} member is {info.size} bytes, over {MAX_MEMBER_BYTES}"
                elif not bad:  # an oversized member is never read: the stream skips it
                    sample[ext] = tar.extractfile(info).read()
        except (tarfile.TarError, OSError, EOFError, ValueError) as e:
            lost = f"; sample {sample['__key__']} is lost" if sample is not None else ""
            on_problem(url, f"truncated or corrupt tar after {members} members ({e}){lost}")
            return
        if sample is not None and bad:
            on_problem(f"{url}:{sample['__key__']}", bad)
        elif sample is not None:
            yield sample


def read_shards(src: Iterable[dict], on_problem: Callable[[str, str], None]) -> Iterator[dict]:
    """A pipeline stage: {"url": shard} items -> the guarded raw samples of each shard."""
    for item in src:
        yield from read_shard(item["url"], on_problem)
