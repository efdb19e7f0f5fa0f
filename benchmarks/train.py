"""Benchmark: loader throughput vs training consumption, 1 vs 2 Ray Train workers, and
optimizer memory per worker under ZeRO-0/1/2 (all measured side by side in one run).

Usage (after `make demo` wrote demo_out/shards):
    .venv/bin/python benchmarks/train.py                      # CPU, debug model, ~5 min
    .venv/bin/python benchmarks/train.py --gpu                # one GPU: MBS, DropToken 0.5, bf16

Prints one JSON object (also written to bench_out/train.json):
  loader:   clips/s of decode + augment only, in one process (= per core), for the debug
            shape (8x64x64) and the paper shape (32x224x224);
  scaling:  training clips/s (median over steps after warm-up) with 1 and 2 workers, the
            ratio (target >= 1.6x), and the data-wait fraction;
  memory:   optimizer-state MB per worker and peak RSS under ZeRO-0/1/2 with 2 workers, for a
            BBS-sized model (Adam moments: 8 bytes/param without ZeRO, split over ranks by ZeRO);
  gpu:      (with --gpu) MBS at DropToken 0.5 in bf16 on one GPU: clips/s, MFU, data-wait.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".torch_extensions"))

from pipeline.configs import from_dict, set_dotted  # noqa: E402
from training.pretrain.config import TrainConfig  # noqa: E402

# The debug tokenizer grid, so a BBS-sized model runs on small clips on CPU.
SMALL_GRID = {"frames": 8, "height": 64, "width": 64, "audio_samples": 6400, "vocab_size": 4096}


def base_config(args, storage: str, name: str, **over) -> TrainConfig:
    data = {
        "name": name,
        "storage": storage,
        "preset": "debug",
        "data": {
            "howto100m": args.howto100m,
            "audioset": args.audioset,
            "shuffle_buffer": 64,
            "loader_workers": 1,
        },
        "deepspeed": {"zero_stage": 2, "micro_batch": args.micro_batch},
        "scaling": {"num_workers": 2},
        "checkpoint": {"every_steps": 10**6},
        "max_steps": args.steps,
        "log_every": 1,
    }
    for key, value in over.items():
        set_dotted(data, key, value)
    return from_dict(TrainConfig, data)


def loader_throughput(args, frames: int, size: int, batches: int) -> dict:
    """The loader's own work only, in this process (DataLoader with 0 workers): decode + uint8
    crop/resize/flip per clip (the batched device half runs in the training process): clips/s
    per core."""
    from training.data.loader import ClipShape, DataConfig, build_loader

    data = DataConfig(
        howto100m=args.howto100m, audioset=args.audioset, shuffle_buffer=32, loader_workers=0
    )
    shape = ClipShape(frames=frames, height=size, width=size, audio_samples=153_600 * frames // 32)
    it = iter(build_loader(data, shape, batch_size=8, rank=0, world_size=1, seed=0))
    next(it)  # warm-up: opens shards, fills the shuffle buffer
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    dt = time.perf_counter() - t0
    return {"shape": f"{frames}x{size}x{size}", "clips_per_s_per_core": 8 * batches / dt}


def steady_metrics(run_dir: str, skip: int) -> dict:
    with open(Path(run_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))[skip:]
    med = lambda k: statistics.median(float(r[k]) for r in rows)  # noqa: E731
    out = {k: med(k) for k in ("clips_per_s", "step_time_s", "data_wait_frac")}
    for k in ("opt_state_mb", "max_rss_mb", "mfu"):
        if rows and rows[-1].get(k) not in (None, ""):
            out[k] = float(rows[-1][k])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--howto100m", default=str(ROOT / "demo_out/shards/howto100m"))
    p.add_argument("--audioset", default=str(ROOT / "demo_out/shards/audioset"))
    p.add_argument("--steps", type=int, default=24, help="training steps per run")
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--gpu", action="store_true", help="one-GPU MBS bf16 run instead of CPU parts")
    p.add_argument(
        "--parts", default="loader,scaling,memory", help="CPU parts to run (comma-separated)"
    )
    args = p.parse_args()

    from pipeline.ray_runtime import init_ray
    from training.pretrain.loop import run_training

    out: dict = {"host_cpus": os.cpu_count()}
    storage = tempfile.mkdtemp(prefix="vatt-bench-train-")
    init_ray(num_cpus=None if args.gpu else 2)
    if args.gpu:
        cfg = base_config(
            args, storage, "gpu_mbs",
            preset="MBS", **{
                "model.droptoken_rate": 0.5, "scaling.num_workers": 1, "scaling.use_gpu": True,
                "scaling.cpus_per_worker": 8, "data.loader_workers": 8,
                "deepspeed.micro_batch": 64, "deepspeed.precision": "bf16",
            },
        )  # fmt: skip
        run_training(cfg)
        out["gpu"] = {"preset": "MBS", **steady_metrics(cfg.run_dir(), skip=5)}
        print(json.dumps(out, indent=2))
        return

    parts = set(args.parts.split(","))
    if "loader" in parts:
        out["loader"] = [
            loader_throughput(args, 8, 64, batches=20),
            loader_throughput(args, 32, 224, batches=5),
        ]
    if "scaling" in parts:
        # One core per worker: loading happens in the worker's own process (loader_workers=0),
        # so 1 worker uses 1 core and 2 workers use 2, and the ratio measures worker scaling
        # rather than how a loader process and the trainer share this 2-core machine.
        scaling = {}
        for workers in (1, 2):
            cfg = base_config(
                args, storage, f"scale{workers}",
                **{"scaling.num_workers": workers, "data.loader_workers": 0},
            )  # fmt: skip
            run_training(cfg)
            scaling[f"workers_{workers}"] = steady_metrics(cfg.run_dir(), skip=4)
        scaling["speedup_2_vs_1"] = (
            scaling["workers_2"]["clips_per_s"] / scaling["workers_1"]["clips_per_s"]
        )
        scaling["target_speedup"] = 1.6
        out["scaling"] = scaling
    if "loader" in parts and "scaling" in parts:
        # Training consumption per worker: what a loader core must sustain to keep up.
        per_worker = out["scaling"]["workers_1"]["clips_per_s"] / (
            1 - out["scaling"]["workers_1"]["data_wait_frac"]
        )
        out["loader_clips_per_core_vs_training_consumption_per_worker"] = (
            out["loader"][0]["clips_per_s_per_core"] / per_worker
        )
    if "memory" in parts:
        out["memory_bbs_2_workers"] = memory_by_stage(args, storage, run_training)
    text = json.dumps(out, indent=2)
    print(text)
    (ROOT / "bench_out").mkdir(exist_ok=True)
    (ROOT / "bench_out" / "train.json").write_text(text)


def memory_by_stage(args, storage: str, run_training) -> dict:
    memory = {}
    for stage in (0, 1, 2):
        cfg = base_config(
            args, storage, f"zero{stage}",
            preset="BBS", **{
                "model.tokenizer": SMALL_GRID, "deepspeed.zero_stage": stage,
                "deepspeed.micro_batch": 2, "max_steps": 2,
            },
        )  # fmt: skip
        run_training(cfg)
        m = steady_metrics(cfg.run_dir(), skip=1)
        memory[f"zero{stage}"] = {k: m[k] for k in ("opt_state_mb", "max_rss_mb")}
    memory["ratio_zero2_vs_zero0"] = (
        memory["zero2"]["opt_state_mb"] / memory["zero0"]["opt_state_mb"]
    )
    return memory


if __name__ == "__main__":
    main()
