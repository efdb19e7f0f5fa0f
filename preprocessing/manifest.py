"""The manifest: one row per input with its probed facts, and the clip windows planned from it.

Plain Python; `jobs.py` runs `probe_row` over the inputs with Ray Data and calls `plan_clips`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from preprocessing import storage
from preprocessing.config import PreprocessConfig
from preprocessing.probe import ProbeError, probe
from preprocessing.records import Caption, ErrorRow, InputVideo
from preprocessing.shard_format import key_prefix
from preprocessing.windows import (
    ClipWindow,
    caption_windows,
    clamp_captions,
    segment_range,
    segment_windows,
)

MANIFEST_FILE = "manifest.parquet"
# A stream starting later than this gets a note (AAC priming and B-frame delays are shorter).
MAX_STREAM_OFFSET_S = 0.25
MANIFEST_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("video_id", pa.string()),
        ("source", pa.string()),
        ("path", pa.string()),
        ("file_bytes", pa.int64()),
        ("duration", pa.float64()),
        ("has_video", pa.bool_()),
        ("has_audio", pa.bool_()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("sar", pa.float64()),
        ("fps", pa.float64()),
        ("video_codec", pa.string()),
        ("audio_codec", pa.string()),
        ("sample_rate", pa.int32()),
        ("audio_channels", pa.int32()),
        ("video_stream", pa.int32()),
        ("audio_stream", pa.int32()),
        ("audio_streams", pa.int32()),
        ("audio_language", pa.string()),
        ("video_start", pa.float64()),
        ("audio_start", pa.float64()),
        ("num_captions", pa.int32()),
        ("labels", pa.list_(pa.string())),
        ("segment_start", pa.float64()),
        ("segment_end", pa.float64()),
        ("probe_error", pa.string()),
    ]
)


def input_row(video: InputVideo) -> dict:
    """What a probe task needs to know about an input (a flat, Arrow-friendly row)."""
    return {
        "clip_id": video.clip_id,
        "video_id": video.video_id,
        "source": video.source,
        "path": video.path,
        "num_captions": len(video.captions),
        "labels": list(video.labels),
        "segment_start": video.segment_start,
        "segment_end": video.segment_end,
    }


def probe_row(row: dict) -> dict:
    """Add ffprobe facts to an input row; a failure becomes `probe_error` (never raises)."""
    out = dict(row)
    try:
        try:
            with storage.local_copy(row["path"]) as local:
                facts = probe(local).to_dict()
        except OSError as e:  # an object-store input that cannot be fetched
            raise ProbeError(f"cannot download it: {e}") from None
        out.update(facts)
        out["probe_error"] = ""
    except ProbeError as e:
        out.update({f: None for f in MANIFEST_SCHEMA.names if f not in out})
        out["has_video"] = False
        out["probe_error"] = str(e)
    return {k: out.get(k) for k in MANIFEST_SCHEMA.names}


def write_parquet(table: pa.Table, path: str) -> None:
    """Write a (small) table to a path or object-store URI in one piece."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    storage.write_bytes(path, sink.getvalue().to_pybytes())


def write_manifest(rows: list[dict], out: str | Path) -> str:
    path = storage.join(str(out), MANIFEST_FILE)
    rows = [{**r, "path": storage.redact(r["path"])} for r in rows]  # no credentials on disk
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["clip_id"]), schema=MANIFEST_SCHEMA)
    write_parquet(table, path)
    return path


def read_manifest(out: str | Path) -> list[dict] | None:
    path = storage.join(str(out), MANIFEST_FILE)
    if not storage.exists(path):
        return None
    return pq.read_table(pa.BufferReader(storage.read_bytes(path))).to_pylist()


def _stream_notes(video: InputVideo, row: dict, cfg: PreprocessConfig) -> list[ErrorRow]:
    """What the decode will do differently from the file's plain reading, said once per file
    (not fatal): which audio stream of several, a late stream start, a cropped long side."""
    notes: list[str] = []
    uses_audio = bool(row["has_audio"]) and video.source != "webvid"  # WebVid: video + text
    if uses_audio and (row.get("audio_streams") or 0) > 1:
        lang = row.get("audio_language") or "no language tag"
        notes.append(
            f"{row['audio_streams']} audio streams: using stream #{row['audio_stream']} "
            f"({lang}; the default one, else the first)"
        )
    for kind in ("video", "audio"):
        late = row.get(f"{kind}_start") or 0.0
        if late > MAX_STREAM_OFFSET_S and (kind == "video" or uses_audio):
            filler = "the first frame repeats" if kind == "video" else "silence"
            notes.append(f"{kind} stream starts at {late:.2f}s: {filler} before it")
    width, height = row.get("width") or 0, row.get("height") or 0
    if width and height:
        shape = width * (row.get("sar") or 1.0) / height
        aspect = max(shape, 1 / shape)
        if aspect > cfg.max_aspect_ratio + 1e-6:
            notes.append(
                f"display aspect {aspect:.2f}:1 is beyond max_aspect_ratio "
                f"{cfg.max_aspect_ratio:g}: the long side is centre-cropped"
            )
    return [_row(video, "probe", n, fatal=False) for n in notes]


def _row(video: InputVideo, stage: str, reason: str, fatal: bool = True) -> ErrorRow:
    return ErrorRow(video.source, video.video_id, stage, reason, video.path, fatal)


def _whole_clip_window(
    cfg: PreprocessConfig, video: InputVideo, duration: float, errors: list[ErrorRow]
) -> tuple[list[ClipWindow], float] | None:
    """WebVid: one sample per clip, the whole clip with its frames spread over it (config.py);
    the frame rate is what puts `clip_frames` frames in it."""
    if duration < cfg.min_clip_seconds:
        reason = f"clip is {duration:.2f}s, shorter than min_clip_seconds={cfg.min_clip_seconds:g}"
        errors.append(_row(video, "window", reason))
        return None
    end = round(duration, 3)
    caption = Caption(video.captions[0].text, 0.0, end)
    return [ClipWindow(0.0, end, anchor=0, captions=[caption])], cfg.clip_frames / end


def _clip_windows(
    cfg: PreprocessConfig, video: InputVideo, duration: float, errors: list[ErrorRow]
) -> tuple[list[ClipWindow], float] | None:
    """The windows of one probed input and the frame rate to store them at, or None (its
    reason added to `errors`) when it gives no sample. Caption problems HowTo100M survives
    (times clamped to the duration) are added to `errors` too."""
    offset = 0.0
    if video.source == "audioset":
        where = segment_range(duration, video.segment_start, video.segment_end)
        if isinstance(where, str):
            errors.append(_row(video, "window", where))
            return None
        offset, duration = where[0], where[1] - where[0]
    if video.source == "webvid":
        return _whole_clip_window(cfg, video, duration, errors)
    if duration < cfg.train_window_seconds:
        short = f"clip is {duration:.2f}s, shorter than the {cfg.train_window_seconds}s"
        errors.append(_row(video, "window", f"{short} training window"))
        return None
    if video.source != "howto100m":
        cover = cfg.audioset_windows == "cover"
        windows = segment_windows(
            duration, cfg.window_seconds, cfg.train_window_seconds, offset, cover=cover
        )
        return windows, cfg.fps
    captions, errs = clamp_captions(video.captions, duration, video.video_id, video.path)
    errors.extend(errs)
    windows = caption_windows(
        captions, duration, cfg.window_seconds, cfg.train_window_seconds, cfg.captions_per_window
    )
    if not windows:
        errors.append(_row(video, "window", "no caption lies inside the video; no window"))
        return None
    return windows, cfg.fps


def _clip_row(video: InputVideo, row: dict, fps: float, windows: list[ClipWindow]) -> dict:
    """The plan of one clip, as `assign_shards` and the decode tasks read it."""
    has_audio = bool(row["has_audio"]) and video.source != "webvid"  # WebVid: video + text
    # What the sample's JSON records about the audio it holds.
    audio_info = {
        "index": row.get("audio_stream"),
        "language": row.get("audio_language") or None,
        "streams": row.get("audio_streams"),
    }
    return {
        "clip_id": video.clip_id,
        "video_id": video.video_id,
        "source": video.source,
        "path": video.path,
        "has_audio": has_audio,
        "video_stream": row.get("video_stream"),
        "audio_stream": row.get("audio_stream") if has_audio else None,
        "video_start": row.get("video_start") or 0.0,
        "fps": fps,  # frames per second stored (WebVid: clip_frames / duration)
        "audio_info": audio_info if has_audio else None,
        "labels": list(video.labels),
        "segment_start": video.segment_start,
        "segment_end": video.segment_end,
        "windows": [
            {
                "start": w.start,
                "end": w.end,
                "anchor": w.anchor,
                "captions": [asdict(c) for c in w.captions],
            }
            for w in windows
        ],
    }


def plan_clips(
    cfg: PreprocessConfig, inputs: list[InputVideo], manifest: list[dict]
) -> tuple[list[dict], list[ErrorRow]]:
    """Manifest rows -> clips with their windows (ready for `assign_shards`) + error rows."""
    by_id = {v.clip_id: v for v in inputs}
    clips: list[dict] = []
    errors: list[ErrorRow] = []
    key_owner: dict[str, str] = {}  # sample key prefix -> clip id
    for row in sorted(manifest, key=lambda r: r["clip_id"]):
        video = by_id[row["clip_id"]]
        if row["probe_error"]:
            errors.append(_row(video, "probe", row["probe_error"]))
            continue
        prefix = key_prefix(video.clip_id)
        if prefix in key_owner:  # only a crafted id can reach this (see key_prefix)
            reason = f"its sample keys would collide with those of {key_owner[prefix]!r}"
            errors.append(_row(video, "input", reason))
            continue
        planned = _clip_windows(cfg, video, row["duration"], errors)
        if planned is None:
            continue
        windows, fps = planned
        # WebVid samples never carry audio (ALPRO is video-text): no note for each clip.
        if not row["has_audio"] and video.source != "webvid":
            reason = "no audio stream: zero waveform with audio_mask 0"
            errors.append(_row(video, "probe", reason, fatal=False))
        errors += _stream_notes(video, row, cfg)
        key_owner[prefix] = video.clip_id
        clips.append(_clip_row(video, row, fps, windows))
    return clips, errors


def caption_texts(inputs: list[InputVideo]) -> list[str]:
    return [c.text for v in inputs for c in v.captions]
