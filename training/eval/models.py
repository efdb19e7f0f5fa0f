"""The model an evaluation scores: pretrained weights from any source, or the same
architecture untrained (the baseline a trained model must beat)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LoadedModel:
    model: object  # e.g. training.model.VATT, eval mode
    label: str  # "trained" | "untrained"
    source: dict  # kind, path, step: for the report
    tokenizer: Path | None


def load_models(path: str | Path, *, untrained: bool, seed: int = 0) -> list[LoadedModel]:
    """[trained] or [trained, untrained]: the untrained model has the same config, its own
    random init (seeded), and no training. CheckpointError names the bad path."""
    import torch

    from training.export import load_pretrained

    model, source = load_pretrained(path)
    info = {"kind": source.kind, "path": str(source.path), "step": source.step}
    out = [LoadedModel(model, "trained", info, source.tokenizer)]
    if untrained:
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        baseline = type(model)(model.cfg).eval()
        torch.random.set_rng_state(state)
        out.append(
            LoadedModel(
                baseline, "untrained", {**info, "step": 0, "init_seed": seed}, source.tokenizer
            )
        )
    return out
