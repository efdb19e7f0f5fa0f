"""One GPU, no Ray and no DeepSpeed: MBS bf16 training fed by the real shard loader, the loader's
cost per core, and the device-side augmentation, in one process (issue 14's GPU checks).

For a machine that has a GPU but not the cluster stack (no Ray, no DeepSpeed): the pieces are
the project's own, put together as `training.pretrain.loop.train_step` puts them, with torch in
place of DeepSpeed:

  model      `VattObjective(make_config(preset, droptoken_rate=...))`.build_model, fp32 weights,
             forward under `torch.autocast(bfloat16)`, the loss in fp32 (`objective.losses`),
             torch's fused AdamW + the project's schedule (`training.pretrain.optim`)
  loader     `training.data.loader.build_loader` (webdataset + PyAV decode of the shards, crop +
             resize inside the decoder, uint8 hand-off from N DataLoader workers), then
             `finish_batch` on the GPU (colour jitter, [-1, 1], audio noise)
  MFU        `objective.flops_per_clip()` (analytic: 3 x forward) over
             `training.telemetry.peak_flops(device name)` (989 TFLOP/s for H100 and H200, the
             data sheets' dense bf16 figure); a `torch.utils.flop_counter` count of one step is
             reported beside it as a cross-check

Parts (each in the JSON; default --parts: the first four, then sizing):
  loader_per_core  `benchmarks/loader.py`'s own `run` (single thread, paper shape, interleaved
                   repeats, medians) over the v1 reference path and the v2 default path
  device_augment   `finish_batch` per clip at batch 32, paper shape: inputs already on the
                   device, and from pinned host memory (the H2D copy included)
  synthetic        training steps on one uint8 batch kept on the GPU (finish_batch included):
                   the GPU-bound clips/s
  loader_fed       training steps fed by the real loader with N workers: clips/s, step time,
                   data-wait fraction (host time blocked in next(loader) over wall time), MFU
  loader_scaling   (only when in --parts) the loader alone with N workers (--scaling-workers): clips/s
                   and clips/s per worker, against the single-thread figure per core
  synthetic_bN     (--synthetic-batches) the synthetic run at other batch sizes
  sizing           loader cores per GPU = GPU-bound clips/s / loader clips/s per core

The footage has no captions: every clip gets 5 random captions of 16 word ids (text mask 1),
so the text tower and MIL-NCE do the work of a HowTo100M clip.

    python benchmarks/gpu_bench.py --prepare DIR            # write shards (needs ffmpeg)
    python benchmarks/gpu_bench.py --shards DIR --json OUT  # measure (CUDA if present)
    python benchmarks/gpu_bench.py --shards DIR --device cpu --tiny  # a quick CPU check

scripts/device_check.sh runs it on a lent GPU machine (wheels and shards carried in .devcarry).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# Imported by module, not through training.pretrain.config: that one pulls in
# training.eval.heldout -> preprocessing.decode, which imports ffmpeg-python at module import.
from training.data.augment import AugmentConfig, draw_clip_params  # noqa: E402
from training.data.loader import ClipShape, DataConfig, build_loader, finish_batch  # noqa: E402
from training.model import make_config  # noqa: E402
from training.objectives.vatt import LossConfig, VattObjective  # noqa: E402
from training.pretrain.optim import OptimConfig, build_optimizer  # noqa: E402
from training.telemetry import peak_flops  # noqa: E402

LOADER_ENCODINGS = ("v1_jpeg_pcm", "h264_opus")  # the v1 reference and the v2 default
CAPTIONS, WORDS = 5, 16


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- Shards (written here, carried to the GPU machine) ---------------------------------------


def prepare(out: Path, videos: int, seconds: float, loader_videos: int) -> None:
    """`out/loader/{v1_jpeg_pcm,h264_opus}/` (the same windows of the first `loader_videos`
    files, for loader.py) and `out/train/` (the v2 default, one tar per file, for training)."""
    from footage import ENCODINGS, make_footage, write_shards

    foot = out.parent / f"{out.name}-footage"
    files = [make_footage(foot / f"f{i}.mp4", seconds, seed=i) for i in range(videos)]
    for enc in LOADER_ENCODINGS:
        write_shards(files[:loader_videos], out / "loader", enc)
    (out / "train").mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        tmp = out / f"tmp{i}"
        tar = write_shards([f], tmp, "h264_opus")
        shutil.move(str(tar), out / "train" / f"w-{i:06d}.tar")
        shutil.rmtree(tmp)
    assert ENCODINGS["h264_opus"] == ("h264", "opus")
    log(f"shards under {out}; footage kept in {foot}")


# --- b) the loader per core ------------------------------------------------------------------


def loader_per_core(shards: Path, repeats: int, clips: int) -> dict:
    """benchmarks/loader.py's `run`, over the two encodings carried (its ENCODINGS narrowed)."""
    import loader as loader_bench

    loader_bench.ENCODINGS = {e: loader_bench.ENCODINGS[e] for e in LOADER_ENCODINGS}
    threads = torch.get_num_threads()
    try:
        return loader_bench.run(shards / "loader", repeats, clips, videos=1)
    finally:
        torch.set_num_threads(threads)  # loader.run pins this process to one thread


# --- c) the device half of the augmentation --------------------------------------------------


def fake_loader_batch(shape: ClipShape, batch: int, cfg: AugmentConfig, seed: int = 0) -> dict:
    """A loader-shaped batch (uint8 video as the loader's default hand-off sends H.264 clips:
    4:2:0 planes + flip flags; int16 audio; each clip's own draws) of random pixels, with
    captions (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    params = [draw_clip_params(256, 455, cfg, g) for _ in range(batch)]
    T, H, W, S = shape.frames, shape.height, shape.width, shape.audio_samples
    return {
        "video_y": torch.randint(0, 256, (batch, T, H, W), generator=g, dtype=torch.uint8),
        "video_uv": torch.randint(
            0, 256, (batch, T, 2, H // 2, W // 2), generator=g, dtype=torch.uint8
        ),
        "flip": torch.tensor([p.flip for p in params]),
        "audio": torch.randint(-8000, 8000, (batch, S), generator=g, dtype=torch.int16),
        "jitter": torch.tensor([p.jitter for p in params], dtype=torch.float32),
        "noise_seed": torch.tensor([p.noise_seed for p in params], dtype=torch.int64),
        "audio_stride": 1,
        "text_ids": torch.zeros(batch, CAPTIONS, WORDS, dtype=torch.int64),
        "text_mask": torch.zeros(batch, CAPTIONS),
        "audio_mask": torch.ones(batch),
        "source": torch.ones(batch, dtype=torch.int64),
        "keys": [f"fake{i}" for i in range(batch)],
        "skipped": 0,
        "skipped_keys": [],
    }


DEVICE_KEYS = ("video_y", "video_uv", "flip", "audio")  # what finish_batch moves to the device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_augment(device: torch.device, shape: ClipShape, batch: int, repeats: int) -> dict:
    """ms per clip of `finish_batch` at `batch` clips: on-device inputs, and pinned host ones."""
    cfg = AugmentConfig()
    host = fake_loader_batch(shape, batch, cfg)
    if device.type == "cuda":
        host = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in host.items()}
    on_dev = {k: v.to(device) if k in DEVICE_KEYS else v for k, v in host.items()}
    out = {"batch": batch, "shape": f"{shape.frames}x{shape.height}x{shape.width}"}
    for name, src in (("on_device_inputs", on_dev), ("from_pinned_host", host)):
        times = []
        for i in range(repeats + 3):
            sync(device)
            t0 = time.perf_counter()
            res = finish_batch(src, cfg, device)
            sync(device)
            if i >= 3:
                times.append(time.perf_counter() - t0)
        assert res["video"].dtype == torch.float32 and res["video"].device.type == device.type
        out[f"{name}_ms_per_clip"] = round(1000 * statistics.median(times) / batch, 3)
        out[f"{name}_ms_per_batch"] = round(1000 * statistics.median(times), 2)
    return out


# --- a) training steps -----------------------------------------------------------------------


class Trainer:
    """The objective's model, AdamW + schedule, one `step(batch)` as the pretraining loop's
    train_step (grad_accum 1, world 1), with torch autocast instead of DeepSpeed's bf16."""

    def __init__(self, objective: VattObjective, device: torch.device, bf16: bool):
        torch.manual_seed(0)
        self.objective, self.device, self.bf16 = objective, device, bf16
        self.model = objective.build_model(fresh=True).to(device).train()
        self.opt, self.sched = build_optimizer(
            self.model, OptimConfig(warmup_steps=100), fused=device.type == "cuda"
        )
        self.augment = AugmentConfig()
        self.vocab = objective.model_config().tokenizer.vocab_size
        self.gen = torch.Generator(device=device).manual_seed(0)

    def captions(self, batch: dict) -> dict:
        B = batch["video"].shape[0]
        ids = torch.randint(
            1, self.vocab, (B, CAPTIONS, WORDS), generator=self.gen, device=self.device
        )
        return {**batch, "text_ids": ids, "text_mask": torch.ones(B, CAPTIONS, device=self.device)}

    def step(self, batch: dict) -> torch.Tensor:
        batch = self.captions(finish_batch(batch, self.augment, self.device))
        inputs = self.objective.model_inputs(batch, self.device, torch.float32)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            outputs = self.model(inputs)
        losses = self.objective.losses(outputs, batch, self.device, rank=0, world_size=1)
        losses["loss"].backward()
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        return losses["loss"].detach()


def timed_steps(trainer: Trainer, batches, warmup: int, steps: int, batch: int) -> dict:
    """`warmup` steps, then one window of `steps` steps with a device sync at its end only
    (as the loop's log window): clips/s, step time, data-wait fraction; plus per-step host
    times."""
    dev = trainer.device
    losses = []
    for _ in range(warmup):
        losses.append(trainer.step(next(batches)))
    sync(dev)
    wait, per_step = 0.0, []
    t_start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        b = next(batches)
        t1 = time.perf_counter()
        wait += t1 - t0
        losses.append(trainer.step(b))
        per_step.append(time.perf_counter() - t0)
    sync(dev)
    elapsed = time.perf_counter() - t_start
    loss_values = [float(v) for v in losses]
    step_time = elapsed / steps
    out = {
        "batch": batch, "warmup_steps": warmup, "timed_steps": steps,
        "clips_per_s": round(batch / step_time, 2),
        "step_time_s": round(step_time, 4),
        "data_wait_frac": round(wait / elapsed, 4),
        "host_step_s_median": round(statistics.median(per_step), 4),
        "host_step_s_max": round(max(per_step), 4),
        "loss_first": round(loss_values[0], 4), "loss_last": round(loss_values[-1], 4),
        "loss_finite": all(v == v and abs(v) != float("inf") for v in loss_values),
    }  # fmt: skip
    if dev.type == "cuda":
        out["max_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    return out


def with_mfu(res: dict, flops_per_clip: float, peak: float | None) -> dict:
    if peak:
        res["achieved_tflops"] = round(flops_per_clip * res["clips_per_s"] / 1e12, 1)
        res["mfu"] = round(flops_per_clip * res["clips_per_s"] / peak, 4)
    return res


def synthetic(trainer: Trainer, shape: ClipShape, batch: int, warmup: int, steps: int) -> dict:
    """The GPU-bound figure: one loader-shaped uint8 batch, resident on the device."""
    b = fake_loader_batch(shape, batch, trainer.augment, seed=1)
    b = {k: v.to(trainer.device) if k in DEVICE_KEYS else v for k, v in b.items()}

    def forever():
        while True:
            yield b

    return timed_steps(trainer, forever(), warmup, steps, batch)


def loader_fed(
    trainer: Trainer, shards: Path, shape: ClipShape, batch: int, workers: int,
    warmup: int, steps: int,
) -> dict:  # fmt: skip
    data = DataConfig(audioset=str(shards / "train"), shuffle_buffer=16, loader_workers=workers)
    t0 = time.perf_counter()
    dl = build_loader(data, shape, batch_size=batch, rank=0, world_size=1, seed=0)
    it = iter(dl)
    first = next(it)
    first_batch_s = time.perf_counter() - t0
    video = first["video_y"] if "video_y" in first else first["video"]  # YUV planes or RGB
    assert video.dtype == torch.uint8, video.dtype
    assert tuple(video.shape[:4]) == (batch, shape.frames, shape.height, shape.width)
    try:
        res = timed_steps(trainer, it, warmup, steps, batch)
    finally:
        del it, dl  # stops the workers before the next part
        gc.collect()
    res["loader_workers"] = workers
    res["first_batch_s"] = round(first_batch_s, 2)
    res["skipped_samples_first_batch"] = first["skipped"]
    return res


def loader_alone(shards: Path, shape: ClipShape, batch: int, workers: int) -> dict:
    """The loader with no training beside it: clips/s of `workers` DataLoader workers (the
    main process only takes batches, pinned as training does), after the prefetch queue
    filled once; per worker, to compare with the single-thread figure per core."""
    data = DataConfig(audioset=str(shards / "train"), shuffle_buffer=16, loader_workers=workers)
    dl = build_loader(data, shape, batch_size=batch, rank=0, world_size=1, seed=0)
    it = iter(dl)
    t0 = time.perf_counter()
    try:
        for _ in range(1 + 2 * workers):  # first round + the prefetch queue (2 per worker)
            next(it)
        warm_s = time.perf_counter() - t0
        n = max(4, 4 * workers)  # about four rounds of every worker
        t0 = time.perf_counter()
        for _ in range(n):
            next(it)
        dt = time.perf_counter() - t0
    finally:
        del it, dl
        gc.collect()
    return {
        "workers": workers, "batch": batch, "timed_batches": n, "warmup_s": round(warm_s, 2),
        "clips_per_s": round(n * batch / dt, 2),
        "clips_per_s_per_worker": round(n * batch / dt / workers, 2),
    }  # fmt: skip


def counted_flops(trainer: Trainer, shape: ClipShape, batch: int) -> float:
    """FLOPs of one training step per clip by torch.utils.flop_counter (matmuls/convs/attention;
    elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    b = fake_loader_batch(shape, batch, trainer.augment, seed=2)
    b = trainer.captions(finish_batch(b, trainer.augment, trainer.device))
    inputs = trainer.objective.model_inputs(b, trainer.device, torch.float32)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=trainer.bf16):
            outputs = trainer.model(inputs)
        losses = trainer.objective.losses(outputs, b, trainer.device, rank=0, world_size=1)
        losses["loss"].backward()
    trainer.opt.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


# --- main ------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict:
    env = {
        "python": platform.python_version(), "torch": torch.__version__,
        "cpus": os.cpu_count(), "device": str(device),
    }  # fmt: skip
    for mod in ("av", "webdataset", "numpy"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception as exn:  # noqa: BLE001  (reported, not fatal)
            env[mod] = f"missing: {exn}"
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env["gpu"] = p.name
        env["gpu_memory_gib"] = round(p.total_memory / 2**30, 1)
        env["sms"] = p.multi_processor_count
    try:
        st = os.statvfs("/dev/shm")
        env["dev_shm_gib"] = round(st.f_bsize * st.f_blocks / 2**30, 1)
    except OSError:
        pass
    return env


def run_part(result: dict, name: str, fn, json_path: Path | None):
    """Run one part; a failure is recorded (and the others still run)."""
    log(f"part {name} ...")
    t0 = time.perf_counter()
    try:
        result[name] = fn()
    except Exception as exn:  # noqa: BLE001  (one part's failure must not lose the others)
        import traceback

        traceback.print_exc()
        result[name] = {"error": f"{type(exn).__name__}: {exn}"}
    result.setdefault("part_seconds", {})[name] = round(time.perf_counter() - t0, 1)
    log(f"part {name}: {json.dumps(result[name])}")
    if json_path:
        json_path.write_text(json.dumps(result, indent=1))
    return result[name]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--prepare", metavar="DIR", help="write the shards to DIR and exit")
    ap.add_argument("--videos", type=int, default=10, help="footage files (--prepare)")
    ap.add_argument("--seconds", type=float, default=16.0, help="footage length (--prepare)")
    ap.add_argument("--loader-videos", type=int, default=2, help="files for loader.py's part")
    ap.add_argument("--shards", help="the folder --prepare wrote")
    ap.add_argument("--json", help="write the result here too (rewritten after every part)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="debug preset at its own small shape")
    ap.add_argument("--preset", default="MBS")
    ap.add_argument("--droptoken", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=64, help="clips per training step")
    ap.add_argument("--aug-batch", type=int, default=32, help="clips per finish_batch call")
    ap.add_argument("--flop-batch", type=int, default=4, help="clips in the flop_counter step")
    ap.add_argument("--workers", default="15", help="loader workers, comma-separated runs")
    ap.add_argument("--scaling-workers", default="1,4,8,15", help="loader_scaling part's runs")
    ap.add_argument("--scaling-batch", type=int, default=16, help="loader_scaling batch")
    ap.add_argument("--synthetic-batches", default="", help="extra synthetic runs (batches)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--loader-warmup", type=int, default=30, help="drains the prefetch queue")
    ap.add_argument("--loader-steps", type=int, default=60, help="timed loader-fed steps")
    ap.add_argument("--repeats", type=int, default=5, help="loader.py interleaved repeats")
    ap.add_argument("--clips", type=int, default=8, help="loader.py clips per path per repeat")
    ap.add_argument("--parts", default="loader_per_core,device_augment,synthetic,loader_fed")
    args = ap.parse_args(argv)

    if args.prepare:
        prepare(Path(args.prepare), args.videos, args.seconds, args.loader_videos)
        return 0
    if not args.shards:
        ap.error("--shards DIR (or --prepare DIR)")
    shards = Path(args.shards)
    device = torch.device(args.device)
    json_path = Path(args.json) if args.json else None
    parts = set(args.parts.split(","))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    preset = "debug" if args.tiny else args.preset
    model_cfg = make_config(preset, droptoken_rate=args.droptoken)
    objective = VattObjective(model_cfg, LossConfig(), captions=CAPTIONS, words=WORDS)
    shape = objective.clip_shape()
    paper = ClipShape(32, 224, 224, 153_600)
    flops = objective.flops_per_clip()
    peak = peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    result: dict = {
        "env": environment(device),
        "model": {
            "preset": preset, "droptoken_rate": args.droptoken,
            "clip_shape": f"{shape.frames}x{shape.height}x{shape.width}, {shape.audio_samples} "
                          "audio samples",
            "train_flops_per_clip_analytic": flops,
            "peak_bf16_flops": peak,
            "peak_source": "training.telemetry.PEAK_BF16_FLOPS (H200 = H100 SXM dense bf16, "
                           "989 TFLOP/s; ~790 measured on 8192^3 bf16 matmuls on this kind)",
            "precision": "fp32 weights, bf16 autocast, fused AdamW" if device.type == "cuda"
                         else "fp32 weights, bf16 autocast (CPU), AdamW",
        },
    }  # fmt: skip
    log(f"env {json.dumps(result['env'])}")

    if "loader_per_core" in parts:
        reps, clips = (1, 2) if args.tiny else (args.repeats, args.clips)
        run_part(result, "loader_per_core", lambda: loader_per_core(shards, reps, clips), json_path)
    if "device_augment" in parts:
        aug_shape = shape if args.tiny else paper
        run_part(
            result, "device_augment",
            lambda: device_augment(device, aug_shape, args.aug_batch, 5 if args.tiny else 20),
            json_path,
        )  # fmt: skip

    trainer = None
    if parts & {"synthetic", "loader_fed", "flop_count"} or args.synthetic_batches:
        log(f"building {preset} (droptoken {args.droptoken}) on {device}")
        trainer = Trainer(objective, device, bf16=True)
        n_params = sum(p.numel() for p in trainer.model.parameters())
        result["model"]["params_m"] = round(n_params / 1e6, 2)
    if trainer is not None and ("flop_count" in parts or not args.tiny):
        run_part(
            result, "flop_count",
            lambda: {"train_flops_per_clip_counted": counted_flops(trainer, shape, args.flop_batch),
                     "analytic": flops},
            json_path,
        )  # fmt: skip
    if "synthetic" in parts:
        run_part(
            result, "synthetic",
            lambda: with_mfu(synthetic(trainer, shape, args.batch, args.warmup, args.steps),
                             flops, peak),
            json_path,
        )  # fmt: skip
    for b in [int(x) for x in args.synthetic_batches.split(",") if x]:
        run_part(
            result, f"synthetic_b{b}",
            lambda b=b: with_mfu(synthetic(trainer, shape, b, args.warmup, args.steps),
                                 flops, peak),
            json_path,
        )  # fmt: skip
    if "loader_scaling" in parts:
        for w in [int(x) for x in args.scaling_workers.split(",") if x]:
            run_part(
                result, f"loader_alone_w{w}",
                lambda w=w: loader_alone(shards, shape, args.scaling_batch, w),
                json_path,
            )  # fmt: skip
    if "loader_fed" in parts:
        for w in [int(x) for x in args.workers.split(",") if x]:
            run_part(
                result, f"loader_fed_w{w}",
                lambda w=w: with_mfu(
                    loader_fed(trainer, shards, shape, args.batch, w, args.loader_warmup,
                               args.loader_steps), flops, peak),
                json_path,
            )  # fmt: skip

    # Sizing: loader cores a GPU needs = GPU-bound clips/s / one core's loader clips/s.
    sizing = {}
    gpu_bound = result.get("synthetic", {}).get("clips_per_s")
    per_core = result.get("loader_per_core", {}).get("clips_per_s_per_core", {})
    if gpu_bound and per_core:
        sizing["gpu_bound_clips_per_s"] = gpu_bound
        for path in ("v1_reference", "new:h264_opus"):
            if per_core.get(path):
                sizing[f"loader_cores_per_gpu_{path}"] = round(gpu_bound / per_core[path], 1)
        for key, res in result.items():
            if key.startswith("loader_fed_w") and "clips_per_s" in res:
                w = res["loader_workers"]
                sizing[f"{key}_clips_per_s_per_worker"] = round(res["clips_per_s"] / w, 2)
                sizing[f"{key}_vs_gpu_bound"] = round(res["clips_per_s"] / gpu_bound, 3)
    for key, res in result.items():
        if gpu_bound and key.startswith("loader_alone_w") and res.get("clips_per_s_per_worker"):
            per_worker = res["clips_per_s_per_worker"]
            sizing[f"loader_workers_per_gpu_at_{key}_rate"] = round(gpu_bound / per_worker, 1)
    if sizing:
        if not args.tiny and shape != paper:
            sizing["note"] = "the training shape is not the paper's: per-core figures differ"
    result["sizing"] = sizing
    text = json.dumps(result, indent=1)
    if json_path:
        json_path.write_text(text)
    print(text)
    failed = [k for k, v in result.items() if isinstance(v, dict) and "error" in v]
    if failed:
        log(f"failed parts: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
