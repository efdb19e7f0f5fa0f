"""Weights out of and into a run: safetensors exports, and loading any pretrained source.

An export is one folder in the layout people load models from (`save_pretrained` /
`from_pretrained`): `model.safetensors` + `config.json` (+ the caption `tokenizer.json`) +
a generated `README.md` model card (training config, measured evaluation figures;
`training.model_card`). config.json records the format, the architecture ("vatt"; absent in
older exports, which all hold VATT), its model config, the trained steps, the source
checkpoint and the training config. `export_weights` writes one from a checkpoint,
`save_pretrained` from a model in memory; `from_pretrained` (= `load_exported`) rebuilds the
model from the folder alone with torch + safetensors + `training.model`: no Ray, no DeepSpeed.
`load_pretrained` takes an export, a checkpoint folder or a run folder (its newest valid
checkpoint), which is what `vatt eval`, `vatt finetune init=` and `--pretrained` accept.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from training.checkpoint import (
    _TMP_SUFFIX,
    TRAINER_STATE,
    CheckpointError,
    _require_valid,
    _write_json_atomic,
    consolidated_state_dict,
    find_latest_checkpoint,
    looks_like_checkpoint,
    read_trainer_state,
)
from training.model import DEFAULT_ARCHITECTURE, build_architecture
from training.model_card import headline, make_model_card

EXPORT_FORMAT = "vatt-safetensors-v1"
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "config.json"
EXPORT_TOKENIZER = "tokenizer.json"
EXPORT_CARD = "README.md"
RUN_SUMMARY = "summary.json"  # a run folder's summary (held-out retrieval before / after)


def _tokenizer_path(config: dict[str, Any]) -> str:
    """`DataConfig.tokenizer_path()` of a stored TrainConfig dict (kept in step with it)."""
    data = config.get("data") or {}
    if data.get("tokenizer"):
        return data["tokenizer"]
    howto100m = data.get("howto100m") or ""
    return f"{howto100m.rstrip('/')}/tokenizer.json" if howto100m else ""


def write_export(
    out_dir: str | os.PathLike,
    state_dict: dict[str, torch.Tensor],
    architecture: str,
    model_config,
    *,
    trained_steps: int | None = None,
    source_checkpoint: str | None = None,
    tokenizer: str | os.PathLike | None = None,
    training_config: dict | None = None,
    world_size: int | None = None,
    evaluations: list[dict] | None = None,
    parameters: dict | None = None,
) -> Path:
    """Write an export folder: model.safetensors, config.json, tokenizer.json (copied when
    `tokenizer` is a file) and the README.md model card (`evaluations`: headline rows)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state_dict.items():
        value = value.detach().cpu().contiguous()
        # safetensors refuses tensors sharing storage (tied weights); give each its own copy.
        ptr = value.untyped_storage().data_ptr()
        if ptr in seen:
            value = value.clone()
        seen.add(ptr)
        tensors[key] = value
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / EXPORT_WEIGHTS
    tmp = weights.with_name(weights.name + _TMP_SUFFIX)
    save_file(tensors, str(tmp), metadata={"format": EXPORT_FORMAT})
    os.replace(tmp, weights)
    copied_tokenizer = None
    if tokenizer and Path(tokenizer).is_file():
        if Path(tokenizer).resolve() != (out_dir / EXPORT_TOKENIZER).resolve():
            shutil.copyfile(tokenizer, out_dir / EXPORT_TOKENIZER)
        copied_tokenizer = EXPORT_TOKENIZER
    config = {
        "format": EXPORT_FORMAT,
        "architecture": architecture,
        "preset": (training_config or {}).get("preset", model_config.name),
        "model_config": dataclasses.asdict(model_config),
        "trained_steps": trained_steps,
        "source_checkpoint": source_checkpoint,
        "tokenizer": copied_tokenizer,
        "world_size": world_size,
        "training_config": training_config,
    }
    _write_json_atomic(out_dir / EXPORT_CONFIG, config)
    card = make_model_card(config, training_config, evaluations or [], parameters)
    (out_dir / EXPORT_CARD).write_text(card, encoding="utf-8")
    return out_dir


def evaluation_headlines(reports: list[str | os.PathLike]) -> list[dict]:
    """Headline rows (`training.model_card.headline`) of `vatt eval` report.json files and
    run summaries; ValueError names a file that is unreadable or of no known kind."""
    rows = []
    for path in map(Path, reports):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: cannot read the evaluation report: {e}") from None
        name = path.parent.name if path.name == "report.json" else path.stem
        row = headline(report, report.get("dataset") or report.get("benchmark") or name)
        if row is None:
            raise ValueError(f"{path}: not a vatt eval report or run summary")
        rows.append(row)
    return rows


def export_weights(
    checkpoint_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    evaluations: list[str | os.PathLike] = (),
) -> Path:
    """Write the export folder (`write_export`) of a checkpoint, for `from_pretrained`.

    Args:
        checkpoint_dir: a valid checkpoint directory (refused with CheckpointError otherwise).
        out_dir: created if needed; existing export files in it are replaced.
        evaluations: `vatt eval` report.json files for the model card; the run's own
            summary.json (held-out retrieval before / after training), when the checkpoint
            sits in its run folder, is always included.
    Returns:
        out_dir.
    """
    checkpoint_dir = _require_valid(checkpoint_dir)
    state = read_trainer_state(checkpoint_dir)
    if "model_config" not in state:
        raise CheckpointError(f"{checkpoint_dir}: {TRAINER_STATE} has no model_config")
    architecture = state.get("architecture", DEFAULT_ARCHITECTURE)
    # Fails early (with the reason) on a config this code cannot build.
    shell = _rebuild(architecture, state["model_config"], checkpoint_dir)
    reports = [*evaluations]
    summary = checkpoint_dir.parent / RUN_SUMMARY
    try:
        run = json.loads(summary.read_text()) if summary.is_file() else {}
    except (OSError, ValueError):
        run = {}  # an unreadable summary only costs the card its held-out row
    # The run's held-out figures describe this checkpoint only if it is the last one.
    if isinstance(run, dict) and run.get("eval_after") and run.get("steps") == state["step"]:
        reports.insert(0, summary)
    config = state.get("config") or {}
    return write_export(
        out_dir,
        consolidated_state_dict(checkpoint_dir),
        architecture,
        shell.cfg,
        trained_steps=state["step"],
        source_checkpoint=str(checkpoint_dir.resolve()),
        tokenizer=_tokenizer_path(config),
        training_config=config or None,
        world_size=state.get("world_size"),
        evaluations=evaluation_headlines(reports),
        parameters=getattr(shell, "parameter_counts", lambda: None)(),
    )


def save_pretrained(
    model: torch.nn.Module,
    out_dir: str | os.PathLike,
    *,
    tokenizer: str | os.PathLike | None = None,
    trained_steps: int | None = None,
    training_config: dict | None = None,
    evaluations: list[str | os.PathLike] = (),
) -> Path:
    """Write `model` (any architecture of `training.model.ARCHITECTURES`) as an export folder
    that `from_pretrained` loads: weights, config, tokenizer, model card."""
    return write_export(
        out_dir,
        model.state_dict(),
        getattr(model, "architecture", DEFAULT_ARCHITECTURE),
        model.cfg,
        trained_steps=trained_steps,
        tokenizer=tokenizer,
        training_config=training_config,
        evaluations=evaluation_headlines(list(evaluations)),
        parameters=getattr(model, "parameter_counts", lambda: None)(),
    )


def _rebuild(architecture: str, model_config: dict, where) -> torch.nn.Module:
    """The stored architecture on the meta device (no time spent on a random init that the
    weights replace anyway); CheckpointError naming `where` when it cannot be built."""
    try:
        return build_architecture(architecture, model_config, device="meta")
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{where}: cannot build its {architecture} model: {e}") from None


def load_exported(path: str | os.PathLike, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Rebuild the model of an export (its folder or its model.safetensors), in eval mode.

    Needs only torch, safetensors and `training.model`: no Ray, no DeepSpeed.
    `from_pretrained` is the same function under the name people look for.
    """
    from safetensors.torch import load_file

    path = Path(path)
    folder = path.parent if path.is_file() else path
    config_path = folder / EXPORT_CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: not found (is {path} an export folder?)")
    config = json.loads(config_path.read_text())
    if config.get("format") != EXPORT_FORMAT:
        raise ValueError(
            f"{config_path}: format {config.get('format')!r}, expected {EXPORT_FORMAT}"
        )
    model = _rebuild(config.get("architecture", DEFAULT_ARCHITECTURE), config["model_config"], path)
    state_dict = load_file(str(folder / EXPORT_WEIGHTS), device=str(device))
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()


from_pretrained = load_exported


@dataclasses.dataclass(frozen=True)
class PretrainedSource:
    """Where `load_pretrained` found the weights: for reports and for finding the tokenizer."""

    kind: str  # "export" | "checkpoint"
    path: Path  # the export folder or the checkpoint folder actually read
    step: int | None  # trained steps, when recorded
    tokenizer: Path | None  # the caption tokenizer that goes with the model, when found
    skipped: tuple[tuple[Path, str], ...] = ()  # newer broken checkpoints passed over


def resolve_pretrained(path: str | os.PathLike) -> PretrainedSource:
    """Classify `path` as an export folder, a checkpoint folder or a run folder (newest valid
    checkpoint); CheckpointError with a one-line reason when it is none of them."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if (folder / EXPORT_CONFIG).is_file() and (folder / EXPORT_WEIGHTS).is_file():
        try:
            config = json.loads((folder / EXPORT_CONFIG).read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{folder / EXPORT_CONFIG}: unreadable ({e})") from None
        tok = folder / EXPORT_TOKENIZER
        return PretrainedSource(
            "export", folder, config.get("trained_steps"), tok if tok.is_file() else None
        )
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such export, checkpoint or run folder")
    skipped: list[tuple[Path, str]] = []
    if looks_like_checkpoint(path):
        checkpoint = _require_valid(path)
    else:
        found, skipped = find_latest_checkpoint(path)
        if found is None:
            what = f"{len(skipped)} found, none valid" if skipped else "none found"
            raise CheckpointError(f"{path}: not an export and no valid checkpoint ({what})")
        checkpoint = found
    state = read_trainer_state(checkpoint)
    tok = _tokenizer_path(state.get("config") or {})
    return PretrainedSource(
        "checkpoint",
        checkpoint,
        state["step"],
        Path(tok) if tok and Path(tok).is_file() else None,
        tuple(skipped),
    )


def load_pretrained(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, PretrainedSource]:
    """The model (eval mode) of an export, a checkpoint or a run folder, and its source.

    Exports load without DeepSpeed; checkpoints are consolidated (any ZeRO stage) first."""
    source = resolve_pretrained(path)
    if source.kind == "export":
        return load_exported(source.path, device), source
    state = read_trainer_state(source.path)
    if "model_config" not in state:
        raise CheckpointError(f"{source.path}: {TRAINER_STATE} has no model_config")
    architecture = state.get("architecture", DEFAULT_ARCHITECTURE)
    model = _rebuild(architecture, state["model_config"], source.path)
    state_dict = {k: v.to(device) for k, v in consolidated_state_dict(source.path).items()}
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval(), source
