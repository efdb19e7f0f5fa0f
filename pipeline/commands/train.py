"""`vatt train`: VATT pretraining with Ray Train + DeepSpeed ZeRO from WebDataset shards."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.configs import add_job_parser, build, bundled_names
from pipeline.errors import JobFailed
from preprocessing.storage import redact

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets" / "train"


def preset_names() -> list[str]:
    return bundled_names(PRESET_DIR)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_job_parser(
        sub,
        "train",
        summary="pretrain VATT on shards with Ray Train + DeepSpeed ZeRO",
        description=(
            "Pretrain a VATT model on WebDataset shards from `vatt preprocess`. Each Ray Train "
            "worker runs a DeepSpeed engine (ZeRO stage, precision, accumulation and offload "
            "from the config); checkpoints go to STORAGE/NAME through ray.train.report, and "
            "running the same command again resumes from the newest valid checkpoint. Metrics: "
            "STORAGE/NAME/metrics.csv, TensorBoard events in STORAGE/NAME/tensorboard, loss-curve "
            "PNGs in STORAGE/NAME/plots, and summary.json with held-out retrieval before/after."
        ),
        examples=(
            "  vatt train --config debug                       # the demo preset (2 CPU workers)\n"
            "  vatt train --config debug max_steps=50 deepspeed.zero_stage=3\n"
            "  vatt train --config mbs.yaml data.howto100m=s3://bucket/shards/howto100m\n"
            "  vatt train --config debug name=run2 model.droptoken_rate=0.25 loss.tau=0.05\n"
            "  vatt train --config alpro-prompter-debug       # ALPRO stage 1 (docs/alpro.md)\n"
            "  vatt train --config alpro-debug alpro.prompter=demo_out/alpro/runs/alpro-prompter-debug\n"
        ),
        keys="Config sections and keys: training/pretrain/config.py and docs/training.md.",
        preset_dir=PRESET_DIR,
        overrides_example="max_steps=100 optim.lr=3e-4",
    )
    p.set_defaults(func=run)


def build_config(config: str, overrides: list[str]):
    from training.pretrain.config import TrainConfig

    require = ("data", "data.howto100m / data.audioset / data.webvid")
    return build(TrainConfig, config, PRESET_DIR, overrides, require=require)


def _fmt_eval(m: dict | None) -> str:
    if not m:
        return "-"
    return (
        f"R@1 {m['t2v_r1']:.3f}  R@5 {m['t2v_r5']:.3f}  R@10 {m['t2v_r10']:.3f}  "
        f"MedR {m['t2v_medr']:.1f}"
    )


def print_summary(s: dict, plots: list[str], file=None) -> None:
    file = file or sys.stdout
    final = s.get("final") or {}
    rows = [
        ("run", s["run_dir"]),
        ("steps", s["steps"]),
        ("batch", s["batch"]),
        ("loss first -> last", f"{s['first_loss']:.4f} -> {final.get('loss', float('nan')):.4f}"),
        ("clips/s (last log)", f"{final.get('clips_per_s', 0):.1f}"),
        ("data-wait fraction", f"{final.get('data_wait_frac', 0):.1%}"),
        ("corrupt samples skipped", s["skipped_samples"]),
        ("checkpoint", s.get("checkpoint")),
    ]
    if s.get("eval_after"):
        chance = s["eval_after"]["chance_r1"]
        rows += [
            ("held-out t2v, untrained", _fmt_eval(s.get("eval_before"))),
            ("held-out t2v, trained", _fmt_eval(s["eval_after"])),
            ("chance R@1", f"{chance:.3f} (R@1 = {s['eval_after']['t2v_r1'] / chance:.1f}x)"),
        ]
    width = max(len(k) for k, _ in rows)
    print("\ntrain summary", file=file)
    for k, v in rows:
        print(f"  {k:<{width}}  {redact(str(v))}", file=file)  # URIs may carry credentials
    for p in plots:
        print(f"  {'plot':<{width}}  {p}", file=file)
    local = redact(s.get("local_dir") or s["run_dir"])
    print(f"  {'tensorboard':<{width}}  tensorboard --logdir {local}/tensorboard", file=file)


def run(args: argparse.Namespace) -> int:
    cfg = build_config(args.config, args.overrides)
    if args.print_config:
        print(redact(json.dumps(cfg.to_dict(), indent=2)))
        # On stderr: stdout stays a config file. The arithmetic at scaling.num_workers.
        from training.pretrain.ds_config import batch_arithmetic, batch_warning

        world = cfg.scaling.num_workers
        for line in (batch_arithmetic(cfg, world), batch_warning(cfg, world)):
            if line:
                print(line, file=sys.stderr)
        return 0
    cfg = cfg.prepared()  # ALPRO: its WordPiece tokenizer and entity list (VATT: as is)
    cfg.check_inputs()
    from pipeline.ray_runtime import init_ray
    from training.pretrain.loop import run_training
    from training.pretrain.run_folder import push_telemetry
    from training.telemetry import plot_run

    # The dashboard serves the State API that Ray Train's placement-group cleaner needs.
    where = init_ray(args.address, args.num_cpus, dashboard=True)
    print(
        f"vatt train {cfg.name}: preset {cfg.preset}, {cfg.scaling.num_workers} workers, "
        f"ZeRO-{cfg.deepspeed.zero_stage}, {cfg.max_steps} steps on {where}",
        file=sys.stderr,
    )
    try:
        summary = run_training(cfg)
    except Exception as e:  # Ray wraps worker errors; one line for the user, details in logs
        raise JobFailed(f"training failed: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    # An object-store run keeps a local mirror of its telemetry (local_dir): plot there, then
    # upload the plots beside the run's metrics.
    local = summary.get("local_dir") or summary["run_dir"]
    plots = [str(p) for p in plot_run(local)]
    push_telemetry(local, summary["run_dir"])
    print_summary(summary, plots)
    return 0
