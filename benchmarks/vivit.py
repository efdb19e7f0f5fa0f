"""Benchmark: forward+backward time per clip of the four ViViT video backbones, ratios to Model 1.

Usage:
    .venv/bin/python benchmarks/vivit.py            # 32x160x160, 2x16x16 tubelets: 1600 tokens
    .venv/bin/python benchmarks/vivit.py --quick    # 16x112x112: 392 tokens, seconds
    .venv/bin/python benchmarks/vivit.py --frames 32 --size 224 --layers 12 --width 768

Every variant has the same width, heads, MLP width and depth (Model 2: that many spatial
layers + --temporal-layers temporal ones, as in ViViT) and sees the same clips. The step is
the video tower only (tokenizer, positions, backbone, video head) forward + backward, at
DropToken 0 by default. Steps run round-robin across the variants after one warm-up round,
so load from other processes hits every variant alike; the JSON reports the median seconds
per clip, its ratio to Model 1 measured in the same run, and the analytic FLOP ratio beside it
(training/model/flops.py). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.model import TokenizerConfig, TransformerConfig, build_model  # noqa: E402
from training.model.config import VIDEO_BACKBONES  # noqa: E402
from training.model.flops import forward_flops  # noqa: E402


def video_step(model, video: torch.Tensor, autocast_dtype: torch.dtype | None) -> None:
    """One forward + backward of the video tower on `video`."""
    model.zero_grad(set_to_none=True)
    with torch.autocast(
        video.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
    ):
        out = model.encode_video(video)
    # A scalar that reaches every video parameter; the objective itself does not matter here.
    (out["video_va"].float().square().mean() + out["video_vt"].float().square().mean()).backward()


def run(args) -> dict:
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    if device == "cpu":
        torch.set_num_threads(args.threads)
    frames, size = (16, 112) if args.quick else (args.frames, args.size)
    patch = (args.tubelet, 16, 16)
    tokenizer = TokenizerConfig(
        video_patch=patch, frames=frames, height=size, width=size, vocab_size=4096
    )
    width = TransformerConfig(args.layers, args.width, 4 * args.width, args.heads)
    common = {
        "tokenizer": tokenizer,
        "video": width,
        "droptoken_rate": args.droptoken_rate,
        "video_temporal_layers": args.temporal_layers,
    }
    models = {}
    for backbone in VIDEO_BACKBONES:
        torch.manual_seed(0)
        models[backbone] = build_model("debug", video_backbone=backbone, **common).to(device)
        models[backbone].train()
    video = torch.rand(args.batch, frames, size, size, 3, device=device) * 2 - 1
    dtype = torch.bfloat16 if device == "cuda" else None
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {b: [] for b in VIDEO_BACKBONES}
    for round_index in range(args.repeats + 1):  # round 0 = warm-up
        for backbone, model in models.items():
            sync()
            start = time.perf_counter()
            video_step(model, video, dtype)
            sync()
            if round_index > 0:
                times[backbone].append(time.perf_counter() - start)
    results = {}
    for backbone, model in models.items():
        flops = forward_flops(model.cfg, frames=frames, height=size, width=size)["video"]
        median = statistics.median(times[backbone])
        results[backbone] = {
            "sec_per_clip": median / args.batch,
            "sec_per_clip_min": min(times[backbone]) / args.batch,
            "video_training_gflop_per_clip": 3 * flops["total"] / 1e9,
            "video_params_m": sum(
                p.numel()
                for n, p in model.named_parameters()
                if n.startswith(("video_embed.", "backbones.video.", "video_head."))
            )
            / 1e6,
        }
    base = results["joint"]
    for row in results.values():
        row["time_ratio_to_joint"] = row["sec_per_clip"] / base["sec_per_clip"]
        row["flop_ratio_to_joint"] = (
            row["video_training_gflop_per_clip"] / base["video_training_gflop_per_clip"]
        )
    t, h, w = tokenizer.video_grid
    return {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "threads": args.threads if device == "cpu" else None,
        "dtype": "bf16 autocast" if dtype else "float32",
        "input": {"frames": frames, "height": size, "width": size, "tubelet": list(patch)},
        "token_grid": [t, h, w],
        "tokens": t * h * w,
        "size": {
            "layers": args.layers,
            "width": args.width,
            "heads": args.heads,
            "d_ff": 4 * args.width,
            "temporal_layers_model2": args.temporal_layers,
        },
        "batch": args.batch,
        "repeats": args.repeats,
        "droptoken_rate": args.droptoken_rate,
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16x112x112 clips (392 tokens)")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=160, help="square frame size")
    parser.add_argument("--tubelet", type=int, default=2, help="tubelet length t (ViViT: 2)")
    parser.add_argument("--layers", type=int, default=4, help="depth (Model 2: spatial depth)")
    parser.add_argument("--width", type=int, default=192, help="d_model; d_ff = 4 x width")
    parser.add_argument("--heads", type=int, default=4, help="even: Model 4 splits them")
    parser.add_argument("--temporal-layers", type=int, default=2, help="Model 2 temporal depth")
    parser.add_argument("--batch", type=int, default=2, help=">= 2: the head's BatchNorm")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--droptoken-rate", type=float, default=0.0)
    parser.add_argument("--cpu", action="store_true", help="stay on CPU even with CUDA")
    args = parser.parse_args(argv)
    print(json.dumps(run(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
