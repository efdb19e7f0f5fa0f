"""What a pretraining run folder holds, and how a worker finds where to resume in it.

`<storage>/<name>/` (a folder, or an object-store URI) holds the run's checkpoints
(`checkpoint_<step>/`, written by Ray Train) and its telemetry (metrics.csv, eval.csv,
tensorboard/, plots/, resumes.jsonl, summary.json, train_config.json). Telemetry is written
locally: the run folder itself, or for an object-store run a local mirror that rank 0 refreshes
before appending (`pull_telemetry`) and uploads after every checkpoint (`push_telemetry`).

Resuming (`resume_point`): Ray Train restores its checkpoint list when the same run name and
storage are used again (and after a worker failure) and names the newest; it is validated
(every rank's manifest and file sizes, `training.checkpoint`), and otherwise the newest valid
checkpoint on disk is used, so a half-written one is never loaded. An object-store
checkpoint is downloaded by the first rank of each node (`local_checkpoint`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import tempfile

from preprocessing import storage
from training import distributed
from training.checkpoint import download_checkpoint, find_latest_checkpoint, validate_checkpoint

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


def local_run_dir(run_dir: str, name: str) -> str:
    """Where telemetry is written: the run folder itself, or, when it is an object-store URI,
    a local mirror (TensorBoard and CSV writers need a filesystem) that rank 0 uploads after
    every checkpoint and the driver downloads at the end."""
    return storage.local_mirror(run_dir, "runs", name)


def pull_telemetry(run_dir: str, local_dir: str) -> None:
    """Replace `local_dir` with the telemetry of `run_dir` (a URI): a resumed run continues
    metrics.csv and TensorBoard where the last upload left them, on whichever node."""
    shutil.rmtree(local_dir, ignore_errors=True)
    os.makedirs(local_dir, exist_ok=True)
    storage.copy_tree(run_dir, local_dir, include=is_telemetry)


def push_telemetry(local_dir: str, run_dir: str) -> None:
    if local_dir != run_dir:
        storage.copy_tree(local_dir, run_dir, include=is_telemetry)


def resume_point(
    run_dir: str, rank: int, start_from: str | None = None
) -> tuple[str | None, list[str]]:
    """On rank 0: the checkpoint to resume from (None = fresh start) and notes on skipped ones.

    The run's own checkpoints win; `start_from` (another run's checkpoint) seeds a run that has
    none yet, e.g. a Tune trial restarted from its last report or a PBT trial cloning another.
    Other ranks get (None, []) and receive rank 0's answer by broadcast."""
    if rank != 0:
        return None, []
    notes: list[str] = []
    reported = distributed.reported_checkpoint()
    if reported is not None:
        # On an object store Ray's path has no scheme: name the checkpoint by its URI.
        where = reported
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


@contextlib.contextmanager
def local_checkpoint(checkpoint: str, local_rank: int, world_size: int):
    """A local folder holding `checkpoint`: the folder itself, or for an object-store URI a
    validated copy that the first rank of each node downloads (DeepSpeed loads from files)
    and removes once every rank has loaded it."""
    if not storage.is_uri(checkpoint):
        yield checkpoint
        return
    tag = hashlib.sha1(checkpoint.encode()).hexdigest()[:12]
    local = os.path.join(tempfile.gettempdir(), "vatt-resume", tag)
    if local_rank == 0:
        download_checkpoint(checkpoint, local)
    distributed.barrier(world_size)
    try:
        yield local
    finally:
        distributed.barrier(world_size)
        if local_rank == 0:
            shutil.rmtree(local, ignore_errors=True)
