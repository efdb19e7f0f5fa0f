"""`vatt eval retrieval|linear-probe|zero-shot`: zero-shot retrieval, linear probes and zero-shot
classification of a trained model."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import UsageError

RETRIEVAL_EPILOG = """\
examples:
  vatt eval retrieval --model runs/vatt --benchmark msrvtt \\
      --csv data/msrvtt/msrvtt_test.csv --videos data/msrvtt/videos --out eval/msrvtt
  vatt eval retrieval --model exported/vatt --benchmark youcook2 \\
      --csv youcookii_val.csv --videos youcook2/videos --out eval/yc2 --compare-untrained

outputs in OUT: report.json (metrics both ways, recall@K curves, per-item errors),
recall.png, embeddings/videos.parquet and embeddings/texts.parquet (l2-normalised z_vt
vectors with their keys, for reuse, e.g. search).
"""

PROBE_EPILOG = """\
examples:
  vatt eval linear-probe --model runs/vatt --dataset ucf101 \\
      --splits-dir ucfTrainTestlist --videos UCF-101 --splits 1,2,3 --out eval/ucf
  vatt eval linear-probe --model exported/vatt --dataset esc50 \\
      --esc50-csv ESC-50/meta/esc50.csv --audio ESC-50/audio --out eval/esc50
  vatt eval linear-probe --model runs/vatt --dataset kinetics --kinetics-train-csv \\
      k400/train.csv --kinetics-csv k400/validate.csv --videos k400/videos --out eval/k400

UCF101/HMDB51: classInd.txt, trainlist0N.txt, testlist0N.txt in --splits-dir, videos under
--videos/<Class>/. ESC-50: esc50.csv (filename, fold, target, category) and the wav folder;
each fold is tested with a probe trained on the other four. Kinetics-400/600/700: the CSVs
(label,youtube_id,time_start,time_end,split) and clips <YTID>_<start:06d>_<end:06d>.mp4
anywhere under --videos (e.g. <label>/<file>); 4 clips x 3 crops by default.
outputs: report.json, probe.png.
"""

ZEROSHOT_EPILOG = """\
examples:
  vatt eval zero-shot --model runs/vatt --dataset ucf101 \\
      --splits-dir ucfTrainTestlist --videos UCF-101 --out eval/zs-ucf --compare-untrained
  vatt eval zero-shot --model exported/vatt --dataset kinetics \\
      --kinetics-csv k400/validate.csv --videos k400/videos --out eval/zs-k400
  vatt eval zero-shot --model runs/vatt --dataset esc50 --esc50-csv ESC-50/meta/esc50.csv \\
      --audio ESC-50/audio --templates my_prompts.txt --out eval/zs-esc50

Each class name becomes words (ApplyEyeMakeup -> "apply eye makeup", chirping_birds ->
"chirping birds"; --class-names FILE, a JSON object, overrides them), is put into every
template of --templates (built-in sets: video, audio, asr, name; or a file, one template per
line with {}), and the prompts' text embeddings are averaged per class (CLIP's prompt
ensembling). Video items are scored in the video-text space (z_v,vt); ESC-50 audio through
the video-audio space: g_v->vt(z_a,va), the projection video takes into the video-text space,
applied to the audio embedding (VATT has no audio-text head; docs/evaluation.md).
outputs: report.json (top-1/5, per-class accuracy, confusion matrix, chance, errors),
confusion.png.
"""


# The labelled sets linear-probe and zero-shot read: the keys of training.eval.probe's and
# training.eval.zeroshot's DATASETS, spelled out so building the parser imports neither.
LABELLED_SETS = ("ucf101", "hmdb51", "kinetics", "esc50")


def _labelled_sets(p: argparse.ArgumentParser) -> None:
    """--dataset and where each labelled set's lists and files are (read by `_set_files`)."""
    p.add_argument("--dataset", required=True, choices=LABELLED_SETS)
    p.add_argument("--splits-dir", help="UCF101/HMDB51: folder with classInd.txt and lists")
    p.add_argument(
        "--videos", help="UCF101/HMDB51: video root (<Class>/<file>); Kinetics: clip folder"
    )
    p.add_argument("--kinetics-csv", help="Kinetics: the labelled CSV to test on (validate.csv)")
    p.add_argument("--esc50-csv", help="ESC-50: meta/esc50.csv")
    p.add_argument("--audio", help="ESC-50: the audio folder")
    p.add_argument("--folds", default="1,2,3,4,5", help="ESC-50 test folds (1,2,3,4,5)")
    p.add_argument(
        "--crops",
        type=int,
        help="spatial crops per window along the long side (default 3 for kinetics: the "
        "paper's 4 clips x 3 crops; else 1, the centre)",
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", required=True, help="export folder, checkpoint folder or training run folder"
    )
    p.add_argument("--out", required=True, help="output folder (report.json, PNG, ...)")
    p.add_argument("--windows", type=int, default=4, help="windows per item (default 4)")
    p.add_argument("--clip-seconds", type=float, default=3.2, help="window length (3.2)")
    p.add_argument("--size", type=int, help="video crop side (default: the model's trained size)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per model call (16)")
    p.add_argument(
        "--compare-untrained",
        action="store_true",
        help="also score the same architecture untrained (the baseline to beat)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the untrained baseline and probes")
    p.add_argument(
        "--address", help="Ray cluster address (default: $RAY_ADDRESS, else embedded local Ray)"
    )
    p.add_argument("--num-cpus", type=int, help="CPUs of the embedded local Ray (default: all)")


def _text_options(p: argparse.ArgumentParser, unit: str) -> None:
    """The caption tokenizer of the evaluations that embed text, and words per `unit`."""
    p.add_argument("--tokenizer", help="caption tokenizer.json (default: the model's)")
    p.add_argument("--max-words", type=int, default=16, help=f"words per {unit} (16)")


def _evaluation_parser(
    evals: argparse._SubParsersAction,
    name: str,
    run: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str,
    epilog: str,
) -> argparse.ArgumentParser:
    """One `vatt eval` subcommand that calls `run(args)`: its help texts (epilog kept as
    written) and the options every evaluation shares (`_common`)."""
    parser = evals.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser)
    parser.set_defaults(func=run)
    return parser


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="zero-shot retrieval (MSR-VTT, YouCook2), linear probes and zero-shot "
        "classification (UCF101, HMDB51, Kinetics, ESC-50)",
        description=(
            "Evaluate a trained VATT. Windows are decoded with ffmpeg and embedded by Ray Data "
            "actors (one per GPU, or a CPU actor); bad items are listed in the report and the "
            "rest is scored."
        ),
    )
    # parser_class=type(p): nested parsers keep the CLI's one-line errors (exit 2).
    evals = p.add_subparsers(
        dest="eval_command", metavar="EVALUATION", required=True, parser_class=type(p)
    )
    r = _evaluation_parser(
        evals,
        "retrieval",
        run_retrieval,
        help="zero-shot text<->video retrieval: R@1/5/10, median rank",
        description=(
            "Zero-shot text->video and video->text retrieval: 4 uniformly spaced windows per "
            "video (or per YouCook2 segment), centre crop, z_v,vt averaged then l2-normalised, "
            "cosine similarity with the l2-normalised sentence embeddings."
        ),
        epilog=RETRIEVAL_EPILOG,
    )
    r.add_argument("--benchmark", required=True, choices=("msrvtt", "youcook2"))
    r.add_argument(
        "--csv",
        required=True,
        help="MSR-VTT 1k-A CSV (key,vid_key,video_id,sentence) or YouCook2 "
        "(end,start,task,text,video_id)",
    )
    r.add_argument("--videos", required=True, help="folder with <video_id>.mp4")
    _text_options(r, "sentence")

    lp = _evaluation_parser(
        evals,
        "linear-probe",
        run_probe,
        help="linear probes on frozen video/audio features (low-rank classifier, SVM)",
        description=(
            "Frozen tower features (the aggregation token) of every view (window x crop); the "
            "paper's low-rank classifier C = UV (n = 128, a random 10%% of components per step, "
            "Adam 5e-4) and scikit-learn's linear SVM, fit on training views, tested by "
            "view-averaged logits; top-1 accuracy per split, fold or Kinetics CSV."
        ),
        epilog=PROBE_EPILOG,
    )
    _labelled_sets(lp)
    lp.add_argument("--splits", default="1", help="UCF101/HMDB51 splits, e.g. 1,2,3 (1)")
    lp.add_argument("--kinetics-train-csv", help="Kinetics: the training CSV (train.csv)")
    lp.add_argument(
        "--classifier",
        default="low_rank,svm",
        help="comma-separated: low_rank, svm (both)",
    )
    lp.add_argument("--probe-steps", type=int, default=2000, help="low-rank Adam steps (2000)")

    zs = _evaluation_parser(
        evals,
        "zero-shot",
        run_zeroshot,
        help="zero-shot classification from class names (prompts, no training)",
        description=(
            "Classify every test item by its nearest class prompt: class names through prompt "
            "templates and the text tower (several templates per class, averaged, as CLIP "
            "does), against the item's views (windows x crops) embedded by Ray Data; logits "
            "averaged over views. Reports top-1/top-5, per-class accuracy, a confusion matrix "
            "and chance (and the untrained baseline with --compare-untrained)."
        ),
        epilog=ZEROSHOT_EPILOG,
    )
    _labelled_sets(zs)
    zs.add_argument("--split", type=int, default=1, help="UCF101/HMDB51: the test list (1)")
    zs.add_argument(
        "--kinetics-train-csv", help="Kinetics: take the class list from this CSV (optional)"
    )
    zs.add_argument(
        "--templates",
        help="prompt templates: video, audio, asr, name, or a file with one template per line "
        "holding {} (default: video for video sets, audio for ESC-50)",
    )
    zs.add_argument("--class-names", help="JSON object {class: words for its prompts}")
    _text_options(zs, "prompt")


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"{flag}={text!r}: give comma-separated integers, e.g. 1,2,3") from None
    if not values:
        raise UsageError(f"{flag} is empty")
    return values


def _check_common(args: argparse.Namespace) -> None:
    if args.windows < 1 or args.batch_size < 1 or args.clip_seconds <= 0:
        raise UsageError("--windows and --batch-size must be >= 1, --clip-seconds > 0")
    if not Path(args.model).exists():
        raise UsageError(f"--model {args.model}: not found")


def _set_files(args: argparse.Namespace) -> dict:
    """The `_labelled_sets` flags as the keywords both set loaders take (load_probe_data,
    load_zeroshot_set); each loader adds its own split and Kinetics class-list options."""
    return {
        "splits_dir": args.splits_dir,
        "videos_dir": args.videos,
        "kinetics_csv": args.kinetics_csv,
        "esc50_csv": args.esc50_csv,
        "audio_dir": args.audio,
        "folds": _int_list(args.folds, "--folds"),
    }


def _check_sets(args: argparse.Namespace, needs_training_csv: bool) -> None:
    """The flags --dataset needs, and that their paths exist; the default --crops."""
    needed = {
        "esc50": (("--esc50-csv", args.esc50_csv), ("--audio", args.audio)),
        "kinetics": (("--kinetics-csv", args.kinetics_csv), ("--videos", args.videos)),
    }.get(args.dataset, (("--splits-dir", args.splits_dir), ("--videos", args.videos)))
    if args.dataset == "kinetics" and (needs_training_csv or args.kinetics_train_csv):
        needed += (("--kinetics-train-csv", args.kinetics_train_csv),)
    for flag, path in needed:
        if not path:
            raise UsageError(f"{flag} is required for --dataset {args.dataset}")
        if not Path(path).exists():
            raise UsageError(f"{flag} {path}: not found")
    if args.crops is None:
        args.crops = 3 if args.dataset == "kinetics" else 1
    if args.crops < 1 or (args.dataset == "esc50" and args.crops != 1):
        raise UsageError(f"--crops {args.crops}: >= 1 for video, 1 for audio (ESC-50)")


def _tokenizer(args: argparse.Namespace, models):
    from preprocessing.vocab import load_tokenizer

    tok_path = args.tokenizer or models[0].tokenizer
    if not tok_path:
        raise UsageError("no caption tokenizer found with the model: pass --tokenizer")
    try:
        return load_tokenizer(tok_path)
    except Exception as e:  # tokenizers raises a bare Exception on a bad file
        raise UsageError(f"--tokenizer {tok_path}: cannot load: {e}") from None


def _load(args: argparse.Namespace):
    from training.checkpoint import CheckpointError
    from training.eval.models import load_models

    try:
        return load_models(args.model, untrained=args.compare_untrained, seed=args.seed)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        raise UsageError(f"--model {args.model}: {e}") from None


def _start_ray(args: argparse.Namespace, what: str) -> None:
    from pipeline.ray_runtime import init_ray

    where = init_ray(args.address, args.num_cpus)
    print(f"vatt eval {what} on {where}", file=sys.stderr)


def _windows(args: argparse.Namespace) -> dict:
    """How every evaluation cuts items into model inputs (the shared flags)."""
    return {
        "num_windows": args.windows,
        "clip_seconds": args.clip_seconds,
        "size": args.size,
        "batch_size": args.batch_size,
    }


def _score_models(models, score_one, what: str = "") -> dict:
    """{"models": [each model's result + its source], "seconds"}: `score_one(loaded)` scores one
    model (the trained one, then the untrained baseline); a ValueError is a usage error
    (prefixed with `what`)."""
    began = time.perf_counter()
    results = []
    for loaded in models:
        try:
            result = score_one(loaded)
        except ValueError as e:
            raise UsageError(f"{what}: {e}" if what else str(e)) from None
        result["model"] = loaded.source
        results.append(result)
    return {"models": results, "seconds": time.perf_counter() - began}


def _write_outputs(
    report: dict, out: Path, print_summary: Callable[[dict], None], outputs: dict[str, Callable]
) -> int:
    """Every evaluation's ending: OUT/report.json, the summary table (`print_summary`), then
    one aligned line per output, the report first. `outputs` maps a label to a function
    that writes that output (a plot) or names it; each runs only after the lines before it
    are printed, so a failing plot still leaves the report's line on screen."""
    from training.eval.report import write_json

    path = write_json(out / "report.json", report)
    print_summary(report)
    width = max(len(label) for label in ("report", *outputs))
    for label, where in {"report": lambda: path, **outputs}.items():
        print(f"  {label:<{width}}  {where()}")
    return 0


def run_retrieval(args: argparse.Namespace) -> int:
    from training.eval import report as rep
    from training.eval.retrieval import load_benchmark, save_embeddings, score

    _check_common(args)
    for flag, path in (("--csv", args.csv), ("--videos", args.videos)):
        if not Path(path).exists():
            raise UsageError(f"{flag} {path}: not found")
    try:
        bench = load_benchmark(args.benchmark, args.csv, args.videos)
    except ValueError as e:
        raise UsageError(str(e)) from None
    models = _load(args)
    tokenizer = _tokenizer(args, models)
    _start_ray(args, f"retrieval ({args.benchmark})")
    out = Path(args.out)

    def score_one(loaded) -> dict:
        result, video, text_emb, keys = score(
            loaded.model, bench, tokenizer, max_words=args.max_words, label=loaded.label,
            **_windows(args),
        )  # fmt: skip
        if loaded.label == "trained":
            result["embeddings"] = save_embeddings(out / "embeddings", bench, video, text_emb, keys)
        return result

    report = {"benchmark": args.benchmark, "csv": str(args.csv)}
    report |= _score_models(models, score_one)
    return _write_outputs(report, out, rep.print_retrieval, {
        "plot": lambda: rep.plot_recall(report, out / "recall.png"),
        "embeddings": lambda: out / "embeddings",
    })  # fmt: skip


def run_probe(args: argparse.Namespace) -> int:
    from training.eval import report as rep
    from training.eval.classifiers import CLASSIFIERS, LowRankConfig
    from training.eval.probe import DATASETS, load_probe_data, run_probe

    _check_common(args)
    classifiers = tuple(c.strip() for c in args.classifier.split(",") if c.strip())
    bad = [c for c in classifiers if c not in CLASSIFIERS]
    if bad or not classifiers:
        raise UsageError(f"--classifier {args.classifier}: choose from {', '.join(CLASSIFIERS)}")
    _check_sets(args, needs_training_csv=True)
    try:
        low_rank = LowRankConfig(steps=args.probe_steps, seed=args.seed)
        data = load_probe_data(
            args.dataset,
            splits=_int_list(args.splits, "--splits"),
            kinetics_train_csv=args.kinetics_train_csv,
            **_set_files(args),
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    models = _load(args)
    _start_ray(args, f"linear-probe ({args.dataset})")
    out = Path(args.out)

    def score_one(loaded) -> dict:
        return run_probe(
            loaded.model, data, classifiers=classifiers, low_rank=low_rank, label=loaded.label,
            crops=args.crops, **_windows(args),
        )  # fmt: skip

    report = {"dataset": args.dataset, "modality": DATASETS[args.dataset]}
    report |= _score_models(models, score_one, args.dataset)
    return _write_outputs(report, out, rep.print_probe, {
        "plot": lambda: rep.plot_probe(report, out / "probe.png"),
    })  # fmt: skip


def _class_names(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    import json

    try:
        names = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"--class-names {path}: not a readable JSON file: {e}") from None
    if not isinstance(names, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in names.items()
    ):
        raise UsageError(f"--class-names {path}: expected a JSON object {{class: words}}")
    return names


def run_zeroshot(args: argparse.Namespace) -> int:
    from training.eval import report as rep
    from training.eval.zeroshot import (
        DATASETS,
        DEFAULT_TEMPLATES,
        load_templates,
        load_zeroshot_set,
        score,
    )

    _check_common(args)
    _check_sets(args, needs_training_csv=False)
    modality = DATASETS[args.dataset]
    class_texts = _class_names(args.class_names)
    try:
        templates = load_templates(args.templates or DEFAULT_TEMPLATES[modality])
        data = load_zeroshot_set(
            args.dataset,
            split=args.split,
            kinetics_classes_csv=args.kinetics_train_csv,
            **_set_files(args),
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    unknown = sorted(set(class_texts) - set(data.classes))
    if unknown:
        raise UsageError(f"--class-names {args.class_names}: not classes of the set: {unknown[:5]}")
    models = _load(args)
    tokenizer = _tokenizer(args, models)
    _start_ray(args, f"zero-shot ({args.dataset})")
    out = Path(args.out)

    def score_one(loaded) -> dict:
        return score(
            loaded.model, data, tokenizer, templates=templates, class_texts=class_texts,
            crops=args.crops, max_words=args.max_words, label=loaded.label, **_windows(args),
        )  # fmt: skip

    report = {"dataset": args.dataset, "modality": modality}
    report |= _score_models(models, score_one, args.dataset)
    return _write_outputs(report, out, rep.print_zeroshot, {
        "confusion": lambda: rep.plot_confusion(report, out / "confusion.png"),
    })  # fmt: skip
