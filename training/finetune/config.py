"""Typed configs of a fine-tuning run (`vatt finetune`) and its learning-rate schedule.

A run puts a new linear head on one pretrained VATT tower (video: UCF101/HMDB51-format split
files or Kinetics-400/600/700 CSVs, at the pretraining clip size or another one; audio:
ESC-50) and trains both with SGD + momentum, a linear warm-up and a cosine
decay, label smoothing, and mixup for audio (spec section 5). Validation lives in
`__post_init__` and names the dotted key; `pipeline.configs.from_dict` makes that a one-line
usage error. Scaling and checkpoint sections are the pretraining ones.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from training.checkpoint import CheckpointConfig
from training.data.augment import AugmentConfig
from training.distributed import ScalingConfig

TASKS = ("video", "audio")
# data.dataset: the labelled set's format and the task it serves ("" = by task).
DATASETS = {"ucf101": "video", "hmdb51": "video", "kinetics": "video", "esc50": "audio"}
DEFAULT_DATASET = {"video": "ucf101", "audio": "esc50"}
_NEEDED_KEYS = {
    "ucf101": ("ucf101_splits", "ucf101_videos"),
    "hmdb51": ("ucf101_splits", "ucf101_videos"),  # converted to the UCF101 files
    "kinetics": ("kinetics_train_csv", "kinetics_test_csv", "kinetics_videos"),
    "esc50": ("esc50_csv", "esc50_audio"),
}
# `init=preset:<name>`: the architecture of a model preset, randomly initialised (the
# from-scratch baseline a pretrained tower must beat).
SCRATCH_PREFIX = "preset:"


@dataclass(frozen=True)
class FinetuneDataConfig:
    """Where the labelled set is and how clips are cut from it."""

    # ucf101 | hmdb51 | kinetics | esc50; "" = ucf101 for task=video, esc50 for task=audio.
    dataset: str = ""
    # task=video: UCF101-format split files (HMDB51 converted to them reads the same way).
    ucf101_splits: str = ""  # folder with classInd.txt, trainlist0N.txt, testlist0N.txt
    ucf101_videos: str = ""  # folder of <Class>/<file>
    split: int = 1
    # task=audio: ESC-50; the fold is the test set, the other folds train.
    esc50_csv: str = ""
    esc50_audio: str = ""
    fold: int = 1
    # dataset=kinetics: the official CSVs (label,youtube_id,time_start,time_end,split) and the
    # clips, <YTID>_<start:06d>_<end:06d>.<ext> anywhere under the folder (<label>/<file>).
    kinetics_train_csv: str = ""
    kinetics_test_csv: str = ""  # the validation CSV (Kinetics' test CSVs have no labels)
    kinetics_videos: str = ""
    # Video clip size while fine-tuning; 0 = the pretraining grid. Another size (a multiple
    # of the video patch) interpolates the pretrained position tables once to the new grid:
    # the spec fine-tunes a 224-trained model at 32 x 320 x 320.
    frames: int = 0
    height: int = 0
    width: int = 0
    clip_seconds: float = 3.2  # one window, as in pretraining (spec section 1)
    fps: float = 10.0
    sample_rate: int = 48_000  # decoded at the pretraining shards' rate, then pooled
    # Frames are decoded with this short side (then cropped to the model's size); 0 = 8/7 of
    # the model's crop, the 256-for-224 margin of pretraining.
    short_side: int = 0
    jpeg_qscale: int = 3  # decoded frames are cached as JPEG, like shard frames
    # Scale each audio file to peak 1: ESC-50-style clips come at any level, and a quiet one
    # (the sample corpus's are at 0.3-1% RMS) is drowned by the tokens' position embeddings.
    audio_peak_normalize: bool = True

    def __post_init__(self) -> None:
        if self.dataset and self.dataset not in DATASETS:
            raise ValueError(f"data.dataset={self.dataset!r}: choose one of {', '.join(DATASETS)}")
        for key in ("frames", "height", "width"):
            if getattr(self, key) < 0:
                raise ValueError(
                    f"data.{key}={getattr(self, key)}: 0 (the pretraining size) or more"
                )
        if self.split < 1 or self.fold < 1:
            raise ValueError(f"data.split={self.split} and data.fold={self.fold} must be >= 1")
        if self.clip_seconds <= 0 or self.fps <= 0 or self.sample_rate < 1:
            raise ValueError("data.clip_seconds, data.fps and data.sample_rate must be > 0")
        if self.short_side < 0 or self.short_side % 2:
            raise ValueError(f"data.short_side={self.short_side}: 0 or an even number")
        if not 2 <= self.jpeg_qscale <= 31:
            raise ValueError(f"data.jpeg_qscale={self.jpeg_qscale} must be in [2, 31]")


@dataclass(frozen=True)
class FinetuneOptimConfig:
    """SGD with momentum; linear warm-up to `lr`, then a half cosine to `end_lr` at the end."""

    lr: float = 0.005  # the paper's video fine-tuning rate (spec section 5)
    end_lr: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    warmup_steps: int = 100
    label_smoothing: float = 0.1
    grad_clip: float = 0.0  # max global grad norm; 0 = off

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.end_lr < 0:
            raise ValueError(f"optim.lr={self.lr}, end_lr={self.end_lr}: need lr > 0, end_lr >= 0")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"optim.momentum={self.momentum} must be in [0, 1)")
        if self.nesterov and self.momentum == 0:
            raise ValueError("optim.nesterov needs optim.momentum > 0")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.warmup_steps < 0:
            raise ValueError("optim.weight_decay, grad_clip and warmup_steps must be >= 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"optim.label_smoothing={self.label_smoothing} must be in [0, 1)")


@dataclass(frozen=True)
class FinetuneEvalConfig:
    """Test-set evaluation: logits averaged over clips x crops views of each item."""

    clips: int = 4  # uniformly spaced temporal windows
    crops: int = 3  # spatial crops along the long side (video only)
    every_steps: int = 0  # 0 = only after the last step
    batch_size: int = 32  # views per forward pass

    def __post_init__(self) -> None:
        if self.clips < 1 or self.crops < 1 or self.batch_size < 1:
            raise ValueError("eval.clips, eval.crops and eval.batch_size must be >= 1")
        if self.every_steps < 0:
            raise ValueError(f"eval.every_steps={self.every_steps} must be >= 0")


def _finetune_augment() -> AugmentConfig:
    # Fine-tuning keeps crop + flip (spec: random crop, flip); no colour jitter, which would
    # blur the very cue (colour) several sample-corpus classes differ by.
    return AugmentConfig(
        crop_area=(0.25, 1.0), brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0
    )


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run: `vatt finetune --config X.yaml key=value ...` builds this."""

    data: FinetuneDataConfig
    task: str = "video"  # video | audio
    # An export folder, a checkpoint folder, a run folder (its newest valid checkpoint), or
    # "preset:<name>" for that architecture from a random init.
    init: str = ""
    name: str = "finetune"  # outputs in <storage>/<name>; same name = resume
    storage: str = "runs"
    optim: FinetuneOptimConfig = field(default_factory=FinetuneOptimConfig)
    augment: AugmentConfig = field(default_factory=_finetune_augment)
    eval: FinetuneEvalConfig = field(default_factory=FinetuneEvalConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    batch_size: int = 8  # clips per worker per step
    max_steps: int = 1000
    log_every: int = 10
    dropout: float = 0.0  # before the new head
    # DropToken while fine-tuning (the towers were pretrained with it); 0 = every token.
    droptoken_rate: float = 0.0
    # Audio: mixup of each batch with itself permuted, lambda ~ Beta(a, a) (spec: a = 5);
    # 0 = off. Ignored for video.
    mixup_alpha: float = 5.0
    # One lambda per example (the official code) instead of one per batch (the spec's reading).
    mixup_per_example: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r}: choose one of {', '.join(TASKS)}")
        if not self.init:
            raise ValueError(
                "init: set the pretrained model (export, checkpoint or run folder) or "
                f"{SCRATCH_PREFIX}<name> for a random init"
            )
        if DATASETS[self.dataset] != self.task:
            kind = DATASETS[self.dataset]
            raise ValueError(f"data.dataset={self.dataset} holds {kind}, not task={self.task}")
        for key in _NEEDED_KEYS[self.dataset]:
            if not getattr(self.data, key):
                raise ValueError(f"data.{key}: needed for data.dataset={self.dataset}")
        if self.task == "audio" and (self.data.frames or self.data.height or self.data.width):
            raise ValueError("data.frames/height/width: video clip sizes, not for task=audio")
        if self.batch_size < 1 or self.max_steps < 1 or self.log_every < 1:
            raise ValueError("batch_size, max_steps and log_every must be >= 1")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.droptoken_rate < 1.0:
            raise ValueError("dropout and droptoken_rate must be in [0, 1)")
        if self.mixup_alpha < 0:
            raise ValueError(f"mixup_alpha={self.mixup_alpha} must be >= 0 (0 = off)")
        if not self.name or "/" in self.name:
            raise ValueError(f"name={self.name!r}: a non-empty run name without '/'")

    @property
    def dataset(self) -> str:
        """The labelled set: data.dataset, else the task's default."""
        return self.data.dataset or DEFAULT_DATASET[self.task]

    @property
    def scratch_preset(self) -> str | None:
        """The preset name of `init=preset:<name>`, else None."""
        return self.init[len(SCRATCH_PREFIX) :] if self.init.startswith(SCRATCH_PREFIX) else None

    def with_absolute_paths(self) -> FinetuneConfig:
        """A copy whose local paths are absolute (Ray Train workers have their own cwd)."""

        def fix(path: str) -> str:
            return path if not path or "://" in path else os.path.abspath(path)

        data = dataclasses.replace(
            self.data,
            **{
                k: fix(getattr(self.data, k))
                for k in (
                    "ucf101_splits",
                    "ucf101_videos",
                    "esc50_csv",
                    "esc50_audio",
                    "kinetics_train_csv",
                    "kinetics_test_csv",
                    "kinetics_videos",
                )  # fmt: skip
            },
        )
        init = self.init if self.scratch_preset is not None else fix(self.init)
        return dataclasses.replace(self, data=data, init=init, storage=fix(self.storage))

    def run_dir(self) -> str:
        return os.path.join(self.storage, self.name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def finetune_lr(step: int, cfg: FinetuneOptimConfig, max_steps: int) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warm-up from lr / warmup to
    lr, then end_lr + (lr - end_lr) * (1 + cos(pi * p)) / 2 with p going 0 -> 1 over the
    remaining steps (a half cosine: fine-tuning runs are short and end at end_lr)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, max_steps - cfg.warmup_steps)
    p = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.end_lr + (cfg.lr - cfg.end_lr) * 0.5 * (1.0 + math.cos(math.pi * p))
