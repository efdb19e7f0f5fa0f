"""`vatt inspect`: look inside shards (per-sample facts, JSON, a PNG contact sheet).

Shards are read with the guarded reader of the shard contract: a broken or hostile sample
(malformed JSON, sizes its header lies about, a repeated key, a truncated or compressed tar)
is listed with its reason and the exit code is 1; a traceback is never printed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="show what the shards hold (per sample; --json; --contact-sheet PNG)",
        description=(
            "Decode samples from a shard or a preprocess OUT folder with plain webdataset and "
            "print, per sample: key, source, video shape [T,H,W,3], the encoding (video and "
            "audio codec, bytes of each member, schema version), audio samples and rate, "
            "masks, speech ratio and captions (nearest first). Bad samples and shards are "
            "listed on stderr as 'bad WHERE: REASON'; the exit code is then 1."
        ),
    )
    p.add_argument("path", help="a .tar shard, a shards/ folder, or a preprocess OUT folder")
    p.add_argument("--limit", type=int, default=20, help="samples to show (default 20, 0 = all)")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object per sample instead of text"
    )
    p.add_argument(
        "--contact-sheet", metavar="PNG", help="write a grid of frames with captions to PNG"
    )
    p.add_argument(
        "--sheet-samples", type=int, default=8, help="samples on the contact sheet (default 8)"
    )
    p.set_defaults(func=run)


def describe(sample: dict, raw: dict | None = None) -> dict:
    """One line's facts; with the raw sample, also the encoding and each member's bytes."""
    from preprocessing.shard_format import codecs, members

    meta, video, audio = sample["meta"], sample["video"], sample["audio"]
    vcodec, acodec = codecs(meta)
    vext, aext = members(meta)
    return {
        "key": sample["key"],
        "schema_version": meta.get("schema_version", 1),
        "video_codec": vcodec,
        "audio_codec": acodec,
        "video_bytes": len(raw[vext]) if raw else None,
        "audio_bytes": len(raw[aext]) if raw else None,
        "source": meta["source"],
        "video_id": meta["video_id"],
        "start": meta["start"],
        "end": meta["end"],
        "video_shape": list(video.shape),
        "fps": meta["fps"],
        "audio_samples": int(audio.shape[0]),
        "sample_rate": meta["sample_rate"],
        "audio_mask": meta["audio_mask"],
        "text_mask": meta["text_mask"],
        "speech_ratio": meta["speech_ratio"],
        "captions": meta["captions"],
        "labels": meta.get("labels", []),
    }


def contact_sheet(samples: list[dict], path: str, frames_per_row: int = 6) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(samples)
    fig, axes = plt.subplots(
        rows, frames_per_row, figsize=(2.0 * frames_per_row, 2.0 * rows + 0.2), squeeze=False
    )
    for r, s in enumerate(samples):
        video = s["video"]
        idx = [
            round(i * (len(video) - 1) / max(1, frames_per_row - 1)) for i in range(frames_per_row)
        ]
        for c, i in enumerate(idx):
            ax = axes[r][c]
            ax.imshow(video[i])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(s["key"][-22:], fontsize=6)
        meta = s["meta"]
        caption = meta["captions"][0]["text"] if meta["captions"] else "(no text)"
        axes[r][0].set_title(
            f"{meta['source']} {meta['start']:.1f}-{meta['end']:.1f}s speech={meta['speech_ratio']:.2f} "
            f"text_mask={meta['text_mask']}: {caption[:70]}",
            fontsize=7,
            loc="left",
        )
    fig.subplots_adjust(left=0.03, right=0.99, top=0.97, bottom=0.01, wspace=0.03, hspace=0.3)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from preprocessing import storage
    from preprocessing.shard_format import decode_sample, list_shards, read_shards

    if not storage.is_uri(args.path) and not Path(args.path).exists():
        raise UsageError(f"{args.path}: no such file or folder")
    shards = list_shards(args.path)
    if not shards:
        raise UsageError(f"{args.path}: no .tar shards found")
    limit = (
        None
        if args.limit == 0
        else max(args.limit, args.sheet_samples if args.contact_sheet else 0)
    )
    bad: list[str] = []

    def report(where: str, reason: str) -> None:
        bad.append(where)
        print(f"bad {storage.redact(where)}: {reason}", file=sys.stderr)

    sheet: list[dict] = []
    count = 0
    raws = read_shards(({"url": s} for s in shards), report)
    for raw in raws:
        if limit is not None and count >= limit:
            break
        try:
            sample = decode_sample(raw)
        except Exception as e:  # hostile input: any decoder's error is this sample's reason
            report(f"{raw['__url__']}:{raw['__key__']}", " ".join(str(e).split())[:300])
            continue
        info = describe(sample, raw)
        if args.limit == 0 or count < args.limit:
            if args.json:
                print(json.dumps(info))
            else:
                caps = " | ".join(c["text"] for c in info["captions"][:2]) or "-"
                print(
                    f"{info['key']}  {info['source']:<9} video {tuple(info['video_shape'])} "
                    f"{info['video_codec']} {info['video_bytes']} B "
                    f"audio {info['audio_samples']}@{info['sample_rate']} "
                    f"{info['audio_codec']} {info['audio_bytes']} B  v{info['schema_version']} "
                    f"masks a={info['audio_mask']} t={info['text_mask']} speech={info['speech_ratio']:.2f}  {caps}"
                )
        count += 1
        if args.contact_sheet and len(sheet) < args.sheet_samples:
            sheet.append(sample)
    if args.contact_sheet:
        contact_sheet(sheet, args.contact_sheet)
        print(f"contact sheet: {args.contact_sheet} ({len(sheet)} samples)", file=sys.stderr)
    print(f"{len(shards)} shard(s), {count} sample(s) read, {len(bad)} bad", file=sys.stderr)
    return 1 if bad else 0
