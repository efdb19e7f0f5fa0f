"""The search space of a sweep: `{dotted training key: {distribution: args}}` parsed and checked.

A sweep YAML names training-config keys exactly as `vatt train` overrides do (`loss.tau`,
`model.droptoken_rate`, `optim.lr`, ...) plus the alias `loss.lambda` for the MIL-NCE weight
(`loss.lambda_vt` in `LossConfig`). Each key gets one distribution:

    choice: [a, b, ...]     sampled uniformly from the list
    grid: [a, b, ...]       every value, crossed with the other grid keys (x num_samples)
    uniform: [low, high]    continuous, uniform
    loguniform: [low, high] continuous, uniform in log space (low > 0)

No Ray here: `Param` is plain data, `tuning.sweep` turns it into Ray Tune domains. Whether a
key exists in the training config and accepts the values is checked by building training
configs from each `Param.values` (every listed value, or both ends of a range; the caller
owns that builder), so typos fail before Ray starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform")
# User-facing name -> the training-config field it sets.
ALIASES = {"loss.lambda": "loss.lambda_vt"}


@dataclass(frozen=True)
class Param:
    """One searched key: `key` as the user wrote it, `target` the training-config key."""

    key: str
    target: str
    kind: str  # one of DISTRIBUTIONS
    values: tuple[Any, ...]  # the list for choice/grid, (low, high) for uniform/loguniform

    @property
    def continuous(self) -> bool:
        return self.kind in ("uniform", "loguniform")


def _flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections -> dotted keys, stopping at a distribution spec (`{uniform: [0, 1]}`).

    Both `loss.tau: {...}` and `loss: {tau: {...}}` spell the same key (the second is what
    `space.loss.tau=...` on the command line produces)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        # A section holds only sections or specs; a spec holds its distribution's arguments.
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            out.update(_flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def parse_param(key: str, spec: Any) -> Param:
    """One `key: {distribution: args}` entry -> Param; ValueError names the key and the fix."""
    where = f"space.{key}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError(
            f"{where}: give exactly one distribution, e.g. {{uniform: [0.0, 0.5]}} "
            f"(choose from {', '.join(DISTRIBUTIONS)}), got {spec!r}"
        )
    ((kind, args),) = spec.items()
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"{where}: unknown distribution {kind!r} (choose from {DISTRIBUTIONS})")
    if not isinstance(args, (list, tuple)) or not args:
        raise ValueError(f"{where}.{kind}: expected a non-empty list, got {args!r}")
    values = tuple(args)
    if kind in ("uniform", "loguniform"):
        if len(values) != 2 or not all(_is_number(v) for v in values):
            raise ValueError(f"{where}.{kind}: expected [low, high] numbers, got {list(values)}")
        low, high = values
        if not low < high:
            raise ValueError(f"{where}.{kind}: need low < high, got [{low}, {high}]")
        if kind == "loguniform" and low <= 0:
            raise ValueError(f"{where}.loguniform: need low > 0, got {low}")
        values = (float(low), float(high))
    elif len(set(map(repr, values))) != len(values):
        raise ValueError(f"{where}.{kind}: repeated values in {list(values)}")
    return Param(key=key, target=ALIASES.get(key, key), kind=kind, values=values)


def parse_space(space: dict[str, Any]) -> list[Param]:
    """The `space:` section -> Params in the order written; ValueError on any bad entry."""
    if not isinstance(space, dict) or not space:
        raise ValueError("space: give at least one key, e.g. loss.tau: {choice: [0.05, 0.1]}")
    params = [parse_param(key, spec) for key, spec in _flatten(space).items()]
    targets = [p.target for p in params]
    for p in params:
        if targets.count(p.target) > 1:
            raise ValueError(f"space.{p.key}: {p.target} is searched twice")
        if p.target in ("name", "storage"):
            raise ValueError(f"space.{p.key}: the sweep sets each trial's {p.target} itself")
    return params


def grid_size(params: list[Param]) -> int:
    """Trials per sample: the product of the grid lengths (1 without grid keys)."""
    n = 1
    for p in params:
        if p.kind == "grid":
            n *= len(p.values)
    return n
