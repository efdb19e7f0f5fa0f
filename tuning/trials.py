"""What one trial of a sweep trains: the base training config and each trial's copy of it.

The sweep's policy, plain Python (no Ray): the base config is the sweep's `train_config`
(read by the caller) with `train_overrides` merged, validated, made absolute (trials run in
their own working directories), checked against the objective (a held-out metric needs a
held-out set and periodic evaluation), and set to checkpoint at every evaluation (each report
to Tune carries a fresh objective, and a restored trial loses at most one interval). A trial's
config is the base with its sampled `{dotted key: value}` set (`TrainConfig.override`).
"""

from __future__ import annotations

from typing import Any

from training.config_io import ConfigError, deep_merge, expand_dotted, from_dict
from training.pretrain.config import TrainConfig
from tuning.config import SweepConfig
from tuning.space import ALIASES


def base_config(sweep: SweepConfig, train_data: dict[str, Any]) -> TrainConfig:
    """The training config every trial starts from. `train_data`: the sweep's train_config
    as a dict (YAML already read). ConfigError names what to change."""
    data = deep_merge(train_data, expand_dotted(sweep.train_overrides))
    if "data" not in data:
        raise ConfigError("train_config has no 'data' section (data.howto100m / data.audioset)")
    cfg = from_dict(TrainConfig, data)
    if sweep.objective.needs_eval:
        if not cfg.eval.enabled:
            raise ConfigError(
                f"objective.metric={sweep.objective.metric} needs held-out evaluation: set "
                "eval.msrvtt_csv and eval.msrvtt_videos (or objective.metric=loss)"
            )
        if not cfg.eval.every_steps:
            raise ConfigError(
                "eval.every_steps=0: trials would report the objective only at the end; set it "
                "(e.g. train_overrides: {eval.every_steps: 20})"
            )
    every = cfg.eval.every_steps if cfg.eval.every_steps else cfg.checkpoint.every_steps
    return cfg.with_absolute_paths().override({"checkpoint.every_steps": every})


def trial_config(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """`base` with `{dotted training key: value}` set (sampled values, name, storage)."""
    return base.override(values)


def check_space(sweep: SweepConfig, base: TrainConfig) -> None:
    """Every searched key must exist and accept every value it can take (each listed value,
    or both ends of a range): one line naming the key otherwise, before Ray starts."""
    for p in sweep.params():
        for value in p.values:
            try:
                trial_config(base, {p.target: value})
            except ConfigError as e:
                hint = ""
                if "unknown config key" in str(e):
                    hint = "; aliases: " + ", ".join(f"{a} = {t}" for a, t in ALIASES.items())
                raise ConfigError(f"space.{p.key}={value!r}: {e}{hint}") from None


__all__ = ["base_config", "check_space", "trial_config"]
