"""`vatt sample-data OUT`: write the built-in synthetic HowTo100M / AudioSet / MSR-VTT corpus,
plus UCF101-, ESC-50-, YouCook2- and Kinetics-style labelled evaluation sets and a WebVid-style
video-text set."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from pipeline.errors import JobFailed, UsageError
from pipeline.sample_data.corpus import (
    SampleCorpusConfig,
    SampleCorpusError,
    SampleCorpusSummary,
    generate_sample_corpus,
)

_DEFAULTS = SampleCorpusConfig()
# The size flags: each sets the SampleCorpusConfig field of the same name.
COUNT_FLAGS = {
    "--videos": "HowTo100M-style videos, 20-90 s with spoken captions",
    "--audioset-clips": "AudioSet-style 10 s clips without speech",
    "--msrvtt-videos": "held-out MSR-VTT-style test videos",
    "--ucf101-groups": "UCF101-style groups per class, one 4-7 s clip each; split s tests on "
    "its own groups, trains on the rest (0 or >= 2)",
    "--esc50-clips-per-class": "ESC-50-style 5 s sounds per class, spread over folds 1-5",
    "--youcook2-videos": "YouCook2-style videos of 2-3 segments of different topics",
    "--kinetics-clips-per-class": "Kinetics-style 10 s clips per class, a quarter of them (at "
    "least one) in the validation CSV (0 or >= 2)",
    "--webvid-clips": "WebVid-style silent clips of one topic with a descriptive caption",
    "--webvid-pairs": "WebVid-style clips of two topics side by side (left / right half), "
    "the caption naming both",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample-data",
        help="generate a small synthetic corpus in the real HowTo100M / AudioSet / MSR-VTT / "
        "UCF101 / ESC-50 / YouCook2 / Kinetics / WebVid formats",
        description=(
            "Write H.264/AAC videos made with ffmpeg (moving coloured shapes, tones, noise) and "
            "espeak-ng speech, with HowTo100M caption.json, AudioSet segments.csv and an MSR-VTT "
            "test CSV; and labelled evaluation sets: UCF101-style clips with split files, "
            "ESC-50-style sounds with esc50.csv (5 folds), YouCook2-style videos of 2-3 "
            "segments with their CSV, and Kinetics-style clips (<label>/<YTID>_<start>_<end>.mp4) "
            "with train.csv and validate.csv; and a WebVid-style video-text set "
            "(webvid/videos/<page_dir>/<videoid>.mp4, results_train.csv and results_val.csv), "
            "some clips showing two topics side by side (which is where: topics.json). Each "
            "file has a latent topic (the class of the labelled sets) that decides what is seen, heard and said (ground truth in OUT/topics.json). "
            "The same --seed gives the same captions, ids and CSVs."
        ),
        epilog=(
            "examples:\n"
            "  vatt sample-data data/sample\n"
            "  vatt sample-data data/tiny --videos 3 --audioset-clips 2 --msrvtt-videos 2 "
            "--ucf101-groups 2 --esc50-clips-per-class 1 --youcook2-videos 1 --kinetics-clips-per-class 2 "
            "--webvid-clips 2 --webvid-pairs 2\n"
            "then: vatt preprocess howto100m --videos data/sample/howto100m/videos "
            "--captions data/sample/howto100m/caption.json --out shards/howto"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "out",
        metavar="OUT",
        help="output folder (created; must be empty unless --reuse or --overwrite)",
    )
    for flag, help_text in COUNT_FLAGS.items():
        field_name = flag.removeprefix("--").replace("-", "_")
        default = getattr(_DEFAULTS, field_name)
        p.add_argument(flag, type=int, default=default, help=f"{help_text} (default {default})")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="content seed (default 0)")
    p.add_argument(
        "--workers",
        type=int,
        default=_DEFAULTS.workers,
        help=f"parallel encoders (default: CPU count, {_DEFAULTS.workers}); never changes content",
    )
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--overwrite", action="store_true", help="replace an earlier sample corpus in OUT"
    )
    again.add_argument(
        "--reuse",
        action="store_true",
        help="keep a finished corpus of the same settings in OUT (regenerate an interrupted or "
        "different one): what `make demo` uses so it can be re-run",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> SampleCorpusConfig:
    counts = {f.removeprefix("--").replace("-", "_") for f in COUNT_FLAGS}
    try:
        return SampleCorpusConfig(
            **{name: getattr(args, name) for name in counts}, seed=args.seed, workers=args.workers
        )
    except ValueError as e:
        raise UsageError(_flag_names(str(e))) from None


def _flag_names(message: str) -> str:
    """'audioset_clips must be ...' -> '--audioset-clips must be ...' (name the flag to change)."""
    flags = ("audioset_clips", "msrvtt_videos", "videos", "seed", "workers")
    flags += ("ucf101_groups", "esc50_clips_per_class", "youcook2_videos")
    flags += ("kinetics_clips_per_class", "webvid_clips", "webvid_pairs")
    for name in flags:
        if message.startswith(name + " "):
            return "--" + name.replace("_", "-") + message[len(name) :]
    return message


def expected_windows(s: SampleCorpusSummary, clip_seconds: float) -> tuple[int, int]:
    """(caption windows, audioset windows) under `vatt preprocess`'s default window rule:
    captions start >= 2.5 s apart (more than half a window), so each caption gets a window."""
    import dataclasses

    from preprocessing.config import PreprocessConfig
    from preprocessing.windows import segment_windows

    defaults = {f.name: f.default for f in dataclasses.fields(PreprocessConfig)}
    per_clip = len(
        segment_windows(clip_seconds, defaults["window_seconds"], defaults["train_window_seconds"])
    )
    return s.captions, s.audioset_clips * per_clip


def print_summary(s: SampleCorpusSummary, file=None, clip_seconds: float = 10.0) -> None:
    file = file or sys.stdout  # bound at call time: sys.stdout may be swapped (pytest, tqdm)
    minutes = s.video_seconds / 60
    caption_windows, audio_windows = expected_windows(s, clip_seconds)
    rows = [
        ("howto100m videos (captions)", f"{s.howto_videos} ({s.captions})"),
        ("audioset clips", f"{s.audioset_clips}"),
        ("msrvtt test videos", f"{s.msrvtt_videos}"),
        ("ucf101 clips", f"{s.ucf101_clips}"),
        ("esc50 clips", f"{s.esc50_clips}"),
        ("youcook2 videos (segments)", f"{s.youcook2_videos} ({s.youcook2_segments})"),
        ("kinetics clips", f"{s.kinetics_clips}"),
        ("webvid clips (two-topic)", f"{s.webvid_clips + s.webvid_pairs} ({s.webvid_pairs})"),
        ("video in total", f"{minutes:.1f} min"),
        (
            "windows expected",
            f"{caption_windows + audio_windows} "
            f"({caption_windows} caption + {audio_windows} audioset)",
        ),
        ("size", f"{s.total_bytes / 1e6:.1f} MB"),
        ("seconds", f"{s.seconds:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    kept = ", reused: finished corpus of the same settings" if s.reused else ""
    print(f"\nsample-data summary ({s.out_dir}{kept})", file=file)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=file)
    howto = s.out_dir / "howto100m"
    print(
        f"next: vatt preprocess howto100m --videos {howto / 'videos'} "
        f"--captions {howto / 'caption.json'} --out SHARDS",
        file=file,
    )
    if s.webvid_clips + s.webvid_pairs:
        webvid = s.out_dir / "webvid"
        print(
            f"      vatt preprocess webvid --videos {webvid / 'videos'} "
            f"--csv {webvid / 'results_train.csv'} --out SHARDS",
            file=file,
        )


def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    bar = None

    def on_progress(done: int, total: int, name: str) -> None:
        # Created on the first call, i.e. after the output folder passed its checks, so a
        # usage error stays a single stderr line.
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            bar = tqdm(total=total, unit="file", desc="sample-data", file=sys.stderr)
        if done:
            bar.update(1)
            bar.set_postfix_str(name.rsplit("/", 1)[-1], refresh=False)

    try:
        summary = generate_sample_corpus(
            args.out, config, args.overwrite, on_progress, reuse=args.reuse
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    except SampleCorpusError as e:
        raise JobFailed(str(e)) from None
    finally:
        if bar is not None:
            bar.close()
    print_summary(summary)
    return 0
