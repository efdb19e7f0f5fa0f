"""Reading the upstream listings: HowTo100M caption.json and AudioSet segment CSVs -> InputVideo.

Everything here is plain Python on the driver. Problems never raise: each becomes an ErrorRow
(see docs/shard-format.md, "Bad input"), and every good entry is still returned.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path

from preprocessing import storage
from preprocessing.records import Caption, ErrorRow, InputVideo

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv")
AUDIOSET_HEADER = ["YTID", "start_seconds", "end_seconds", "positive_labels"]
_SEGMENT_STEM = re.compile(r"^(?P<ytid>.+)_(?P<start>\d+(?:\.\d+)?)_(?P<end>\d+(?:\.\d+)?)$")


def _read_input(path: str | Path) -> bytes:
    """A listing file's bytes, from a local path or an object-store URI."""
    return storage.read_bytes(str(path)) if storage.is_uri(str(path)) else Path(path).read_bytes()


def index_videos(folder: str | Path) -> dict[str, Path | str]:
    """Map file stem -> path (or URI) for every video file directly under `folder`."""
    out: dict[str, Path | str] = {}
    if storage.is_uri(str(folder)):
        for uri in storage.list_files(str(folder), ""):
            stem, ext = os.path.splitext(os.path.basename(uri.split("?")[0]))
            if ext.lower() in VIDEO_EXTENSIONS and stem not in out:
                out[stem] = uri
        return out
    folder = Path(folder)
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in VIDEO_EXTENSIONS and p.stem not in out:
            out[p.stem] = p
    return out


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def parse_caption_entry(
    video_id: str, entry: object, path: str
) -> tuple[list[Caption] | None, list[ErrorRow]]:
    """Validate one caption.json value. Returns (captions sorted by start, or None if the entry
    is unusable, and the error rows). Documented adjustments: empty texts and captions with
    end <= start are dropped, a negative start is clamped to 0; overlaps are kept (HowTo100M's
    ASR captions overlap often). Out-of-range times are handled once the duration is known."""
    errors: list[ErrorRow] = []

    def err(reason: str, fatal: bool = True) -> None:
        errors.append(ErrorRow("howto100m", video_id, "captions", reason, path, fatal))

    if not isinstance(entry, dict) or not all(k in entry for k in ("start", "end", "text")):
        err("caption entry must be an object with start, end and text lists")
        return None, errors
    starts, ends, texts = entry["start"], entry["end"], entry["text"]
    if not all(isinstance(x, list) for x in (starts, ends, texts)):
        err("caption entry: start, end and text must be lists")
        return None, errors
    if not len(starts) == len(ends) == len(texts):
        err(
            f"caption entry: start/end/text lengths differ ({len(starts)}/{len(ends)}/{len(texts)})"
        )
        return None, errors
    captions: list[Caption] = []
    for i, (s, e, t) in enumerate(zip(starts, ends, texts)):
        if not (_is_number(s) and _is_number(e)):
            err(f"caption {i}: start/end are not numbers ({s!r}, {e!r}); dropped", fatal=False)
            continue
        if not isinstance(t, str) or not t.strip():
            err(f"caption {i}: empty text; dropped", fatal=False)
            continue
        if e <= s or e <= 0:
            err(f"caption {i}: end {e} is not after start {s}; dropped", fatal=False)
            continue
        if s < 0:
            err(f"caption {i}: negative start {s} clamped to 0", fatal=False)
            s = 0.0
        captions.append(Caption(" ".join(t.split()), float(s), float(e)))
    captions.sort(key=lambda c: (c.start, c.end))
    if not captions:
        err("no usable captions")
        return None, errors
    return captions, errors


def read_howto100m(
    videos: str | Path, caption_json: str | Path
) -> tuple[list[InputVideo], list[ErrorRow]]:
    """caption.json ({video_id: {start, end, text}}) + a video folder -> inputs, errors."""
    cap_path = str(caption_json)
    errors: list[ErrorRow] = []
    try:
        raw = _read_input(caption_json)
    except OSError as e:
        return [], [
            ErrorRow("howto100m", "", "captions", f"cannot read {cap_path}: {e.strerror}", cap_path)
        ]
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        return [], [
            ErrorRow(
                "howto100m",
                "",
                "captions",
                f"{cap_path} is not UTF-8 ({e.reason} at byte {e.start})",
                cap_path,
            )
        ]
    except json.JSONDecodeError as e:
        return [], [
            ErrorRow(
                "howto100m",
                "",
                "captions",
                f"{cap_path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})",
                cap_path,
            )
        ]
    if not isinstance(data, dict):
        return [], [
            ErrorRow(
                "howto100m",
                "",
                "captions",
                f"{cap_path}: top level must be an object keyed by video id",
                cap_path,
            )
        ]

    try:
        files = index_videos(videos)
    except OSError as e:
        return [], [
            ErrorRow(
                "howto100m",
                "",
                "input",
                f"cannot list video folder {videos}: {e.strerror}",
                str(videos),
            )
        ]
    inputs: list[InputVideo] = []
    for video_id in sorted(data):
        captions, errs = parse_caption_entry(video_id, data[video_id], cap_path)
        errors.extend(errs)
        if captions is None:
            continue
        path = files.get(video_id)
        if path is None:
            errors.append(
                ErrorRow(
                    "howto100m",
                    video_id,
                    "input",
                    f"missing video for caption entry (no {video_id}.mp4/.webm/.mkv in {videos})",
                    str(videos),
                )
            )
            continue
        inputs.append(InputVideo("howto100m", video_id, video_id, str(path), captions=captions))
    for stem in sorted(set(files) - set(data)):
        errors.append(
            ErrorRow(
                "howto100m",
                stem,
                "input",
                "video has no caption entry; skipped",
                str(files[stem]),
                fatal=False,
            )
        )
    return inputs, errors


def read_audioset(
    videos: str | Path, segments_csv: str | Path
) -> tuple[list[InputVideo], list[ErrorRow]]:
    """An AudioSet segments CSV (three '#' header lines) + a clip folder -> inputs, errors.
    Clip files may be named <YTID>_<start>_<end>.<ext> (any number format) or <YTID>.<ext>."""
    seg_path = str(segments_csv)
    try:
        text = _read_input(segments_csv).decode("utf-8")
    except OSError as e:
        return [], [
            ErrorRow("audioset", "", "segments", f"cannot read {seg_path}: {e.strerror}", seg_path)
        ]
    except UnicodeDecodeError as e:
        return [], [
            ErrorRow(
                "audioset",
                "",
                "segments",
                f"{seg_path} is not UTF-8 ({e.reason} at byte {e.start})",
                seg_path,
            )
        ]
    lines = text.splitlines()
    header = [ln for ln in lines[:3] if ln.startswith("#")]
    if len(header) != 3:
        return [], [
            ErrorRow(
                "audioset",
                "",
                "segments",
                f"{seg_path}: expected three '#' header lines, found {len(header)}",
                seg_path,
            )
        ]
    columns = [c.strip() for c in header[2].lstrip("#").split(",")]
    if columns != AUDIOSET_HEADER:
        return [], [
            ErrorRow(
                "audioset",
                "",
                "segments",
                f"{seg_path}: third header line must be '# {', '.join(AUDIOSET_HEADER)}', got {header[2]!r}",
                seg_path,
            )
        ]

    try:
        files = index_videos(videos)
    except OSError as e:
        return [], [
            ErrorRow(
                "audioset",
                "",
                "input",
                f"cannot list clip folder {videos}: {e.strerror}",
                str(videos),
            )
        ]
    by_segment: dict[tuple[str, float, float], Path] = {}
    by_ytid: dict[str, Path] = {}
    for stem, p in files.items():
        m = _SEGMENT_STEM.match(stem)
        if m:
            by_segment[(m["ytid"], round(float(m["start"]), 3), round(float(m["end"]), 3))] = p
        else:
            by_ytid[stem] = p

    inputs: list[InputVideo] = []
    errors: list[ErrorRow] = []
    seen: set[str] = set()
    reader = csv.reader(io.StringIO("\n".join(lines[3:])), skipinitialspace=True)
    for lineno, row in enumerate(reader, start=4):
        if not row or all(not c.strip() for c in row):
            continue
        ytid = row[0].strip() if row else ""
        if len(row) != 4:
            errors.append(
                ErrorRow(
                    "audioset",
                    ytid,
                    "segments",
                    f"{seg_path} line {lineno}: expected 4 fields, got {len(row)}",
                    seg_path,
                )
            )
            continue
        try:
            start, end = float(row[1]), float(row[2])
        except ValueError:
            errors.append(
                ErrorRow(
                    "audioset",
                    ytid,
                    "segments",
                    f"{seg_path} line {lineno}: start/end are not numbers ({row[1]!r}, {row[2]!r})",
                    seg_path,
                )
            )
            continue
        if not ytid or start < 0 or end <= start:
            errors.append(
                ErrorRow(
                    "audioset",
                    ytid,
                    "segments",
                    f"{seg_path} line {lineno}: bad segment (ytid={ytid!r}, start={start}, end={end})",
                    seg_path,
                )
            )
            continue
        labels = [x.strip() for x in row[3].split(",") if x.strip()]
        clip_id = f"{ytid}_{start:.3f}_{end:.3f}"
        if clip_id in seen:
            errors.append(
                ErrorRow(
                    "audioset",
                    ytid,
                    "segments",
                    f"{seg_path} line {lineno}: duplicate segment {clip_id}; skipped",
                    seg_path,
                    fatal=False,
                )
            )
            continue
        seen.add(clip_id)
        path = by_segment.get((ytid, round(start, 3), round(end, 3))) or by_ytid.get(ytid)
        if path is None:
            errors.append(
                ErrorRow(
                    "audioset",
                    ytid,
                    "input",
                    f"missing clip file for segment {clip_id} in {videos}",
                    str(videos),
                )
            )
            continue
        inputs.append(
            InputVideo(
                "audioset",
                ytid,
                clip_id,
                str(path),
                labels=labels,
                segment_start=start,
                segment_end=end,
            )
        )
    return inputs, errors
