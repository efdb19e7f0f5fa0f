"""The `vatt` command line: one subcommand module per job in `pipeline/commands/`.

Each command module exposes `register(subparsers)`, which adds its parser and sets
`func=run` on it. Errors a user can fix (`UsageError`) print one line and exit 2;
`JobFailed` prints one line and exits 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pipeline.errors import JobFailed, UsageError

# Order = order in `vatt --help`.
COMMAND_MODULES = [
    "pipeline.commands.sample_data",
    "pipeline.commands.preprocess",
    "pipeline.commands.inspect",
    "pipeline.commands.train",
    "pipeline.commands.finetune",
    "pipeline.commands.tune",
    "pipeline.commands.model_info",
    "pipeline.commands.plan",
    "pipeline.commands.export",
    "pipeline.commands.eval",
    "pipeline.commands.plot",
    "pipeline.commands.submit",
    "pipeline.commands.jobs",
]


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage + message on bad arguments; we print one line and exit 2."""

    def error(self, message: str) -> None:  # noqa: D102 - argparse hook
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="vatt",
        description=(
            "VATT on Ray: turn raw video (HowTo100M, AudioSet) into WebDataset triplet shards, "
            "pretrain video-audio-text transformers with DeepSpeed, evaluate and tune them."
        ),
        epilog="Run 'vatt COMMAND --help' for a command's options. Docs: README.md, docs/.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # argparse binds a trailing nargs="*" positional as soon as it meets the first positional,
    # so KEY=VALUE overrides that follow options arrive as "unknown": route them back.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
            args.overrides = [*(args.overrides or []), *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        sys.stderr.write(f"vatt {args.command}: error: {e}\n")
        return 2
    except JobFailed as e:
        sys.stderr.write(f"vatt {args.command}: failed: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"vatt {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
