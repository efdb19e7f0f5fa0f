"""Typed configs of a pretraining run: data, augmentation, optimizer, DeepSpeed, scaling,
checkpoints, held-out evaluation, and the run as a whole (`TrainConfig`).

Every number of the spec (section 4) is a field here; `configs/train/*.yaml` name presets.
The model itself is `preset` + `model` overrides (a dict handed to `build_model`, so any
ModelConfig field, e.g. `model.droptoken_rate`, can be set from YAML or the command line).
Validation lives in `__post_init__` and raises ValueError with the field's dotted name;
`pipeline.configs.from_dict` turns that into a one-line usage error.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from preprocessing import storage
from training.losses import LossConfig


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only augmentation (spec section 1); evaluation uses a centre crop."""

    # Random resized crop: fraction of the frame area and aspect ratio range (Inception-style).
    crop_area: tuple[float, float] = (0.08, 1.0)
    crop_aspect: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    # Colour jitter strengths (torchvision semantics): factor in [1-s, 1+s], hue shift in [-h, h].
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    # Gaussian noise on the waveform, std = audio_noise * max|x| (spec: 0.01); 0 disables.
    audio_noise: float = 0.01

    def __post_init__(self) -> None:
        lo, hi = self.crop_area
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"augment.crop_area={self.crop_area}: need 0 < min <= max <= 1")
        lo, hi = self.crop_aspect
        if not 0.0 < lo <= hi:
            raise ValueError(f"augment.crop_aspect={self.crop_aspect}: need 0 < min <= max")
        for name in ("brightness", "contrast", "saturation", "audio_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name}={getattr(self, name)} must be >= 0")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"augment.hue={self.hue} must be in [0, 0.5]")


@dataclass(frozen=True)
class DataConfig:
    """Where the shards are and how training examples are drawn from them.

    The clip's *shape* (frames, crop size, audio samples) comes from the model's tokenizer
    config; this section says how many seconds a clip spans, so frames and audio are
    subsampled to fit (e.g. the debug model's 8 frames over 3.2 s take every 4th frame at
    10 fps, and its 6400 audio samples average-pool 48 kHz audio by 24).
    """

    # Shard folders/files (as written by `vatt preprocess`); "" = that source is not used.
    howto100m: str = ""
    audioset: str = ""
    # Sampling weights of the two sources per example (spec: 50/50); renormalised over the
    # sources that are set.
    howto100m_weight: float = 0.5
    audioset_weight: float = 0.5
    # tokenizer.json; "" = <howto100m>/tokenizer.json (written by `vatt preprocess howto100m`).
    tokenizer: str = ""
    clip_seconds: float = 3.2  # random temporal crop length (32 frames at 10 fps)
    num_captions: int = 5
    max_words: int = 16
    shuffle_buffer: int = 256  # samples held per loader worker for shuffling
    loader_workers: int = 2  # torch DataLoader worker processes per training worker
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if not (self.howto100m or self.audioset):
            raise ValueError("data: set data.howto100m and/or data.audioset (shard folders)")
        for name in ("howto100m_weight", "audioset_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"data.{name}={getattr(self, name)} must be >= 0")
        if self.source_weights() == {}:
            raise ValueError("data: the weights of the sources that are set sum to 0")
        if self.clip_seconds <= 0:
            raise ValueError(f"data.clip_seconds={self.clip_seconds} must be > 0")
        for name in ("num_captions", "max_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name}={getattr(self, name)} must be >= 1")
        if self.shuffle_buffer < 1:
            raise ValueError(f"data.shuffle_buffer={self.shuffle_buffer} must be >= 1")
        if self.loader_workers < 0:
            raise ValueError(f"data.loader_workers={self.loader_workers} must be >= 0")

    def source_weights(self) -> dict[str, float]:
        """{source: probability} over the sources that are set and have weight > 0."""
        raw = {
            "howto100m": self.howto100m_weight if self.howto100m else 0.0,
            "audioset": self.audioset_weight if self.audioset else 0.0,
        }
        total = sum(raw.values())
        return {k: v / total for k, v in raw.items() if v > 0} if total > 0 else {}

    def tokenizer_path(self) -> str:
        if self.tokenizer:
            return self.tokenizer
        if not self.howto100m:
            return ""  # AudioSet only: no text, the text tower gets padding
        if storage.is_uri(self.howto100m):
            return storage.join(self.howto100m, "tokenizer.json")
        return f"{self.howto100m.rstrip('/')}/tokenizer.json"


@dataclass(frozen=True)
class OptimConfig:
    """Adam + linear warm-up + quarter-period cosine (spec section 4)."""

    lr: float = 1e-4
    end_lr: float = 5e-5  # value at `decay_steps`, held afterwards
    warmup_steps: int = 10_000
    decay_steps: int = 500_000  # step where the quarter cosine reaches end_lr
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0  # the paper uses none
    grad_clip: float = 0.0  # max global grad norm; 0 = off (the paper does not clip)

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.end_lr < 0:
            raise ValueError(f"optim.lr={self.lr}, end_lr={self.end_lr}: need lr > 0, end_lr >= 0")
        if self.warmup_steps < 0 or self.decay_steps < 1:
            raise ValueError("optim.warmup_steps must be >= 0 and optim.decay_steps >= 1")
        if not all(0.0 <= b < 1.0 for b in self.betas) or len(self.betas) != 2:
            raise ValueError(f"optim.betas={self.betas}: two numbers in [0, 1)")
        if self.eps <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("optim.eps must be > 0; weight_decay and grad_clip >= 0")


@dataclass(frozen=True)
class DeepSpeedConfig:
    """The knobs the DeepSpeed dict is derived from (`training.ds_config.deepspeed_dict`)."""

    zero_stage: int = 2
    micro_batch: int = 8  # clips per worker per forward/backward
    grad_accum: int = 1
    # "auto": bf16 on GPU, fp32 on CPU; "bf16" / "fp32" force it.
    precision: str = "auto"
    offload_optimizer: bool = False  # ZeRO-1/2/3: optimizer states in CPU memory
    offload_params: bool = False  # ZeRO-3 only: parameters in CPU memory
    # Merged last into the generated dict, for anything not covered above (logged).
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"deepspeed.zero_stage={self.zero_stage}: choose 0, 1, 2 or 3")
        if self.micro_batch < 1 or self.grad_accum < 1:
            raise ValueError("deepspeed.micro_batch and deepspeed.grad_accum must be >= 1")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"deepspeed.precision={self.precision!r}: auto, bf16 or fp32")
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("deepspeed.offload_params needs deepspeed.zero_stage=3")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("deepspeed.offload_optimizer needs deepspeed.zero_stage >= 1")


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


@dataclass(frozen=True)
class CheckpointConfig:
    every_steps: int = 500  # also one at the last step
    keep: int = 3  # newest checkpoints kept
    max_failures: int = 2  # worker-failure restarts from the last checkpoint (-1 = forever)

    def __post_init__(self) -> None:
        if self.every_steps < 1 or self.keep < 1:
            raise ValueError("checkpoint.every_steps and checkpoint.keep must be >= 1")
        if self.max_failures < -1:
            raise ValueError("checkpoint.max_failures must be >= -1")


@dataclass(frozen=True)
class EvalConfig:
    """Held-out zero-shot text->video retrieval during training (MSR-VTT 1k-A format)."""

    msrvtt_csv: str = ""  # "" = no held-out evaluation
    msrvtt_videos: str = ""  # folder of <video_id>.mp4
    every_steps: int = 0  # 0 = only before the first and after the last step
    num_windows: int = 4  # uniformly spaced windows per video, embeddings averaged

    def __post_init__(self) -> None:
        if bool(self.msrvtt_csv) != bool(self.msrvtt_videos):
            raise ValueError("eval: set both eval.msrvtt_csv and eval.msrvtt_videos, or neither")
        if self.every_steps < 0 or self.num_windows < 1:
            raise ValueError("eval.every_steps must be >= 0 and eval.num_windows >= 1")

    @property
    def enabled(self) -> bool:
        return bool(self.msrvtt_csv)


@dataclass(frozen=True)
class TrainConfig:
    """One pretraining run: `vatt train --config X.yaml key=value ...` builds this."""

    data: DataConfig
    name: str = "vatt"  # run name: outputs in <storage>/<name>; same name = resume
    storage: str = "runs"  # a folder or an object-store URI (s3://bucket/runs, gs://...)
    preset: str = "debug"
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    max_steps: int = 1000  # optimizer steps
    log_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.log_every < 1:
            raise ValueError("max_steps and log_every must be >= 1")
        if not self.name or "/" in self.name:
            raise ValueError(f"name={self.name!r}: a non-empty run name without '/'")
        # Fail now, not on a worker: the preset and overrides must make a valid model.
        self.model_config()

    def model_config(self):
        from training.model import make_config

        return make_config(self.preset, **self.model)

    def with_absolute_paths(self) -> TrainConfig:
        """A copy whose local paths are absolute: Ray Train workers run in their own working
        directory, so a relative shard path would point elsewhere there. URIs are kept."""

        def fix(path: str) -> str:
            return path if not path or "://" in path else os.path.abspath(path)

        data = dataclasses.replace(
            self.data,
            howto100m=fix(self.data.howto100m),
            audioset=fix(self.data.audioset),
            tokenizer=fix(self.data.tokenizer),
        )
        ev = dataclasses.replace(
            self.eval,
            msrvtt_csv=fix(self.eval.msrvtt_csv),
            msrvtt_videos=fix(self.eval.msrvtt_videos),
        )
        return dataclasses.replace(self, data=data, eval=ev, storage=fix(self.storage))

    def run_dir(self) -> str:
        """<storage>/<name>: a folder, or a URI when storage is one (query options kept last)."""
        return storage.join(self.storage, self.name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
