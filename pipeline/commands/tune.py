"""`vatt tune`: Ray Tune sweeps of full pretraining runs (search space, ASHA/PBT, resume, report).

The command parses, prints and calls: the sweep's policy (each trial's config, its
checkpoint cadence, the report files) lives in `tuning/`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from pipeline.commands.train import PRESET_DIR as TRAIN_PRESET_DIR
from pipeline.configs import add_job_parser, build, read_yaml, resolve_config
from pipeline.errors import JobFailed, UsageError

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets" / "sweep"


def register(sub: argparse._SubParsersAction) -> None:
    p = add_job_parser(
        sub,
        "tune",
        summary="hyperparameter sweep of pretraining runs with Ray Tune (ASHA or PBT)",
        description=(
            "Sweep training-config keys (e.g. loss.lambda, loss.tau, model.droptoken_rate) with "
            "Ray Tune. Every trial is a full Ray Train + DeepSpeed pretraining run that reports "
            "held-out retrieval (or the training loss) at each evaluation; ASHA stops weak "
            "trials early (or PBT perturbs them). Outputs in STORAGE/NAME: results.csv, "
            "plots/*.png (objective vs each hyperparameter, learning curves) and best.yaml, "
            "which `vatt train --config` runs as is. Running the same command again resumes an "
            "interrupted sweep (finished trials are kept)."
        ),
        examples=(
            "  vatt tune --config debug                        # the bundled 3-trial demo sweep\n"
            "  vatt tune --config debug num_samples=6 scheduler.kind=fifo\n"
            "  vatt tune --config my_sweep.yaml name=s2 'space.loss.tau={choice: [0.05, 0.1]}'\n"
            "  vatt train --config sweeps/debug/best.yaml      # train the best configuration\n"
        ),
        keys="Sweep keys: tuning/config.py and docs/tuning.md.",
        preset_dir=PRESET_DIR,
        overrides_example="num_samples=4 scheduler.kind=pbt",
        what="sweep",
        config_help="sweep YAML file, or a bundled sweep name",
    )
    p.set_defaults(func=run)


def build_sweep(config: str, overrides: list[str]):
    from tuning.config import SweepConfig

    return build(SweepConfig, config, PRESET_DIR, overrides, what="sweep")


def base_config(sweep):
    """The validated training config every trial starts from (`tuning.trials.base_config`
    on the sweep's train_config, a YAML path or a bundled `vatt train` config)."""
    from tuning.trials import base_config as tuning_base

    return tuning_base(sweep, read_yaml(resolve_config(sweep.train_config, TRAIN_PRESET_DIR)))


def _print_outcome(outcome, report, sweep, file=None) -> None:
    from tuning.report import RESULTS_CSV, format_table

    file = file or sys.stdout
    finished = sum(r.status in ("done", "stopped early") for r in outcome.records)
    print(f"\nsweep {sweep.name}: {finished}/{len(outcome.records)} trials finished", file=file)
    print(format_table(report.rows, report.best.trial_id if report.best else None), file=file)
    print(f"  results   {report.report_dir / RESULTS_CSV}", file=file)
    for p in report.plots:
        print(f"  plot      {p}", file=file)
    if report.best_yaml:
        value = report.best.last[sweep.objective.key]
        print(f"  best      {report.best.trial_id}: {sweep.objective.key} = {value:.4g}", file=file)
        print(
            f"  best yaml {report.best_yaml}  (vatt train --config {report.best_yaml})", file=file
        )


def run(args: argparse.Namespace) -> int:
    from tuning.trials import check_space

    sweep = build_sweep(args.config, args.overrides)
    base = base_config(sweep)
    check_space(sweep, base)
    base.check_inputs()  # shards, tokenizer, held-out files
    if args.print_config:
        out = {
            "sweep": dataclasses.asdict(sweep),
            "trials": sweep.num_trials(),
            "train": base.to_dict(),
        }
        print(json.dumps(out, indent=2, default=str))
        return 0
    from pipeline.ray_runtime import init_ray
    from tuning.report import write_sweep_report
    from tuning.sweep import run_sweep

    # The dashboard serves the State API that frees a stopped trial's worker placement group.
    where = init_ray(args.address, args.num_cpus, dashboard=True)
    print(
        f"vatt tune {sweep.name}: {sweep.num_trials()} trials of {base.max_steps} steps, "
        f"scheduler {sweep.scheduler.kind}, objective {sweep.objective.key} "
        f"({sweep.objective.direction}) on {where}",
        file=sys.stderr,
    )
    try:
        outcome = run_sweep(sweep, base)
    except ValueError as e:  # resources that cannot fit a trial, PBT without a population
        raise UsageError(str(e)) from None
    if outcome.resumed:
        print(f"resumed the sweep in {outcome.sweep_dir}", file=sys.stderr)
    report = write_sweep_report(outcome, sweep, base.storage)
    if str(report.report_dir) != outcome.sweep_dir:
        print(f"  report uploaded to {outcome.sweep_dir} (local copy {report.report_dir})",
              file=sys.stderr)  # fmt: skip
    _print_outcome(outcome, report, sweep)
    if outcome.interrupted:
        sys.stderr.write(
            f"vatt tune: interrupted before every trial finished; run the same command to "
            f"resume ({outcome.sweep_dir})\n"
        )
        return 130
    if report.best is None:
        errors = sorted({r.error for r in outcome.records if r.error})
        key = sweep.objective.key
        raise JobFailed(f"no trial reported {key}" + (f": {errors[0]}" if errors else ""))
    return 0
