"""The fine-tuned model and its loss: a pretrained tower (or a preset's random init) with a new
linear head, mixup, label-smoothed cross-entropy, and the per-item predictions over views.

`load_backbone` takes `init` as `vatt finetune` does: an export, a checkpoint or a run folder
(`training.export.load_pretrained`), or `preset:<name>` for the from-scratch baseline.
"""

from __future__ import annotations

import dataclasses
import json

import torch
import torch.nn.functional as F
from torch import nn

from training.finetune.config import SCRATCH_PREFIX
from training.finetune.data import ClipCache, batches_of

# ---------------------------------------------------------------------------------------------
# The classifier
# ---------------------------------------------------------------------------------------------


class TowerClassifier(nn.Module):
    """One VATT tower's aggregation-token output (`video_features` / `audio_features`) ->
    dropout -> a new linear head over the classes."""

    def __init__(self, vatt: nn.Module, task: str, num_classes: int, dropout: float = 0.0):
        super().__init__()
        # Keep only what this tower's features use: DDP wants a gradient for every
        # parameter, and the text tower and common-space heads would get none.
        for name in ("video_head", "audio_head", "text_head"):
            setattr(vatt, name, nn.Identity())
        for modality in ("video", "audio", "text"):
            if modality != task:
                setattr(vatt, f"{modality}_embed", nn.Identity())
                if not vatt.cfg.shared_backbone:
                    del vatt.backbones[modality]
        self.vatt = vatt
        self.task = task
        d_model = (vatt.cfg.video if task == "video" else vatt.cfg.audio).d_model
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(d_model, num_classes)
        # A zero head starts every class at the same logit (loss = log classes), so the first
        # steps do not push the pretrained tower around with a random head's gradients.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """video (B, T, H, W, 3) or audio (B, S) in [-1, 1] -> logits (B, classes)."""
        tower = self.vatt.video_features if self.task == "video" else self.vatt.audio_features
        return self.head(self.dropout(tower(x)))  # (B, D) -> (B, classes)


# ---------------------------------------------------------------------------------------------
# Loss pieces and metrics
# ---------------------------------------------------------------------------------------------


def mixup(
    x: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    gen: torch.Generator,
    per_example: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix the batch with a permutation of itself: x' = lam x + (1 - lam) x[perm],
    lam ~ Beta(alpha, alpha), one for the batch or one per example (`per_example`, the
    official code). Returns (x', labels, labels[perm], lam (B,)); the loss is
    lam * CE(y) + (1 - lam) * CE(y[perm]) per example, i.e. CE against the mixed targets."""
    # Beta(a, a) from two Gammas, drawn with our generator (torch.distributions has none).
    draws = len(x) if per_example else 1
    g = torch._standard_gamma(torch.full((draws, 2), float(alpha)), generator=gen)
    lam = (g[:, 0] / g.sum(dim=1)).expand(len(x)).to(x.device)  # (B,)
    perm = torch.randperm(len(x), generator=gen)
    w = lam.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)  # (B, 1, ...) broadcast over x
    return w * x + (1.0 - w) * x[perm], labels, labels[perm], lam


def predict_items(
    model: nn.Module, cache: ClipCache, clips: int, crops: int, batch_size: int
) -> list[tuple[str, int, torch.Tensor]]:
    """(key, label, mean logits over the item's views) for every cached item, in eval mode."""
    out = []
    with torch.no_grad():
        for i, item in enumerate(cache.items):
            views = cache.eval_views(i, clips, crops)
            logits = torch.cat([model(v) for v in batches_of(views, batch_size)])  # (V, classes)
            out.append((item.key, item.label, logits.float().mean(dim=0)))  # (classes,)
    return out


def loss_fn(logits, labels, smoothing: float, mixed=None) -> torch.Tensor:
    """Cross-entropy with label smoothing; with `mixed` = (labels_b, lam), the mixup loss."""
    if mixed is None:
        return F.cross_entropy(logits, labels, label_smoothing=smoothing)
    labels_b, lam = mixed  # lam (B,)
    ce_a = F.cross_entropy(logits, labels, label_smoothing=smoothing, reduction="none")
    ce_b = F.cross_entropy(logits, labels_b, label_smoothing=smoothing, reduction="none")
    return (lam * ce_a + (1.0 - lam) * ce_b).mean()


def pretrained_model_config(init: str):
    """The ModelConfig `init` holds, read without loading weights (for checks on the
    driver). CheckpointError / ValueError name the bad path or preset."""
    from training.checkpoint import CheckpointError, read_trainer_state
    from training.export import EXPORT_CONFIG, resolve_pretrained
    from training.model import ModelConfig, make_config

    if init.startswith(SCRATCH_PREFIX):
        return make_config(init[len(SCRATCH_PREFIX) :])
    source = resolve_pretrained(init)
    if source.kind == "export":
        doc = json.loads((source.path / EXPORT_CONFIG).read_text())
        return ModelConfig.from_dict(doc["model_config"])
    state = read_trainer_state(source.path)
    if "model_config" not in state:
        raise CheckpointError(f"{source.path}: its trainer state has no model_config")
    return ModelConfig.from_dict(state["model_config"])


def load_backbone(
    init: str,
    droptoken_rate: float,
    seed: int,
    clip_size: tuple[int, int, int] = (0, 0, 0),
) -> tuple[nn.Module, dict]:
    """The VATT model to fine-tune and a description of where it came from.

    `init=preset:<name>` builds that preset with a random init (seeded: every rank gets the
    same weights); anything else goes through `export.load_pretrained` (export, checkpoint
    or run folder). The DropToken rate is replaced by `droptoken_rate`. `clip_size`
    (frames, height, width; 0 = the pretrained size), when it differs from the pretraining
    grid, becomes the model's trained grid with its position tables interpolated
    (`training.model.with_video_grid`); `source["pretrained_clip"]` records the size the
    model was pretrained at."""
    from training.export import load_pretrained
    from training.model import VATT, build_model_from_config, make_config, with_video_grid

    if init.startswith(SCRATCH_PREFIX):
        torch.manual_seed(seed)
        # build_model_from_config: a preset with video_init starts from its image checkpoint.
        model = build_model_from_config(make_config(init[len(SCRATCH_PREFIX) :]))
        source = {"kind": "scratch", "preset": model.cfg.name, "step": 0}
    else:
        model, found = load_pretrained(init)
        source = {"kind": found.kind, "path": str(found.path), "step": found.step}
    if model.cfg.droptoken_rate != droptoken_rate:
        # The rate lives in the config the DropToken modules are built from: rebuild, reload.
        with torch.device("meta"):
            rebuilt = VATT(dataclasses.replace(model.cfg, droptoken_rate=droptoken_rate))
        rebuilt.load_state_dict(model.state_dict(), strict=True, assign=True)
        model = rebuilt
    tok = model.cfg.tokenizer
    source["pretrained_clip"] = f"{tok.frames}x{tok.height}x{tok.width}"
    pretrained = (tok.frames, tok.height, tok.width)
    model = with_video_grid(model, *(c or p for c, p in zip(clip_size, pretrained)))
    return model.train(), source
