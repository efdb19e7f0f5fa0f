"""What a sweep leaves behind: the results table (CSV + text), PNGs of the objective against
each hyperparameter and of every trial's learning curve, and the best configuration as a
`vatt train` YAML. Plain data in (`TrialRecord`s), files out; no Ray.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from preprocessing import storage as store
from tuning.space import Param

RESULTS_CSV = "results.csv"
BEST_YAML = "best.yaml"
PLOTS_DIR = "plots"


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(x):
        return None
    return float(x)


def best_record(records: list, objective_key: str, direction: str):
    """The trial with the best last-reported objective; ties go to the trial that trained
    longer, then to the lower training loss. None when no trial reported the objective."""
    scored = [
        r for r in records if r.status != "error" and _number(r.last.get(objective_key)) is not None
    ]
    if not scored:
        return None
    sign = -1.0 if direction == "max" else 1.0

    def rank(r) -> tuple[float, int, float]:
        loss = _number(r.last.get("loss"))
        return (
            sign * _number(r.last[objective_key]),
            -int(r.last.get("step", 0)),
            loss if loss is not None else math.inf,
        )

    return min(scored, key=rank)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def table_rows(records: list, params: list[Param], objective_key: str) -> list[dict[str, Any]]:
    """One row per trial: id, status, steps reached, objective, loss, hyperparameters."""
    rows = []
    for r in records:
        row = {
            "trial_id": r.trial_id,
            "status": r.status,
            "step": r.last.get("step"),
            objective_key: r.last.get(objective_key),
            "loss": r.last.get("loss"),
        }
        row.update({p.key: r.params.get(p.key) for p in params})
        row["train_run"] = r.run_dir
        row["error"] = r.error
        rows.append(row)
    return rows


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial_id"])
        writer.writeheader()
        writer.writerows(rows)


def format_table(rows: list[dict[str, Any]], best_id: str | None) -> str:
    """Aligned text table (paths and errors left to the CSV); `*` marks the best trial."""
    if not rows:
        return "(no trials)"
    columns = [c for c in rows[0] if c not in ("train_run", "error")]
    cells = [[("*" if row["trial_id"] == best_id else " ") + _fmt(row[c]) if c == "trial_id"
              else _fmt(row[c]) for c in columns] for row in rows]  # fmt: skip
    header = [" " + columns[0], *columns[1:]]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", key).strip("_")


def plot_objective_vs_params(
    records: list, params: list[Param], objective_key: str, out_dir: Path
) -> list[Path]:
    """One PNG per hyperparameter: each trial's last objective against its value (colour:
    steps reached, so early-stopped trials stand out). Log x axis for loguniform keys."""
    from matplotlib.figure import Figure  # Agg canvas: no display needed

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    done = [r for r in records if _number(r.last.get(objective_key)) is not None]
    for p in params:
        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot()
        values = [r.params.get(p.key) for r in done]
        ys = [float(r.last[objective_key]) for r in done]
        steps = [int(r.last.get("step", 0)) for r in done]
        numeric = all(_number(v) is not None for v in values)
        if numeric:
            xs = [float(v) for v in values]
        else:  # categorical: one slot per listed value
            labels = [str(v) for v in p.values]
            xs = [labels.index(str(v)) for v in values]
            ax.set_xticks(range(len(labels)), labels)
        points = ax.scatter(xs, ys, c=steps, cmap="viridis", s=60, edgecolors="black")
        if done:
            fig.colorbar(points, ax=ax, label="steps reached")
        if p.kind == "loguniform":
            ax.set_xscale("log")
        ax.set(xlabel=p.key, ylabel=objective_key, title=f"{objective_key} vs {p.key}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"objective_vs_{_slug(p.key)}.png"
        fig.savefig(path, dpi=100)
        written.append(path)
    return written


def plot_learning_curves(records: list, objective_key: str, out_dir: Path) -> Path:
    """The objective and the training loss against step, one line per trial."""
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(8, 7))
    ax_obj, ax_loss = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    for i, r in enumerate(records):
        for ax, key in ((ax_obj, "objective"), (ax_loss, "loss")):
            points = [(h["step"], _number(h[key])) for h in r.history]
            points = [(s, v) for s, v in points if v is not None]
            if points:
                ax.plot(*zip(*points), marker="o", color=f"C{i % 10}", label=r.trial_id)
    ax_obj.set(ylabel=objective_key, title="learning curves per trial")
    ax_loss.set(xlabel="step", ylabel="training loss")
    for ax in (ax_obj, ax_loss):
        ax.grid(alpha=0.3)
    if ax_obj.lines:
        ax_obj.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "learning_curves.png"
    fig.savefig(path, dpi=100)
    return path


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (YAML's safe dumper has no tuples)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_best_config(record, path: Path, *, name: str, storage: str, note: str) -> dict:
    """The best trial's training config (its run's train_config.json) as a YAML `vatt train
    --config` runs as is, renamed so training it does not resume the trial's run."""
    config = json.loads(store.read_text(store.join(record.run_dir, "train_config.json")))
    config.update(name=name, storage=storage)
    header = "".join(f"# {line}\n" for line in note.splitlines())
    path.write_text(header + yaml.safe_dump(_plain(config), sort_keys=False))
    return config


@dataclass(frozen=True)
class SweepReport:
    """What `write_sweep_report` wrote (for the CLI to print)."""

    report_dir: Path  # the sweep folder, or the local mirror of an object-store sweep
    rows: list[dict[str, Any]]
    best: Any  # the best TrialRecord, or None
    best_yaml: Path | None  # None while the sweep is unfinished or nothing reported
    plots: list[Path]


def write_sweep_report(outcome, sweep, base_storage: str) -> SweepReport:
    """results.csv, plots/*.png and (once every trial finished) best.yaml, which
    `vatt train --config` runs as is, in the sweep's folder (an object-store sweep is written
    to a local mirror, then uploaded). `base_storage`: where best.yaml's run goes."""
    sweep_dir = Path(store.local_mirror(outcome.sweep_dir, "sweeps", sweep.name))
    params, key = sweep.params(), sweep.objective.key
    rows = table_rows(outcome.records, params, key)
    write_table(rows, sweep_dir / RESULTS_CSV)
    plots = plot_objective_vs_params(outcome.records, params, key, sweep_dir / PLOTS_DIR)
    plots.append(plot_learning_curves(outcome.records, key, sweep_dir / PLOTS_DIR))
    best = best_record(outcome.records, key, sweep.objective.direction)
    best_yaml = None
    if best is not None and not outcome.interrupted:
        best_yaml = sweep_dir / BEST_YAML
        note = (
            f"best of sweep {sweep.name} ({len(outcome.records)} trials): trial {best.trial_id}, "
            f"{key} = {best.last[key]:.4g} at step {best.last.get('step')}\n"
            f"hyperparameters: {json.dumps(best.params)}\n"
            f"train it: vatt train --config {best_yaml} [max_steps=...]"
        )
        write_best_config(
            best, best_yaml, name=f"{sweep.name}-best", storage=base_storage, note=note
        )
    if str(sweep_dir) != outcome.sweep_dir:
        store.copy_tree(str(sweep_dir), outcome.sweep_dir)
    return SweepReport(sweep_dir, rows, best, best_yaml, plots)
