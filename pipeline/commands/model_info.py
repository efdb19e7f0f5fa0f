"""`vatt model-info`: parameter counts per tower and analytic FLOPs of a model preset.

Also compares the ViViT video backbones (training/model/vivit.py) at the same preset, input
and DropToken rate: video-tower parameters and forward FLOPs, as ratios to Model 1 (joint).
"""

from __future__ import annotations

import argparse
import json

import torch

from pipeline.errors import UsageError
from training.model import (
    ALPRO_PRESETS,
    PRESETS,
    Alpro,
    build_model,
    make_alpro_config,
    make_config,
)
from training.model.alpro import ALPRO_RELEASE_PARAMS_M
from training.model.config import VIDEO_BACKBONES, VIDEO_TOKENIZATIONS
from training.model.flops import forward_flops
from training.model.presets import PAPER_PRESET_PARAMS_M, resolve_preset


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "model-info",
        help="parameter counts and FLOPs of a model preset",
        description=(
            "Print per-tower parameter counts (tokenizer+positions, backbone, heads) and "
            "analytic forward FLOPs per example of a VATT preset. The model is built on the "
            "meta device, so even Large is instant and allocates nothing."
        ),
    )
    parser.add_argument(
        "--preset",
        default="MBS",
        help=f"model preset: {', '.join([*PRESETS, *ALPRO_PRESETS])} (default MBS)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--droptoken-rate",
        type=float,
        default=None,
        help="dropped fraction of video/audio tokens (default: the preset's, 0.5; 0 = eval)",
    )
    parser.add_argument("--frames", type=int, default=None, help="video frames (default: preset)")
    parser.add_argument("--size", default=None, metavar="HxW", help="frame size, e.g. 320x320")
    parser.add_argument(
        "--audio-samples", type=int, default=None, help="audio samples (default: preset)"
    )
    parser.add_argument(
        "--video-backbone",
        default="joint",
        help=f"ViViT video backbone: {', '.join(VIDEO_BACKBONES)} (default joint = VATT)",
    )
    parser.add_argument(
        "--video-tokenization",
        default="tubelet",
        help=f"video tokens: {', '.join(VIDEO_TOKENIZATIONS)} (default tubelet)",
    )
    parser.add_argument(
        "--video-patch",
        default=None,
        metavar="TxHxW",
        help="tubelet size, e.g. 2x16x16 (ViViT's); default: the preset's 4x16x16",
    )
    parser.set_defaults(func=run)


def _video_overrides(args: argparse.Namespace) -> dict:
    """ModelConfig overrides for the --video-* flags."""
    overrides = {
        "video_backbone": args.video_backbone,
        "video_tokenization": args.video_tokenization,
    }
    if args.video_patch is not None:
        try:
            patch = tuple(int(v) for v in args.video_patch.lower().split("x"))
        except ValueError:
            raise UsageError(
                f"--video-patch {args.video_patch!r}: expected TxHxW, e.g. 2x16x16"
            ) from None
        overrides["tokenizer"] = {"video_patch": patch}
    return overrides


def _backbone_comparison(
    preset: str, overrides: dict, flops_kwargs: dict
) -> dict[str, dict[str, float]]:
    """Video-tower params and forward FLOPs of every ViViT backbone, ratios to joint."""
    rows = {}
    for backbone in VIDEO_BACKBONES:
        try:
            cfg = make_config(preset, **{**overrides, "video_backbone": backbone})
        except ValueError as e:  # e.g. an odd head count for Model 4
            rows[backbone] = {"error": str(e)}
            continue
        model = build_model(preset, device="meta", **{**overrides, "video_backbone": backbone})
        video = model.parameter_counts()["video"]
        rows[backbone] = {
            "params": video["tokenizer"] + video["backbone"],
            "flops_forward": forward_flops(cfg, **flops_kwargs)["video"]["total"],
        }
    base = rows["joint"]
    for row in rows.values():
        if "error" not in row:
            row["flops_ratio"] = row["flops_forward"] / base["flops_forward"]
    return rows


def _parse_size(size: str | None) -> tuple[int | None, int | None]:
    if size is None:
        return None, None
    try:
        height, width = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {size!r}: expected HxW, e.g. 224x224") from None
    return height, width


def build_report(args: argparse.Namespace) -> dict:
    """Parameters and FLOPs of the preset at the requested input (UsageError on bad flags)."""
    try:
        preset = resolve_preset(args.preset)
    except ValueError:
        raise UsageError(
            f"unknown preset {args.preset} (choose from {', '.join(PRESETS)})"
        ) from None
    height, width = _parse_size(args.size)
    for flag, value in (
        ("--frames", args.frames),
        ("--size", height),
        ("--size", width),
        ("--audio-samples", args.audio_samples),
    ):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    overrides = _video_overrides(args)
    flops_kwargs = {
        "droptoken_rate": args.droptoken_rate,
        "frames": args.frames,
        "height": height,
        "width": width,
        "audio_samples": args.audio_samples,
    }
    try:
        cfg = make_config(preset, **overrides)
        flops = forward_flops(cfg, **flops_kwargs)
        backbones = _backbone_comparison(preset, overrides, flops_kwargs)
    except ValueError as e:
        raise UsageError(str(e)) from None
    model = build_model(preset, device="meta", **overrides)
    params = model.parameter_counts()
    params_total = sum(part["total"] for part in params.values())
    tok = cfg.tokenizer
    return {
        "preset": preset,
        "video_backbone": cfg.video_backbone,
        "video_tokenization": cfg.video_tokenization,
        "video_patch": list(cfg.tokenizer.video_patch),
        "input": {
            "frames": args.frames or tok.frames,
            "height": height or tok.height,
            "width": width or tok.width,
            "audio_samples": args.audio_samples or tok.audio_samples,
            "captions": tok.captions,
            "words": tok.words,
        },
        "droptoken_rate": cfg.droptoken_rate
        if args.droptoken_rate is None
        else args.droptoken_rate,
        "params": params,
        "params_total": params_total,
        # The paper's preset totals leave the text word embedding out (docs/model.md).
        "params_total_without_word_embedding": params_total
        - model.text_embed.tokenizer.embed.weight.numel(),
        "params_paper_m": PAPER_PRESET_PARAMS_M.get(preset),
        "flops_forward": {m: flops[m] for m in ("video", "audio", "text")},
        "flops_forward_total": flops["forward"],
        "flops_training_total": flops["training"],
        "video_backbones": backbones,
    }


def print_report(report: dict) -> None:
    inp, params, flops = report["input"], report["params"], report["flops_forward"]
    print(
        f"VATT {report['preset']}: video {inp['frames']}x{inp['height']}x{inp['width']}, audio "
        f"{inp['audio_samples']} samples, text {inp['captions']}x{inp['words']} words, "
        f"DropToken {report['droptoken_rate']}"
    )
    print(
        f"video backbone {report['video_backbone']}, {report['video_tokenization']} tokens "
        f"{'x'.join(map(str, report['video_patch']))}"
    )
    print(
        f"{'tower':<8}{'tokenizer':>12}{'backbone':>12}{'head':>10}{'total':>12}{'GFLOP fwd':>12}"
    )
    for tower, part in params.items():
        gflop = flops[tower]["total"] / 1e9 if tower in flops else float("nan")
        print(
            f"{tower:<8}{part['tokenizer'] / 1e6:>11.2f}M{part['backbone'] / 1e6:>11.2f}M"
            f"{part['head'] / 1e6:>9.2f}M{part['total'] / 1e6:>11.2f}M{gflop:>12.1f}"
        )
    paper = report["params_paper_m"]
    paper_note = f" (paper: {paper:.0f}M; docs/model.md says what each counts)" if paper else ""
    print(
        f"total params {report['params_total'] / 1e6:.2f}M, without the text word embedding "
        f"{report['params_total_without_word_embedding'] / 1e6:.2f}M{paper_note}"
    )
    print(
        f"forward {report['flops_forward_total'] / 1e9:.1f} GFLOP/example, training (3x) "
        f"{report['flops_training_total'] / 1e12:.3f} TFLOP/example"
    )
    print(f"{'video backbone':<28}{'params':>10}{'GFLOP fwd':>12}{'vs joint':>10}")
    for name, row in report["video_backbones"].items():
        if "error" in row:
            print(f"{name:<28}  n/a: {row['error']}")
            continue
        print(
            f"{name:<28}{row['params'] / 1e6:>9.2f}M{row['flops_forward'] / 1e9:>12.1f}"
            f"{row['flops_ratio']:>9.2f}x"
        )


def alpro_report(preset: str) -> dict:
    """Parameters of an ALPRO preset by part, beside the released model's count."""
    cfg = make_alpro_config(preset)
    with torch.device("meta"):
        model = Alpro(cfg)
    counts = {part: c["total"] for part, c in model.parameter_counts().items()}
    counts["total"] = sum(counts.values())
    return {
        "preset": cfg.name,
        "architecture": "alpro",
        "input": {"frames": cfg.frames, "height": cfg.height, "width": cfg.width},
        "layers": {
            "video": cfg.video.num_layers,
            "text": cfg.text.num_layers,
            "fusion": cfg.fusion_layers,
        },
        "params": counts,
        "params_total": counts["total"],
        "params_release_m": ALPRO_RELEASE_PARAMS_M if cfg.name == "alpro-base" else None,
    }


def print_alpro_report(report: dict) -> None:
    inp, layers, params = report["input"], report["layers"], report["params"]
    print(
        f"ALPRO {report['preset']}: video {inp['frames']}x{inp['height']}x{inp['width']}, "
        f"layers video {layers['video']} / text {layers['text']} / fusion {layers['fusion']}"
    )
    for part in ("video", "text", "fusion", "heads"):
        print(f"{part:<8}{params[part] / 1e6:>11.2f}M")
    release = report["params_release_m"]
    note = f" (released ALPRO: {release:.2f}M trainable; docs/alpro.md)" if release else ""
    print(f"total params {params['total'] / 1e6:.2f}M{note}")


def run(args: argparse.Namespace) -> int:
    if args.preset.strip().lower() in ALPRO_PRESETS:
        report = alpro_report(args.preset.strip().lower())
        if args.json:
            print(json.dumps(report))
        else:
            print_alpro_report(report)
        return 0
    report = build_report(args)
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)
    return 0
