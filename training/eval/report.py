"""Evaluation reports: printed tables, report.json and PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def write_json(path: Path, report: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def _table(header: list[str], rows: list[list[str]], file) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  " + "  ".join(f"{str(c):<{w}}" for c, w in zip(r, widths)), file=file)


def _print_errors(errors: list[str], file, limit: int = 10) -> None:
    if not errors:
        return
    print(f"  {len(errors)} item(s) not scored:", file=file)
    for e in errors[:limit]:
        print(f"    {e}", file=file)
    if len(errors) > limit:
        print(f"    ... and {len(errors) - limit} more (all in report.json)", file=file)


def print_retrieval(report: dict, file=None) -> None:
    file = file or sys.stdout
    first = report["models"][0]
    print(
        f"\n{report['benchmark']} retrieval: {first['num_scored']} of {first['num_texts']} "
        f"texts scored against {first['num_videos_scored']} videos "
        f"(chance R@1 {first['chance_r1']:.3f})",
        file=file,
    )
    rows = []
    for m in report["models"]:
        for d in ("t2v", "v2t"):
            x = m[d]
            rows.append(
                [m["label"], d]
                + [f"{x[k]:.3f}" for k in ("r1", "r5", "r10")]
                + [f"{x['medr']:.1f}", f"{x['meanr']:.1f}"]
            )
    _table(["model", "dir", "R@1", "R@5", "R@10", "MedR", "MeanR"], rows, file)
    _print_errors(first["errors"], file)


def print_probe(report: dict, file=None) -> None:
    file = file or sys.stdout
    first = report["models"][0]
    clfs = list(first["mean"])
    print(
        f"\n{report['dataset']} linear probe ({report['modality']} features): "
        f"{first['num_scored']} of {first['num_items']} files scored",
        file=file,
    )
    rows = []
    for m in report["models"]:
        for task, res in m["results"].items():
            any_clf = next(iter(res.values()))
            rows.append(
                [m["label"], task]
                + [f"{res[c]['top1']:.3f}" for c in clfs]
                + [f"{any_clf['num_train']}/{any_clf['num_test']}", f"{any_clf['chance']:.3f}"]
            )
        rows.append([m["label"], "mean"] + [f"{m['mean'][c]:.3f}" for c in clfs] + ["", ""])
    _table(["model", "split", *clfs, "train/test", "chance"], rows, file)
    _print_errors(first["errors"], file)


def print_zeroshot(report: dict, file=None, max_classes: int = 40) -> None:
    """Top-1/top-5 per model with chance, then per-class accuracy (every model side by side;
    for more than `max_classes` classes the trained model's 5 best and 5 worst)."""
    file = file or sys.stdout
    models = report["models"]
    first = models[0]
    views = first["views"]
    print(
        f"\n{report['dataset']} zero-shot ({report['modality']}; {first['space']}): "
        f"{first['num_scored']} of {first['num_items']} items scored, {len(first['classes'])} "
        f"classes, {len(first['templates'])} prompt templates, "
        f"{views['clips']} clips x {views['crops']} crops",
        file=file,
    )
    rows = [
        [m["label"], f"{m['top1']:.3f}", f"{m['top5']:.3f}", f"{m['mean_class_accuracy']:.3f}"]
        for m in models
    ]
    rows.append(["chance", f"{first['chance_top1']:.3f}", f"{first['chance_top5']:.3f}", ""])
    _table(["model", "top-1", "top-5", "mean class acc"], rows, file)
    names = list(first["per_class"])
    if len(names) > max_classes:
        ranked = sorted(names, key=lambda c: first["per_class"][c]["accuracy"])
        names = ranked[-5:][::-1] + ranked[:5]
        print(f"  per class (best and worst 5 of {len(ranked)}):", file=file)
    rows = [
        [c, str(first["per_class"][c]["n"])]
        + [f"{m['per_class'][c]['accuracy']:.3f}" for m in models]
        for c in names
    ]
    _table(["class", "n", *(m["label"] for m in models)], rows, file)
    for text, words in first["out_of_vocabulary"].items():
        print(f"  class {text!r}: words not in the tokenizer's vocabulary: {words}", file=file)
    _print_errors(first["errors"], file)


def plot_confusion(report: dict, path: Path) -> Path:
    """One confusion matrix per model (rows: true class, columns: predicted; row-normalised),
    side by side; class names on the axes up to 40 classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = report["models"]
    classes = models[0]["classes"]
    n = len(classes)
    side = min(12.0, max(4.0, 0.35 * n + 2))
    fig, axes = plt.subplots(
        1, len(models), figsize=(side * len(models) + 1, side), squeeze=False, layout="constrained"
    )
    for ax, m in zip(axes[0], models):
        counts = np.asarray(m["confusion"], dtype=float)
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        image = ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
        if n <= 40:
            ax.set_xticks(range(n), classes, rotation=90, fontsize=7)
            ax.set_yticks(range(n), classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true class")
        ax.set_title(f"{m['label']}: top-1 {m['top1']:.3f} (chance {m['chance_top1']:.3f})")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="fraction of the true class")
    fig.suptitle(f"{report['dataset']} zero-shot")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _save(fig, ax, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_recall(report: dict, path: Path) -> Path:
    """Recall@K curves (K = 1..50) of every model, both directions, with chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for m in report["models"]:
        for d, style in (("t2v", "-"), ("v2t", "--")):
            curve = m[d]["recall_curve"]
            ax.plot(range(1, len(curve) + 1), curve, style, label=f"{m['label']} {d}")
    videos = report["models"][0]["num_videos_scored"]
    ks = range(1, len(report["models"][0]["t2v"]["recall_curve"]) + 1)
    ax.plot(ks, [min(1.0, k / videos) for k in ks], ":", color="grey", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("recall@K")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{report['benchmark']} zero-shot retrieval")
    ax.grid(alpha=0.3)
    return _save(fig, ax, path)


def plot_probe(report: dict, path: Path) -> Path:
    """Top-1 accuracy per split/fold, one bar per model x classifier, chance as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = report["models"]
    tasks = [*models[0]["results"], "mean"]
    clfs = list(models[0]["mean"])
    series = [(m, c) for m in models for c in clfs]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(tasks) + 2), 4.0))
    x = np.arange(len(tasks))
    for i, (m, c) in enumerate(series):
        values = [m["results"][t][c]["top1"] for t in tasks[:-1]] + [m["mean"][c]]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=f"{m['label']} {c}")
    chance = next(iter(next(iter(models[0]["results"].values())).values()))["chance"]
    ax.axhline(chance, color="grey", linestyle=":", label="chance")
    ax.set_xticks(x, tasks)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(f"{report['dataset']} linear probe")
    return _save(fig, ax, path)


__all__ = [
    "plot_confusion",
    "plot_probe",
    "plot_recall",
    "print_probe",
    "print_retrieval",
    "print_zeroshot",
    "write_json",
]
