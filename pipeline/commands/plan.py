"""`vatt plan`: what a pretraining run costs in storage, CPU and GPU hours and money, from the
project's measured benchmark figures (training/plan.py does the arithmetic)."""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.errors import UsageError

EPILOG = """\
examples:
  vatt plan                                    # MBS on HowTo100M + AudioSet, spec schedule
  vatt plan --dataset howto100m --gpus 64 --mfu 0.35
  vatt plan --hours 20000 --steps 100000 --batch 512 --prices my_prices.yaml --json
  vatt plan --markdown --no-bench              # the README's sizing table

Figures come from bench_out/*.json when `make bench` wrote them (loader.json:
bytes_per_window, clips_per_s_per_core; preprocess.json; train.json; model_step.json's GPU
MFU), else from the documented defaults (README "Measured figures"). Every figure is tagged:
measured, paper, assumption (a flag or price you can change) or derived (its formula).
prices file (YAML or JSON, USD): gpu_hour, cpu_core_hour, storage_gb_month.
"""

# (section, result or input name, label) in the order they are printed.
LAYOUT = [
    ("data", "windows", "shard windows (4 s)"),
    ("data", "bytes_per_window", "bytes per window"),
    ("data", "shard_storage_tb", "shard storage"),
    ("preprocessing", "preprocess_clips_per_s_per_core", "throughput per core"),
    ("preprocessing", "cpus", "CPU cores"),
    ("preprocessing", "preprocess_core_hours", "core-hours"),
    ("preprocessing", "preprocess_wall_hours", "wall time"),
    ("training", "train_tflop_per_clip", "training FLOPs per clip"),
    ("training", "peak_tflops", "GPU peak"),
    ("training", "mfu", "MFU"),
    ("training", "gpu_clips_per_s", "clips/s per GPU"),
    ("training", "steps", "steps"),
    ("training", "batch", "global batch"),
    ("training", "training_clips", "clips seen"),
    ("training", "epochs", "passes over the shards"),
    ("training", "gpus", "GPUs"),
    ("training", "training_gpu_hours", "GPU-hours"),
    ("training", "training_wall_hours", "wall time"),
    ("input pipeline", "loader_clips_per_s_per_core", "loader clips/s per core"),
    ("input pipeline", "loader_cores_per_gpu", "loader cores per GPU"),
    ("input pipeline", "cpu_cores_per_gpu", "CPU cores per GPU on the node"),
    ("input pipeline", "loader_fits_on_gpu_node", "loader keeps up on the node"),
    ("input pipeline", "read_mb_per_s_per_gpu", "shard reads per GPU"),
    ("cost", "price_gpu_hour", "price per GPU-hour"),
    ("cost", "price_cpu_core_hour", "price per core-hour"),
    ("cost", "price_storage_gb_month", "price per GB-month"),
    ("cost", "cost_preprocess_usd", "preprocessing"),
    ("cost", "cost_training_usd", "training"),
    ("cost", "cost_storage_usd_per_month", "shard storage per month"),
    ("cost", "cost_total_usd", "total (with one month of storage)"),
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="size a pretraining run: storage, preprocessing and GPU hours, input pipeline, cost",
        description=(
            "Estimate what pretraining costs: shard storage, preprocessing core-hours and wall "
            "time on --cpus cores, loader cores and read bandwidth per GPU, training GPU-hours "
            "and wall time for --steps x --batch clips (the spec's 500k x 2048 by default), and "
            "a cost from --prices. Each figure says whether it is measured, a paper figure, an "
            "assumption or derived (with its formula)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default="MBS", help="model preset (default MBS)")
    data = p.add_mutually_exclusive_group()
    data.add_argument(
        "--dataset", default="howto100m,audioset", help="howto100m and/or audioset (both)"
    )
    data.add_argument("--hours", type=float, help="hours of video instead of a dataset")
    data.add_argument("--windows", type=int, help="shard windows instead of a dataset")
    p.add_argument("--gpus", type=int, help="GPUs for training (default 32, cluster.yaml)")
    p.add_argument("--cpus", type=int, help="CPU cores for preprocessing (default 1024)")
    p.add_argument("--mfu", type=float, help="model FLOP utilisation (default: measured, else 0.4)")
    p.add_argument("--peak-tflops", type=float, help="GPU dense bf16 peak (default 989, H100)")
    p.add_argument("--steps", type=int, help="training steps (default 500,000)")
    p.add_argument("--batch", type=int, help="global batch in clips (default 2048)")
    p.add_argument("--droptoken-rate", type=float, help="default: the preset's (0.5)")
    p.add_argument("--prices", help="YAML/JSON prices in USD: gpu_hour, cpu_core_hour, ...")
    p.add_argument("--bench-dir", default="bench_out", help="benchmark JSON (bench_out)")
    p.add_argument("--no-bench", action="store_true", help="ignore bench_out: defaults only")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON")
    out.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=run)


def build_request(args: argparse.Namespace):
    from training.model import resolve_preset
    from training.plan import PlanRequest

    try:
        preset = resolve_preset(args.preset)
        datasets = tuple(d.strip() for d in args.dataset.split(",") if d.strip())
        return PlanRequest(
            preset=preset, datasets=datasets, hours=args.hours, windows=args.windows,
            gpus=args.gpus, cpus=args.cpus, mfu=args.mfu, peak_tflops=args.peak_tflops,
            steps=args.steps, batch=args.batch, droptoken_rate=args.droptoken_rate,
        )  # fmt: skip
    except ValueError as e:
        raise UsageError(str(e)) from None


def markdown(figures: dict, file) -> None:
    print("| | figure | source |", file=file)
    print("|---|---:|---|", file=file)
    for section, name, label in LAYOUT:
        f = figures[name]
        print(f"| {section}: {label} | {_value(f)} | {f.source}: {f.note} |", file=file)


def _value(figure) -> str:
    from training.plan import format_value

    return format_value(figure)


def table(figures: dict, preset: str, file) -> None:
    print(f"vatt plan: {preset}", file=file)
    width = max(len(label) for _, _, label in LAYOUT)
    current = None
    for section, name, label in LAYOUT:
        if section != current:
            print(f"\n{section}", file=file)
            current = section
        f = figures[name]
        print(f"  {label:<{width}}  {_value(f):>22}  [{f.source}] {f.note}", file=file)


def run(args: argparse.Namespace) -> int:
    from training.plan import make_plan, plan_json, resolve_inputs

    req = build_request(args)
    if args.droptoken_rate is not None and not 0 <= args.droptoken_rate < 1:
        raise UsageError(f"--droptoken-rate {args.droptoken_rate} must be in [0, 1)")
    try:
        inputs = resolve_inputs(req, None if args.no_bench else args.bench_dir, args.prices)
    except ValueError as e:
        raise UsageError(str(e)) from None
    results = make_plan(inputs)
    if args.json:
        print(json.dumps(plan_json(inputs, results, req.preset), indent=2))
    elif args.markdown:
        markdown(inputs | results, sys.stdout)
    else:
        table(inputs | results, req.preset, sys.stdout)
    return 0
