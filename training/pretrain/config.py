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
from training.objectives.alpro import AlproLossConfig, AlproObjective
from training.objectives.base import Objective
from training.objectives.vatt import LossConfig, VattObjective
from training.pretrain.ds_config import DeepSpeedConfig
from training.pretrain.optim import OptimConfig

OBJECTIVES = ("vatt", "alpro")
# Files an ALPRO run keeps beside its checkpoints (`TrainConfig.prepared`).
ALPRO_TOKENIZER = "tokenizer.json"
ALPRO_ENTITIES = "entities.txt"


@dataclass(frozen=True)
class TrainConfig:
    """One pretraining run: `vatt train --config X.yaml key=value ...` builds this."""

    data: DataConfig
    name: str = "vatt"  # run name: outputs in <storage>/<name>; same name = resume
    storage: str = "runs"  # a folder or an object-store URI (s3://bucket/runs, gs://...)
    preset: str = "debug"
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    loss: LossConfig = field(default_factory=LossConfig)
    alpro: AlproLossConfig = field(default_factory=AlproLossConfig)  # objective=alpro only
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
        from training.model import ALPRO_PRESETS, make_alpro_config, make_config

        alpro_preset = self.preset.strip().lower() in ALPRO_PRESETS
        if alpro_preset != (self.objective == "alpro"):
            raise ValueError(
                f"preset={self.preset!r} does not fit objective={self.objective!r}: ALPRO "
                f"presets ({', '.join(ALPRO_PRESETS)}) go with objective=alpro, the others "
                "with objective=vatt"
            )
        build = make_alpro_config if alpro_preset else make_config
        # Resolved once, here (fails now, not on a worker): the preset and overrides must
        # make a valid model. Not a field, so to_dict() keeps the input form.
        object.__setattr__(self, "_model_config", build(self.preset, **self.model))

    def model_config(self):
        """The typed model config (preset + overrides), resolved when this config was built."""
        return self._model_config

    def build_objective(self) -> Objective:
        """The objective family this run trains, from its own config sections."""
        if self.objective == "alpro":
            return self._alpro_objective()
        return VattObjective(
            self.model_config(),
            self.loss,
            captions=self.data.num_captions,
            words=self.data.max_words,
        )

    def _alpro_objective(self) -> AlproObjective:
        from training.objectives.alpro import read_entities

        model_cfg = self.model_config()
        pem = bool(model_cfg.num_entities) and self.alpro.pem_weight > 0
        entities = ()
        if pem and self.alpro.entities:
            entities = tuple(read_entities(self.alpro.entities, model_cfg.num_entities))
        elif pem:
            raise ConfigError("alpro.entities: not resolved (vatt train prepares it)")
        return AlproObjective(
            model_cfg,
            self.alpro,
            tokenizer=self.data.tokenizer,
            max_words=self.data.max_words,
            entities=entities,
            load_prompter=_load_prompter,
        )

    def prepared(self) -> TrainConfig:
        """A copy with the files an ALPRO run needs, made or found once (VATT: unchanged):
        the WordPiece caption tokenizer (data.tokenizer; a prompter's own when alpro.prompter
        is set, else built from the corpus captions into <run>/tokenizer.json) and, for PEM,
        the entity list (alpro.entities; else the most frequent content words of the
        captions, written to <run>/entities.txt). A resumed run finds them again."""
        if self.objective != "alpro":
            return self
        from preprocessing.vocab import load_tokenizer
        from training.data.wordpiece import build_wordpiece, check_wordpiece
        from training.objectives.alpro import entity_vocabulary

        run_dir = self.run_dir()
        updates: dict[str, Any] = {}
        tokenizer = self.data.tokenizer
        if not tokenizer and self.alpro.prompter:
            tokenizer = _prompter_tokenizer(self.alpro.prompter)
        if not tokenizer:
            tokenizer = storage.join(run_dir, ALPRO_TOKENIZER)
            if not storage.exists(tokenizer):
                tok = build_wordpiece(
                    _captions(self.data), self.model_config().vocab_size, self.data.max_words
                )
                storage.make_dirs(run_dir)
                storage.write_text(tokenizer, tok.to_str(pretty=True))
        try:
            check_wordpiece(load_tokenizer(tokenizer), tokenizer)
        except ValueError as e:
            raise ConfigError(f"data.tokenizer={tokenizer}: {e}") from None
        except Exception as e:  # tokenizers raises a bare Exception on a bad file
            raise ConfigError(f"data.tokenizer={tokenizer}: cannot load: {e}") from None
        updates["data.tokenizer"] = tokenizer
        model_cfg = self.model_config()
        if model_cfg.num_entities and self.alpro.pem_weight > 0 and not self.alpro.entities:
            entities = storage.join(run_dir, ALPRO_ENTITIES)
            if not storage.exists(entities):
                try:
                    words = entity_vocabulary(_captions(self.data), model_cfg.num_entities)
                except ValueError as e:
                    raise ConfigError(f"alpro.entities: {e}") from None
                storage.make_dirs(run_dir)
                storage.write_text(entities, "\n".join(words) + "\n")
            updates["alpro.entities"] = entities
        return self.override(updates)

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
            webvid=fix(self.data.webvid),
            audioset=fix(self.data.audioset),
            tokenizer=fix(self.data.tokenizer),
        )
        alpro = dataclasses.replace(
            self.alpro, prompter=fix(self.alpro.prompter), entities=fix(self.alpro.entities)
        )
        ev = dataclasses.replace(
            self.eval,
            msrvtt_csv=fix(self.eval.msrvtt_csv),
            msrvtt_videos=fix(self.eval.msrvtt_videos),
        )
        return dataclasses.replace(self, data=data, eval=ev, alpro=alpro, storage=fix(self.storage))

    def run_dir(self) -> str:
        """<storage>/<name>: a folder, or a URI when storage is one (query options kept last)."""
        return storage.join(self.storage, self.name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check_inputs(self) -> None:
        """Fail before Ray starts when an input is missing (local paths only; URIs are checked
        by the workers that open them). ConfigError names the key."""
        from preprocessing.shard_format import list_shards

        for source in ("howto100m", "audioset", "webvid"):
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


# ---- ALPRO helpers (module level: the objective pickles `_load_prompter` by reference) ----


def _load_prompter(path: str):
    """A trained ALPRO prompter (run folder, checkpoint or export), in eval mode."""
    from training.export import load_pretrained

    model, _ = load_pretrained(path)
    if getattr(model, "architecture", "") != "alpro":
        raise ValueError(f"alpro.prompter={path}: holds a {model.architecture} model, not ALPRO")
    return model


def _prompter_tokenizer(path: str) -> str:
    """The tokenizer a prompter run was trained with (its checkpoint's config, or export)."""
    from training.export import resolve_pretrained

    try:
        source = resolve_pretrained(path)
    except Exception as e:
        raise ConfigError(f"alpro.prompter={path}: {e}") from None
    if source.tokenizer is None:
        raise ConfigError(
            f"alpro.prompter={path}: its tokenizer was not found (set data.tokenizer)"
        )
    return str(source.tokenizer)


def _captions(data: DataConfig):
    """Every caption of the corpus' text sources (for the tokenizer and the entities)."""
    from preprocessing.shard_format import list_shards
    from training.data.wordpiece import shard_captions

    shards = []
    for source in ("howto100m", "webvid"):
        path = getattr(data, source, "")
        if path:
            shards += list_shards(path)
    if not shards:
        raise ConfigError("data: ALPRO needs captioned shards (data.webvid or data.howto100m)")
    return shard_captions(shards)
