"""Training checkpoints (DeepSpeed files + trainer state + per-rank manifests) and weight export.

A checkpoint directory, after Ray Train has merged what every rank reported, holds:

    ds/...                      DeepSpeed's files, tag "ds" (model states, per-rank ZeRO
                                optimizer shards; `latest`, `zero_to_fp32.py` from rank 0)
    trainer_state.json          rank 0: step, samples_seen, loader position, the resolved
                                TrainConfig under "config", the architecture ("vatt";
                                absent in older checkpoints, which all hold VATT) and its
                                model config under "model_config", world_size, zero_stage,
                                time
    manifest_rank<R>.json       one per rank, written LAST by that rank: {rank, world_size,
                                step, files: {relative path: size in bytes}}

A rank's manifest exists only once its files are complete, so a checkpoint is valid exactly
when every rank's manifest is there and every file it lists has the recorded size
(`validate_checkpoint`). A crash half-way through a save, or a Ray upload that lost a rank,
leaves a directory that `find_latest_checkpoint` skips with a reason.

`consolidated_state_dict` merges the ZeRO shards of any stage into one fp32 state dict, which
`training.export` turns into safetensors. DeepSpeed is imported lazily, inside the functions
that need an engine or ZeRO files. No Ray here: `training.distributed` reports the folder.

Trust boundary: a checkpoint is data, never code. Every `torch.load` of a checkpoint file
(ours, DeepSpeed's engine on resume and its `zero_to_fp32` on export/`--pretrained`) runs
with `weights_only=True` and an allow-list of the few DeepSpeed classes its optimizer states
hold (`_weights_only_loads`); before anything is unpickled, the pickles are scanned and a
file that names any other callable is refused with a one-line CheckpointError. So whoever
can write the checkpoint bucket can corrupt weights, not run code on the ranks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import json
import os
import pickle
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from preprocessing import storage
from training.model import DEFAULT_ARCHITECTURE

DS_TAG = "ds"
TRAINER_STATE = "trainer_state.json"
CHECKPOINT_FORMAT = "vatt-checkpoint-v1"
_MANIFEST_RE = re.compile(r"^manifest_rank(\d+)\.json$")
_TMP_SUFFIX = ".tmp"
# Besides tensors and plain containers, DeepSpeed 0.19.8's checkpoints pickle only these
# (torch.serialization.get_unsafe_globals_in_checkpoint over ZeRO 0-3 saves, fp32 and bf16;
# DynamicLossScaler is fp16's). A weights-only load may rebuild them; nothing else.
ALLOWED_PICKLE_GLOBALS = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)
# Read by torch on every torch.load (torch >= 2.4): forces weights_only=True even where the
# caller (DeepSpeed's engine and zero_to_fp32) explicitly asks for full unpickling.
_FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"


@dataclass(frozen=True)
class CheckpointConfig:
    """When a training loop checkpoints, and what the driver keeps (Ray Train retention)."""

    every_steps: int = 500  # also one at the last step
    keep: int = 3  # newest checkpoints kept
    max_failures: int = 2  # worker-failure restarts from the last checkpoint (-1 = forever)

    def __post_init__(self) -> None:
        if self.every_steps < 1 or self.keep < 1:
            raise ValueError("checkpoint.every_steps and checkpoint.keep must be >= 1")
        if self.max_failures < -1:
            raise ValueError("checkpoint.max_failures must be >= -1")


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or unreadable; the message says which file and why."""


def manifest_name(rank: int) -> str:
    return f"manifest_rank{rank}.json"


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write to a temp file and rename: a reader never sees half a JSON file."""
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every regular file under `directory`."""
    files = {}
    for path in directory.rglob("*"):
        if path.is_file():
            stat = path.stat()
            files[path.relative_to(directory).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return files


def _is_bookkeeping(rel: str) -> bool:
    # Manifests and temp files are never part of a rank's payload; trainer_state.json is added
    # by rank 0 explicitly (on a shared directory another rank could see it half-written).
    return bool(_MANIFEST_RE.match(rel)) or rel.endswith(_TMP_SUFFIX) or rel == TRAINER_STATE


def write_checkpoint(
    engine, directory: str | os.PathLike, *, rank: int, world_size: int, step: int, state: dict
) -> None:
    """Save one rank's part of a checkpoint into `directory` (every rank must call this).

    Args:
        engine: the DeepSpeed engine; under ZeRO every rank holds a shard, so every rank saves.
        directory: this rank's directory (in the Ray flow a fresh temp dir per rank, which Ray
            merges into one checkpoint on `ray.train.report`).
        rank, world_size: this process in the data-parallel group.
        step: optimizer steps done.
        state: trainer state written by rank 0 to trainer_state.json: samples_seen, loader
            ({epoch, start_step}), config (TrainConfig.to_dict()), architecture (default
            "vatt"), model_config (filled in from `engine.module.cfg` when absent).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # A stale manifest of this rank would vouch for files this save is about to overwrite.
    (directory / manifest_name(rank)).unlink(missing_ok=True)
    before = _snapshot(directory)
    # client_state stays tiny: the real trainer state lives in JSON, readable without torch.
    engine.save_checkpoint(str(directory), tag=DS_TAG, client_state={"vatt_step": step})
    after = _snapshot(directory)
    files = {
        rel: size
        for rel, (size, mtime) in after.items()
        if before.get(rel) != (size, mtime) and not _is_bookkeeping(rel)
    }
    if rank == 0:
        # The arguments win over same-named keys of `state`: the manifests record them too,
        # and a disagreement would make the checkpoint invalid.
        trainer_state = {
            **state,
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "world_size": world_size,
            "zero_stage": _zero_stage(engine),
            "time": time.time(),
        }
        module_cfg = getattr(getattr(engine, "module", None), "cfg", None)
        if "model_config" not in trainer_state and dataclasses.is_dataclass(module_cfg):
            trainer_state["model_config"] = dataclasses.asdict(module_cfg)
        trainer_state.setdefault("architecture", DEFAULT_ARCHITECTURE)
        _write_json_atomic(directory / TRAINER_STATE, trainer_state)
        files[TRAINER_STATE] = (directory / TRAINER_STATE).stat().st_size
    manifest = {
        "rank": rank,
        "world_size": world_size,
        "step": step,
        "files": dict(sorted(files.items())),
    }
    _write_json_atomic(directory / manifest_name(rank), manifest)


def _zero_stage(engine) -> int:
    stage = getattr(engine, "zero_optimization_stage", None)
    return int(stage()) if callable(stage) else 0


def _listing(directory: str) -> dict[str, int] | None:
    """{relative path: size} of every file under `directory` (a path or an object-store URI)
    from one recursive listing (one request on S3, not one per file); None if no folder."""
    from pyarrow import fs

    fsys, root = storage.filesystem(directory)
    if fsys.get_file_info(root).type != fs.FileType.Directory:
        return None
    root = root.rstrip("/")
    return {
        info.path[len(root) + 1 :]: info.size
        for info in fsys.get_file_info(fs.FileSelector(root, recursive=True))
        if info.type == fs.FileType.File
    }


def _children(directory: str) -> tuple[list[str], list[str]]:
    """(file names, sub-folder names) directly under `directory` (a path or a URI)."""
    from pyarrow import fs

    fsys, root = storage.filesystem(directory)
    files, folders = [], []
    try:
        infos = fsys.get_file_info(fs.FileSelector(root, allow_not_found=True))
    except NotADirectoryError:
        return [], []
    for info in infos:
        (folders if info.type == fs.FileType.Directory else files).append(info.base_name)
    return files, folders


def _name(directory: str | os.PathLike) -> str:
    return os.path.basename(str(directory).split("?")[0].rstrip("/"))


def read_trainer_state(directory: str | os.PathLike) -> dict[str, Any]:
    """The trainer_state.json of a checkpoint (a path or a URI); CheckpointError when missing
    or unreadable."""
    path = storage.join(str(directory), TRAINER_STATE)
    if not storage.exists(path):
        raise CheckpointError(f"{directory}: missing {TRAINER_STATE}")
    try:
        state = json.loads(storage.read_text(path))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{path}: not a trainer state (no integer 'step')")
    return state


def validate_checkpoint(directory: str | os.PathLike) -> tuple[bool, str]:
    """Is `directory` (a path or an object-store URI) a complete checkpoint? Returns (ok,
    one-line reason; "ok" when valid). Reads only the JSON files and one listing of sizes."""
    sizes = _listing(str(directory))
    if sizes is None:
        return False, f"{directory} is not a directory"
    try:
        state = read_trainer_state(directory)
    except CheckpointError as e:
        return False, str(e).removeprefix(f"{directory}: ")
    world_size = state.get("world_size")
    if not isinstance(world_size, int) or world_size < 1:
        return False, f"{TRAINER_STATE}: bad world_size {world_size!r}"
    for rank in range(world_size):
        name = manifest_name(rank)
        if name not in sizes:
            return False, f"missing {name}"
        try:
            manifest = json.loads(storage.read_text(storage.join(str(directory), name)))
            files = manifest["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return False, f"{name}: unreadable"
        if manifest.get("step") != state["step"] or manifest.get("world_size") != world_size:
            # Ranks of two different saves mixed in one directory.
            return False, (
                f"{name}: step {manifest.get('step')}/world_size {manifest.get('world_size')}, "
                f"trainer state has step {state['step']}/world_size {world_size}"
            )
        for rel, size in files.items():
            actual = sizes.get(rel)
            if actual is None:
                return False, f"{rel}: missing (listed in {name})"
            if actual != size:
                return False, f"{rel}: {actual} bytes, expected {size}"
    return True, "ok"


def _checkpoint_step(directory: str) -> int:
    """The step a (possibly broken) checkpoint claims, for ordering; -1 when none is readable."""
    try:
        return read_trainer_state(directory)["step"]
    except CheckpointError:
        pass
    for name in sorted(_children(directory)[0]):
        if not _MANIFEST_RE.match(name):
            continue
        try:
            step = json.loads(storage.read_text(storage.join(directory, name))).get("step")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(step, int):
            return step
    return -1


def looks_like_checkpoint(directory: str | os.PathLike) -> bool:
    """Does `directory` (a path or a URI) hold checkpoint bookkeeping (valid or not)?"""
    files = _children(str(directory))[0]
    return TRAINER_STATE in files or any(_MANIFEST_RE.match(n) for n in files)


def list_checkpoints(run_dir: str | os.PathLike, max_depth: int = 2) -> list[Path | str]:
    """Checkpoint-looking directories at most `max_depth` levels under `run_dir`, oldest first.

    Ray Train V2 writes `<storage>/<name>/checkpoint_<timestamp>/`, so depth 1 below a run
    directory; depth 2 also covers a storage folder or a trial folder. A checkpoint's own
    subfolders (`ds/`) are not searched. `run_dir` may be an object-store URI; then URIs are
    returned, else Paths.
    """
    root = str(run_dir)
    found: list[str] = []
    level = [root]
    for depth in range(max_depth + 1):
        next_level = []
        for directory in level:
            files, folders = _children(directory)
            if TRAINER_STATE in files or any(_MANIFEST_RE.match(n) for n in files):
                found.append(directory)
            elif depth < max_depth:
                next_level.extend(storage.join(directory, name) for name in sorted(folders))
        level = next_level
    # Step first; the directory name (Ray's timestamp) breaks ties between equal steps.
    found.sort(key=lambda p: (_checkpoint_step(p), _name(p)))
    return [p if storage.is_uri(p) else Path(p) for p in found]


def find_latest_checkpoint(
    run_dir: str | os.PathLike,
) -> tuple[Path | str | None, list[tuple[Path | str, str]]]:
    """The newest valid checkpoint under `run_dir` (a path or a URI; by trainer step).

    Returns (path or None, skipped): skipped lists the invalid checkpoints newer than the one
    returned (all of them when none is valid), newest first, each with its reason.
    """
    skipped: list[tuple[Path | str, str]] = []
    for candidate in reversed(list_checkpoints(run_dir)):
        ok, reason = validate_checkpoint(candidate)
        if ok:
            return candidate, skipped
        skipped.append((candidate, reason))
    return None, skipped


def download_checkpoint(uri: str, local_dir: str | os.PathLike) -> Path:
    """Copy a checkpoint from an object store into `local_dir` (replaced) and validate the
    copy (a cut transfer must not be loaded); returns the local folder."""
    local_dir = Path(local_dir)
    shutil.rmtree(local_dir, ignore_errors=True)
    storage.copy_tree(uri, str(local_dir))
    return _require_valid(local_dir)


def _require_valid(directory: str | os.PathLike) -> Path:
    directory = Path(directory)
    ok, reason = validate_checkpoint(directory)
    if not ok:
        raise CheckpointError(f"{directory}: not a valid checkpoint: {reason}")
    return directory


def _check_pickles(directory: Path) -> list[str]:
    """Scan every torch file of a checkpoint (pickle opcodes only: nothing is executed) and
    refuse one that names a callable outside ALLOWED_PICKLE_GLOBALS. Returns the allowed
    globals found, which the load then has to allow-list."""
    needed: set[str] = set()
    for path in sorted((directory / DS_TAG).rglob("*.pt")):
        rel = path.relative_to(directory).as_posix()
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception as e:  # not a zip-format torch file, or a corrupt one: never unpickle it
            raise CheckpointError(
                f"{directory}: refused {rel}: not a readable torch zip file ({type(e).__name__})"
            ) from None
        unknown = sorted(set(names) - set(ALLOWED_PICKLE_GLOBALS))
        if unknown:
            raise CheckpointError(
                f"{directory}: refused {rel}: its pickle calls {', '.join(unknown)}; a "
                "checkpoint may hold only tensors and DeepSpeed's state (see 'Security' in "
                "docs/training.md)"
            )
        needed |= set(names)
    return sorted(needed)


@contextlib.contextmanager
def _weights_only_loads(directory: Path):
    """Every torch.load inside runs with weights_only=True, DeepSpeed's included (see the
    module docstring); an unpickling refusal becomes a one-line CheckpointError."""
    allowed = []
    for name in _check_pickles(directory):
        module, _, attr = name.rpartition(".")
        allowed.append(getattr(importlib.import_module(module), attr))
    saved = os.environ.get(_FORCE_WEIGHTS_ONLY)
    os.environ[_FORCE_WEIGHTS_ONLY] = "1"
    try:
        with torch.serialization.safe_globals(allowed):
            yield
    except pickle.UnpicklingError as e:
        # torch's message spans many lines; its "WeightsUnpickler error:" line is the cause.
        cause = str(e).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise CheckpointError(f"{directory}: refused to unpickle: {cause}") from None
    finally:
        if saved is None:
            os.environ.pop(_FORCE_WEIGHTS_ONLY, None)
        else:
            os.environ[_FORCE_WEIGHTS_ONLY] = saved


def load_into_engine(engine, directory: str | os.PathLike) -> dict[str, Any]:
    """Restore model, optimizer and scheduler state of `engine` (every rank calls this).

    Returns the trainer state (step, samples_seen, loader position, ...) to resume counters.
    """
    directory = _require_valid(directory)
    with _weights_only_loads(directory):
        load_path, _ = engine.load_checkpoint(str(directory), tag=DS_TAG)
    if load_path is None:
        raise CheckpointError(f"{directory}: DeepSpeed found nothing to load under tag {DS_TAG!r}")
    return read_trainer_state(directory)


def _strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        while key.startswith("module."):
            key = key.removeprefix("module.")
        out[key] = value
    return out


def _model_states_file(ds_dir: Path) -> Path:
    """The file holding the module state dict with buffers (rank 0's under ZeRO-3)."""
    for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt"):
        if (ds_dir / name).is_file():
            return ds_dir / name
    raise CheckpointError(f"{ds_dir}: no model states file (mp_rank_00_model_states.pt)")


def consolidated_state_dict(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Full fp32 weights (parameters and buffers) of a checkpoint, on CPU, keys of the model.

    ZeRO 1/2/3: DeepSpeed's `zero_to_fp32` merges the fp32 master shards of every rank (its
    output already includes the buffers, e.g. BatchNorm running statistics; any buffer it
    missed is taken from the model states file). ZeRO-0: the module state dict itself (bf16
    weights are upcast; there are no separate fp32 masters to read).
    """
    directory = Path(directory)
    ds_dir = directory / DS_TAG
    try:
        stage = read_trainer_state(directory).get("zero_stage")
    except CheckpointError:
        stage = None
    if stage is None:  # no trainer state: ZeRO shards exist iff the stage was >= 1
        stage = 1 if any(ds_dir.glob("*zero_pp_rank_*_optim_states.pt")) else 0
    with _weights_only_loads(directory):
        module_states = torch.load(_model_states_file(ds_dir), map_location="cpu")
        module = _strip_module_prefix(module_states["module"])
        if stage == 0:
            state_dict = module
        else:
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

            # zero_to_fp32 prints progress (stdout) and progress bars (stderr); the export
            # command's output is its own report.
            quiet = io.StringIO()
            with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
                merged = get_fp32_state_dict_from_zero_checkpoint(str(directory), tag=DS_TAG)
            state_dict = _strip_module_prefix(merged)
            buffer_names = module_states.get("buffer_names", [])
            for name in buffer_names:
                key = name.removeprefix("module.")
                if key not in state_dict and key in module:
                    state_dict[key] = module[key]
    return {
        key: value.float() if value.is_floating_point() else value
        for key, value in state_dict.items()
    }


def param_checksum(module) -> float | None:
    """Sum of all parameters in fp64: a cheap "same weights?" check across save and load.
    None under ZeRO-3, where each rank holds only a shard (a gather would cost a full copy)."""
    params = list(module.parameters())
    if any(hasattr(p, "ds_id") for p in params):
        return None
    with torch.no_grad():
        return float(sum(p.detach().double().sum() for p in params))
