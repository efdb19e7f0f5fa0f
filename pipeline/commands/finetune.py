"""`vatt finetune`: a pretrained VATT tower + a new classification head, trained with Ray Train
on UCF101/HMDB51-format video splits, Kinetics CSVs or ESC-50 audio folds."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.configs import add_job_parser, build
from pipeline.errors import JobFailed, UsageError

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets" / "finetune"


def register(sub: argparse._SubParsersAction) -> None:
    p = add_job_parser(
        sub,
        "finetune",
        summary="fine-tune a pretrained tower for video (UCF101/HMDB51/Kinetics) or audio (ESC-50) "
        "classes",
        description=(
            "Put a new linear head on the aggregation token of a pretrained VATT tower and train "
            "both under Ray Train (DDP; gloo on CPU): SGD with momentum, linear warm-up + cosine, "
            "label smoothing; video gets random crop + flip, audio gets mixup with "
            "lambda ~ Beta(5, 5). Video can be fine-tuned at another clip size than pretraining "
            "(data.frames/height/width; position tables interpolated once). The test split is "
            "scored over clips x crops views per item "
            "(logits averaged; top-1 / top-5). Files that cannot be read or decoded are listed "
            "in the report and skipped. Outputs in STORAGE/NAME: report.json, metrics.csv, "
            "eval.csv, plots/*.png, checkpoints; the same command again resumes."
        ),
        examples=(
            "  vatt finetune --config debug-video init=demo_out/runs/debug\n"
            "  vatt finetune --config debug-audio init=export/ data.fold=2\n"
            "  vatt finetune --config debug-video init=preset:debug name=scratch   # baseline\n"
            "  vatt finetune --config my.yaml task=video data.ucf101_splits=ucfTrainTestlist "
            "data.ucf101_videos=UCF-101 data.split=2\n"
            "  vatt finetune --config debug-video init=runs/debug data.dataset=kinetics "
            "data.kinetics_train_csv=k400/train.csv data.kinetics_test_csv=k400/validate.csv "
            "data.kinetics_videos=k400/videos data.height=320 data.width=320\n"
        ),
        keys=(
            "init: an export folder (vatt export), a checkpoint folder, a run folder (newest "
            "valid checkpoint) or preset:<name> (random init). Keys: training/finetune/config.py "
            "and docs/finetune.md."
        ),
        preset_dir=PRESET_DIR,
        overrides_example="init=runs/debug max_steps=100",
    )
    p.set_defaults(func=run)


def build_config(config: str, overrides: list[str]):
    from training.finetune.config import FinetuneConfig

    return build(FinetuneConfig, config, PRESET_DIR, overrides, sections=("data",))


def print_summary(r: dict, file=None) -> None:
    file = file or sys.stdout
    final, ev = r.get("final") or {}, r.get("eval") or {}
    ds = r["dataset"]
    part = next(f"{k} {ds[k]}" for k in ("split", "fold", "csv") if k in ds)
    source = r["source"]
    rows = [
        ("run", r["run_dir"]),
        ("init", f"{r['init']} ({source['kind']}, step {source.get('step')})"),
        ("task", f"{r['task']}, {len(ds['classes'])} classes, {part}"),
        ("items used", f"{ds['train_items']} train, {ds['test_items']} test"),
        ("clip", _clip(r.get("clip"))),
        ("errors (skipped)", r["num_errors"]),
        ("steps", f"{r['steps']} ({r['batch']})"),
        ("loss first -> last", f"{r['first_loss']:.4f} -> {final.get('loss', float('nan')):.4f}"),
        ("train accuracy (last log)", f"{final.get('train_acc', float('nan')):.3f}"),
    ]
    if ev:
        views = r["eval_views"]
        rows += [
            (
                "test top-1 / top-5",
                f"{ev['top1']:.3f} / {ev['top5']:.3f} on {ev['num_scored']} items "
                f"({views['clips']} clips x {views['crops']} crops)",
            ),
            ("chance top-1", f"{ev['chance_top1']:.3f}"),
        ]
    rows.append(("checkpoint", r.get("checkpoint")))
    width = max(len(k) for k, _ in rows)
    print("\nfinetune summary", file=file)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=file)
    for e in r["errors"][:10]:
        print(f"  {'error':<{width}}  {e}", file=file)
    if len(r["errors"]) > 10:
        print(f"  {'':<{width}}  ... {len(r['errors']) - 10} more in report.json", file=file)
    for p in r.get("plots", []):
        print(f"  {'plot':<{width}}  {p}", file=file)
    print(f"  {'report':<{width}}  {Path(r['run_dir']) / 'report.json'}", file=file)


def _clip(clip: dict | None) -> str:
    if not clip:
        return "-"
    size = f"{clip['frames']}x{clip['height']}x{clip['width']}"
    return size + (f" (pretrained at {clip['pretrained']})" if clip.get("pretrained") else "")


def run(args: argparse.Namespace) -> int:
    cfg = build_config(args.config, args.overrides)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    from training.finetune.loop import check_run

    cfg = cfg.with_absolute_paths()
    try:
        dataset = check_run(cfg)  # list files, model, shapes: before Ray starts
    except ValueError as e:  # CheckpointError is one too
        raise UsageError(str(e).splitlines()[0]) from None
    from pipeline.ray_runtime import init_ray
    from training.finetune.loop import run_finetune

    # The dashboard serves the State API that Ray Train's placement-group cleaner needs.
    where = init_ray(args.address, args.num_cpus, dashboard=True)
    print(
        f"vatt finetune {cfg.name}: {cfg.task}, {len(dataset.classes)} classes, "
        f"{len(dataset.train)} train / {len(dataset.test)} test items "
        f"({len(dataset.errors)} list errors), init {cfg.init}, "
        f"{cfg.scaling.num_workers} workers, {cfg.max_steps} steps on {where}",
        file=sys.stderr,
    )
    try:
        report = run_finetune(cfg, dataset)
    except Exception as e:  # Ray wraps worker errors; one line for the user, details in logs
        raise JobFailed(f"fine-tuning failed: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    print_summary(report)
    return 0
