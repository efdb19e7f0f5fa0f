"""Typed configs from YAML + `key=value` overrides, with errors that name the bad key.

Every component owns a dataclass of its settings (validated in its `__post_init__`); this
module only maps plain dicts onto (nested) dataclasses, so a typo in a YAML file or on the
command line is caught before any job starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipeline.errors import UsageError

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; any problem becomes a one-line UsageError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"config file {p}: not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"config file {p}: not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {p}: top level must be a mapping, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`a.b=3 c=x` -> {"a": {"b": 3}, "c": "x"}; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"override {item!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UsageError(f"override {item!r}: {part} is both a value and a section")
        node[parts[-1]] = value
    return out


def set_dotted(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set `a.b.c` in a nested dict (creating sections); returns `data`."""
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return data


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `extra` wins."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        errors = []
        for a in args:
            try:
                return _coerce(value, a, key)
            except UsageError as e:
                errors.append(str(e))
        raise UsageError(errors[0])
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UsageError(f"{key}: expected a section (mapping), got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{key}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UsageError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise UsageError(f"{key}: must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from `data`; unknown keys and wrong types raise UsageError naming
    the dotted key. `ValueError`s from the dataclass's own validation are re-raised the same way."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UsageError(
            f"unknown config key {prefix}{unknown[0]} (known: {', '.join(sorted(fields))})"
        )
    kwargs = {name: _coerce(v, hints[name], f"{prefix}{name}") for name, v in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{prefix.rstrip('.') or cls.__name__}: {e}") from None


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict (for logging and for storing beside outputs)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


# ---------------------------------------------------------------------------------------------
# Bundled configs and the arguments every config-driven job command shares
# ---------------------------------------------------------------------------------------------


def bundled_names(preset_dir: Path) -> list[str]:
    """The bundled configs in `preset_dir`, by name (file stem)."""
    return sorted(p.stem for p in Path(preset_dir).glob("*.yaml"))


def resolve_config(name: str, preset_dir: Path, what: str = "config") -> Path:
    """A YAML path, or a bundled config by name (case-insensitive, .yaml optional)."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = Path(preset_dir) / f"{name.lower().removesuffix('.yaml')}.yaml"
    if bundled.is_file():
        return bundled
    raise UsageError(
        f"config {name}: no such file and not a bundled {what} "
        f"({', '.join(bundled_names(preset_dir))})"
    )


def load_config(name: str, preset_dir: Path, overrides: list[str], what: str = "config") -> dict:
    """The YAML of `name` (a path or bundled name) with KEY=VALUE overrides merged in."""
    return deep_merge(read_yaml(resolve_config(name, preset_dir, what)), parse_overrides(overrides))


def add_job_arguments(p, *, config_help: str, overrides_example: str, what: str = "config"):
    """--config, --address, --num-cpus, --print-config and KEY=VALUE overrides."""
    p.add_argument("--config", required=True, help=config_help)
    p.add_argument(
        "--address", help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local Ray)"
    )
    p.add_argument("--num-cpus", type=int, help="CPUs of the embedded local Ray (default: all)")
    p.add_argument(
        "--print-config", action="store_true", help=f"print the resolved {what} and exit"
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=f"e.g. {overrides_example}")
