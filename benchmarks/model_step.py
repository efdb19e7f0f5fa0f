"""Benchmark: VATT forward+backward time per example vs DropToken rate (and GPU MFU if present).

Usage:
    .venv/bin/python benchmarks/model_step.py                 # BBS at paper input sizes, CPU
    .venv/bin/python benchmarks/model_step.py --quick         # smaller inputs, seconds
    .venv/bin/python benchmarks/model_step.py --preset MBS --repeats 5

Prints one JSON object. Each DropToken rate reports the median (and min) seconds per example
over `--repeats` timed steps, run round-robin across the rates after one warm-up round, its
ratio to rate 0 measured in the same run,
and the analytic training FLOPs (3 x forward, training/model/flops.py) beside it. With a CUDA
device, also bf16 clips/s and MFU for MBS (MFU = achieved training FLOP/s / --peak-tflops).
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

from training.model import build_model  # noqa: E402
from training.model.flops import forward_flops  # noqa: E402
from training.objectives.vatt import LossConfig, total_loss  # noqa: E402

PAPER_INPUT = {"frames": 32, "height": 224, "width": 224, "audio_samples": 153_600}
QUICK_INPUT = {"frames": 16, "height": 112, "width": 112, "audio_samples": 25_600}
CAPTIONS, WORDS = 5, 16


def make_batch(batch: int, size: dict, vocab: int, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    shape = (batch, size["frames"], size["height"], size["width"], 3)
    text_ids = torch.randint(1, vocab, (batch, CAPTIONS, WORDS), generator=g)
    out = {
        "video": torch.rand(shape, generator=g) * 2 - 1,
        "audio": torch.rand(batch, size["audio_samples"], generator=g) * 2 - 1,
        "text_ids": text_ids,
        "text_mask": torch.ones(batch),
    }
    return {k: v.to(device) for k, v in out.items()}


def set_droptoken(model, rate: float) -> None:
    model.video_embed.droptoken.rate = rate
    model.audio_embed.droptoken.rate = rate


def step(model, batch: dict, loss_cfg: LossConfig, autocast_dtype=None) -> None:
    model.zero_grad(set_to_none=True)
    device = batch["video"].device.type
    with torch.autocast(
        device, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
    ):
        out = model(batch)
        loss = total_loss(out, loss_cfg, text_mask=batch["text_mask"])["loss"]
    loss.backward()


def timed(fn, repeats: int, sync=lambda: None) -> list[float]:
    """Seconds of `repeats` calls of fn, after one warm-up call."""
    fn()  # warm-up: allocator, kernels, first-touch pages
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def cpu_droptoken_sweep(args) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.preset).train()
    cfg = model.cfg
    size = QUICK_INPUT if args.quick else PAPER_INPUT
    batch = make_batch(args.batch, size, cfg.tokenizer.vocab_size, "cpu")
    loss_cfg = LossConfig()
    times: dict[float, list[float]] = {rate: [] for rate in args.rates}
    # Round-robin over the rates (one warm-up step each first), so that load from other
    # processes on a shared machine hits every rate alike instead of biasing the ratios.
    for round_index in range(args.repeats + 1):
        for rate in args.rates:
            set_droptoken(model, rate)
            start = time.perf_counter()
            step(model, batch, loss_cfg)
            if round_index > 0:
                times[rate].append(time.perf_counter() - start)
    results = []
    for rate in args.rates:
        flops = forward_flops(cfg, droptoken_rate=rate, captions=CAPTIONS, words=WORDS, **size)
        median, best = statistics.median(times[rate]), min(times[rate])
        results.append(
            {
                "droptoken_rate": rate,
                "sec_per_example": median / args.batch,
                "sec_per_example_min": best / args.batch,
                "training_gflop_per_example": flops["training"] / 1e9,
                "achieved_gflops": flops["training"] * args.batch / median / 1e9,
            }
        )
    base = results[0]
    for r in results:
        r["time_ratio_to_rate0"] = r["sec_per_example"] / base["sec_per_example"]
        r["time_ratio_to_rate0_min"] = r["sec_per_example_min"] / base["sec_per_example_min"]
        r["flop_ratio_to_rate0"] = (
            r["training_gflop_per_example"] / base["training_gflop_per_example"]
        )
    half = next((r for r in results if r["droptoken_rate"] == 0.5), None)
    return {
        "preset": cfg.name,
        "device": "cpu",
        "threads": args.threads,
        "batch": args.batch,
        "repeats": args.repeats,
        "input": {**size, "captions": CAPTIONS, "words": WORDS},
        "load_average_1m": _load_average(),
        "results": results,
        "target": "time ratio at DropToken 0.5 <= 0.55",
        "target_met": None if half is None else half["time_ratio_to_rate0"] <= 0.55,
    }


def _load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def gpu_mfu(args) -> dict:
    device = "cuda"
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    model = build_model(args.gpu_preset).to(device).train()
    cfg = model.cfg
    batch = make_batch(args.gpu_batch, PAPER_INPUT, cfg.tokenizer.vocab_size, device)
    set_droptoken(model, cfg.droptoken_rate)
    seconds = statistics.median(
        timed(
            lambda: step(model, batch, LossConfig(), torch.bfloat16),
            args.repeats,
            sync=torch.cuda.synchronize,
        )
    )
    flops = forward_flops(cfg, captions=CAPTIONS, words=WORDS, **PAPER_INPUT)
    clips_per_s = args.gpu_batch / seconds
    achieved = clips_per_s * flops["training"]
    return {
        "name": torch.cuda.get_device_name(),
        "preset": cfg.name,
        "dtype": "bf16 autocast",
        "batch": args.gpu_batch,
        "droptoken_rate": cfg.droptoken_rate,
        "clips_per_s": clips_per_s,
        "training_tflop_per_clip": flops["training"] / 1e12,
        "achieved_tflops": achieved / 1e12,
        "peak_tflops": args.peak_tflops,
        "mfu": achieved / (args.peak_tflops * 1e12),
        "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="BBS", help="preset for the CPU sweep (default BBS)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per rate (median)")
    parser.add_argument("--quick", action="store_true", help="16x112x112 video, 25600 samples")
    parser.add_argument(
        "--batch", type=int, default=2, help="CPU batch (>= 2: the heads' BatchNorm needs 2)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75], help="DropToken rates"
    )
    parser.add_argument("--gpu-preset", default="MBS")
    parser.add_argument("--gpu-batch", type=int, default=64)
    parser.add_argument(
        "--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100 SXM: 989)"
    )
    parser.add_argument("--skip-cpu", action="store_true", help="only the GPU part")
    args = parser.parse_args(argv)
    if args.rates[0] != 0.0:
        args.rates = [0.0, *args.rates]  # ratios are relative to rate 0 in the same run
    report = {} if args.skip_cpu else cpu_droptoken_sweep(args)
    if torch.cuda.is_available():
        report["gpu"] = gpu_mfu(args)
    else:
        report["gpu"] = None
        report["gpu_skipped_reason"] = "no CUDA device: bf16 clips/s and MFU need a GPU"
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
