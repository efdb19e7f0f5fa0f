"""`vatt plot`: PNG charts of a training run's metrics.csv / eval.csv."""

from __future__ import annotations

import argparse

from pipeline.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="plot a run's loss, learning rate, throughput and retrieval (PNGs)",
        description=(
            "Read RUN/metrics.csv (and RUN/eval.csv if present), as written during training, "
            "and write loss.png (total and per-objective loss, raw and smoothed), lr.png, "
            "throughput.png (clips/s and data-wait share of the step) and retrieval.png "
            "(held-out R@1/5/10, when evaluation ran). For live curves use TensorBoard on "
            "RUN/tensorboard."
        ),
        epilog="example: vatt plot runs/vatt --out plots/vatt",
    )
    p.add_argument("run", metavar="RUN", help="run folder (<storage>/<name>) with metrics.csv")
    p.add_argument("--out", metavar="DIR", help="where to write the PNGs (default RUN/plots)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.telemetry import plot_run

    try:
        paths = plot_run(args.run, args.out)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    for path in paths:
        print(path)
    return 0
