"""Evaluation benchmarks in their own file formats -> labelled items, segments, sentences.

Owns the readers of the downstream sets (spec section 5):
  read_msrvtt           MSR-VTT 1k-A CSV (key, vid_key, video_id, sentence) + <video_id>.mp4
  read_ucf_split        UCF101 split files (classInd.txt, trainlist0N.txt, testlist0N.txt);
                        HMDB51 converted to the same files reads the same way
  read_esc50            ESC-50 meta/esc50.csv (filename, fold, target, category, ...)
  esc50_fold            one fold of the 5-fold protocol: test = that fold, train = the rest
  read_youcook2         YouCook2 validation CSV (end, start, task, text, video_id): segments
                        of longer videos
  read_kinetics         Kinetics-400/600/700 CSVs (label, youtube_id, time_start, time_end,
                        split) + clips <YTID>_<start:06d>_<end:06d>.<ext> anywhere under the
                        video folder (the common <label>/<file> layout, split folders, flat)

A bad row (unknown class, missing file, empty text, a number that is not one) becomes one
"file:line: reason" error and is skipped, so the rest is still evaluated; an unreadable list
file, or one with no usable row, raises ValueError naming it. Plain Python: no Ray, no model,
no decoding (`training.eval.media` decodes).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

MSRVTT_COLUMNS = ("key", "video_id", "sentence")  # vid_key is not needed
ESC50_REQUIRED = ("filename", "fold", "target", "category")
YOUCOOK2_REQUIRED = ("start", "end", "text", "video_id")  # `task` is kept when present
# `split` is optional (it only says which file a row came from); K400 adds `is_cc`.
KINETICS_REQUIRED = ("label", "youtube_id", "time_start", "time_end")
# YouCook2 downloads come in whatever container YouTube served.
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi")


@dataclass(frozen=True)
class LabelledItem:
    """One labelled file of a classification set."""

    key: str  # the name in the list file: "ApplyEyeMakeup/v_..._g08_c01.avi", "1-100032-A-0.wav"
    path: Path  # absolute
    label: int  # index into the set's `classes`


@dataclass(frozen=True)
class ClassificationSet:
    """A train/test split of a classification benchmark (one UCF101 split, one ESC-50 fold)."""

    classes: list[str]
    train: list[LabelledItem]
    test: list[LabelledItem]
    errors: list[str]  # one "file:line: reason" per skipped list entry


@dataclass(frozen=True)
class Segment:
    """One annotated segment of a longer video (a YouCook2 row)."""

    key: str  # "<video_id>_<start>_<end>": names the segment in errors and reports
    video_id: str
    path: Path  # absolute
    start: float  # seconds
    end: float
    text: str
    task: str = ""  # the recipe id, as written


def _read_lines(path: Path, what: str) -> list[str]:
    """Lines of a small text list (CRLF or LF); ValueError naming the file when unreadable."""
    try:
        # utf-8-sig: a list saved by a Windows tool may start with a byte-order mark.
        return path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the {what}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: the {what} is not UTF-8 text: {e.reason}") from None


def _read_csv(path: Path, required: tuple[str, ...], what: str) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(
                    f"{path}: missing column(s) {', '.join(missing)} "
                    f"(the {what} needs {', '.join(required)})"
                )
            return list(reader)
    except OSError as e:
        raise ValueError(f"{path}: cannot read the {what}: {e.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: the {what} is not a readable UTF-8 CSV: {e}") from None


def _no_usable(path: Path, errors: list[str]) -> ValueError:
    first = "; ".join(errors[:3]) or "no entries"
    return ValueError(f"{path}: no usable entries ({first})")


# ---------------------------------------------------------------------------------------------
# MSR-VTT
# ---------------------------------------------------------------------------------------------


class RetrievalItem(NamedTuple):
    """One MSR-VTT sentence and the video it describes."""

    key: str  # the CSV's `key` (e.g. ret0): names the item in error lines
    video_id: str
    sentence: str
    path: Path  # <videos_dir>/<video_id>.mp4


def read_msrvtt(
    csv_path: str | Path, videos_dir: str | Path
) -> tuple[list[RetrievalItem], list[str]]:
    """Read an MSR-VTT 1k-A style CSV and match each row to `<videos_dir>/<video_id>.mp4`.

    Returns (items, errors): the usable rows in CSV order, and "key: reason" for rows whose
    video is missing or whose sentence is empty (the evaluation goes on without them).
    Raises ValueError, naming the file, when the CSV is unreadable or lacks a column."""
    csv_path, videos_dir = Path(csv_path), Path(videos_dir)
    rows = _read_csv(csv_path, MSRVTT_COLUMNS, "retrieval CSV")

    items, errors = [], []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        key = (row.get("key") or "").strip() or f"line {line}"
        video_id = (row.get("video_id") or "").strip()
        sentence = " ".join((row.get("sentence") or "").split())
        if not video_id:
            errors.append(f"{key}: empty video_id")
            continue
        path = videos_dir / f"{video_id}.mp4"
        if not sentence:
            errors.append(f"{key}: empty sentence")
        elif not path.is_file():
            errors.append(f"{key}: video {path} not found")
        else:
            items.append(RetrievalItem(key, video_id, sentence, path))
    return items, errors


# ---------------------------------------------------------------------------------------------
# UCF101 / HMDB51 split files
# ---------------------------------------------------------------------------------------------


def read_class_index(path: str | Path) -> tuple[list[str], dict[int, str], list[str]]:
    """UCF101 `classInd.txt` ("1 ApplyEyeMakeup" per line).

    Returns (classes in index order, {file index: class}, errors); labels are positions in
    `classes` (= file index - 1 for the real, dense files)."""
    path = Path(path)
    by_index: dict[int, str] = {}
    errors: list[str] = []
    for n, line in enumerate(_read_lines(path, "class index"), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            errors.append(f"{path.name}:{n}: expected '<index> <ClassName>', got {line.strip()!r}")
        elif int(parts[0]) in by_index or parts[1] in by_index.values():
            errors.append(f"{path.name}:{n}: class {parts[1]!r} / index {parts[0]} listed twice")
        else:
            by_index[int(parts[0])] = parts[1]
    if not by_index:
        raise _no_usable(path, errors)
    return [by_index[i] for i in sorted(by_index)], by_index, errors


def _read_ucf_list(
    path: Path,
    videos_dir: Path,
    label_of: dict[str, int],
    by_index: dict[int, str],
    errors: list[str],
) -> list[LabelledItem]:
    """A trainlist ("Class/v_x.avi 1") or testlist ("Class/v_x.avi"): the class is the folder
    name; a label number, when given, must name the same class."""
    items: list[LabelledItem] = []
    seen: set[str] = set()
    for n, line in enumerate(_read_lines(path, "split list"), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path.name}:{n}"
        rel = parts[0]
        cls = rel.split("/")[0] if "/" in rel else None
        if len(parts) > 2 or cls is None:
            errors.append(f"{where}: expected '<Class>/<file> [label]', got {line.strip()!r}")
            continue
        if cls not in label_of:
            errors.append(f"{where}: unknown class {cls!r} (not in classInd.txt)")
            continue
        if len(parts) == 2:
            number = int(parts[1]) if parts[1].isdigit() else None
            if number not in by_index:
                errors.append(f"{where}: label {parts[1]!r} is not an index of classInd.txt")
                continue
            if by_index[number] != cls:
                errors.append(
                    f"{where}: label {number} is {by_index[number]!r}, the folder {cls!r}"
                )
                continue
        if rel in seen:
            errors.append(f"{where}: {rel} listed twice")
            continue
        file = (videos_dir / rel).absolute()
        if not file.is_file():
            errors.append(f"{where}: video {file} not found")
            continue
        seen.add(rel)
        items.append(LabelledItem(rel, file, label_of[cls]))
    return items


def read_ucf_split(
    split_dir: str | Path, videos_dir: str | Path, split: int = 1
) -> ClassificationSet:
    """UCF101-format split `split`: `split_dir`/classInd.txt, trainlist0<split>.txt and
    testlist0<split>.txt, files under `videos_dir`/<Class>/.

    Unknown class names, label numbers that disagree with the folder, malformed lines and
    missing files become errors and are skipped. Raises ValueError (naming the file) when a
    list is unreadable or has no usable entry."""
    split_dir, videos_dir = Path(split_dir), Path(videos_dir)
    if split < 1:
        raise ValueError(f"split={split}: UCF101-style splits are numbered from 1")
    classes, by_index, errors = read_class_index(split_dir / "classInd.txt")
    label_of = {c: i for i, c in enumerate(classes)}
    lists = {}
    for part in ("train", "test"):
        path = split_dir / f"{part}list{split:02d}.txt"
        before = len(errors)
        lists[part] = _read_ucf_list(path, videos_dir, label_of, by_index, errors)
        if not lists[part]:
            raise _no_usable(path, errors[before:])
    return ClassificationSet(classes, lists["train"], lists["test"], errors)


# ---------------------------------------------------------------------------------------------
# ESC-50
# ---------------------------------------------------------------------------------------------


def read_esc50(
    csv_path: str | Path, audio_dir: str | Path
) -> tuple[list[str], list[tuple[LabelledItem, int]], list[str]]:
    """ESC-50 `esc50.csv` with files `audio_dir`/<filename>.

    Returns (classes ordered by target, [(item, fold)], errors). Labels are positions in
    `classes`, i.e. the target itself for the real file (targets 0..49). Rows with a missing
    file, an empty category, a fold or target that is not a whole number, or a target whose
    category disagrees with an earlier row are errors."""
    csv_path, audio_dir = Path(csv_path), Path(audio_dir)
    rows = _read_csv(csv_path, ESC50_REQUIRED, "ESC-50 metadata")
    category_of: dict[int, str] = {}
    good: list[tuple[str, Path, int, int]] = []
    errors: list[str] = []
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{csv_path.name}:{n}"
        name = (row.get("filename") or "").strip()
        fold, target = ((row.get(k) or "").strip() for k in ("fold", "target"))
        category = (row.get("category") or "").strip()
        if not name:
            errors.append(f"{where}: empty filename")
        elif not fold.isdigit() or int(fold) < 1:
            errors.append(f"{where}: {name}: fold {fold!r} is not a number >= 1")
        elif not target.isdigit():
            errors.append(f"{where}: {name}: target {target!r} is not a number >= 0")
        elif not category:
            errors.append(f"{where}: {name}: empty category")
        elif category_of.setdefault(int(target), category) != category:
            errors.append(
                f"{where}: {name}: target {target} is {category_of[int(target)]!r} "
                f"on an earlier row, {category!r} here"
            )
        elif not (audio_dir / name).is_file():
            errors.append(f"{where}: audio {(audio_dir / name).absolute()} not found")
        else:
            good.append((name, (audio_dir / name).absolute(), int(target), int(fold)))
    if not good:
        raise _no_usable(csv_path, errors)
    targets = sorted({t for _, _, t, _ in good})
    label_of = {t: i for i, t in enumerate(targets)}
    classes = [category_of[t] for t in targets]
    items = [(LabelledItem(name, path, label_of[t]), fold) for name, path, t, fold in good]
    return classes, items, errors


def esc50_fold(
    classes: list[str], items: list[tuple[LabelledItem, int]], fold: int
) -> ClassificationSet:
    """Fold `fold` of the cross-validation protocol: test on it, train on every other fold.

    Raises ValueError when the fold or the rest is empty (naming the folds there are)."""
    test = [item for item, f in items if f == fold]
    train = [item for item, f in items if f != fold]
    if not test or not train:
        present = ", ".join(map(str, sorted({f for _, f in items})))
        raise ValueError(f"fold {fold}: leaves no test or no training items (folds: {present})")
    return ClassificationSet(list(classes), train, test, [])


# ---------------------------------------------------------------------------------------------
# YouCook2
# ---------------------------------------------------------------------------------------------


def _find_video(videos_dir: Path, video_id: str) -> Path | None:
    for ext in VIDEO_EXTENSIONS:
        path = videos_dir / f"{video_id}{ext}"
        if path.is_file():
            return path.absolute()
    return None


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def read_youcook2(csv_path: str | Path, videos_dir: str | Path) -> tuple[list[Segment], list[str]]:
    """YouCook2 validation CSV (`end,start,task,text,video_id`), one row per segment, with
    videos `videos_dir`/<video_id>.{mp4,mkv,webm,avi}.

    Returns (segments in CSV order, errors): rows with an empty text, a bad or empty
    [start, end], a missing video or a repeated segment are errors. Raises ValueError
    (naming the file) when the CSV is unreadable, lacks a column or has no usable row."""
    csv_path, videos_dir = Path(csv_path), Path(videos_dir)
    rows = _read_csv(csv_path, YOUCOOK2_REQUIRED, "YouCook2 CSV")
    segments: list[Segment] = []
    errors: list[str] = []
    seen: set[str] = set()
    for n, row in enumerate(rows, start=2):
        where = f"{csv_path.name}:{n}"
        video_id = (row.get("video_id") or "").strip()
        text = " ".join((row.get("text") or "").split())
        start, end = (_seconds((row.get(k) or "").strip()) for k in ("start", "end"))
        if not video_id:
            errors.append(f"{where}: empty video_id")
            continue
        key = f"{video_id}_{row.get('start', '').strip()}_{row.get('end', '').strip()}"
        path = _find_video(videos_dir, video_id)
        if start is None or end is None or not 0 <= start < end:
            errors.append(f"{where}: {key}: bad segment start={row['start']!r} end={row['end']!r}")
        elif not text:
            errors.append(f"{where}: {key}: empty text")
        elif key in seen:
            errors.append(f"{where}: {key}: segment listed twice")
        elif path is None:
            errors.append(f"{where}: {key}: video {videos_dir.absolute() / video_id}.* not found")
        else:
            seen.add(key)
            task = (row.get("task") or "").strip()
            segments.append(Segment(key, video_id, path, start, end, text, task))
    if not segments:
        raise _no_usable(csv_path, errors)
    return segments, errors


# ---------------------------------------------------------------------------------------------
# Kinetics-400 / 600 / 700
# ---------------------------------------------------------------------------------------------


def kinetics_stem(youtube_id: str, start: int, end: int) -> str:
    """The file stem the Kinetics download scripts write: `<YTID>_<start:06d>_<end:06d>`."""
    return f"{youtube_id}_{start:06d}_{end:06d}"


def index_videos(videos_dir: Path) -> dict[str, list[Path]]:
    """{file stem: [absolute paths]} of every video file under `videos_dir` (one walk, so a
    Kinetics-sized folder costs one directory listing per folder, not one stat per row)."""
    index: dict[str, list[Path]] = {}
    for folder, dirs, files in os.walk(videos_dir, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in VIDEO_EXTENSIONS and not name.startswith("."):
                index.setdefault(stem, []).append(Path(folder, name).absolute())
    return index


def _whole_seconds(text: str) -> int | None:
    value = _seconds(text)
    return int(value) if value is not None and value >= 0 and value == int(value) else None


def _pick(paths: list[Path], label: str) -> Path:
    """The copy under a folder named after the label (spaces or '_'), else the first."""
    names = {label, label.replace(" ", "_")}
    return next((p for p in paths if p.parent.name in names), paths[0])


def _read_kinetics_csv(
    csv_path: Path, videos_dir: Path, index: dict[str, list[Path]], errors: list[str]
) -> list[tuple[str, Path, str]]:
    """Usable rows of one annotation CSV as (key, path, label); bad rows become errors."""
    rows = _read_csv(csv_path, KINETICS_REQUIRED, "Kinetics CSV")
    out, seen = [], set()
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{csv_path.name}:{n}"
        label = " ".join((row.get("label") or "").split())
        ytid = (row.get("youtube_id") or "").strip()
        start, end = (
            _whole_seconds((row.get(k) or "").strip()) for k in ("time_start", "time_end")
        )
        if not ytid:
            errors.append(f"{where}: empty youtube_id")
            continue
        if start is None or end is None or end <= start:
            errors.append(
                f"{where}: {ytid}: bad time_start={row.get('time_start')!r} "
                f"time_end={row.get('time_end')!r} (whole seconds, start < end)"
            )
            continue
        stem = kinetics_stem(ytid, start, end)
        if not label:
            # The test CSVs of Kinetics are unlabelled.
            errors.append(f"{where}: {stem}: no label (use a labelled CSV, e.g. validate.csv)")
        elif stem in seen:
            errors.append(f"{where}: {stem} listed twice")
        elif stem not in index:
            expected = videos_dir.absolute() / label / f"{stem}.mp4"
            errors.append(f"{where}: video {expected} not found (nor {stem}.* elsewhere)")
        else:
            seen.add(stem)
            path = _pick(index[stem], label)
            out.append((os.path.relpath(path, videos_dir.absolute()), path, label))
    if not out:
        raise _no_usable(csv_path, errors)
    return out


def read_kinetics(
    train_csv: str | Path | None, test_csv: str | Path, videos_dir: str | Path
) -> ClassificationSet:
    """A Kinetics-400/600/700 train/test pair (e.g. train.csv + validate.csv) with clips
    found anywhere under `videos_dir` by their `<YTID>_<start:06d>_<end:06d>` stem.

    Classes are the sorted labels of `train_csv` (of `test_csv` when no training CSV is
    given, as zero-shot needs none); a test row whose label is not one of them is an error.
    Rows without a label, with bad times, listed twice or whose clip is missing are errors.
    Raises ValueError (naming the file) when a CSV is unreadable, lacks a column or has no
    usable row."""
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise ValueError(f"{videos_dir}: no such video folder")
    index = index_videos(videos_dir)
    errors: list[str] = []
    train_rows = [] if train_csv is None else _read_kinetics_csv(
        Path(train_csv), videos_dir, index, errors
    )  # fmt: skip
    test_rows = _read_kinetics_csv(Path(test_csv), videos_dir, index, errors)
    classes = sorted({label for _, _, label in (train_rows or test_rows)})
    label_of = {c: i for i, c in enumerate(classes)}
    test = []
    for key, path, label in test_rows:
        if label in label_of:
            test.append(LabelledItem(key, path, label_of[label]))
        else:
            errors.append(f"{Path(test_csv).name}: {key}: label {label!r} is not a training class")
    if not test:
        raise _no_usable(Path(test_csv), errors)
    train = [LabelledItem(key, path, label_of[label]) for key, path, label in train_rows]
    return ClassificationSet(classes, train, test, errors)


__all__ = [
    "ClassificationSet",
    "LabelledItem",
    "RetrievalItem",
    "Segment",
    "esc50_fold",
    "index_videos",
    "kinetics_stem",
    "read_class_index",
    "read_esc50",
    "read_kinetics",
    "read_msrvtt",
    "read_ucf_split",
    "read_youcook2",
]
