"""Ray Train pretraining: a TorchTrainer whose workers each run a DeepSpeed-ZeRO engine.

Data flow per worker (`train_loop`): resolve the checkpoint to resume from -> build the
model, AdamW + schedule and the DeepSpeed engine (config from `ds_config.deepspeed_dict`) ->
load the checkpoint -> stream shards (`loader.build_loader`) -> forward, VATT loss with
negatives gathered from every rank, backward, step -> telemetry on rank 0 -> checkpoint
through `ray.train.report` every K steps -> held-out retrieval before, every N steps and
after. The driver side (`run_training`) sets up scaling, storage, failure handling and
checkpoint retention, and returns the summary rank 0 wrote.

Resuming: Ray Train V2 restores its checkpoint list when the same run name and storage are
used again (and after a worker failure), and `ray.train.get_checkpoint()` returns the latest.
We validate it (every rank's manifest and file sizes, see checkpoint.py) and otherwise fall
back to the newest valid checkpoint on disk, so a half-written one is never loaded.

Object storage: with `storage=s3://...` (or gs://) Ray Train uploads checkpoints to the
store; resuming validates them there (manifests + one listing) and the first rank of each
node downloads the chosen one. Telemetry (metrics.csv, eval.csv, TensorBoard, resumes.jsonl,
summary.json) is written to a local mirror (`local_run_dir`) and uploaded by rank 0 after
every checkpoint and at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from preprocessing import storage
from training.config import TrainConfig

# bf16 dense peak FLOP/s per device, for MFU (vendor data sheets).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def _peak_flops(device_name: str) -> float | None:
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in device_name:
            return flops
    return None


def _broadcast(value: Any, rank: int, world_size: int) -> Any:
    """Rank 0's `value` on every rank (all ranks must resume from the same checkpoint)."""
    if world_size == 1:
        return value
    import torch.distributed as dist

    box = [value if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _resume_point(
    run_dir: str, rank: int, start_from: str | None = None
) -> tuple[str | None, list[str]]:
    """The checkpoint directory to resume from (None = fresh start) and notes on skipped ones.
    The run's own checkpoints win; `start_from` (another run's checkpoint) seeds a run that has
    none yet, e.g. a Tune trial restarted from its last report or a PBT trial cloning another."""
    import ray.train

    from training.checkpoint import find_latest_checkpoint, validate_checkpoint

    if rank != 0:
        return None, []
    notes: list[str] = []
    reported = ray.train.get_checkpoint()
    if reported is not None:
        # On an object store Ray's path has no scheme: name the checkpoint by its URI.
        where = reported.path
        if storage.is_uri(run_dir):
            where = storage.join(run_dir, posixpath.basename(where.rstrip("/")))
        ok, reason = validate_checkpoint(where)
        if ok:
            return where, notes
        notes.append(f"skipped checkpoint {where}: {reason}")
    path, skipped = find_latest_checkpoint(run_dir)
    notes += [f"skipped checkpoint {p}: {why}" for p, why in skipped]
    if path is None and start_from:
        ok, reason = validate_checkpoint(start_from)
        if not ok:
            raise FileNotFoundError(f"start checkpoint {start_from}: {reason}")
        return start_from, notes
    return (str(path) if path else None), notes


def _reduce_mean(values: list[float], world_size: int) -> list[float]:
    """Mean over ranks of a few scalars (one all_reduce)."""
    if world_size == 1:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return (t / world_size).tolist()


def _reduce_sum(value: int, world_size: int) -> int:
    if world_size == 1:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t)
    return int(t.item())


def param_checksum(module) -> float | None:
    """Sum of all parameters in fp64: a cheap "same weights?" check across save and load.
    None under ZeRO-3, where each rank holds only a shard (a gather would cost a full copy)."""
    import torch

    params = list(module.parameters())
    if any(hasattr(p, "ds_id") for p in params):
        return None
    with torch.no_grad():
        return float(sum(p.detach().double().sum() for p in params))


def optimizer_state_bytes(optimizer) -> int:
    """Bytes of optimizer state (Adam's two moments) on this rank: 8 bytes per parameter
    without ZeRO, split over ranks by ZeRO-1/2/3."""
    import torch

    base = getattr(optimizer, "optimizer", optimizer)  # DeepSpeed ZeRO wraps the torch one
    return sum(
        t.numel() * t.element_size()
        for state in base.state.values()
        for t in state.values()
        if torch.is_tensor(t) and t.ndim > 0  # skip the scalar step counters
    )


def _max_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _quiet_ray_train_logs() -> None:
    """Ray Train logs every report at INFO on the workers; our progress line says enough.
    Some of its modules name their logger by file path, outside the "ray.train" tree."""
    import logging

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("ray.train") or f"{os.sep}ray{os.sep}train{os.sep}" in name:
            logging.getLogger(name).setLevel(logging.WARNING)


# What a run folder holds besides checkpoints: mirrored between a local folder and an
# object-store run (checkpoints go through Ray Train's own upload instead).
TELEMETRY_FILES = (
    "metrics.csv",
    "eval.csv",
    "tensorboard",
    "plots",
    "resumes.jsonl",
    "summary.json",
    "train_config.json",
)


def is_telemetry(rel: str) -> bool:
    """Is `rel` (a path relative to the run folder) telemetry rather than a checkpoint?"""
    top = rel.split("/", 1)[0]
    return top in TELEMETRY_FILES or top.startswith("skipped_samples_rank")


def local_run_dir(cfg: TrainConfig) -> str:
    """Where telemetry is written: the run folder itself, or, when storage is an object-store
    URI, a local mirror (TensorBoard and CSV writers need a filesystem) that rank 0 uploads
    after every checkpoint and the driver downloads at the end."""
    return storage.local_mirror(cfg.run_dir(), "runs", cfg.name)


def pull_telemetry(run_dir: str, local_dir: str) -> None:
    """Replace `local_dir` with the telemetry of `run_dir` (a URI): a resumed run continues
    metrics.csv and TensorBoard where the last upload left them, on whichever node."""
    shutil.rmtree(local_dir, ignore_errors=True)
    os.makedirs(local_dir, exist_ok=True)
    storage.copy_tree(run_dir, local_dir, include=is_telemetry)


def push_telemetry(local_dir: str, run_dir: str) -> None:
    if local_dir != run_dir:
        storage.copy_tree(local_dir, run_dir, include=is_telemetry)


def _barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def local_checkpoint(checkpoint: str, local_rank: int, world_size: int):
    """A local folder holding `checkpoint`: the folder itself, or for an object-store URI a
    validated copy that the first rank of each node downloads (DeepSpeed loads from files)
    and removes once every rank has loaded it."""
    if not storage.is_uri(checkpoint):
        yield checkpoint
        return
    from training.checkpoint import download_checkpoint

    tag = hashlib.sha1(checkpoint.encode()).hexdigest()[:12]
    local = os.path.join(tempfile.gettempdir(), "vatt-resume", tag)
    if local_rank == 0:
        download_checkpoint(checkpoint, local)
    _barrier(world_size)
    try:
        yield local
    finally:
        _barrier(world_size)
        if local_rank == 0:
            shutil.rmtree(local, ignore_errors=True)


def train_loop(loop_config: dict) -> None:
    """One Ray Train worker: see the module docstring for the order of things."""
    cfg: TrainConfig = loop_config["cfg"]
    run_dir: str = loop_config["run_dir"]
    fault_step: int | None = loop_config.get("fault_kill_step")
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if cfg.scaling.use_gpu else "cpu")

    import deepspeed
    import ray.train
    import torch

    _quiet_ray_train_logs()

    from training.checkpoint import load_into_engine, write_checkpoint
    from training.ds_config import batch_arithmetic, deepspeed_dict, global_batch
    from training.loader import ClipShape, build_loader
    from training.losses import total_loss
    from training.model import VATT, build_model_from_config, convert_sync_batchnorm
    from training.model.flops import forward_flops
    from training.schedule import build_optimizer
    from training.telemetry import Telemetry, format_progress

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    on_gpu = cfg.scaling.use_gpu and torch.cuda.is_available()
    device = torch.device("cuda", ctx.get_local_rank()) if on_gpu else torch.device("cpu")
    if on_gpu:
        torch.cuda.set_device(device)
    torch.set_num_threads(cfg.scaling.torch_threads)
    log = (lambda msg: print(msg, flush=True)) if rank == 0 else (lambda msg: None)

    # Telemetry is written locally (the run folder itself, or a mirror of an object-store run
    # that rank 0 refreshes now, before anything appends to it, and uploads after checkpoints).
    telemetry_dir: str = loop_config.get("telemetry_dir") or run_dir
    if rank == 0 and telemetry_dir != run_dir:
        pull_telemetry(run_dir, telemetry_dir)
    os.makedirs(telemetry_dir, exist_ok=True)

    resume, notes = _resume_point(run_dir, rank, loop_config.get("start_from"))
    resume = _broadcast(resume, rank, world)
    for note in notes:
        log(note)

    # Same seed on every rank: identical initial weights (DeepSpeed also broadcasts rank 0's).
    torch.manual_seed(cfg.seed)
    model_cfg = cfg.model_config()
    # A fresh run applies model.video_init (a 2-D ViT image checkpoint); a resumed one loads
    # its own weights below, so it needs no image file.
    model = VATT(model_cfg) if resume else build_model_from_config(model_cfg)
    if on_gpu and world > 1:
        # Cross-rank BatchNorm statistics in the heads (the paper's global batch BN); gloo
        # CPU workers keep per-rank BN (torch's SyncBatchNorm needs an accelerator).
        model = convert_sync_batchnorm(model)
    optimizer, scheduler = build_optimizer(model, cfg.optim, fused=on_gpu)
    ds_dict = deepspeed_dict(cfg, world, on_gpu)
    log(f"deepspeed config: {json.dumps(ds_dict, sort_keys=True)}")
    log(batch_arithmetic(cfg, world))
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_dict
    )
    dtype = torch.bfloat16 if ds_dict["bf16"]["enabled"] else torch.float32

    step, samples_seen, carried = 0, 0, {}
    if resume:
        with local_checkpoint(resume, ctx.get_local_rank(), world) as local:
            state = load_into_engine(engine, local)
        step, samples_seen = int(state["step"]), int(state.get("samples_seen", 0))
        carried = state.get("carried", {})
        log(f"resumed from {resume} at step {step}")
        if rank == 0:
            record = {
                "checkpoint": resume,
                "step": step,
                "saved_checksum": state.get("param_checksum"),
                "loaded_checksum": param_checksum(engine.module),
                "skipped": notes,
            }
            with open(Path(telemetry_dir) / "resumes.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
    if step >= cfg.max_steps:
        log(f"run already complete at step {step} (max_steps={cfg.max_steps}); nothing to do")
        return

    shape = ClipShape.from_model(model_cfg)
    micro, accum = cfg.deepspeed.micro_batch, cfg.deepspeed.grad_accum
    batches = iter(
        build_loader(
            cfg.data, shape, batch_size=micro, rank=rank, world_size=world, seed=cfg.seed,
            start_step=step,
        )
    )  # fmt: skip
    # Rows an interrupted attempt logged after the checkpoint are replayed now: drop them
    # (resume_step = the first step this attempt logs).
    telemetry = Telemetry(telemetry_dir, enabled=rank == 0, resume_step=step + 1)
    heldout = None
    if cfg.eval.enabled:
        from training.retrieval import HeldoutRetrieval

        heldout = HeldoutRetrieval.for_run(cfg)

    def evaluate(at_step: int) -> dict | None:
        # Every rank runs the same forward passes (ZeRO-3 gathers parameters collectively);
        # rank 0 records the result.
        if heldout is None:
            return None
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            metrics = heldout.evaluate(engine.module)
        telemetry.log_eval(at_step, metrics)
        log(
            f"held-out retrieval @ step {at_step}: t2v R@1 {metrics['t2v_r1']:.3f} "
            f"R@5 {metrics['t2v_r5']:.3f} R@10 {metrics['t2v_r10']:.3f} "
            f"MedR {metrics['t2v_medr']:.1f} (chance R@1 {metrics['chance_r1']:.3f})"
        )
        return metrics

    # Values the final summary needs across restarts travel inside the checkpoint.
    eval_before = evaluate(0) if step == 0 else carried.get("eval_before")

    flops_per_clip = forward_flops(
        model_cfg, captions=cfg.data.num_captions, words=cfg.data.max_words
    )["training"]
    peak = _peak_flops(torch.cuda.get_device_name(device)) if on_gpu else None
    clips_per_step = global_batch(cfg, world)
    skipped_total, skipped_local = int(carried.get("skipped_total", 0)), 0
    started, first_loss, last_metrics = time.time(), carried.get("first_loss"), {}
    eval_after = None
    engine.train()
    while step < cfg.max_steps:
        t_step = time.perf_counter()
        lr = scheduler_lr(engine)  # the rate this step uses (the scheduler steps inside)
        data_wait, parts, skipped = 0.0, [0.0, 0.0, 0.0], 0
        for _ in range(accum):
            t0 = time.perf_counter()
            batch = next(batches)
            data_wait += time.perf_counter() - t0
            skipped += batch["skipped"]
            if batch["skipped_keys"]:
                with open(Path(telemetry_dir) / f"skipped_samples_rank{rank}.txt", "a") as f:
                    f.writelines(f"step {step}: {k}\n" for k in batch["skipped_keys"])
            inputs = {
                "video": batch["video"].to(device, dtype, non_blocking=True),
                "audio": batch["audio"].to(device, dtype, non_blocking=True),
                "text_ids": batch["text_ids"].to(device, non_blocking=True),
            }
            outputs = {k: v.float() for k, v in engine(inputs).items()}  # loss in fp32
            losses = total_loss(
                outputs,
                cfg.loss,
                text_mask=batch["text_mask"].to(device),
                audio_mask=batch["audio_mask"].to(device),
                rank=rank,
                world_size=world,
            )
            engine.backward(losses["loss"])
            engine.step()
            parts = [p + float(losses[k].detach()) / accum for p, k in zip(parts, LOSS_KEYS)]
        step += 1
        samples_seen += clips_per_step
        if on_gpu:
            torch.cuda.synchronize(device)
        step_time = time.perf_counter() - t_step

        if fault_step is not None and step == fault_step and rank == world - 1:
            marker = Path(telemetry_dir) / ".fault_injected"
            if not marker.exists():  # once per run: the restarted worker must get past it
                marker.write_text(str(step))
                os.kill(os.getpid(), signal.SIGKILL)

        if step % cfg.log_every == 0 or step == cfg.max_steps or step == 1:
            loss, nce_va, mil_nce_vt, wait, opt_mb, rss_mb = _reduce_mean(
                [*parts, data_wait / step_time, optimizer_state_bytes(engine.optimizer) / 2**20,
                 _max_rss_mb()],
                world,
            )  # fmt: skip
            skipped_total += _reduce_sum(skipped_local + skipped, world)
            skipped_local = 0
            clips_per_s = clips_per_step / step_time
            metrics = {
                "loss": loss,
                "nce_va": nce_va,
                "mil_nce_vt": mil_nce_vt,
                "lr": lr,
                "clips_per_s": clips_per_s,
                "step_time_s": step_time,
                "data_wait_frac": wait,
                "skipped": skipped_total,
                "opt_state_mb": opt_mb,  # per worker (mean over workers)
                "max_rss_mb": rss_mb,
            }
            if peak:
                metrics["mfu"] = flops_per_clip * clips_per_s / world / peak
            first_loss = loss if first_loss is None else first_loss
            last_metrics = metrics
            telemetry.log(step, metrics)
            log(format_progress(step, cfg.max_steps, metrics))
        else:
            skipped_local += skipped

        is_last = step == cfg.max_steps
        if heldout is not None and (
            is_last or (cfg.eval.every_steps and step % cfg.eval.every_steps == 0)
        ):
            eval_after = evaluate(step)
            engine.train()
        if step % cfg.checkpoint.every_steps == 0 or is_last:
            state = {
                "step": step,
                "samples_seen": samples_seen,
                "loader": {"start_step": step, "seed": cfg.seed},
                "config": cfg.to_dict(),
                "model_config": _model_config_dict(model_cfg),
                "world_size": world,
                "zero_stage": cfg.deepspeed.zero_stage,
                "param_checksum": param_checksum(engine.module),
                "carried": {
                    "eval_before": eval_before,
                    "first_loss": first_loss,
                    "skipped_total": skipped_total,
                },
            }
            report = {"step": step, **last_metrics}
            if eval_after is not None:
                report.update({f"eval_{k}": v for k, v in eval_after.items()})
            with tempfile.TemporaryDirectory(prefix="vatt-ckpt-") as tmp:
                write_checkpoint(engine, tmp, rank=rank, world_size=world, step=step, state=state)
                ray.train.report(
                    report,
                    checkpoint=ray.train.Checkpoint.from_directory(tmp),
                    checkpoint_dir_name=f"checkpoint_{step:09d}",
                )
            if rank == 0:
                push_telemetry(telemetry_dir, run_dir)

    telemetry.close()
    if rank == 0:
        summary = {
            "run_dir": run_dir,
            "steps": step,
            "world_size": world,
            "batch": batch_arithmetic(cfg, world),
            "samples_seen": samples_seen,
            "first_loss": first_loss,
            "final": last_metrics,
            "skipped_samples": skipped_total,
            "seconds_this_attempt": time.time() - started,
            "eval_before": eval_before,
            "eval_after": eval_after,
        }
        (Path(telemetry_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
        push_telemetry(telemetry_dir, run_dir)


LOSS_KEYS = ("loss", "nce_va", "mil_nce_vt")


def scheduler_lr(engine) -> float:
    return float(engine.get_lr()[0])


def _model_config_dict(model_cfg) -> dict:
    import dataclasses

    return dataclasses.asdict(model_cfg)


def run_training(
    cfg: TrainConfig,
    *,
    fault_kill_step: int | None = None,
    callbacks: list | None = None,
    start_from: str | None = None,
) -> dict:
    """Fit `cfg` with Ray Train on the connected Ray cluster; returns rank 0's summary.

    `fault_kill_step` (tests only): the last rank SIGKILLs itself once at that step, to prove
    the run recovers from the last checkpoint. `callbacks`: Ray Train `UserCallback`s (the
    sweep forwards every report to Ray Tune). `start_from`: a checkpoint of another run to
    start from when this run has none of its own.
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = cfg.with_absolute_paths()  # workers have another working directory
    run_dir = cfg.run_dir()  # a folder, or an object-store URI (s3://, gs://)
    telemetry_dir = local_run_dir(cfg)
    storage.make_dirs(run_dir)
    storage.write_text(
        storage.join(run_dir, "train_config.json"), json.dumps(cfg.to_dict(), indent=2)
    )
    # Ray wants an absolute path or a URI; for a URI we hand it the filesystem resolved here
    # (endpoint and region from this environment) so its uploads go where ours do.
    storage_fs, storage_path = (
        storage.filesystem(cfg.storage) if storage.is_uri(cfg.storage) else (None, cfg.storage)
    )
    resources = {"CPU": cfg.scaling.cpus_per_worker}
    if cfg.scaling.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "cfg": cfg,
            "run_dir": run_dir,
            "telemetry_dir": telemetry_dir,
            "fault_kill_step": fault_kill_step,
            "start_from": start_from,
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.scaling.num_workers,
            use_gpu=cfg.scaling.use_gpu,
            resources_per_worker=resources,
        ),
        run_config=RunConfig(
            name=cfg.name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            failure_config=FailureConfig(max_failures=cfg.checkpoint.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.keep),
            # Ray Train's per-report INFO lines would bury our one progress line per log step.
            logging_config=LoggingConfig(log_level="WARNING"),
            callbacks=callbacks,
        ),
    )
    result = trainer.fit()
    checkpoint = result.checkpoint.path if result.checkpoint else None
    if telemetry_dir != run_dir:
        # Rank 0 may have run on another node: the driver's copy comes from the store.
        pull_telemetry(run_dir, telemetry_dir)
        if checkpoint:
            checkpoint = storage.join(run_dir, posixpath.basename(checkpoint.rstrip("/")))
    summary = json.loads(Path(telemetry_dir, "summary.json").read_text())
    summary["checkpoint"] = checkpoint
    summary["local_dir"] = telemetry_dir  # metrics.csv, tensorboard/, plots on this machine
    Path(telemetry_dir, "summary.json").write_text(json.dumps(summary, indent=2))
    push_telemetry(telemetry_dir, run_dir)
    return summary
