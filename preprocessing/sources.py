"""Reading the upstream listings: HowTo100M caption.json and AudioSet segment CSVs -> InputVideo.

Everything here is plain Python on the driver. Problems never raise: each becomes an ErrorRow
(see docs/shard-format.md, "Bad input"), and every good entry is still returned. Nothing is
dropped without a row: a second file for the same id, an id listed twice, a caption whose
text is not a string all leave one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from preprocessing import storage
from preprocessing.config import VIDEO_EXTENSIONS
from preprocessing.records import Caption, ErrorRow, InputVideo

AUDIOSET_HEADER = ["YTID", "start_seconds", "end_seconds", "positive_labels"]
_SEGMENT_STEM = re.compile(r"^(?P<ytid>.+)_(?P<start>\d+(?:\.\d+)?)_(?P<end>\d+(?:\.\d+)?)$")


def _read_input(path: str | Path) -> bytes:
    """A listing file's bytes, from a local path or an object-store URI."""
    return storage.read_bytes(str(path)) if storage.is_uri(str(path)) else Path(path).read_bytes()


def _decode_text(raw: bytes) -> str:
    """UTF-8, with the byte-order mark that Windows editors and Excel write removed."""
    return raw.decode("utf-8-sig")


def same_id(name: str) -> str:
    """The form ids are matched in: Unicode NFC. macOS stores file names decomposed (NFD), so
    `café.mp4` copied from a Mac would not match the id `café` of a caption file."""
    return unicodedata.normalize("NFC", name)


@dataclass
class VideoIndex:
    """The files directly under a video folder, by id (file stem, NFC)."""

    files: dict[str, str] = field(default_factory=dict)  # id -> the file used
    unused: dict[str, list[str]] = field(default_factory=dict)  # id -> more files, not used
    other: dict[str, list[str]] = field(default_factory=dict)  # id -> non-video files

    def unused_rows(self, source: str, used_ids: set[str]) -> list[ErrorRow]:
        """One row per file that shares its id with the file used (`x.mp4` and `x.mkv`)."""
        return [
            ErrorRow(
                source,
                vid,
                "input",
                f"{len(names) + 1} files for one id: using {os.path.basename(self.files[vid])}, "
                f"not {', '.join(os.path.basename(n) for n in names)}",
                names[0],
                fatal=False,
            )
            for vid, names in sorted(self.unused.items())
            if vid in used_ids
        ]

    def skipped_rows(self, source: str, listed: set[str], reason: str) -> list[ErrorRow]:
        """One row (not fatal) per file whose id the listing does not name: it is not used."""
        return [
            ErrorRow(source, vid, "input", reason, self.files[vid], fatal=False)
            for vid in sorted(set(self.files) - listed)
        ]

    def missing_reason(self, vid: str, what: str, folder: str, extensions: tuple) -> str:
        found = self.other.get(same_id(vid))
        hint = (
            f"; found {', '.join(os.path.basename(n) for n in found)}, whose extension is not "
            "in video_extensions"
            if found
            else ""
        )
        return f"missing {what} (no {vid} with any of {' '.join(extensions)} in {folder}){hint}"


def index_videos(folder: str | Path, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> VideoIndex:
    """Index every file directly under `folder` (a path or a URI) by its stem. When several
    video files share a stem, the one whose extension comes first in `extensions` is used."""
    if storage.is_uri(str(folder)):
        uris = storage.list_files(str(folder), "")
        entries = [(os.path.basename(uri.split("?")[0]), uri) for uri in uris]
    else:
        # Absolute: Ray workers may run elsewhere, and a relative `-x.mp4` reads as an option.
        folder = os.path.abspath(folder)
        entries = [(p.name, str(p)) for p in sorted(Path(folder).iterdir()) if not p.is_dir()]
    rank = {ext: i for i, ext in enumerate(extensions)}
    by_id: dict[str, list[tuple[int, str]]] = {}
    index = VideoIndex()
    for name, path in entries:
        stem, ext = os.path.splitext(name)
        vid = same_id(stem)
        if ext.lower() in rank:
            by_id.setdefault(vid, []).append((rank[ext.lower()], path))
        elif stem:
            index.other.setdefault(vid, []).append(path)
    for vid, found in by_id.items():
        found.sort()
        index.files[vid] = found[0][1]
        if len(found) > 1:
            index.unused[vid] = [p for _, p in found[1:]]
    return index


def _index_folder(
    videos: str | Path, extensions: tuple[str, ...], source: str, what: str
) -> tuple[VideoIndex | None, list[ErrorRow]]:
    """`index_videos` of the folder a listing names, or (None, [the one fatal row]) when it
    cannot be listed: without it no entry can be matched to a file."""
    try:
        return index_videos(videos, extensions), []
    except OSError as e:
        reason = f"cannot list {what} folder {videos}: {e.strerror}"
        return None, [ErrorRow(source, "", "input", reason, str(videos))]


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _caption_text(t: object) -> tuple[str | None, str]:
    """(usable text or None, why it was changed or dropped; "" when taken as it is)."""
    if isinstance(t, str):
        return (" ".join(t.split()) or None), ("" if t.strip() else "empty text")
    if _is_number(t):  # an ASR "42" that a JSON writer stored as a number
        return f"{t:g}" if isinstance(t, float) else str(
            t
        ), f"text is a number ({t!r}), kept as text"
    if isinstance(t, list) and t and all(isinstance(w, str) for w in t):
        joined = " ".join(" ".join(t).split())  # word lists from some ASR dumps
        return (joined or None), ("text is a list of words, joined" if joined else "empty text")
    kind = "null" if t is None else type(t).__name__
    return None, f"text is {kind}, not a string"


def parse_caption_entry(
    video_id: str, entry: object, path: str
) -> tuple[list[Caption] | None, list[ErrorRow]]:
    """Validate one caption.json value. Returns (captions sorted by start, or None if the entry
    is unusable, and the error rows). Documented adjustments: captions without usable text
    and captions with end <= start are dropped, a negative start is clamped to 0, a number or
    a word list as text is turned into text; overlaps are kept (HowTo100M's ASR captions
    overlap often). Out-of-range times are handled once the duration is known."""
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
        text, why = _caption_text(t)
        if text is None:
            err(f"caption {i}: {why}; dropped", fatal=False)
            continue
        if why:
            err(f"caption {i}: {why}", fatal=False)
        if e <= s or e <= 0:
            err(f"caption {i}: end {e} is not after start {s}; dropped", fatal=False)
            continue
        if s < 0:
            err(f"caption {i}: negative start {s} clamped to 0", fatal=False)
            s = 0.0
        captions.append(Caption(text, float(s), float(e)))
    captions.sort(key=lambda c: (c.start, c.end))
    if not captions:
        err("no usable captions")
        return None, errors
    return captions, errors


class _Pairs(list):
    """A JSON object as the list of its (key, value) pairs: repeated keys stay visible."""


def _merge_repeated(
    video_id: str, entries: list[object], path: str
) -> tuple[object, list[ErrorRow]]:
    """An id listed more than once in caption.json: its entries' captions are merged (exact
    repeats once), with a row; json.loads alone would silently keep only the last one."""
    merged: dict[str, list] = {"start": [], "end": [], "text": []}
    seen: set[tuple] = set()
    for entry in entries:
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k), list) for k in merged)):
            return entries[-1], [
                ErrorRow(
                    "howto100m",
                    video_id,
                    "captions",
                    f"id listed {len(entries)} times in {path}; the entries cannot be merged "
                    "(not all are start/end/text lists), the last is used",
                    path,
                )  # fmt: skip
            ]
        for s, e, t in zip(entry["start"], entry["end"], entry["text"]):
            mark = (repr(s), repr(e), repr(t))
            if mark not in seen:
                seen.add(mark)
                for key, value in zip(("start", "end", "text"), (s, e, t)):
                    merged[key].append(value)
    note = ErrorRow(
        "howto100m", video_id, "captions",
        f"id listed {len(entries)} times in {path}; their captions are merged", path, fatal=False,
    )  # fmt: skip
    return merged, [note]


def _plain(value: object) -> object:
    """Turn the `_Pairs` of nested objects back into dicts (last value wins inside an entry,
    as in json.loads; the entries themselves are checked by `parse_caption_entry`)."""
    if isinstance(value, _Pairs):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def read_caption_json(raw: bytes, cap_path: str) -> tuple[dict[str, object] | None, list[ErrorRow]]:
    """caption.json bytes -> ({video id: entry}, rows), or (None, [the one fatal row])."""

    def fatal(reason: str) -> tuple[None, list[ErrorRow]]:
        return None, [ErrorRow("howto100m", "", "captions", reason, cap_path)]

    try:
        data = json.loads(_decode_text(raw), object_pairs_hook=_Pairs)
    except UnicodeDecodeError as e:
        return fatal(f"{cap_path} is not UTF-8 ({e.reason} at byte {e.start})")
    except json.JSONDecodeError as e:
        return fatal(f"{cap_path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})")
    if not isinstance(data, _Pairs):
        return fatal(f"{cap_path}: top level must be an object keyed by video id")
    grouped: dict[str, list[object]] = {}
    for video_id, entry in data:
        grouped.setdefault(video_id, []).append(_plain(entry))
    entries: dict[str, object] = {}
    errors: list[ErrorRow] = []
    for video_id, found in grouped.items():
        if len(found) == 1:
            entries[video_id] = found[0]
        else:
            entries[video_id], rows = _merge_repeated(video_id, found, cap_path)
            errors += rows
    return entries, errors


def read_howto100m(
    videos: str | Path,
    caption_json: str | Path,
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS,
) -> tuple[list[InputVideo], list[ErrorRow]]:
    """caption.json ({video_id: {start, end, text}}) + a video folder -> inputs, errors."""
    cap_path = str(caption_json)
    try:
        raw = _read_input(caption_json)
    except OSError as e:
        return [], [
            ErrorRow("howto100m", "", "captions", f"cannot read {cap_path}: {e.strerror}", cap_path)
        ]
    data, errors = read_caption_json(raw, cap_path)
    if data is None:
        return [], errors
    index, fatal = _index_folder(videos, extensions, "howto100m", "video")
    if index is None:
        return [], fatal
    inputs: list[InputVideo] = []
    for video_id in sorted(data):
        captions, errs = parse_caption_entry(video_id, data[video_id], cap_path)
        errors.extend(errs)
        if captions is None:
            continue
        path = index.files.get(same_id(video_id))
        if path is None:
            reason = index.missing_reason(
                video_id, "video for caption entry", str(videos), extensions
            )
            errors.append(ErrorRow("howto100m", video_id, "input", reason, str(videos)))
            continue
        inputs.append(InputVideo("howto100m", video_id, video_id, path, captions=captions))
    listed = {same_id(v) for v in data}
    errors += index.unused_rows("howto100m", {same_id(v.video_id) for v in inputs})
    errors += index.skipped_rows("howto100m", listed, "video has no caption entry; skipped")
    return inputs, errors


def _read_listing(path: str | Path, source: str, stage: str) -> tuple[str | None, list[ErrorRow]]:
    """A CSV listing's text, or (None, [the one fatal row]) when it cannot be read as UTF-8."""
    where = str(path)
    try:
        return _decode_text(_read_input(path)), []
    except OSError as e:
        reason = f"cannot read {where}: {e.strerror}"
    except UnicodeDecodeError as e:
        reason = f"{where} is not UTF-8 ({e.reason} at byte {e.start})"
    return None, [ErrorRow(source, "", stage, reason, where)]


def _audioset_rows(segments_csv: str | Path) -> tuple[csv.reader | None, list[ErrorRow]]:
    """A reader over the segment rows of the CSV (numbered from line 4), or (None, [the one
    fatal row]) when it cannot be read or its three '#' header lines are not AudioSet's."""
    seg_path = str(segments_csv)
    text, errors = _read_listing(segments_csv, "audioset", "segments")
    if text is None:
        return None, errors
    lines = text.splitlines()
    header = [ln for ln in lines[:3] if ln.startswith("#")]
    if len(header) != 3:
        reason = f"{seg_path}: expected three '#' header lines, found {len(header)}"
    elif [c.strip() for c in header[2].lstrip("#").split(",")] != AUDIOSET_HEADER:
        expected = ", ".join(AUDIOSET_HEADER)
        reason = f"{seg_path}: third header line must be '# {expected}', got {header[2]!r}"
    else:
        return csv.reader(io.StringIO("\n".join(lines[3:])), skipinitialspace=True), []
    return None, [ErrorRow("audioset", "", "segments", reason, seg_path)]


class _SegmentFiles:
    """Finds the file of an AudioSet segment among a folder's files: cut
    (<YTID>_<start>_<end>, any number format) or whole (<YTID>), each also with the Y prefix."""

    def __init__(self, index: VideoIndex):
        self.index = index
        # Times rounded to ms, so `_1.5_11.5` and `_1.500_11.500` name the same segment.
        self.cut: dict[tuple[str, float, float], str] = {}
        for stem in index.files:
            m = _SEGMENT_STEM.match(stem)
            if m:
                self.cut[(m["ytid"], round(float(m["start"]), 3), round(float(m["end"]), 3))] = stem

    def find(self, ytid: str, start: float, end: float) -> str | None:
        """The stem of the file holding this segment, or None."""
        for name in (same_id(ytid), "Y" + same_id(ytid)):
            stem = self.cut.get((name, round(start, 3), round(end, 3)))
            if stem is None and name in self.index.files:
                stem = name
            if stem is not None:
                return stem
        return None


def _parse_segment(row: list[str], where: str) -> tuple[str, float, float, list[str]] | str:
    """One CSV row -> (ytid, start, end, labels), or the reason it is not a segment."""
    if len(row) != 4:
        return f"{where}: expected 4 fields, got {len(row)}"
    ytid = row[0].strip()
    try:
        start, end = float(row[1]), float(row[2])
    except ValueError:
        return f"{where}: start/end are not numbers ({row[1]!r}, {row[2]!r})"
    finite = math.isfinite(start) and math.isfinite(end)
    if not ytid or not finite or start < 0 or end <= start:
        return f"{where}: bad segment (ytid={ytid!r}, start={start}, end={end})"
    return ytid, start, end, [x.strip() for x in row[3].split(",") if x.strip()]


def read_audioset(
    videos: str | Path,
    segments_csv: str | Path,
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS,
) -> tuple[list[InputVideo], list[ErrorRow]]:
    """An AudioSet segments CSV (three '#' header lines) + a clip folder -> inputs, errors.
    Clip files may be named <YTID>_<start>_<end>.<ext> (any number format) or <YTID>.<ext>,
    each optionally with the `Y` prefix common downloaders add (Y<YTID>...)."""
    seg_path = str(segments_csv)
    reader, errors = _audioset_rows(segments_csv)
    if reader is None:
        return [], errors
    index, fatal = _index_folder(videos, extensions, "audioset", "clip")
    if index is None:
        return [], fatal
    files = _SegmentFiles(index)
    inputs: list[InputVideo] = []
    seen: set[str] = set()
    used: set[str] = set()
    for lineno, row in enumerate(reader, start=4):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{seg_path} line {lineno}"
        segment = _parse_segment(row, where)
        if isinstance(segment, str):
            errors.append(ErrorRow("audioset", row[0].strip(), "segments", segment, seg_path))
            continue
        ytid, start, end, labels = segment
        clip_id = f"{ytid}_{round(start * 1000)}_{round(end * 1000)}"  # ms: no dots in keys
        if clip_id in seen:
            reason = f"{where}: duplicate segment {clip_id}; skipped"
            errors.append(ErrorRow("audioset", ytid, "segments", reason, seg_path, fatal=False))
            continue
        seen.add(clip_id)
        stem = files.find(ytid, start, end)
        if stem is None:
            what = f"clip file for segment {clip_id}"
            reason = index.missing_reason(ytid, what, str(videos), extensions)
            errors.append(ErrorRow("audioset", ytid, "input", reason, str(videos)))
            continue
        used.add(stem)
        path = index.files[stem]
        inputs.append(
            InputVideo(
                "audioset", ytid, clip_id, path, labels=labels, segment_start=start, segment_end=end
            )
        )
    errors += index.unused_rows("audioset", used)
    errors += index.skipped_rows("audioset", used, "clip file matches no segment row; skipped")
    return inputs, errors


# WebVid-style CSV (results_2M_train.csv: videoid,contentUrl,duration,page_dir,name). Only
# `videoid` and `name` are needed; `page_dir` says which subfolder holds the file (the layout
# WebVid's download script writes), a `path` column names the file outright (relative to the
# video folder, or absolute). Other columns (contentUrl, duration) are not used: the file's
# own duration is probed, and nothing is downloaded.
WEBVID_REQUIRED = ("videoid", "name")
WEBVID_PATH_COLUMN = "path"
WEBVID_PAGE_COLUMN = "page_dir"


def _webvid_error(vid: str, reason: str, path: str, stage: str = "csv", fatal: bool = True):
    return ErrorRow("webvid", vid, stage, reason, path, fatal)


def _read_webvid_header(
    text: str, csv_path: str
) -> tuple[list[str], csv.reader] | tuple[None, ErrorRow]:
    """(column names, reader positioned after the header) or (None, the fatal row)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as e:
        return None, _webvid_error("", f"{csv_path} line 1: not a readable CSV ({e})", csv_path)
    if header is None or not any(c.strip() for c in header):
        return None, _webvid_error("", f"{csv_path}: empty, no header line", csv_path)
    columns = [c.strip() for c in header]
    missing = [c for c in WEBVID_REQUIRED if c not in columns]
    if missing:
        return None, _webvid_error(
            "",
            f"{csv_path}: missing column(s) {', '.join(missing)} (header: {', '.join(columns)})",
            csv_path,
        )
    repeated = sorted({c for c in columns if c and columns.count(c) > 1})
    if repeated:
        return None, _webvid_error(
            "", f"{csv_path}: column(s) {', '.join(repeated)} appear more than once", csv_path
        )
    return columns, reader


def _webvid_lines(reader, csv_path: str, errors: list[ErrorRow]):
    """Yield (line number, row) for every non-blank row after the header; a row the csv module
    cannot parse ends the reading with one row in `errors` (it cannot resync after a broken
    quote)."""
    while True:
        line = reader.line_num + 1  # where the next row starts (a quoted cell may span lines)
        try:
            row = next(reader, None)
        except csv.Error as e:
            errors.append(
                _webvid_error("", f"{csv_path} line {line}: not readable ({e})", csv_path)
            )
            return
        if row is None:
            return
        if row and any(c.strip() for c in row):
            yield line, row


def _webvid_entry(
    row: list[str], columns: list[str], where: str, csv_path: str
) -> tuple[str, str] | ErrorRow:
    """One CSV row -> (videoid, caption with its white space folded), or the row saying why
    it is not usable."""
    at = columns.index("videoid")
    vid = row[at].strip() if at < len(row) else ""
    if len(row) != len(columns):
        reason = f"{where}: expected {len(columns)} fields, got {len(row)}"
        return _webvid_error(vid, reason, csv_path)
    if not vid:
        return _webvid_error("", f"{where}: empty videoid", csv_path)
    caption = " ".join(row[columns.index("name")].split())
    if not caption:
        return _webvid_error(vid, f"{where}: empty caption (name)", csv_path)
    return vid, caption


class _WebvidFiles:
    """Finds the file of a WebVid row under the video folder `root`: the row's `path` cell,
    else <root>/<page_dir>/<videoid>.<ext>, else <root>/<videoid>.<ext>. Each folder is
    listed once, when a row first needs it."""

    def __init__(self, videos: str | Path, extensions: tuple[str, ...]):
        self.root = str(videos) if storage.is_uri(str(videos)) else os.path.abspath(videos)
        self.extensions = extensions
        self.indexes: dict[str, VideoIndex | str] = {}  # folder -> index, or why not listed

    def find(self, vid: str, rel: str, page_dir: str) -> tuple[str | None, str]:
        """The file of row `vid` (its `path` and `page_dir` cells, "" when absent), or
        (None, why not)."""
        return self._explicit(rel) if rel else self._by_id(vid, page_dir)

    def _index_of(self, folder: str) -> VideoIndex | str:
        if folder not in self.indexes:
            try:
                self.indexes[folder] = index_videos(folder, self.extensions)
            except OSError as e:
                self.indexes[folder] = f"cannot list video folder {folder}: {e.strerror or e}"
        return self.indexes[folder]

    def _explicit(self, rel: str) -> tuple[str | None, str]:
        """The file a `path` cell names (relative to the root, or absolute), or (None, why)."""
        root = self.root
        if storage.is_uri(rel) or os.path.isabs(rel):
            where = rel
        else:
            where = storage.join(root, rel) if storage.is_uri(root) else os.path.join(root, rel)
        found = storage.exists(where) if storage.is_uri(where) else os.path.isfile(where)
        return (where, "") if found else (None, f"missing video file {where}")

    def _by_id(self, vid: str, page_dir: str) -> tuple[str | None, str]:
        """<root>/<page_dir>/<vid>.<ext>, else <root>/<vid>.<ext>, or (None, why not)."""
        folders = [storage.join(self.root, page_dir) if page_dir else self.root]
        if page_dir:
            folders.append(self.root)
        reasons = []
        for folder in folders:
            index = self._index_of(folder)
            if isinstance(index, str):
                reasons.append(index)
                continue
            if same_id(vid) in index.files:
                return index.files[same_id(vid)], ""
            reasons.append(index.missing_reason(vid, "video", folder, self.extensions))
        return None, reasons[0]


def read_webvid(
    videos: str | Path,
    csv_file: str | Path,
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS,
) -> tuple[list[InputVideo], list[ErrorRow]]:
    """A WebVid-style CSV + a video folder -> inputs (one per row, its caption the row's
    `name`), errors. Files are found as <videos>/<path> (a `path` column), else
    <videos>/<page_dir>/<videoid>.<ext>, else <videos>/<videoid>.<ext>. Every bad row
    (field count, empty videoid or caption, missing file, repeated videoid) is one row;
    a missing required column or an unreadable CSV is one fatal row and nothing is read."""
    csv_path = str(csv_file)
    text, errors = _read_listing(csv_file, "webvid", "csv")
    if text is None:
        return [], errors
    columns, reader = _read_webvid_header(text, csv_path)
    if columns is None:
        return [], [reader]
    files = _WebvidFiles(videos, extensions)
    inputs: list[InputVideo] = []
    first_line: dict[str, int] = {}
    for line, row in _webvid_lines(reader, csv_path, errors):
        where = f"{csv_path} line {line}"
        entry = _webvid_entry(row, columns, where, csv_path)
        if isinstance(entry, ErrorRow):
            errors.append(entry)
            continue
        vid, caption = entry
        if vid in first_line:
            reason = (
                f"{where}: videoid {vid} listed again (first on line {first_line[vid]}); skipped"
            )
            errors.append(_webvid_error(vid, reason, csv_path, fatal=False))
            continue
        first_line[vid] = line
        cells = dict(zip(columns, row))
        rel = cells.get(WEBVID_PATH_COLUMN, "").strip()
        page = cells.get(WEBVID_PAGE_COLUMN, "").strip()
        path, why = files.find(vid, rel, page)
        if path is None:
            errors.append(_webvid_error(vid, f"{where}: {why}", csv_path, stage="input"))
            continue
        # The caption spans the whole clip; its end is set once the duration is probed.
        inputs.append(InputVideo("webvid", vid, vid, path, captions=[Caption(caption, 0.0, 0.0)]))
    return inputs, errors
