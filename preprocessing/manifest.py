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
from preprocessing.records import ErrorRow, InputVideo
from preprocessing.windows import caption_windows, clamp_captions, segment_windows

MANIFEST_FILE = "manifest.parquet"
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
        ("fps", pa.float64()),
        ("video_codec", pa.string()),
        ("audio_codec", pa.string()),
        ("sample_rate", pa.int32()),
        ("audio_channels", pa.int32()),
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


def plan_clips(
    cfg: PreprocessConfig, inputs: list[InputVideo], manifest: list[dict]
) -> tuple[list[dict], list[ErrorRow]]:
    """Manifest rows -> clips with their windows (ready for `assign_shards`) + error rows."""
    by_id = {v.clip_id: v for v in inputs}
    clips: list[dict] = []
    errors: list[ErrorRow] = []
    for row in sorted(manifest, key=lambda r: r["clip_id"]):
        video = by_id[row["clip_id"]]
        if row["probe_error"]:
            errors.append(
                ErrorRow(video.source, video.video_id, "probe", row["probe_error"], video.path)
            )
            continue
        duration = row["duration"]
        if duration < cfg.train_window_seconds:
            errors.append(
                ErrorRow(
                    video.source,
                    video.video_id,
                    "window",
                    f"clip is {duration:.2f}s, shorter than the {cfg.train_window_seconds}s training window",
                    video.path,
                )
            )
            continue
        if video.source == "howto100m":
            captions, errs = clamp_captions(video.captions, duration, video.video_id, video.path)
            errors.extend(errs)
            windows = caption_windows(
                captions,
                duration,
                cfg.window_seconds,
                cfg.train_window_seconds,
                cfg.captions_per_window,
            )
            if not windows:
                errors.append(
                    ErrorRow(
                        video.source,
                        video.video_id,
                        "window",
                        "no caption lies inside the video; no window",
                        video.path,
                    )
                )
                continue
        else:
            windows = segment_windows(duration, cfg.window_seconds, cfg.train_window_seconds)
        if not row["has_audio"]:
            errors.append(
                ErrorRow(
                    video.source,
                    video.video_id,
                    "probe",
                    "no audio stream: zero waveform with audio_mask 0",
                    video.path,
                    fatal=False,
                )
            )
        clips.append(
            {
                "clip_id": video.clip_id,
                "video_id": video.video_id,
                "source": video.source,
                "path": video.path,
                "has_audio": bool(row["has_audio"]),
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
        )
    return clips, errors


def caption_texts(inputs: list[InputVideo]) -> list[str]:
    return [c.text for v in inputs for c in v.captions]
