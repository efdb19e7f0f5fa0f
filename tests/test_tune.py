"""Ray Tune sweeps: the search space and its checks (no Ray), the results report, and one real
2-trial ASHA sweep of the debug model on the sample shards, interrupted with Ctrl-C after its first
trial and resumed by the same `vatt tune` command; its best config trains."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, VATT

from pipeline.commands.train import build_config
from pipeline.commands.tune import build_sweep
from pipeline.configs import from_dict
from pipeline.errors import UsageError
from tuning.config import SweepConfig
from tuning.report import best_record, format_table, table_rows
from tuning.space import grid_size, parse_space
from tuning.sweep import TrialRecord, max_concurrent, trial_resources

ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def vatt(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*VATT, *args], env=ENV, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- search space, no Ray


def test_space_parses_every_distribution_and_the_lambda_alias():
    params = parse_space(
        {
            "loss.lambda": {"loguniform": [0.3, 3]},
            "loss": {"tau": {"choice": [0.05, 0.1]}},  # nested spelling of loss.tau
            "model.droptoken_rate": {"uniform": [0, 0.5]},
            "optim.lr": {"grid": [1e-3, 3e-4, 1e-4]},
        }
    )
    by_key = {p.key: p for p in params}
    assert set(by_key) == {"loss.lambda", "loss.tau", "model.droptoken_rate", "optim.lr"}
    assert by_key["loss.lambda"].target == "loss.lambda_vt"
    assert by_key["loss.lambda"].values == (0.3, 3.0) and by_key["loss.lambda"].continuous
    assert by_key["loss.tau"].kind == "choice" and by_key["loss.tau"].target == "loss.tau"
    assert grid_size(params) == 3


@pytest.mark.parametrize(
    "space, message",
    [
        ({"loss.tau": 0.07}, "exactly one distribution"),
        ({"loss.tau": {"normal": [0, 1]}}, "unknown distribution 'normal'"),
        ({"loss.tau": {"uniform": [0.1, 0.05]}}, "need low < high"),
        ({"loss.tau": {"uniform": [0.1]}}, "expected [low, high]"),
        ({"optim.lr": {"loguniform": [0, 1e-3]}}, "need low > 0"),
        ({"loss.tau": {"choice": []}}, "non-empty list"),
        ({"loss.tau": {"grid": [0.1, 0.1]}}, "repeated values"),
        ({"loss.lambda": {"choice": [1]}, "loss.lambda_vt": {"choice": [2]}}, "searched twice"),
        ({"name": {"choice": ["a", "b"]}}, "sets each trial's name"),
        ({}, "at least one key"),
    ],
)
def test_bad_space_entries_name_the_key(space, message):
    with pytest.raises(ValueError, match=None) as err:
        parse_space(space)
    assert message in str(err.value)


def test_sweep_config_errors_are_usage_errors():
    base = {"train_config": "debug", "space": {"loss.tau": {"choice": [0.05]}}}
    sweep = from_dict(SweepConfig, base)
    assert sweep.objective.key == "eval_t2v_r10" and sweep.objective.direction == "max"
    assert sweep.num_trials() == 1
    for extra, needle in [
        ({"objective": {"metric": "r10"}}, "objective.metric='r10'"),
        ({"scheduler": {"kind": "hyperband"}}, "scheduler.kind='hyperband'"),
        ({"num_samples": 0}, "num_samples=0"),
        ({"colour": "red"}, "unknown config key colour"),
    ]:
        with pytest.raises(UsageError, match=None) as err:
            from_dict(SweepConfig, {**base, **extra})
        assert needle in str(err.value)


def test_concurrency_follows_the_cluster():
    cfg = build_config("debug", ["scaling.cpus_per_worker=0.5"])
    need = trial_resources(cfg, trial_cpus=1.0)
    assert need == {"CPU": 2.0}
    assert max_concurrent({"CPU": 2.0}, need) == 1  # the 2-CPU box: one trial at a time
    assert max_concurrent({"CPU": 16.0}, need) == 8
    assert max_concurrent({"CPU": 1.0}, need) == 0  # the sweep refuses to start
    gpu = build_config("mbs", [])
    need = trial_resources(gpu, trial_cpus=1.0)
    assert need["GPU"] == gpu.scaling.num_workers
    assert need["CPU"] == 1 + gpu.scaling.num_workers * gpu.scaling.cpus_per_worker
    assert max_concurrent({"CPU": 4 * need["CPU"], "GPU": 2 * need["GPU"]}, need) == 2


@pytest.mark.parametrize(
    "override, needle",
    [
        ("space.loss.lambdaa={uniform: [0.1, 1]}", "space.loss.lambdaa=0.1: unknown config key"),
        (
            "space.loss.tau={uniform: [0, 0.1]}",
            "space.loss.tau=0.0: loss: loss.tau=0.0 must be > 0",
        ),
        (
            "space.model.droptoken_rate={uniform: [0.1, 1.5]}",
            "model.droptoken_rate=1.5 must be in [0, 1)",
        ),
        ("space.loss.tau={normal: [0, 1]}", "unknown distribution 'normal'"),
        ("objective.metric=recall", "objective.metric='recall'"),
        ("train_config=nope.yaml", "config nope.yaml: no such file"),
    ],
)
def test_cli_rejects_bad_sweeps_before_ray_starts(override, needle, vatt_in_process):
    import ray

    ray_was_up = ray.is_initialized()
    code, err = vatt_in_process("tune", "--config", "debug", override)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err and "ray" not in err.lower()
    assert ray.is_initialized() == ray_was_up  # rejected before any Ray was started


def test_help_lists_the_bundled_sweep():
    r = vatt("tune", "--help")
    assert r.returncode == 0 and "bundled sweeps (--config NAME): debug" in r.stdout
    sweep = build_sweep("debug", [])
    assert {p.key for p in sweep.params()} == {"loss.lambda", "loss.tau", "model.droptoken_rate"}
    assert sweep.num_trials() == 3 and sweep.scheduler.kind == "asha"


# ---------------------------------------------------------------- report, no Ray


def record(trial_id: str, r1: float | None, step: int, loss: float, status: str = "done"):
    last = {"step": step, "loss": loss}
    if r1 is not None:
        last["eval_t2v_r1"] = r1
    return TrialRecord(trial_id, {"loss.tau": 0.07}, status, last, [], run_dir="")


def test_best_trial_breaks_ties_by_steps_then_loss():
    records = [
        record("a", 0.5, 20, 3.0, status="stopped early"),
        record("b", 0.5, 40, 4.0),
        record("c", 0.5, 40, 3.5),
        record("d", 0.25, 40, 1.0),
        record("e", None, 40, 0.5),
        record("f", 0.9, 40, 0.5, status="error"),
    ]
    assert best_record(records, "eval_t2v_r1", "max").trial_id == "c"
    assert best_record(records, "eval_t2v_r1", "min").trial_id == "d"
    assert best_record([record("z", 0.0, 4, 1.0)], "eval_t2v_r1", "max").trial_id == "z"
    assert best_record([record("e", None, 4, 1.0)], "eval_t2v_r1", "max") is None
    params = parse_space({"loss.tau": {"choice": [0.07]}})
    text = format_table(table_rows(records, params, "eval_t2v_r1"), best_id="c")
    assert text.splitlines()[3].startswith("*c ") and "stopped early" in text


# ---------------------------------------------------------------- a real sweep


@pytest.fixture(scope="module")
def sweep_files(sample_shards, tmp_path_factory) -> dict:
    """A training YAML (debug model on the sample shards, 8 steps, eval every 4) and a 2-trial
    ASHA sweep over lambda / tau / DropToken. R@1 as objective: with 8 held-out videos R@10 is
    always 1."""
    root = tmp_path_factory.mktemp("sweep")
    train = {
        "name": "unused",
        "storage": str(root / "runs"),
        "preset": "debug",
        "data": {
            "howto100m": str(sample_shards["howto100m"]),
            "audioset": str(sample_shards["audioset"]),
            "shuffle_buffer": 16,
            "loader_workers": 1,
        },
        "optim": {"lr": 1e-3, "warmup_steps": 2, "decay_steps": 20},
        "deepspeed": {"zero_stage": 2, "micro_batch": 4},
        "scaling": {"num_workers": 2, "cpus_per_worker": 0.5},
        "checkpoint": {"keep": 1},
        "eval": {
            "msrvtt_csv": str(sample_shards["msrvtt_csv"]),
            "msrvtt_videos": str(sample_shards["msrvtt_videos"]),
            "every_steps": 4,
            "num_windows": 1,
        },
        "max_steps": 8,
        "log_every": 4,
    }
    (root / "train.yaml").write_text(yaml.safe_dump(train))
    sweep = {
        "name": "s3",
        "storage": str(root / "sweeps"),
        "train_config": str(root / "train.yaml"),
        "num_samples": 2,
        "space": {
            "loss.lambda": {"loguniform": [0.3, 3.0]},
            "loss.tau": {"choice": [0.05, 0.1]},
            "model.droptoken_rate": {"uniform": [0.0, 0.5]},
        },
        "objective": {"metric": "t2v_r1"},
        "scheduler": {"kind": "asha", "grace_period": 4, "reduction_factor": 2},
    }
    (root / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    return {"root": root, "sweep": root / "sweep.yaml", "dir": root / "sweeps" / "s3"}


def ctrl_c_after_first_trial(marker: Path):
    """A Tune callback that presses Ctrl-C (SIGINT to this process) once the first trial has
    finished: Tune saves its state and returns with the other trials unfinished. Once only
    (`marker`): the restored sweep unpickles the same callback."""
    from ray import tune

    class CtrlC(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            if not marker.exists():
                marker.write_text(trial.trial_id)
                os.kill(os.getpid(), signal.SIGINT)

    return CtrlC()


@pytest.fixture(scope="module")
def interrupted_then_resumed(sweep_files, ray_local) -> dict:
    """The sweep on the session's 2-CPU Ray, interrupted after its first trial, then resumed
    by the same `vatt tune` command (in-process: one Ray instance per host, see docs)."""
    from pipeline.cli import main
    from pipeline.commands.tune import base_config
    from tuning.sweep import run_sweep

    sweep = build_sweep(str(sweep_files["sweep"]), [])
    marker = sweep_files["root"] / "ctrl_c_sent"
    first = run_sweep(sweep, base_config(sweep), callbacks=[ctrl_c_after_first_trial(marker)])
    first_dir = sweep_files["dir"] / "trials" / marker.read_text()
    snapshot = {p.name: p.stat().st_mtime_ns for p in first_dir.iterdir()}
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["tune", "--config", str(sweep_files["sweep"])])
    return {
        "first": first,
        "first_dir": first_dir,
        "snapshot": snapshot,
        "second": (rc, out.getvalue(), err.getvalue()),
    }


def test_interrupted_sweep_resumes_with_the_same_command(interrupted_then_resumed, sweep_files):
    first = interrupted_then_resumed["first"]
    assert first.interrupted and not first.resumed
    # Stopped right after the first trial: the others unfinished or not even created.
    assert [r.status in ("done", "stopped early") for r in first.records].count(True) == 1
    rc, out, err = interrupted_then_resumed["second"]
    assert rc == 0, err[-3000:]
    assert "resumed the sweep" in err
    # The trial that had finished was not run again: its run folder is untouched.
    first_dir = interrupted_then_resumed["first_dir"]
    now = {p.name: p.stat().st_mtime_ns for p in first_dir.iterdir()}
    assert now == interrupted_then_resumed["snapshot"]
    assert not (first_dir / "resumes.jsonl").exists()
    with open(sweep_files["dir"] / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["status"] for r in rows} <= {"done", "stopped early"}
    assert first_dir.name in {r["trial_id"] for r in rows}
    for r in rows:
        # ASHA's rungs are at steps 4 and 8: a trial either ran to the end or stopped at 4.
        assert int(float(r["step"])) == (8 if r["status"] == "done" else 4)
        assert 0.0 <= float(r["eval_t2v_r1"]) <= 1.0
        assert 0.3 <= float(r["loss.lambda"]) <= 3.0 and float(r["loss.tau"]) in (0.05, 0.1)
        # The sampled values reached the trial's training config (lambda under its real name).
        cfg = json.loads(Path(r["train_run"], "train_config.json").read_text())
        assert cfg["loss"]["lambda_vt"] == pytest.approx(float(r["loss.lambda"]))
        assert cfg["model"]["droptoken_rate"] == pytest.approx(float(r["model.droptoken_rate"]))
        assert cfg["checkpoint"]["every_steps"] == 4  # reports at every evaluation
    assert "*" in out and "best yaml" in out


def test_sweep_writes_plots_and_a_best_config_that_trains(
    interrupted_then_resumed, sweep_files, ray_local, tmp_path
):
    from training.pretrain.loop import run_training

    plots = sweep_files["dir"] / "plots"
    names = {p.name for p in plots.glob("*.png")}
    assert names == {
        "objective_vs_loss_lambda.png",
        "objective_vs_loss_tau.png",
        "objective_vs_model_droptoken_rate.png",
        "learning_curves.png",
    }
    assert all((plots / n).stat().st_size > 10_000 for n in names)
    best_yaml = sweep_files["dir"] / "best.yaml"
    header = best_yaml.read_text().splitlines()[0]
    with open(sweep_files["dir"] / "results.csv") as f:
        rows = list(csv.DictReader(f))
    # The report's ranking: objective, then steps trained, then the lower training loss (trials
    # often tie on recall over the few debug eval clips).
    best = max(
        rows,
        key=lambda r: (float(r["eval_t2v_r1"]), int(float(r["step"])), -float(r["loss"])),
    )
    assert f"eval_t2v_r1 = {float(best['eval_t2v_r1']):.4g}" in header
    # Exactly what `vatt train --config best.yaml` builds, shortened to 2 steps.
    # (No held-out evaluation: the sweep's trials scored it already.)
    cfg = build_config(
        str(best_yaml),
        [f"storage={tmp_path}", "max_steps=2", "eval.msrvtt_csv=", "eval.msrvtt_videos="],
    )
    assert cfg.name == "s3-best"
    assert cfg.loss.lambda_vt == pytest.approx(float(best["loss.lambda"]))
    assert cfg.loss.tau == pytest.approx(float(best["loss.tau"]))
    summary = run_training(cfg)
    assert summary["steps"] == 2 and summary["first_loss"] > 0
