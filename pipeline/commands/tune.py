"""`vatt tune`: Ray Tune sweeps of full pretraining runs (search space, ASHA/PBT, resume, report)."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.commands.train import PRESET_DIR as TRAIN_PRESET_DIR
from pipeline.commands.train import check_inputs
from pipeline.configs import (
    add_job_arguments,
    bundled_names,
    deep_merge,
    from_dict,
    load_config,
    read_yaml,
    resolve_config,
    set_dotted,
)
from pipeline.errors import JobFailed, UsageError
from preprocessing import storage

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets" / "sweep"


def preset_names() -> list[str]:
    return bundled_names(PRESET_DIR)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="hyperparameter sweep of pretraining runs with Ray Tune (ASHA or PBT)",
        description=(
            "Sweep training-config keys (e.g. loss.lambda, loss.tau, model.droptoken_rate) with "
            "Ray Tune. Every trial is a full Ray Train + DeepSpeed pretraining run that reports "
            "held-out retrieval (or the training loss) at each evaluation; ASHA stops weak "
            "trials early (or PBT perturbs them). Outputs in STORAGE/NAME: results.csv, "
            "plots/*.png (objective vs each hyperparameter, learning curves) and best.yaml, "
            "which `vatt train --config` runs as is. Running the same command again resumes an "
            "interrupted sweep (finished trials are kept)."
        ),
        epilog=(
            "examples:\n"
            "  vatt tune --config debug                        # the bundled 3-trial demo sweep\n"
            "  vatt tune --config debug num_samples=6 scheduler.kind=fifo\n"
            "  vatt tune --config my_sweep.yaml name=s2 'space.loss.tau={choice: [0.05, 0.1]}'\n"
            "  vatt train --config sweeps/debug/best.yaml      # train the best configuration\n"
            f"bundled sweeps (--config NAME): {', '.join(preset_names())}\n"
            "Sweep keys: tuning/config.py and docs/tuning.md."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_arguments(
        p,
        config_help="sweep YAML file, or a bundled sweep name",
        overrides_example="num_samples=4 scheduler.kind=pbt",
        what="sweep",
    )
    p.set_defaults(func=run)


def build_sweep(config: str, overrides: list[str]):
    from tuning.config import SweepConfig

    data = load_config(config, PRESET_DIR, overrides, "sweep")
    return from_dict(SweepConfig, data)


def _expand(mapping: dict[str, Any]) -> dict[str, Any]:
    """`{"eval.every_steps": 20, "optim": {"lr": 1}}` -> nested sections, merged."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        value = _expand(value) if isinstance(value, dict) else value
        out = deep_merge(out, set_dotted({}, key, value))
    return out


def trial_config(base: dict[str, Any], values: dict[str, Any]):
    """The training config of one trial: `base` with `{dotted key: value}` set."""
    from training.config import TrainConfig

    data = copy.deepcopy(base)
    for key, value in values.items():
        set_dotted(data, key, value)
    return from_dict(TrainConfig, data)


def base_training_config(sweep) -> dict[str, Any]:
    """Validated training config every trial starts from, as a dict with absolute paths (the
    trials run in their own working directories)."""
    from training.config import TrainConfig

    data = deep_merge(
        read_yaml(resolve_config(sweep.train_config, TRAIN_PRESET_DIR)),
        _expand(sweep.train_overrides),
    )
    if "data" not in data:
        raise UsageError("train_config has no 'data' section (data.howto100m / data.audioset)")
    cfg = from_dict(TrainConfig, data)
    if sweep.objective.needs_eval:
        if not cfg.eval.enabled:
            raise UsageError(
                f"objective.metric={sweep.objective.metric} needs held-out evaluation: set "
                "eval.msrvtt_csv and eval.msrvtt_videos (or objective.metric=loss)"
            )
        if not cfg.eval.every_steps:
            raise UsageError(
                "eval.every_steps=0: trials would report the objective only at the end; set it "
                "(e.g. train_overrides: {eval.every_steps: 20})"
            )
    # Trials report to Tune at their checkpoints: checkpoint at every evaluation so each
    # report carries a fresh objective (and a restored trial loses at most one interval).
    every = cfg.eval.every_steps if cfg.eval.every_steps else cfg.checkpoint.every_steps
    return set_dotted(cfg.with_absolute_paths().to_dict(), "checkpoint.every_steps", every)


def check_space(sweep, base: dict[str, Any]) -> None:
    """Every searched key must exist and accept every value it can take (each listed value,
    or both ends of a range): one line naming the key otherwise, before Ray starts."""
    from tuning.space import ALIASES

    for p in sweep.params():
        for value in p.values:
            try:
                trial_config(base, {p.target: value})
            except UsageError as e:
                hint = ""
                if "unknown config key" in str(e):
                    hint = "; aliases: " + ", ".join(f"{a} = {t}" for a, t in ALIASES.items())
                raise UsageError(f"space.{p.key}={value!r}: {e}{hint}") from None


def _print_outcome(outcome, rows, best, best_yaml, plots, sweep, report_dir, file=None) -> None:
    from tuning.report import RESULTS_CSV, format_table

    file = file or sys.stdout
    finished = sum(r.status in ("done", "stopped early") for r in outcome.records)
    print(f"\nsweep {sweep.name}: {finished}/{len(outcome.records)} trials finished", file=file)
    print(format_table(rows, best.trial_id if best else None), file=file)
    print(f"  results   {report_dir / RESULTS_CSV}", file=file)
    for p in plots:
        print(f"  plot      {p}", file=file)
    if best_yaml:
        value = best.last[sweep.objective.key]
        print(f"  best      {best.trial_id}: {sweep.objective.key} = {value:.4g}", file=file)
        print(f"  best yaml {best_yaml}  (vatt train --config {best_yaml})", file=file)


def run(args: argparse.Namespace) -> int:
    sweep = build_sweep(args.config, args.overrides)
    base = base_training_config(sweep)
    check_space(sweep, base)
    check_inputs(trial_config(base, {}))  # shards, tokenizer, held-out files
    if args.print_config:
        out = {"sweep": dataclasses.asdict(sweep), "trials": sweep.num_trials(), "train": base}
        print(json.dumps(out, indent=2, default=str))
        return 0
    from pipeline.ray_runtime import init_ray
    from training.config import TrainConfig
    from tuning.report import (
        BEST_YAML,
        PLOTS_DIR,
        RESULTS_CSV,
        best_record,
        plot_learning_curves,
        plot_objective_vs_params,
        table_rows,
        write_best_config,
        write_table,
    )
    from tuning.sweep import run_sweep

    base_cfg = from_dict(TrainConfig, base)
    # The dashboard serves the State API that frees a stopped trial's worker placement group.
    where = init_ray(args.address, args.num_cpus, dashboard=True)
    print(
        f"vatt tune {sweep.name}: {sweep.num_trials()} trials of {base_cfg.max_steps} steps, "
        f"scheduler {sweep.scheduler.kind}, objective {sweep.objective.key} "
        f"({sweep.objective.direction}) on {where}",
        file=sys.stderr,
    )
    try:
        outcome = run_sweep(sweep, base_cfg, functools.partial(trial_config, base))
    except ValueError as e:  # resources that cannot fit a trial, PBT without a population
        raise UsageError(str(e)) from None
    if outcome.resumed:
        print(f"resumed the sweep in {outcome.sweep_dir}", file=sys.stderr)
    # The report is written to a folder (the sweep's own, or a local mirror of an s3:// sweep,
    # uploaded below): plots and a best.yaml that `vatt train --config` can read.
    sweep_dir = Path(storage.local_mirror(outcome.sweep_dir, "sweeps", sweep.name))
    params = sweep.params()
    key = sweep.objective.key
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
            best, best_yaml, name=f"{sweep.name}-best", storage=base_cfg.storage, note=note
        )
    if str(sweep_dir) != outcome.sweep_dir:
        storage.copy_tree(str(sweep_dir), outcome.sweep_dir)
        print(f"  report uploaded to {outcome.sweep_dir} (local copy {sweep_dir})", file=sys.stderr)
    _print_outcome(outcome, rows, best, best_yaml, plots, sweep, sweep_dir)
    if outcome.interrupted:
        sys.stderr.write(
            f"vatt tune: interrupted before every trial finished; run the same command to "
            f"resume ({outcome.sweep_dir})\n"
        )
        return 130
    if best is None:
        errors = sorted({r.error for r in outcome.records if r.error})
        raise JobFailed(f"no trial reported {key}" + (f": {errors[0]}" if errors else ""))
    return 0
