"""The pretraining loop: N Ray Train workers, each running one DeepSpeed-ZeRO engine.

Generic over an `Objective` (training.objectives.base): the loop never names a model family.
Per worker (`train_loop`), in small named steps around one `Worker` object:

  setup        telemetry folder, the checkpoint to resume from (`run_folder.resume_point`),
               the objective's model, AdamW + schedule, the DeepSpeed engine
               (`ds_config.deepspeed_dict`), restored state, the shard loader, the held-out set
  train_step   grad_accum micro-batches: loader batch -> objective.model_inputs -> engine ->
               objective.losses (negatives gathered from every rank) -> backward -> step
  log_step     on log steps only: loss parts, lr, clips/s, data-wait reduced over ranks, one
               progress line, metrics.csv + TensorBoard on rank 0
  evaluate     held-out retrieval before the first step, every N steps and after the last
  checkpoint   every K steps and at the end: DeepSpeed files + trainer state + per-rank
               manifests, reported through Ray Train (`training.distributed.report`)

No host sync happens per step except on log steps: loss parts stay on the device until a log
step reads them, and step time is the wall time of the log window (one device sync there).
The driver (`run_training`) writes the run's config, fits the loop on the connected Ray
cluster (`training.distributed.fit`), and returns the summary rank 0 wrote.
"""

from __future__ import annotations

import json
import os
import posixpath
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from preprocessing import storage
from training import distributed
from training.objectives.base import Objective
from training.pretrain.config import TrainConfig
from training.pretrain.run_folder import (
    local_checkpoint,
    local_run_dir,
    pull_telemetry,
    push_telemetry,
    resume_point,
)

# --- State that survives a restart ---------------------------------------------------------


@dataclass
class RunState:
    """Counters and results of a run; what the final summary needs travels in checkpoints."""

    step: int = 0
    samples_seen: int = 0
    first_loss: float | None = None
    skipped_total: int = 0  # corrupt samples skipped, over all ranks
    eval_before: dict | None = None
    eval_after: dict | None = None
    last_metrics: dict = field(default_factory=dict)

    @classmethod
    def from_trainer_state(cls, state: dict) -> RunState:
        carried = state.get("carried", {})
        return cls(
            step=int(state["step"]),
            samples_seen=int(state.get("samples_seen", 0)),
            first_loss=carried.get("first_loss"),
            skipped_total=int(carried.get("skipped_total", 0)),
            eval_before=carried.get("eval_before"),
        )

    def carried(self) -> dict:
        return {
            "eval_before": self.eval_before,
            "first_loss": self.first_loss,
            "skipped_total": self.skipped_total,
        }


@dataclass
class LogWindow:
    """What happened since the last log line, gathered without a host sync per step."""

    began: float = field(default_factory=time.perf_counter)
    steps: int = 0
    data_wait: float = 0.0  # seconds spent waiting for the loader
    skipped: int = 0  # corrupt samples this rank skipped
    parts: Any = None  # tensor [loss, *parts] of the last step, still on the device


@dataclass
class Worker:
    """Everything one training worker holds; each step below takes it and updates it."""

    cfg: TrainConfig
    ctx: distributed.WorkerContext
    objective: Objective
    engine: Any  # deepspeed.DeepSpeedEngine
    dtype: Any  # torch.bfloat16 or torch.float32
    run_dir: str
    telemetry_dir: str
    state: RunState
    batches: Any = None  # iterator of loader batches
    telemetry: Any = None  # training.telemetry.Telemetry
    heldout: Any = None  # training.eval.heldout.HeldoutRetrieval or None
    window: LogWindow = field(default_factory=LogWindow)
    fault_step: int | None = None
    fault_node: bool = False
    peak_flops: float | None = None


# --- setup ---------------------------------------------------------------------------------


def _build_engine(cfg: TrainConfig, objective: Objective, ctx, fresh: bool):
    """The objective's model wrapped in a DeepSpeed engine with AdamW + the lr schedule."""
    import deepspeed
    import torch

    from training.pretrain.ds_config import batch_arithmetic, batch_warning, deepspeed_dict
    from training.pretrain.optim import build_optimizer

    # Same seed on every rank: identical initial weights (DeepSpeed also broadcasts rank 0's).
    torch.manual_seed(cfg.seed)
    model = objective.build_model(fresh)
    if ctx.on_gpu and ctx.world_size > 1:
        # Cross-rank BatchNorm statistics in the heads (the paper's global batch BN); gloo
        # CPU workers keep per-rank BN (torch's SyncBatchNorm needs an accelerator).
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer, scheduler = build_optimizer(model, cfg.optim, fused=ctx.on_gpu)
    ds_dict = deepspeed_dict(cfg, ctx.world_size, ctx.on_gpu)
    ctx.log(f"deepspeed config: {json.dumps(ds_dict, sort_keys=True)}")
    ctx.log(batch_arithmetic(cfg, ctx.world_size))
    if warning := batch_warning(cfg, ctx.world_size):
        ctx.log(warning)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_dict
    )
    return engine, torch.bfloat16 if ds_dict["bf16"]["enabled"] else torch.float32


def _restore(w: Worker, checkpoint: str, notes: list[str]) -> None:
    """Load `checkpoint` into the engine (every rank) and record the resume on rank 0."""
    from training.checkpoint import load_into_engine, param_checksum

    with local_checkpoint(checkpoint, w.ctx.local_rank, w.ctx.world_size) as local:
        trainer_state = load_into_engine(w.engine, local)
    w.state = RunState.from_trainer_state(trainer_state)
    w.ctx.log(f"resumed from {checkpoint} at step {w.state.step}")
    if w.ctx.rank == 0:
        record = {
            "checkpoint": storage.redact(checkpoint),
            "step": w.state.step,
            "saved_checksum": trainer_state.get("param_checksum"),
            "loaded_checksum": param_checksum(w.engine.module),
            "skipped": notes,
        }
        with open(Path(w.telemetry_dir) / "resumes.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")


def _open_inputs(w: Worker) -> None:
    """The shard loader (seeded by the start step), telemetry and the held-out set."""
    from training.data.loader import build_loader
    from training.telemetry import Telemetry, peak_flops

    cfg, ctx = w.cfg, w.ctx
    w.batches = iter(
        build_loader(
            cfg.data, w.objective.clip_shape(), batch_size=cfg.deepspeed.micro_batch,
            rank=ctx.rank, world_size=ctx.world_size, seed=cfg.seed, start_step=w.state.step,
        )
    )  # fmt: skip
    # Rows an interrupted attempt logged after the checkpoint are replayed now: drop them
    # (resume_step = the first step this attempt logs).
    w.telemetry = Telemetry(
        w.telemetry_dir,
        enabled=ctx.rank == 0,
        resume_step=w.state.step + 1,
        loss_parts=tuple(w.objective.loss_parts),
    )
    if cfg.eval.enabled:
        from training.eval.heldout import HeldoutRetrieval

        w.heldout = HeldoutRetrieval.for_run(cfg)
    if ctx.on_gpu:
        import torch

        w.peak_flops = peak_flops(torch.cuda.get_device_name(ctx.device))


def setup(loop_config: dict) -> Worker | None:
    """A ready worker, or None when the run already reached max_steps."""
    cfg: TrainConfig = loop_config["cfg"]
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if cfg.scaling.use_gpu else "cpu")
    ctx = distributed.worker_context(cfg.scaling)
    run_dir: str = loop_config["run_dir"]
    # Telemetry is written locally (the run folder itself, or a mirror of an object-store run
    # that rank 0 refreshes now, before anything appends to it, and uploads after checkpoints).
    telemetry_dir: str = loop_config.get("telemetry_dir") or run_dir
    if ctx.rank == 0 and telemetry_dir != run_dir:
        pull_telemetry(run_dir, telemetry_dir)
    os.makedirs(telemetry_dir, exist_ok=True)

    resume, notes = resume_point(run_dir, ctx.rank, loop_config.get("start_from"))
    resume = distributed.broadcast(resume, ctx.rank, ctx.world_size)
    for note in notes:
        ctx.log(note)
    objective: Objective = loop_config.get("objective") or cfg.build_objective()
    engine, dtype = _build_engine(cfg, objective, ctx, fresh=resume is None)
    w = Worker(cfg, ctx, objective, engine, dtype, run_dir, telemetry_dir, RunState())
    w.fault_step = loop_config.get("fault_kill_step")
    w.fault_node = bool(loop_config.get("fault_kill_node"))
    if resume:
        _restore(w, resume, notes)
    if w.state.step >= cfg.max_steps:
        ctx.log(f"run already complete at step {w.state.step} (max_steps={cfg.max_steps}); "
                "nothing to do")  # fmt: skip
        return None
    _open_inputs(w)
    return w


# --- the steps -----------------------------------------------------------------------------


def train_step(w: Worker) -> None:
    """One optimizer step over grad_accum micro-batches (no host sync)."""
    import torch

    from training.data.loader import finish_batch

    cfg, ctx, objective = w.cfg, w.ctx, w.objective
    keys = ("loss", *objective.loss_parts)
    accum = cfg.deepspeed.grad_accum
    parts = None
    for micro in range(accum):
        t0 = time.perf_counter()
        batch = next(w.batches)
        distributed.seed_step(cfg.seed, ctx.rank, w.state.step, micro)
        w.window.data_wait += time.perf_counter() - t0
        # The loader hands uint8/int16 clips; jitter, scaling and noise run batched here.
        batch = finish_batch(batch, cfg.data.augment, ctx.device)
        w.window.skipped += batch["skipped"]
        if batch["skipped_keys"]:
            with open(Path(w.telemetry_dir) / f"skipped_samples_rank{ctx.rank}.txt", "a") as f:
                f.writelines(f"step {w.state.step}: {k}\n" for k in batch["skipped_keys"])
        outputs = w.engine(objective.model_inputs(batch, ctx.device, w.dtype))
        losses = objective.losses(
            outputs, batch, ctx.device, rank=ctx.rank, world_size=ctx.world_size
        )
        w.engine.backward(losses["loss"])
        w.engine.step()
        step_parts = torch.stack([losses[k].detach().double() for k in keys]) / accum
        parts = step_parts if parts is None else parts + step_parts
    w.window.parts = parts
    w.window.steps += 1
    w.state.step += 1
    w.state.samples_seen += cfg.deepspeed.micro_batch * accum * ctx.world_size


def inject_fault(w: Worker) -> None:
    """Tests only: the last rank SIGKILLs itself once at `fault_kill_step`, to prove the run
    recovers from its last checkpoint; with `fault_kill_node` it first SIGKILLs its node's
    raylet (its parent process), so the whole Ray node is lost, as a spot instance is."""
    if w.fault_step is None or w.state.step != w.fault_step:
        return
    if w.ctx.rank == w.ctx.world_size - 1:
        marker = Path(w.telemetry_dir) / ".fault_injected"
        if not marker.exists():  # once per run: the restarted worker must get past it
            marker.write_text(str(w.state.step))
            if w.fault_node:
                import psutil

                raylet = psutil.Process().parent()
                if raylet is None or "raylet" not in raylet.name():
                    raise RuntimeError(f"fault_kill_node: parent {raylet} is not a raylet")
                raylet.kill()
            os.kill(os.getpid(), signal.SIGKILL)


def log_step(w: Worker, lr: float) -> None:
    """Reduce the log window over ranks and write one row + one progress line (rank 0)."""
    import torch

    from training.telemetry import format_progress, max_rss_mb, optimizer_state_bytes

    cfg, ctx, win = w.cfg, w.ctx, w.window
    if ctx.on_gpu:
        torch.cuda.synchronize(ctx.device)  # the window's wall time includes its GPU work
    elapsed = time.perf_counter() - win.began
    keys = ("loss", *w.objective.loss_parts)
    local = [*win.parts.tolist(), win.data_wait / elapsed,
             optimizer_state_bytes(w.engine.optimizer) / 2**20, max_rss_mb()]  # fmt: skip
    summed = distributed.all_reduce([*local, win.skipped], ctx.world_size)
    means = [v / ctx.world_size for v in summed[:-1]]
    w.state.skipped_total += int(summed[-1])
    step_time = elapsed / win.steps
    clips_per_s = cfg.deepspeed.micro_batch * cfg.deepspeed.grad_accum * ctx.world_size / step_time
    metrics = dict(zip(keys, means[: len(keys)]))
    wait, opt_mb, rss_mb = means[len(keys) :]
    metrics.update(
        lr=lr,
        clips_per_s=clips_per_s,
        step_time_s=step_time,
        data_wait_frac=wait,
        skipped=w.state.skipped_total,
        opt_state_mb=opt_mb,  # per worker (mean over workers)
        max_rss_mb=rss_mb,
    )
    if w.peak_flops:
        metrics["mfu"] = w.objective.flops_per_clip() * clips_per_s / ctx.world_size / w.peak_flops
    if w.state.first_loss is None:
        w.state.first_loss = metrics["loss"]
    w.state.last_metrics = metrics
    w.telemetry.log(w.state.step, metrics)
    ctx.log(format_progress(w.state.step, cfg.max_steps, metrics, w.objective.loss_parts))
    w.window = LogWindow()


def evaluate(w: Worker) -> dict | None:
    """Held-out retrieval at the current step (every rank runs the same forward passes: ZeRO-3
    gathers parameters collectively); rank 0 records it."""
    import torch

    if w.heldout is None:
        return None
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=w.dtype == torch.bfloat16):
        metrics = w.heldout.evaluate(w.engine.module)
    w.telemetry.log_eval(w.state.step, metrics)
    w.ctx.log(
        f"held-out retrieval @ step {w.state.step}: t2v R@1 {metrics['t2v_r1']:.3f} "
        f"R@5 {metrics['t2v_r5']:.3f} R@10 {metrics['t2v_r10']:.3f} "
        f"MedR {metrics['t2v_medr']:.1f} (chance R@1 {metrics['chance_r1']:.3f})"
    )
    w.engine.train()
    return metrics


def save_checkpoint(w: Worker) -> None:
    """Every rank saves its part; Ray Train merges them into checkpoint_<step>."""
    from training.checkpoint import param_checksum, write_checkpoint

    cfg, ctx, state = w.cfg, w.ctx, w.state
    trainer_state = {
        "step": state.step,
        "samples_seen": state.samples_seen,
        "loader": {"start_step": state.step, "seed": cfg.seed},
        "config": storage.redact_tree(cfg.to_dict()),
        "architecture": w.objective.name,
        "model_config": asdict(w.objective.model_config()),
        "world_size": ctx.world_size,
        "zero_stage": cfg.deepspeed.zero_stage,
        "param_checksum": param_checksum(w.engine.module),
        "carried": state.carried(),
    }
    report = {"step": state.step, **state.last_metrics}
    if state.eval_after is not None:
        report.update({f"eval_{k}": v for k, v in state.eval_after.items()})
    with tempfile.TemporaryDirectory(prefix="vatt-ckpt-") as tmp:
        write_checkpoint(
            w.engine, tmp, rank=ctx.rank, world_size=ctx.world_size, step=state.step,
            state=trainer_state,
        )  # fmt: skip
        distributed.report(report, tmp, f"checkpoint_{state.step:09d}")
    if ctx.rank == 0:
        push_telemetry(w.telemetry_dir, w.run_dir)


def finish(w: Worker, started: float) -> None:
    """summary.json on rank 0 (the driver returns it)."""
    from training.pretrain.ds_config import batch_arithmetic, contrastive_batch, global_batch

    w.telemetry.close()
    if w.ctx.rank != 0:
        return
    s = w.state
    summary = {
        "run_dir": storage.redact(w.run_dir),
        "steps": s.step,
        "world_size": w.ctx.world_size,
        "batch": batch_arithmetic(w.cfg, w.ctx.world_size),
        "global_batch": global_batch(w.cfg, w.ctx.world_size),
        "contrastive_batch": contrastive_batch(w.cfg, w.ctx.world_size),
        "samples_seen": s.samples_seen,
        "first_loss": s.first_loss,
        "final": s.last_metrics,
        "skipped_samples": s.skipped_total,
        "seconds_this_attempt": time.time() - started,
        "eval_before": s.eval_before,
        "eval_after": s.eval_after,
    }
    (Path(w.telemetry_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
    push_telemetry(w.telemetry_dir, w.run_dir)


def train_loop(loop_config: dict) -> None:
    """One Ray Train worker: see the module docstring for the order of things."""
    started = time.time()
    w = setup(loop_config)
    if w is None:
        return
    cfg = w.cfg
    if w.state.step == 0:
        w.state.eval_before = evaluate(w)
    w.engine.train()
    w.window = LogWindow()
    while w.state.step < cfg.max_steps:
        lr = float(w.engine.get_lr()[0])  # the rate this step uses (the scheduler steps inside)
        train_step(w)
        inject_fault(w)
        step, is_last = w.state.step, w.state.step == cfg.max_steps
        if step == 1 or distributed.due(step, cfg.log_every, is_last):
            log_step(w, lr)
        paused = time.perf_counter()
        if w.heldout is not None and distributed.due(step, cfg.eval.every_steps, is_last):
            w.state.eval_after = evaluate(w)
        if distributed.due(step, cfg.checkpoint.every_steps, is_last):
            save_checkpoint(w)
        # Evaluation and checkpoints are not training time: keep them out of clips/s.
        w.window.began += time.perf_counter() - paused
    finish(w, started)


# --- The driver ----------------------------------------------------------------------------


def run_training(
    cfg: TrainConfig,
    *,
    objective: Objective | None = None,
    fault_kill_step: int | None = None,
    fault_kill_node: bool = False,
    callbacks: list | None = None,
    start_from: str | None = None,
) -> dict:
    """Fit `cfg` with Ray Train on the connected Ray cluster; returns rank 0's summary.

    `objective`: the family to train (default: the one `cfg` names). `fault_kill_step` (tests
    only): the last rank SIGKILLs itself once at that step (and its node's raylet first with
    `fault_kill_node`). `callbacks`: Ray Train
    `UserCallback`s (the sweep forwards every report to Ray Tune). `start_from`: a checkpoint
    of another run to start from when this run has none of its own.
    """
    cfg = cfg.with_absolute_paths()  # workers have another working directory
    run_dir = cfg.run_dir()  # a folder, or an object-store URI (s3://, gs://)
    telemetry_dir = local_run_dir(run_dir, cfg.name)
    storage.make_dirs(run_dir)
    storage.write_text(
        storage.join(run_dir, "train_config.json"),
        json.dumps(storage.redact_tree(cfg.to_dict()), indent=2),
    )
    # Ray wants an absolute path or a URI; for a URI we hand it the filesystem resolved here
    # (endpoint and region from this environment) so its uploads go where ours do.
    storage_fs, storage_path = (
        storage.filesystem(cfg.storage) if storage.is_uri(cfg.storage) else (None, cfg.storage)
    )
    checkpoint = distributed.fit(
        train_loop,
        {
            "cfg": cfg,
            "run_dir": run_dir,
            "telemetry_dir": telemetry_dir,
            "objective": objective or cfg.build_objective(),
            "fault_kill_step": fault_kill_step,
            "fault_kill_node": fault_kill_node,
            "start_from": start_from,
        },
        name=cfg.name,
        storage_path=storage_path,
        storage_filesystem=storage_fs,
        scaling=cfg.scaling,
        checkpoint=cfg.checkpoint,
        callbacks=callbacks,
    )
    if telemetry_dir != run_dir:
        # Rank 0 may have run on another node: the driver's copy comes from the store.
        pull_telemetry(run_dir, telemetry_dir)
        if checkpoint:
            checkpoint = storage.join(run_dir, posixpath.basename(checkpoint.rstrip("/")))
    summary = json.loads(Path(telemetry_dir, "summary.json").read_text())
    summary["run_dir"] = run_dir  # the driver's own copy keeps any credentials it was given
    summary["checkpoint"] = checkpoint
    summary["local_dir"] = telemetry_dir  # metrics.csv, tensorboard/, plots on this machine
    # What is written beside the run never holds a credential given in a URI.
    saved = json.dumps(storage.redact_tree(summary), indent=2)
    Path(telemetry_dir, "summary.json").write_text(saved)
    push_telemetry(telemetry_dir, run_dir)
    return summary


__all__ = ["RunState", "Worker", "run_training", "train_loop"]
