"""Ray Train for both training loops: the driver (`fit`), the worker's context, collectives.

The only module of the training programs that imports Ray Train. Pretraining
(`training.pretrain.loop`) and fine-tuning (`training.finetune.loop`) are plain loops that
call what is here: `worker_context` (rank, world, device, a rank-0 logger), `seed_step`
(per-rank, per-step randomness), `due` (which steps log, evaluate and checkpoint), the few
collectives they need (`broadcast`, `all_reduce`, `all_gather_object`, `barrier`; no call is
made when world_size == 1), `reported_checkpoint` / `report` (Ray Train's checkpoint
bookkeeping), `wrap_ddp`, and on the driver `fit`, which runs a loop on N workers with
retention and failure handling. Workers on CPU use gloo (Ray sets the process group up);
on GPUs NCCL.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from training.checkpoint import CheckpointConfig


@dataclass(frozen=True)
class ScalingConfig:
    """Ray Train workers: CPU workers with gloo here, GPU workers with NCCL on a cluster."""

    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    # Extra CPU threads torch may use per worker (Ray sets OMP_NUM_THREADS=1 by default).
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"scaling.num_workers={self.num_workers} must be >= 1")
        if self.cpus_per_worker < 0 or self.torch_threads < 1:
            raise ValueError("scaling.cpus_per_worker must be >= 0 and torch_threads >= 1")

    def resources_per_worker(self) -> dict[str, float]:
        resources = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            resources["GPU"] = 1
        return resources


# --- Inside a worker ----------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerContext:
    """Where this worker sits: data-parallel rank and size, node-local rank, its device."""

    rank: int
    world_size: int
    local_rank: int
    device: Any  # torch.device
    on_gpu: bool

    def log(self, message: str) -> None:
        """Print on rank 0 only (the driver shows worker stdout once)."""
        if self.rank == 0:
            print(message, flush=True)


def _quiet_ray_train_logs() -> None:
    """Ray Train logs every report at INFO on the workers; our progress line says enough.
    Some of its modules name their logger by file path, outside the "ray.train" tree."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("ray.train") or f"{os.sep}ray{os.sep}train{os.sep}" in name:
            logging.getLogger(name).setLevel(logging.WARNING)


def worker_context(scaling: ScalingConfig) -> WorkerContext:
    """This Ray Train worker's context; sets its device and torch's thread count."""
    import ray.train
    import torch

    _quiet_ray_train_logs()
    ctx = ray.train.get_context()
    local_rank = ctx.get_local_rank()
    on_gpu = scaling.use_gpu and torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if on_gpu else torch.device("cpu")
    if on_gpu:
        torch.cuda.set_device(device)
    torch.set_num_threads(scaling.torch_threads)
    return WorkerContext(ctx.get_world_rank(), ctx.get_world_size(), local_rank, device, on_gpu)


def due(step: int, every: int, is_last: bool) -> bool:
    """Whether a periodic action (a log line, an evaluation, a checkpoint) runs after `step`:
    at every `every`-th step (0 = none in between) and always after the last step, so a run
    ends with its final numbers and a checkpoint to resume or export from."""
    return is_last or (every > 0 and step % every == 0)


def seed_step(seed: int, rank: int, step: int, micro: int = 0) -> int:
    """Seed torch's global RNG (CPU and every CUDA device) for one micro-batch of one rank.

    Everything random inside the model and the step (DropToken, dropout, masking) draws from
    the global RNG; a seed derived from (seed, rank, step, micro) makes those draws differ
    across ranks (the spec draws per example, not per position in a micro-batch) and replay
    exactly after a resume, which restarts at a step and not at an RNG state. Returns the seed.
    """
    import numpy as np
    import torch

    key = [seed & (2**64 - 1), rank, step, micro]
    derived = int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0])
    torch.manual_seed(derived)
    return derived


def broadcast(value: Any, rank: int, world_size: int) -> Any:
    """Rank 0's `value` on every rank (e.g. the checkpoint every rank must resume from)."""
    if world_size == 1:
        return value
    import torch.distributed as dist

    box = [value if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce(values: list[float], world_size: int, op: str = "sum") -> list[float]:
    """Sum (or mean, `op="mean"`) over ranks of a few scalars, in one float64 all_reduce."""
    if op not in ("sum", "mean"):
        raise ValueError(f"op={op!r}: sum or mean")
    if world_size == 1:
        return [float(v) for v in values]
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    if op == "mean":
        t /= world_size
    return t.tolist()


def all_gather_object(value: Any, world_size: int) -> list:
    """Every rank's `value`, in rank order (picklable objects: rows, error lists)."""
    if world_size == 1:
        return [value]
    import torch.distributed as dist

    out = [None] * world_size
    dist.all_gather_object(out, value)
    return out


def barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def wrap_ddp(module, world_size: int):
    """`module` under DistributedDataParallel on Ray Train's process group (as is on 1 rank)."""
    if world_size == 1:
        return module
    import ray.train.torch

    return ray.train.torch.prepare_model(module)


def reported_checkpoint() -> str | None:
    """The path of the newest checkpoint Ray Train holds for this run (after a worker
    restart, or when the same run name is fitted again), else None."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    return None if checkpoint is None else checkpoint.path


def report(metrics: dict, checkpoint_dir: str | None = None, dir_name: str | None = None) -> None:
    """Report metrics (and this rank's checkpoint folder, merged with the other ranks' into
    `dir_name`) to Ray Train. Every rank must call it at the same step."""
    import ray.train

    checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
    ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=dir_name)


# --- The driver ---------------------------------------------------------------------------


def fit(
    loop: Callable[[dict], None],
    loop_config: dict,
    *,
    name: str,
    storage_path: str,
    scaling: ScalingConfig,
    checkpoint: CheckpointConfig,
    storage_filesystem=None,
    callbacks: list | None = None,
) -> str | None:
    """Run `loop(loop_config)` on `scaling.num_workers` Ray Train workers (on the connected
    Ray cluster); returns the path of the last reported checkpoint, or None.

    Ray Train keeps the newest `checkpoint.keep` checkpoints of run `name` under
    `storage_path`, restarts the workers up to `checkpoint.max_failures` times from the last
    one (-1 = forever), and resumes from it when the same name is fitted again. `storage_filesystem`: a pyarrow filesystem
    for an object-store `storage_path`. `callbacks`: Ray Train `UserCallback`s."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig
    from ray.train import ScalingConfig as RayScaling
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        loop,
        train_loop_config=loop_config,
        scaling_config=RayScaling(
            num_workers=scaling.num_workers,
            use_gpu=scaling.use_gpu,
            resources_per_worker=scaling.resources_per_worker(),
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            failure_config=FailureConfig(max_failures=checkpoint.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=checkpoint.keep),
            # Ray Train's per-report INFO lines would bury our one progress line per log step.
            logging_config=LoggingConfig(log_level="WARNING"),
            callbacks=callbacks,
        ),
    )
    result = trainer.fit()
    return result.checkpoint.path if result.checkpoint else None


__all__ = [
    "ScalingConfig",
    "WorkerContext",
    "all_gather_object",
    "all_reduce",
    "barrier",
    "broadcast",
    "fit",
    "report",
    "reported_checkpoint",
    "worker_context",
    "wrap_ddp",
]
