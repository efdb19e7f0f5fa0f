"""The typed config of one pretraining run (`vatt train --config X.yaml key=value ...`).

Every number of the spec (section 4) is a field of a component's own config, composed here:
data + augmentation (`training.data`), the objective's loss (`training.objectives`), the
optimizer (`optim`), DeepSpeed (`ds_config`), Ray Train scaling (`training.distributed`),
checkpoints (`training.checkpoint`) and held-out evaluation (`training.eval.heldout`);
`pipeline/presets/train/*.yaml` name presets. The model is `preset` + `model` overrides,
resolved once into a typed ModelConfig when the config is built (`model_config()`), so any
ModelConfig field, e.g. `model.droptoken_rate`, can be set from YAML or the command line.
Validation lives in `__post_init__` and raises ValueError with the field's dotted name;
`training.config_io.from_dict` turns that into a one-line ConfigError, and `override`
derives a trial's config from it (Ray Tune sweeps).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preprocessing import storage
from training.checkpoint import CheckpointConfig
from training.config_io import ConfigError
from training.config_io import override as override_config
from training.data.loader import DataConfig
from training.distributed import ScalingConfig
from training.eval.heldout import EvalConfig
from training.objectives.base import Objective
from training.objectives.vatt import LossConfig, VattObjective
from training.pretrain.ds_config import DeepSpeedConfig
from training.pretrain.optim import OptimConfig

OBJECTIVES = ("vatt",)


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
    # The objective family (training.objectives); its model comes from `preset` + `model`.
    objective: str = "vatt"

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.log_every < 1:
            raise ValueError("max_steps and log_every must be >= 1")
        if not self.name or "/" in self.name:
            raise ValueError(f"name={self.name!r}: a non-empty run name without '/'")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r}: choose one of {', '.join(OBJECTIVES)}")
        from training.model import make_config

        # Resolved once, here (fails now, not on a worker): the preset and overrides must
        # make a valid model. Not a field, so to_dict() keeps the input form.
        object.__setattr__(self, "_model_config", make_config(self.preset, **self.model))

    def model_config(self):
        """The typed model config (preset + overrides), resolved when this config was built."""
        return self._model_config

    def build_objective(self) -> Objective:
        """The objective family this run trains, from its own config sections."""
        return VattObjective(
            self.model_config(),
            self.loss,
            captions=self.data.num_captions,
            words=self.data.max_words,
        )

    def override(self, values: dict[str, Any]) -> TrainConfig:
        """A copy with `{dotted key: value}` set and validated (`loss.tau`, `name`, ...);
        ConfigError names a bad key or value."""
        return override_config(self, values)

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

    def check_inputs(self) -> None:
        """Fail before Ray starts when an input is missing (local paths only; URIs are checked
        by the workers that open them). ConfigError names the key."""
        from preprocessing.shard_format import list_shards

        for source in ("howto100m", "audioset"):
            path = getattr(self.data, source)
            if path and "://" not in path and not list_shards(path):
                raise ConfigError(f"data.{source}={path}: no shards (*.tar) found")
        tok = self.data.tokenizer_path()
        if tok and "://" not in tok and not Path(tok).is_file():
            raise ConfigError(f"tokenizer {tok}: not found (set data.tokenizer)")
        if self.eval.enabled:
            for key in ("msrvtt_csv", "msrvtt_videos"):
                if not Path(getattr(self.eval, key)).exists():
                    raise ConfigError(f"eval.{key}={getattr(self.eval, key)}: not found")
