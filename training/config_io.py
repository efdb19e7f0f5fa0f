"""Typed configs from plain dicts: dotted-key errors, merging, and dotted overrides.

Every component owns a frozen dataclass of its settings, validated in its `__post_init__`;
this module maps nested dicts (from YAML, the command line or a stored run) onto those
dataclasses, so a typo is caught before any job starts and the message names the key
(`optim.lr: expected a number, got 'x'`). `require_at_least` is the bound check those
`__post_init__`s share (sizes >= 1, weights >= 0), so every such message reads the same.
It is the first module of `training/` because every later stage (pretraining, fine-tuning,
sweeps, the CLI) builds its configs through it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(Exception):
    """A bad config key or value; the message names the dotted key and the reason.

    The CLI shows it as one line and exits 2 (`pipeline.errors.UsageError` is this class)."""


def set_dotted(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set `a.b.c` in a nested dict (creating sections); returns `data`."""
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{key}: {part} is a value, not a section")
    node[leaf] = value
    return data


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `extra` wins. Neither argument is modified."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def expand_dotted(mapping: dict[str, Any]) -> dict[str, Any]:
    """`{"eval.every_steps": 20, "optim": {"lr": 1}}` -> nested sections, merged."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        value = expand_dotted(value) if isinstance(value, dict) else value
        out = deep_merge(out, set_dotted({}, key, value))
    return out


def _coerce_union(value: Any, tp: Any, key: str) -> Any:
    if value is None:
        return None
    errors = []
    for arg in (a for a in typing.get_args(tp) if a is not type(None)):
        try:
            return _coerce(value, arg, key)
        except ConfigError as e:
            errors.append(str(e))
    raise ConfigError(errors[0])


def _coerce_scalar(value: Any, tp: Any, key: str) -> Any:
    """bool / int / float / str, strictly: YAML's `true` is not an integer, `1` is a float."""
    is_bool = isinstance(value, bool)
    if tp is bool:
        if is_bool:
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if is_bool or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if is_bool or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if is_bool or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return str(value)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, tp, key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section (mapping), got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp in (bool, int, float, str):
        return _coerce_scalar(value, tp, key)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{key}: must be one of {', '.join(map(str, allowed))}, got {value!r}"
            )
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from `data`; unknown keys and wrong types raise ConfigError naming
    the dotted key. `ValueError`s from the dataclass's own validation are re-raised the same way."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]} (known: {', '.join(sorted(fields))})"
        )
    kwargs = {name: _coerce(v, hints[name], f"{prefix}{name}") for name, v in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {e}") from None


def require_at_least(cfg: Any, section: str, names: Iterable[str], minimum: float) -> None:
    """The check most `__post_init__`s start with: raise ValueError naming the dotted key and
    its value (`data.max_words=0 must be >= 1`) for the first of `names` whose value in `cfg`
    is below `minimum` (1 for sizes and counts, 0 for weights and optional counts)."""
    for name in names:
        value = getattr(cfg, name)
        if value < minimum:
            raise ValueError(f"{section}.{name}={value} must be >= {minimum}")


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain nested dict (for logging and for storing beside outputs)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def override(cfg: T, values: dict[str, Any]) -> T:
    """A copy of dataclass `cfg` with `{dotted key: value}` set, validated like a fresh config
    (a Tune trial's `{"loss.tau": 0.05, "name": "t1"}`). ConfigError names a bad key."""
    data = to_dict(cfg)
    for key, value in values.items():
        set_dotted(data, key, value)
    return from_dict(type(cfg), data)


__all__ = [
    "ConfigError",
    "deep_merge",
    "expand_dotted",
    "from_dict",
    "override",
    "require_at_least",
    "set_dotted",
    "to_dict",
]
