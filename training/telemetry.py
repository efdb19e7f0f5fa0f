"""Run telemetry: metrics.csv / eval.csv + TensorBoard scalars, the console progress line, plots.

Only rank 0 writes (`Telemetry(..., enabled=rank == 0)`; a disabled one does nothing). Metric
keys are flat strings ("loss", "nce_va", "mil_nce_vt", "lr", "clips_per_s", "step_time_s",
"data_wait_frac", "mfu", "skipped", ...); `TB_NAMES` maps them to TensorBoard tags, anything
else goes under `misc/` (a key that already contains "/" is used as is).

CSV columns are fixed by the first row written (a CSV cannot grow columns mid-file; a new key
later is ignored with one warning). A resumed run (`resume_step > 0`) first drops the rows at
or after `resume_step`, and TensorBoard purges the same steps, so replayed steps never appear
twice. No Ray here, and the plots need no display (matplotlib's Agg canvas).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

METRICS_CSV = "metrics.csv"
EVAL_CSV = "eval.csv"
TENSORBOARD_DIR = "tensorboard"

# Flat metric key -> TensorBoard tag.
TB_NAMES = {
    "loss": "loss/total",
    "nce_va": "loss/nce_va",
    "mil_nce_vt": "loss/mil_nce_vt",
    "lr": "lr",
    "clips_per_s": "perf/clips_per_s",
    "step_time_s": "perf/step_time_s",
    "data_wait_frac": "perf/data_wait_frac",
    "mfu": "perf/mfu",
    "skipped": "data/skipped",
    "samples_seen": "data/samples_seen",
    "grad_norm": "optim/grad_norm",
}
LOSS_PARTS = {"nce_va": "va", "mil_nce_vt": "vt"}


# bf16 dense peak FLOP/s per device, for MFU (vendor data sheets).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def peak_flops(device_name: str) -> float | None:
    """The bf16 peak of a GPU by its name (torch.cuda.get_device_name), None if unknown."""
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in device_name:
            return flops
    return None


def optimizer_state_bytes(optimizer) -> int:
    """Bytes of optimizer state (Adam's two moments) on this rank: 8 bytes per parameter
    without ZeRO, split over ranks by ZeRO-1/2/3."""
    import torch

    base = getattr(optimizer, "optimizer", optimizer)  # DeepSpeed ZeRO wraps the torch one
    return sum(
        t.numel() * t.element_size()
        for state in base.state.values()
        for t in state.values()
        if torch.is_tensor(t) and t.ndim > 0  # skip the scalar step counters
    )


def max_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def tb_name(key: str, loss_parts=()) -> str:
    """TensorBoard tag of a flat metric key (`loss_parts`: an objective's loss-part keys,
    tagged loss/<key>)."""
    if key in TB_NAMES:
        return TB_NAMES[key]
    if key in loss_parts:
        return f"loss/{key}"
    return key if "/" in key else f"misc/{key}"


class _CsvLog:
    """One append-only CSV with a fixed header; `truncate_from` drops rows of replayed steps."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        self.columns: list[str] | None = None
        self.warned = False
        if not path.is_file():
            return
        rows, header = _read_csv(path)
        kept = [row for row in rows if _as_float(row.get("step")) < resume_step]
        if kept and header:
            self.columns = header
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=header)
                writer.writeheader()
                writer.writerows(kept)
        else:
            path.unlink()  # nothing survives: the next first row sets a fresh header

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        row = {"step": step, **{k: _format(v) for k, v in metrics.items()}}
        if self.columns is None:
            self.columns = list(row)
            with self.path.open("w", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns).writeheader()
        extra = [k for k in row if k not in self.columns]
        if extra and not self.warned:
            logger.warning(
                "%s: new metric(s) %s after the first row are not logged to the CSV "
                "(columns are fixed by the first row); TensorBoard still gets them",
                self.path.name,
                extra,
            )
            self.warned = True
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            writer.writerow(row)


def _format(value) -> str | int:
    if isinstance(value, bool | int):
        return int(value)
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)  # a note, not a number: kept in the CSV, left out of TensorBoard


def _numbers(metrics: Mapping[str, float]) -> dict[str, float]:
    """The entries of `metrics` that are (convertible to) numbers."""
    out = {}
    for key, value in metrics.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _read_csv(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return rows, list(reader.fieldnames or [])


class Telemetry:
    """metrics.csv, eval.csv and TensorBoard events of one run; a no-op when not enabled.

    Args:
        run_dir: the run's output folder (created).
        enabled: True on rank 0 only.
        resume_step: the step training resumes from; rows and events at steps >= it are dropped.
        loss_parts: the objective's loss-part keys (TensorBoard tags loss/<key>).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        enabled: bool,
        resume_step: int = 0,
        loss_parts=(),
    ):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.loss_parts = tuple(loss_parts)
        self._writer = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = _CsvLog(self.run_dir / METRICS_CSV, resume_step)
        self._eval = _CsvLog(self.run_dir / EVAL_CSV, resume_step)
        from torch.utils.tensorboard import SummaryWriter

        # purge_step makes TensorBoard hide events an earlier attempt wrote at steps >= it.
        self._writer = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR), purge_step=resume_step)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """One training row: CSV + TensorBoard scalars (see `TB_NAMES`)."""
        if not self.enabled:
            return
        self._metrics.write(step, metrics)
        for key, value in _numbers(metrics).items():
            self._writer.add_scalar(tb_name(key, self.loss_parts), value, step)
        self._writer.flush()

    def log_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        """One evaluation row (e.g. t2v_r1, t2v_r5, t2v_r10): eval.csv + TensorBoard eval/..."""
        if not self.enabled:
            return
        self._eval.write(step, metrics)
        for key, value in _numbers(metrics).items():
            self._writer.add_scalar(f"eval/{key}", value, step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def format_progress(
    step: int,
    max_steps: int,
    metrics: Mapping[str, float],
    loss_parts: Mapping[str, str] | None = None,
) -> str:
    """One console line, e.g.
    `step 120/1000 (12%) | loss 3.412 (va 1.201 vt 2.211) | lr 1.20e-05 | 45.3 clips/s |
    data-wait 12% | ETA 1h02m`. Missing metrics are left out; ETA uses step_time_s.
    `loss_parts`: {metric key: short label} of the objective's parts (default: VATT's).
    """
    loss_parts = LOSS_PARTS if loss_parts is None else loss_parts
    parts = [f"step {step}/{max_steps} ({100 * step / max(max_steps, 1):.0f}%)"]
    if "loss" in metrics:
        loss = f"loss {metrics['loss']:.4g}"
        pieces = [f"{short} {metrics[k]:.4g}" for k, short in loss_parts.items() if k in metrics]
        parts.append(f"{loss} ({' '.join(pieces)})" if pieces else loss)
    if "lr" in metrics:
        parts.append(f"lr {metrics['lr']:.2e}")
    if "clips_per_s" in metrics:
        parts.append(f"{metrics['clips_per_s']:.1f} clips/s")
    if "data_wait_frac" in metrics:
        parts.append(f"data-wait {100 * metrics['data_wait_frac']:.0f}%")
    step_time = metrics.get("step_time_s")
    eta = step_time * max(max_steps - step, 0) if step_time is not None else math.nan
    parts.append(f"ETA {_duration(eta)}")
    return " | ".join(parts)


def _columns(rows: list[dict[str, str]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the rows where `key` holds a finite number."""
    steps, values = [], []
    for row in rows:
        step, value = _as_float(row.get("step")), _as_float(row.get(key))
        if math.isfinite(step) and math.isfinite(value):
            steps.append(step)
            values.append(value)
    return steps, values


def _smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """TensorBoard's debiased exponential moving average."""
    out, avg = [], 0.0
    for i, value in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * value
        out.append(avg / (1 - weight**i))
    return out


# Recall columns of eval.csv: t2v_r1, R@5, recall@10, v2t/r10, ...
_RECALL_RE = re.compile(r"(?:^|[_/])(?:r|recall)@?_?(1|5|10)$", re.IGNORECASE)


def plot_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    loss_parts=None,
) -> list[Path]:
    """PNGs of a run's metrics.csv (and eval.csv): loss, lr, throughput, retrieval.

    Args:
        run_dir: folder with metrics.csv (as written by `Telemetry`).
        out_dir: where the PNGs go; default `<run_dir>/plots`.
        loss_parts: the objective's loss-part keys plotted beside "loss" (default: VATT's).
    Returns:
        The paths written. Raises FileNotFoundError / ValueError when there is nothing to plot.
    """
    from matplotlib.figure import Figure  # Figure alone renders with Agg: no display needed

    run_dir = Path(run_dir)
    metrics_csv = run_dir / METRICS_CSV
    if not metrics_csv.is_file():
        raise FileNotFoundError(f"{metrics_csv}: not found (is {run_dir} a training run folder?)")
    rows, header = _read_csv(metrics_csv)
    if not rows:
        raise ValueError(f"{metrics_csv}: no rows logged yet")
    out = Path(out_dir) if out_dir is not None else run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: Figure, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        written.append(out / name)

    parts = LOSS_PARTS if loss_parts is None else loss_parts
    loss_keys = [k for k in ("loss", *parts) if k in header]
    if loss_keys:
        fig = Figure(figsize=(8, 4.5))
        ax = fig.add_subplot()
        for i, key in enumerate(loss_keys):
            steps, values = _columns(rows, key)
            color = f"C{i}"
            ax.plot(steps, values, color=color, alpha=0.3, linewidth=0.8)
            ax.plot(steps, _smooth(values), color=color, label=f"{key} (smoothed)")
        ax.set(xlabel="step", ylabel="loss", title=f"{run_dir.name}: loss")
        ax.legend()
        ax.grid(alpha=0.3)
        save(fig, "loss.png")
    if "lr" in header:
        fig = Figure(figsize=(8, 3.5))
        ax = fig.add_subplot()
        ax.plot(*_columns(rows, "lr"))
        ax.set(xlabel="step", ylabel="learning rate", title=f"{run_dir.name}: lr")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.grid(alpha=0.3)
        save(fig, "lr.png")
    perf = [k for k in ("clips_per_s", "data_wait_frac") if k in header]
    if perf:
        fig = Figure(figsize=(8, 3.2 * len(perf)))
        for i, key in enumerate(perf, start=1):
            ax = fig.add_subplot(len(perf), 1, i)
            steps, values = _columns(rows, key)
            if key == "data_wait_frac":
                values = [100 * v for v in values]
            ax.plot(steps, values, alpha=0.3, linewidth=0.8, color=f"C{i}")
            ax.plot(steps, _smooth(values), color=f"C{i}")
            ylabel = "clips/s" if key == "clips_per_s" else "data wait (% of step)"
            ax.set(xlabel="step", ylabel=ylabel)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{run_dir.name}: throughput")
        save(fig, "throughput.png")
    eval_csv = run_dir / EVAL_CSV
    if eval_csv.is_file():
        eval_rows, eval_header = _read_csv(eval_csv)
        recall = [k for k in eval_header if _RECALL_RE.search(k)]
        if eval_rows and recall:
            fig = Figure(figsize=(8, 4.5))
            ax = fig.add_subplot()
            for key in recall:
                style = {"linestyle": "--"} if "chance" in key else {"marker": "o"}
                ax.plot(*_columns(eval_rows, key), label=key, **style)
            ax.set(xlabel="step", ylabel="recall", title=f"{run_dir.name}: zero-shot retrieval")
            ax.legend()
            ax.grid(alpha=0.3)
            save(fig, "retrieval.png")
    if not written:
        raise ValueError(f"{metrics_csv}: no known metric columns (columns: {', '.join(header)})")
    return written


def plot_accuracy(run_dir: str | os.PathLike) -> list[Path]:
    """plots/accuracy.png: training accuracy (metrics.csv) and test top-1/top-5 (eval.csv)."""
    from matplotlib.figure import Figure  # Agg canvas: no display needed

    run_dir = Path(run_dir)

    def columns(path: Path, key: str) -> tuple[list[float], list[float]]:
        return _columns(_read_csv(path)[0], key) if path.is_file() else ([], [])

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    ax.plot(*columns(run_dir / "metrics.csv", "train_acc"), label="train (batch) accuracy")
    for key in ("top1", "top5"):
        ax.plot(*columns(run_dir / "eval.csv", key), marker="o", label=f"test {key}")
    ax.set(xlabel="step", ylabel="accuracy", ylim=(0, 1.02), title=f"{run_dir.name}: accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    out = run_dir / "plots" / "accuracy.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return [out]
