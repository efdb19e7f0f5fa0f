"""The shard sample contract (schema v1): member names, the JSON metadata, keys, encode/decode.

Produced here, consumed by the training loader and by `vatt inspect`. One sample = three tar
members sharing a key (full description: docs/shard-format.md):
  <key>.mjpeg  video: T baseline JPEG frames concatenated (ffmpeg's mjpeg stream format);
               `frame_sizes` in the JSON gives each frame's byte length for random access.
  <key>.npy    audio: int16 mono waveform [S] at `sample_rate` (np.save format; zeros when
               the input has no audio stream, then audio_mask = 0).
  <key>.json   metadata (SCHEMA_FIELDS), captions nearest first.

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

import numpy as np

SCHEMA_VERSION = 1
VIDEO_MEMBER = "mjpeg"
AUDIO_MEMBER = "npy"
META_MEMBER = "json"
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

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

# Decompression guards: the most a well-formed sample holds (a 4 s window of 256-pixel frames
# is a few MB). A hostile shard cannot make a reader allocate more: a member over the limit,
# an .npy header claiming more samples than its window, a JPEG claiming more pixels, or a
# compressed stream (a gzip named .tar inflating a huge member) is refused with a reason.
MAX_MEMBER_BYTES = 256 << 20
MAX_FRAME_PIXELS = 1 << 24  # 4096 x 4096
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


def encode_sample(meta: dict, frames: list[bytes], audio: np.ndarray) -> dict:
    """A webdataset.TarWriter sample dict (bytes per member)."""
    missing = [f for f in SCHEMA_FIELDS if f not in meta]
    if missing:
        raise ValueError(f"sample metadata lacks {missing}")
    return {
        "__key__": meta["key"],
        VIDEO_MEMBER: b"".join(frames),
        AUDIO_MEMBER: encode_audio(audio),
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
    if len(meta["frame_sizes"]) != meta["num_frames"]:
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


def decode_sample(sample: dict, frames: slice | list[int] | None = None) -> dict:
    """A raw sample (member -> bytes) -> {key, meta, video [T,H,W,3] uint8, audio [S] int16}.
    `frames` selects frames (a slice, or a list of indices such as `sparse_frame_indices`
    gives) so only those JPEGs are decoded. Guarded: SampleError (a ValueError) with a
    one-line reason for any member that is missing or malformed."""
    missing = [f".{m}" for m in (VIDEO_MEMBER, AUDIO_MEMBER, META_MEMBER) if m not in sample]
    if missing:
        raise SampleError(f"missing member {', '.join(missing)}")
    meta = parse_meta(sample[META_MEMBER])
    jpegs = split_frames(sample[VIDEO_MEMBER], meta["frame_sizes"])
    if isinstance(frames, slice):
        jpegs = jpegs[frames]
    elif frames is not None:
        bad = [i for i in frames if not -len(jpegs) <= i < len(jpegs)]
        if bad:
            raise SampleError(f"frame index {bad[0]} is outside the sample's {len(jpegs)} frames")
        jpegs = [jpegs[i] for i in frames]
    video = decode_frames(jpegs, (meta["width"], meta["height"]))
    audio = sample[AUDIO_MEMBER]
    if isinstance(audio, bytes):
        audio = decode_audio(audio, max_audio_samples(meta))
        if len(audio) != meta["num_samples"]:
            raise SampleError(
                f"audio has {len(audio)} samples, num_samples says {meta['num_samples']}"
            )
    else:
        audio = np.asarray(audio)
    return {"key": sample["__key__"], "meta": meta, "video": video, "audio": audio}


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
