"""The shard sample contract (schema v1): member names, the JSON metadata, keys, encode/decode.

Produced here, consumed by the training loader and by `vatt inspect`. One sample = three tar
members sharing a key (full description: docs/shard-format.md):
  <key>.mjpeg  video: T baseline JPEG frames concatenated (ffmpeg's mjpeg stream format);
               `frame_sizes` in the JSON gives each frame's byte length for random access.
  <key>.npy    audio: int16 mono waveform [S] at `sample_rate` (np.save format; zeros when
               the input has no audio stream, then audio_mask = 0).
  <key>.json   metadata (SCHEMA_FIELDS), captions nearest first.
"""

from __future__ import annotations

import io
import json
import re

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
)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def sample_key(clip_id: str, start: float) -> str:
    """`<clip id>_<start in ms>`: unique per window, stable across runs, and free of dots
    (webdataset splits a member name at its first dot)."""
    return f"{_UNSAFE.sub('_', clip_id)}_{round(start * 1000):08d}"


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
        raise ValueError(
            f"frame_sizes sum to {sum(frame_sizes)} bytes but the video member has {len(video)}"
        )
    out, pos = [], 0
    for size in frame_sizes:
        out.append(video[pos : pos + size])
        pos += size
    return out


def decode_frames(jpegs: list[bytes]) -> np.ndarray:
    """JPEG frames -> uint8 [T, H, W, 3] (Pillow)."""
    from PIL import Image

    arrays = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in jpegs]
    return np.stack(arrays) if arrays else np.zeros((0, 0, 0, 3), np.uint8)


def decode_audio(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def decode_sample(sample: dict, frames: slice | None = None) -> dict:
    """A raw webdataset sample (member -> bytes) -> {key, meta, video [T,H,W,3] uint8,
    audio [S] int16}. `frames` selects a range of frames so only those JPEGs are decoded."""
    raw_meta = sample[META_MEMBER]
    meta = json.loads(raw_meta) if isinstance(raw_meta, (bytes, str)) else raw_meta
    jpegs = split_frames(sample[VIDEO_MEMBER], meta["frame_sizes"])
    if frames is not None:
        jpegs = jpegs[frames]
    audio = sample[AUDIO_MEMBER]
    audio = decode_audio(audio) if isinstance(audio, bytes) else np.asarray(audio)
    return {"key": sample["__key__"], "meta": meta, "video": decode_frames(jpegs), "audio": audio}


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
    """Raw samples (member -> bytes) from shards with plain `webdataset.WebDataset`."""
    import webdataset as wds

    return iter(wds.WebDataset(shards, shardshuffle=False, empty_check=False))
