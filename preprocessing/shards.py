"""Plan and write shards: videos -> deterministic shard assignment -> one tar per shard.

A shard is the idempotent unit of work (video2dataset style): it holds whole videos, its
content depends only on the inputs and the config, it is written under a temporary name and
renamed (or uploaded whole to an object store), and its stats file (written last, also
atomically) marks it complete. A rerun skips every shard whose stats file exists, so a run
killed at any moment resumes without duplicating or losing a sample. Plain Python: the Ray
job in `jobs.py` calls `write_shard`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

from preprocessing import storage
from preprocessing.config import PreprocessConfig
from preprocessing.decode import DecodeError, MediaRange, decode_span
from preprocessing.encode import encode_audio_member, encode_h264
from preprocessing.records import Caption, ErrorRow
from preprocessing.shard_format import SCHEMA_VERSION, encode_sample, sample_key
from preprocessing.vad import speech_ratio
from preprocessing.windows import ClipWindow

SHARD_DIR = "shards"
# Tolerances at the end of a decoded span: the last frame or a few ms of audio can be missing
# because of rounding and AAC priming. Fewer frames means the file really ends early (an
# error); audio that ends before the video is padded with silence, with a note.
MAX_MISSING_FRAMES = 1
MAX_MISSING_AUDIO_S = 0.25


def shard_name(source: str, index: int) -> str:
    return f"{source}-{index:06d}"


def stats_path(out: str | Path, name: str) -> str:
    """Where shard `name`'s stats file goes: a path, or a URI when `out` is one."""
    return storage.join(storage.join(str(out), SHARD_DIR), f"{name}.stats.json")


def tar_path(out: str | Path, name: str) -> str:
    return storage.join(storage.join(str(out), SHARD_DIR), f"{name}.tar")


def assign_shards(clips: list[dict], samples_per_shard: int, source: str) -> list[dict]:
    """Pack clips (each a dict with `clip_id` and `windows`) in clip_id order into shards of
    about `samples_per_shard` windows. Deterministic for the same clips and setting."""
    shards: list[dict] = []
    current: list[dict] = []
    count = 0
    for clip in sorted(clips, key=lambda c: c["clip_id"]):
        if not clip["windows"]:
            continue
        current.append(clip)
        count += len(clip["windows"])
        if count >= samples_per_shard:
            shards.append({"name": shard_name(source, len(shards)), "clips": current})
            current, count = [], 0
    if current:
        shards.append({"name": shard_name(source, len(shards)), "clips": current})
    return shards


def _window_meta(
    cfg: PreprocessConfig,
    clip: dict,
    w: ClipWindow,
    frames: list,
    audio: np.ndarray,
    has_audio: bool,
    size: tuple[int, int] | None = None,
) -> dict:
    """The window's JSON (frames: JPEGs, or yuv420p arrays of `size` (width, height))."""
    width, height = size or Image.open(io.BytesIO(frames[0])).size
    ratio = (
        speech_ratio(audio, cfg.sample_rate, cfg.vad_mode, cfg.vad_frame_ms) if has_audio else 0.0
    )
    if clip["source"] == "webvid":  # the caption describes the clip: no speech gating
        text_mask = int(bool(w.captions))
    else:
        has_text = clip["source"] == "howto100m" and bool(w.captions)
        text_mask = int(has_text and ratio >= cfg.min_speech_ratio)
    extra = {"sparse_frames": cfg.sparse_frames} if clip["source"] == "webvid" else {}
    return {
        "schema_version": SCHEMA_VERSION,
        "key": sample_key(clip["clip_id"], w.start),
        "source": clip["source"],
        "video_id": clip["video_id"],
        "clip_id": clip["clip_id"],
        "start": w.start,
        "end": w.end,
        "fps": clip.get("fps") or cfg.fps,
        "num_frames": len(frames),
        "height": height,
        "width": width,
        "frame_sizes": [len(f) for f in frames] if cfg.video_codec == "jpeg" else [],
        "sample_rate": cfg.sample_rate,
        "num_samples": int(len(audio)),
        "audio_mask": int(has_audio),
        "speech_ratio": round(ratio, 4),
        "text_mask": text_mask,
        "captions": [asdict(c) for c in w.captions],
        "labels": list(clip.get("labels") or []),
        "segment": [clip["segment_start"], clip["segment_end"]]
        if clip.get("segment_start") is not None
        else None,
        "audio_stream": clip.get("audio_info"),
        "video_codec": "h264" if cfg.video_codec == "h264" else "mjpeg",
        # An empty waveform (WebVid without audio) stays a 128-byte .npy.
        "audio_codec": "pcm_s16le"
        if cfg.audio_codec == "pcm" or len(audio) == 0
        else cfg.audio_codec,
        **extra,
    }


def encode_window(
    cfg: PreprocessConfig, frames: list, audio: np.ndarray, size: tuple[int, int], threads: int = 1
) -> tuple[list[bytes] | bytes, np.ndarray | bytes]:
    """One window's video and audio members in `cfg`'s codecs (JPEG frames pass through)."""
    video = frames
    if cfg.video_codec == "h264":
        video = encode_h264(
            frames, size[0], size[1], cfg.fps, crf=cfg.h264_crf, preset=cfg.h264_preset,
            tune=cfg.h264_tune, keyint=cfg.h264_keyint, threads=threads,
        )  # fmt: skip
    if cfg.audio_codec == "pcm" or len(audio) == 0:
        return video, audio
    return video, encode_audio_member(
        audio, cfg.sample_rate, cfg.audio_codec, cfg.audio_bitrate, threads
    )


def _cut_window(
    cfg: PreprocessConfig,
    span_start: float,
    frames: list[bytes],
    audio: np.ndarray | None,
    w: ClipWindow,
    fps: float | None = None,
    compact_silence: bool = False,
) -> tuple[list[bytes], np.ndarray, str]:
    """Slice one window out of a decoded span: (frames, audio, note). Raise DecodeError if
    the video ends early; audio that ends early is padded with silence and the note says so
    ("" otherwise). Without audio the waveform is zeros of the window's length, or an empty
    one with `compact_silence` (WebVid: a 128-byte member instead of 384 kB of zeros)."""
    fps = fps or cfg.fps
    n_frames = round((w.end - w.start) * fps)
    first = round((w.start - span_start) * fps)
    got = frames[first : first + n_frames]
    missing = n_frames - len(got)
    if not got or missing > MAX_MISSING_FRAMES:
        t_end = span_start + len(frames) / fps
        raise DecodeError(
            f"video ends early: decoded frames reach {t_end:.2f}s, window needs {w.end:.2f}s"
        )
    got = got + [got[-1]] * missing  # repeat the last frame for a rounding shortfall
    n_samples = round((w.end - w.start) * cfg.sample_rate)
    if audio is None:
        return got, np.zeros(0 if compact_silence else n_samples, np.int16), ""
    offset = round((w.start - span_start) * cfg.sample_rate)
    wav = audio[offset : offset + n_samples]
    note = ""
    if n_samples - len(wav) > MAX_MISSING_AUDIO_S * cfg.sample_rate:
        t_end = span_start + len(audio) / cfg.sample_rate
        note = f"audio stream ends at {t_end:.2f}s, before the window's end; padded with silence"
    return got, np.pad(wav, (0, n_samples - len(wav))), note


def _decode_error(clip: dict, w: ClipWindow, err: DecodeError, fatal: bool = True) -> ErrorRow:
    reason = f"window {w.start:.2f}-{w.end:.2f}s: {err}"
    return ErrorRow(clip["source"], clip["video_id"], "decode", reason, clip["path"], fatal)


def write_shard(cfg: PreprocessConfig, shard: dict) -> dict:
    """Decode every window of the shard's clips and write `<name>.tar` + `<name>.stats.json`.
    Per-window and per-clip failures become error rows in the stats; they never abort."""
    t0 = time.time()
    name = shard["name"]
    final = tar_path(cfg.out, name)
    remote = storage.is_uri(final)
    # The tar is built in a local temp file: beside the final one (an atomic rename), or in
    # the node's temp folder when the shard goes to an object store (one upload).
    if remote:
        tmp = os.path.join(tempfile.gettempdir(), f"{name}.tar.tmp-{os.getpid()}")
    else:
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = f"{final}.tmp-{os.getpid()}"
    keys: list[str] = []
    errors: list[ErrorRow] = []
    threads = max(1, int(cfg.cpus_per_task))
    with wds.TarWriter(str(tmp)) as sink:
        for clip in shard["clips"]:
            windows = [
                ClipWindow(w["start"], w["end"], w["anchor"], [Caption(**c) for c in w["captions"]])
                for w in clip["windows"]
            ]
            span_start = min(w.start for w in windows)
            span_end = max(w.end for w in windows)
            fps = clip.get("fps") or cfg.fps  # WebVid: the clip's frames over its duration
            try:
                with storage.local_copy(clip["path"]) as local:
                    span = decode_span(
                        MediaRange(
                            local,
                            span_start,
                            span_end - span_start + 1.0 / fps,
                            seek_from=clip.get("video_start") or 0.0,
                        ),
                        fps=fps,
                        short_side=cfg.short_side,
                        sample_rate=cfg.sample_rate,
                        qscale=cfg.jpeg_qscale,
                        has_audio=clip["has_audio"],
                        threads=threads,
                        video_stream=clip.get("video_stream"),
                        audio_stream=clip.get("audio_stream"),
                        max_aspect=cfg.max_aspect_ratio,
                        frame_format="yuv420p" if cfg.video_codec == "h264" else "jpeg",
                    )
            except OSError as e:  # an object-store input that cannot be fetched
                errors += [
                    _decode_error(clip, w, DecodeError(f"cannot download: {e}")) for w in windows
                ]
                continue
            except DecodeError as e:
                errors += [_decode_error(clip, w, e) for w in windows]
                continue
            for w in windows:
                try:
                    frames, audio, note = _cut_window(
                        cfg, span_start, span.frames, span.audio, w, fps,
                        compact_silence=clip["source"] == "webvid",
                    )  # fmt: skip
                except DecodeError as e:
                    errors.append(_decode_error(clip, w, e))
                    continue
                if note:
                    errors.append(_decode_error(clip, w, DecodeError(note), fatal=False))
                size = (span.width, span.height) if span.width else None
                meta = _window_meta(cfg, clip, w, frames, audio, clip["has_audio"], size)
                video_member, audio_member = encode_window(
                    cfg, frames, audio, (meta["width"], meta["height"]), threads
                )
                sink.write(encode_sample(meta, video_member, audio_member))
                keys.append(meta["key"])
    size = os.path.getsize(tmp)
    if remote:
        try:
            storage.upload_file(tmp, final)
        finally:
            os.unlink(tmp)
    else:
        os.replace(tmp, final)
    stats = {
        "shard": name,
        "tar": f"{name}.tar",
        "samples": len(keys),
        "bytes": size,
        "seconds": round(time.time() - t0, 3),
        "keys": keys,
        "errors": [e.to_dict() for e in errors],
    }
    # The stats file is the completion marker: it goes last, whole (rename or one PUT).
    storage.write_text(stats_path(cfg.out, name), json.dumps(stats))
    return stats
