"""Tests of run telemetry: metrics/eval CSVs, TensorBoard events, resume, progress line, plots."""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pipeline.cli import main
from training.telemetry import Telemetry, format_progress, plot_run, tb_name

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics(step: int) -> dict[str, float]:
    return {
        "loss": 5.0 / step,
        "nce_va": 2.0 / step,
        "mil_nce_vt": 3.0 / step,
        "lr": 1e-4 * step,
        "clips_per_s": 40.0 + step,
        "step_time_s": 0.5,
        "data_wait_frac": 0.1,
        "skipped": 0,
    }


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_csv_and_tensorboard(tmp_path, caplog):
    with Telemetry(tmp_path, enabled=True) as telemetry:
        for step in range(1, 6):
            metrics = _metrics(step)
            if step >= 3:
                metrics["grad_norm"] = 1.0  # appears after the first row: not a CSV column
            telemetry.log(step, metrics)
        telemetry.log_eval(5, {"t2v_r1": 0.25, "t2v_r5": 0.5, "t2v_r10": 0.75})
    rows = _rows(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]
    assert list(rows[0]) == ["step", *_metrics(1)]
    assert float(rows[1]["loss"]) == 2.5 and float(rows[4]["lr"]) == pytest.approx(5e-4)
    warnings = [r for r in caplog.records if "grad_norm" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert _rows(tmp_path / "eval.csv") == [
        {"step": "5", "t2v_r1": "0.25", "t2v_r5": "0.5", "t2v_r10": "0.75"}
    ]
    scalars = _scalars(tmp_path)
    for tag in ("loss/total", "loss/nce_va", "loss/mil_nce_vt", "lr", "perf/clips_per_s"):
        assert [s for s, _ in scalars[tag]] == [1, 2, 3, 4, 5], tag
    assert scalars["perf/data_wait_frac"][0][1] == pytest.approx(0.1)
    assert scalars["optim/grad_norm"] == [(3, 1.0), (4, 1.0), (5, 1.0)]
    assert scalars["eval/t2v_r5"] == [(5, 0.5)]
    assert tb_name("something_new") == "misc/something_new"


def test_resume_drops_replayed_steps(tmp_path):
    with Telemetry(tmp_path, enabled=True) as telemetry:
        for step in range(1, 11):
            telemetry.log(step, _metrics(step))
        telemetry.log_eval(4, {"t2v_r1": 0.1})
        telemetry.log_eval(8, {"t2v_r1": 0.2})
    # The run crashed after step 10; its last checkpoint was at step 6.
    with Telemetry(tmp_path, enabled=True, resume_step=6) as telemetry:
        assert [int(r["step"]) for r in _rows(tmp_path / "metrics.csv")] == [1, 2, 3, 4, 5]
        for step in range(6, 9):
            telemetry.log(step, _metrics(step))
        telemetry.log_eval(8, {"t2v_r1": 0.3})
    steps = [int(r["step"]) for r in _rows(tmp_path / "metrics.csv")]
    assert steps == list(range(1, 9))
    assert [(r["step"], r["t2v_r1"]) for r in _rows(tmp_path / "eval.csv")] == [
        ("4", "0.1"),
        ("8", "0.3"),
    ]
    # TensorBoard purges the replayed steps of the first attempt (purge_step).
    assert [s for s, _ in _scalars(tmp_path)["loss/total"]] == list(range(1, 9))


def test_disabled_writes_nothing(tmp_path):
    telemetry = Telemetry(tmp_path / "run", enabled=False)
    telemetry.log(1, _metrics(1))
    telemetry.log_eval(1, {"t2v_r1": 0.5})
    telemetry.close()
    assert not (tmp_path / "run").exists()


def test_format_progress():
    line = format_progress(120, 1000, {**_metrics(1), "lr": 1.2e-5, "step_time_s": 4.5})
    assert line == (
        "step 120/1000 (12%) | loss 5 (va 2 vt 3) | lr 1.20e-05 | 41.0 clips/s | "
        "data-wait 10% | ETA 1h06m"
    )
    assert "\n" not in line
    assert format_progress(1, 10, {}) == "step 1/10 (10%) | ETA ?"


def _is_png(path: Path) -> bool:
    if path.read_bytes()[:8] != PNG_MAGIC:
        return False
    with Image.open(path) as image:
        image.verify()
    return True


def test_plot_run_writes_valid_pngs(tmp_path):
    with Telemetry(tmp_path, enabled=True) as telemetry:
        for step in range(1, 31):
            telemetry.log(step, _metrics(step))
        for step in (0, 15, 30):
            telemetry.log_eval(
                step, {"t2v_r1": step / 100, "t2v_r5": step / 50, "t2v_r10": step / 40}
            )
    paths = plot_run(tmp_path)
    assert [p.name for p in paths] == ["loss.png", "lr.png", "throughput.png", "retrieval.png"]
    assert all(p.parent == tmp_path / "plots" and _is_png(p) for p in paths)
    # Without eval.csv, no retrieval plot; --out elsewhere.
    (tmp_path / "eval.csv").unlink()
    paths = plot_run(tmp_path, tmp_path / "elsewhere")
    assert [p.name for p in paths] == ["loss.png", "lr.png", "throughput.png"]


def test_plot_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        plot_run(tmp_path)
    (tmp_path / "metrics.csv").write_text("step,loss\n")
    with pytest.raises(ValueError, match="no rows"):
        plot_run(tmp_path)


def test_cli_plot(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing_run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vatt plot: error:") and "metrics.csv" in err
    with Telemetry(tmp_path, enabled=True) as telemetry:
        telemetry.log(1, _metrics(1))
        telemetry.log(2, _metrics(2))
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "png")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "png" / n) for n in ("loss.png", "lr.png", "throughput.png")]


def test_cli_plot_missing_run_exit_code():
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "plot", "/nonexistent/run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "metrics.csv" in proc.stderr
