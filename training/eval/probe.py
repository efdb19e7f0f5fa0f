"""Linear probes on frozen towers: UCF101 / HMDB51 (video, split files), Kinetics (video,
train + validation CSVs) and ESC-50 (audio, 5 folds).

split files / Kinetics CSVs / esc50.csv -> labelled items (bad rows: errors)
-> every distinct file's windows embedded once with Ray Data (tower output = the
   aggregation token, before the common-space heads)
-> per split / fold and classifier (low-rank C = UV, linear SVM): fit on the training
   views (windows x crops), test by view-averaged logits -> top-1 accuracy
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.eval import benchmarks
from training.eval.classifiers import probe_accuracy
from training.eval.extract import Embeddings, MediaItem, WindowSpec, extract_embeddings

DATASETS = {"ucf101": "video", "hmdb51": "video", "kinetics": "video", "esc50": "audio"}


@dataclass
class ProbeTask:
    """One split (UCF101/HMDB51), fold (ESC-50) or CSV pair (Kinetics): classes and items."""

    name: str  # "split1", "fold3", "validate"
    classes: list[str]
    train: list  # training.eval.benchmarks.LabelledItem
    test: list


@dataclass
class ProbeData:
    dataset: str
    modality: str
    tasks: list[ProbeTask]
    errors: list[str] = field(default_factory=list)


def load_probe_data(
    dataset: str,
    *,
    splits_dir: str | Path | None = None,
    videos_dir: str | Path | None = None,
    splits: tuple[int, ...] = (1,),
    esc50_csv: str | Path | None = None,
    audio_dir: str | Path | None = None,
    folds: tuple[int, ...] = (1, 2, 3, 4, 5),
    kinetics_train_csv: str | Path | None = None,
    kinetics_csv: str | Path | None = None,
) -> ProbeData:
    """Read the benchmark's own list files into per-split / per-fold tasks.

    Raises ValueError (naming the file) when a list file is unreadable; bad rows are errors."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r}: choose one of {sorted(DATASETS)}")
    data = ProbeData(dataset, DATASETS[dataset], [])
    if dataset in ("ucf101", "hmdb51"):
        for split in splits:
            cs = benchmarks.read_ucf_split(splits_dir, videos_dir, split)
            data.tasks.append(ProbeTask(f"split{split}", cs.classes, cs.train, cs.test))
            data.errors += [e for e in cs.errors if e not in data.errors]
        return data
    if dataset == "kinetics":
        cs = benchmarks.read_kinetics(kinetics_train_csv, kinetics_csv, videos_dir)
        data.tasks.append(ProbeTask(Path(kinetics_csv).stem, cs.classes, cs.train, cs.test))
        data.errors += cs.errors
        return data
    classes, items, errors = benchmarks.read_esc50(esc50_csv, audio_dir)
    data.errors += errors
    for fold in folds:
        cs = benchmarks.esc50_fold(classes, items, fold)
        data.tasks.append(ProbeTask(f"fold{fold}", cs.classes, cs.train, cs.test))
    return data


def _gather(
    items: list, emb: Embeddings, row: dict[str, int], name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = [row[str(it.path)] for it in items]
    labels = np.array([it.label for it in items], dtype=np.int64)
    return emb.outputs[name][idx], labels, emb.valid[idx]


def run_probe(
    model,
    data: ProbeData,
    *,
    classifiers: tuple[str, ...] = ("low_rank", "svm"),
    num_windows: int = 4,
    clip_seconds: float = 3.2,
    size: int | None = None,
    crops: int = 1,
    batch_size: int = 16,
    low_rank=None,
    svm=None,
    label: str = "model",
) -> dict:
    """Embed every file once, then fit and score each classifier on each task.

    Returns {label, results: {task: {classifier: {top1, num_train, num_test, chance}}},
    mean: {classifier: mean top1}, num_items, num_scored, num_errors, errors, seconds}."""
    began = time.perf_counter()
    files: dict[str, MediaItem] = {}
    for task in data.tasks:
        for it in (*task.train, *task.test):
            files.setdefault(str(it.path), MediaItem(it.key, str(it.path)))
    items = list(files.values())
    spec = WindowSpec.for_model(model.cfg, data.modality, num_windows, clip_seconds, size, crops)
    output = f"{data.modality}_features"
    emb = extract_embeddings(
        model, items, spec, (output,), batch_size=batch_size, desc=f"{label}: {data.dataset}"
    )
    row = {it.path: i for i, it in enumerate(items)}
    errors = list(data.errors) + [
        f"{it.key}: {emb.errors[it.key]}" for it in items if it.key in emb.errors
    ]
    results: dict[str, dict] = {}
    for task in data.tasks:
        train = _gather(task.train, emb, row, output)
        test = _gather(task.test, emb, row, output)
        results[task.name] = {
            clf: probe_accuracy(*train, *test, len(task.classes), clf, low_rank=low_rank, svm=svm)
            for clf in classifiers
        }
    mean = {clf: float(np.mean([results[t][clf]["top1"] for t in results])) for clf in classifiers}
    scored = int(emb.valid.any(axis=1).sum())
    return {
        "label": label,
        "dataset": data.dataset,
        "views": {"clips": spec.num_windows, "crops": spec.crops},
        "results": results,
        "mean": mean,
        "num_items": len(items),
        "num_scored": scored,
        "num_errors": len(errors),
        "errors": errors,
        "seconds": time.perf_counter() - began,
    }


__all__ = ["DATASETS", "ProbeData", "ProbeTask", "load_probe_data", "run_probe"]
