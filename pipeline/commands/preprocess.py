"""`vatt preprocess howto100m|audioset|webvid`: raw videos -> WebDataset shards (Ray Data job)."""

from __future__ import annotations

import argparse
import sys

from pipeline.configs import deep_merge, from_dict, parse_overrides, read_yaml
from pipeline.errors import JobFailed, UsageError

FLAG_KEYS = ("videos", "captions", "segments", "csv", "out")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preprocess",
        help="turn HowTo100M / AudioSet / WebVid videos into WebDataset shards (Ray Data)",
        description=(
            "Probe inputs, plan clip windows, decode them with ffmpeg (10 fps video, 48 kHz mono "
            "audio), mark speech with webrtcvad, attach the 5 nearest captions, and write "
            "WebDataset shards + manifest.parquet, errors.parquet, summary.json and tokenizer.json "
            "into OUT. WebVid (video-text, ALPRO): one sample per clip, its CSV caption with "
            "text_mask 1, sparse_frames x frames_per_segment frames spread over the clip, no "
            "audio. Nothing is downloaded: fetch WebVid with video2dataset (docs/webvid.md). "
            "Re-running the same command resumes: finished shards are skipped."
        ),
        epilog=(
            "examples:\n"
            "  vatt preprocess howto100m --videos data/howto100m/videos --captions data/howto100m/caption.json --out shards/howto\n"
            "  vatt preprocess audioset --videos data/audioset/videos --segments data/audioset/segments.csv --out shards/audioset\n"
            "  vatt preprocess webvid --videos data/webvid/videos --csv data/webvid/results_2M_train.csv --out shards/webvid\n"
            "  vatt preprocess howto100m --config prep.yaml window_seconds=6.4 samples_per_shard=256\n"
            "Config keys (YAML or KEY=VALUE): see preprocessing/config.py and docs/shard-format.md."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source", choices=["howto100m", "audioset", "webvid"], help="input dataset format"
    )
    p.add_argument("--videos", help="folder of input videos")
    p.add_argument("--captions", help="HowTo100M caption.json")
    p.add_argument("--segments", help="AudioSet segments CSV (balanced_train_segments.csv style)")
    p.add_argument(
        "--csv",
        help="WebVid-style CSV: videoid, name (the caption), optional page_dir or path column",
    )
    p.add_argument("--out", help="output folder (shards/, summary.json, errors.parquet, ...)")
    p.add_argument("--config", help="YAML file with config keys (flags and KEY=VALUE win over it)")
    p.add_argument(
        "--address", help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local Ray)"
    )
    p.add_argument("--num-cpus", type=int, help="CPUs of the embedded local Ray (default: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. fps=8 short_side=224",
    )
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    from preprocessing.config import PreprocessConfig

    data = read_yaml(args.config) if args.config else {}
    data = deep_merge(data, parse_overrides(args.overrides))
    data["source"] = args.source
    for key in FLAG_KEYS:
        if getattr(args, key):
            data[key] = getattr(args, key)
    for key in ("videos", "out"):
        if not data.get(key):
            raise UsageError(f"--{key} is required (or '{key}' in --config)")
    return from_dict(PreprocessConfig, data)


def print_summary(s: dict, file=None) -> None:
    file = file or sys.stdout  # bound at call time: sys.stdout may be swapped (pytest, tqdm)
    rows = [
        ("source", s["source"]),
        ("inputs usable / listed", f"{s['inputs']['usable']} / {s['inputs']['listed']}"),
        ("windows written / planned", f"{s['windows']['written']} / {s['windows']['planned']}"),
        ("shards (resumed)", f"{s['shards']} ({s['shards_resumed']})"),
        ("bytes (per sample)", f"{s['bytes'] / 1e6:.1f} MB ({s['bytes_per_sample'] / 1e3:.0f} kB)"),
        ("seconds", f"{s['seconds']:.1f}"),
        ("clips/s", f"{s['clips_per_s']:.2f}"),
        ("errors (fraction)", f"{s['errors']} ({s['error_fraction']:.1%})"),
        ("notes (handled as documented)", s["notes"]),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"\npreprocess summary ({s['out']})", file=file)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=file)
    for reason, n in list(s["errors_by_reason"].items())[:8]:
        print(f"  {'':<{width}}  {n:>4} x {reason}", file=file)


def run(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    from pipeline.ray_runtime import init_ray
    from preprocessing.jobs import RunMismatch, run_preprocess
    from preprocessing.storage import redact

    where = init_ray(args.address, args.num_cpus)
    videos, out = redact(cfg.videos), redact(cfg.out)  # URIs may carry credentials
    print(f"vatt preprocess {cfg.source}: {videos} -> {out} on {where}", file=sys.stderr)
    try:
        summary = run_preprocess(cfg, show_progress=not args.no_progress)
    except RunMismatch as e:
        raise UsageError(str(e)) from None
    print_summary(summary)
    if summary["error_fraction"] > cfg.max_error_fraction:
        raise JobFailed(
            f"{summary['errors']} errors, {summary['error_fraction']:.1%} of work items, above "
            f"max_error_fraction={cfg.max_error_fraction}; see {out}/errors.parquet"
        )
    if summary["samples_written"] == 0:
        raise JobFailed(f"no samples written; see {out}/errors.parquet")
    return 0
