"""`vatt export`: turn a training checkpoint into a `from_pretrained` folder: model.safetensors,
config.json, tokenizer.json and a README.md model card."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from pipeline.errors import UsageError

EPILOG = """\
examples:
  vatt export runs/vatt exported/vatt-debug          # newest valid checkpoint of the run
  vatt export runs/vatt/checkpoint_000000500 exported/step500  # one checkpoint
  vatt export runs/vatt exported/vatt --eval eval/msrvtt/report.json eval/zs-ucf/report.json

load the export (needs only torch, safetensors and this package; no Ray, no DeepSpeed):
  from training.export import from_pretrained
  model = from_pretrained("exported/vatt-debug")   # VATT in eval mode (= load_exported)
  video_vt = model.encode_video(video)["video_vt"]  # video (B, T, H, W, 3) in [-1, 1]
  text_vt = model.encode_text(text_ids)["text_vt"]  # ids from the exported tokenizer.json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint's weights to safetensors (+ config, tokenizer)",
        description=textwrap.fill(
            "Consolidate the full fp32 weights of a training checkpoint (any ZeRO stage, any "
            "number of ranks) into OUT/model.safetensors, with OUT/config.json (preset, model "
            "config, trained steps, source checkpoint, training config), a copy of the run's "
            "tokenizer.json and OUT/README.md, a model card with the training config and the "
            "measured evaluations (the run's held-out retrieval and any --eval reports). "
            "CHECKPOINT is a checkpoint folder or a run folder; for a run folder the newest "
            "checkpoint that passes validation is used and broken newer ones are named on "
            "stderr. An incomplete checkpoint is refused.",
            width=88,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint folder or run folder")
    p.add_argument("out", metavar="OUT", help="output folder (created; export files replaced)")
    p.add_argument(
        "--eval",
        nargs="+",
        default=[],
        metavar="REPORT",
        help="vatt eval report.json files whose figures go into the model card",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.checkpoint import (
        CheckpointError,
        find_latest_checkpoint,
        looks_like_checkpoint,
        read_trainer_state,
        validate_checkpoint,
    )
    from training.export import export_weights

    source = Path(args.checkpoint)
    if not source.is_dir():
        raise UsageError(f"{source}: no such folder (give a checkpoint or run folder)")
    if looks_like_checkpoint(source):
        ok, reason = validate_checkpoint(source)
        if not ok:
            raise UsageError(f"{source}: not a valid checkpoint: {reason}")
        checkpoint = source
    else:
        checkpoint, skipped = find_latest_checkpoint(source)
        for path, reason in skipped:
            sys.stderr.write(f"vatt export: skipped {path}: {reason}\n")
        if checkpoint is None:
            found = f"{len(skipped)} found, none valid" if skipped else "none found"
            raise UsageError(f"{source}: no valid checkpoint ({found})")
    for report in args.eval:
        if not Path(report).is_file():
            raise UsageError(f"--eval {report}: not found")
    try:
        out = export_weights(checkpoint, args.out, args.eval)
        step = read_trainer_state(checkpoint)["step"]
    except (CheckpointError, ValueError) as e:
        raise UsageError(str(e)) from None
    print(f"exported {checkpoint} (step {step})")
    for name in ("model.safetensors", "config.json", "tokenizer.json", "README.md"):
        path = out / name
        if path.is_file():
            print(f"  {path}  ({path.stat().st_size:,} bytes)")
    if not (out / "tokenizer.json").is_file():
        print("  (no tokenizer.json: the run's tokenizer file was not found)")
    return 0
