"""Configs from the command line: YAML files, bundled presets and `key=value` overrides.

The dict -> typed dataclass mapping (and its dotted-key errors) is `training.config_io`; this
module reads what a user typed into those dicts and adds the arguments every config-driven
job command shares (`--config`, `--address`, `--num-cpus`, `--print-config`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipeline.errors import UsageError
from training.config_io import deep_merge, from_dict, set_dotted, to_dict

T = TypeVar("T")
# Re-exported: commands and tests build configs through this module.
__all__ = ["build", "deep_merge", "from_dict", "load_config", "read_yaml", "set_dotted", "to_dict"]


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


def add_job_parser(
    sub: argparse._SubParsersAction,
    name: str,
    *,
    summary: str,
    description: str,
    examples: str,
    keys: str,
    preset_dir: Path,
    overrides_example: str,
    what: str = "config",
    config_help: str = "",
) -> argparse.ArgumentParser:
    """The `vatt NAME --config CONFIG [KEY=VALUE ...]` subcommand of a config-driven job
    (train, finetune, tune), with the options of `add_job_arguments`. Its epilog lists
    `examples` (indented lines), the bundled configs in `preset_dir` (read now, so a new
    preset shows up in --help by itself) and `keys` (where the keys are documented).
    `config_help` defaults to naming the bundled configs. Returns the parser."""
    names = ", ".join(bundled_names(preset_dir))
    p = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"examples:\n{examples}bundled {what}s (--config NAME): {names}\n{keys}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_help = config_help or f"YAML file, or the name of a bundled {what} ({names})"
    add_job_arguments(p, config_help=config_help, overrides_example=overrides_example, what=what)
    return p


def build(
    cls: type[T],
    config: str,
    preset_dir: Path,
    overrides: list[str],
    *,
    what: str = "config",
    require: tuple[str, str] | None = None,
    sections: tuple[str, ...] = (),
) -> T:
    """Dataclass `cls` from a YAML path or bundled name plus KEY=VALUE overrides.

    `require=(section, hint)`: the merged config must have that section (e.g. the shard
    folders of a training config), else a UsageError naming it. `sections`: sections that
    may be left out and then mean "every key at its default"."""
    data = load_config(config, preset_dir, overrides, what)
    for section in sections:
        data.setdefault(section, {})
    if require and require[0] not in data:
        raise UsageError(f"{what} has no '{require[0]}' section ({require[1]})")
    return from_dict(cls, data)
