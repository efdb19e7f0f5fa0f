"""Training loader cost per core at the paper's shape: the v1 path vs the v2 path per encoding.

One process, one thread (torch, PIL and PyAV single-threaded), the paper's clip: 32 frames of
224x224 (3.2 s at 10 fps) and 153,600 audio samples (3.2 s at 48 kHz). Paths, measured in
one run with interleaved repeats (every repeat times every path in turn; medians reported):

  v1 reference (today's loader before schema v2): decode the 32 JPEGs (Pillow) + the int16
    .npy -> `augment_clip` in float32 on the CPU (crop, resize, flip, colour jitter, noise)
    -> hand a float32 clip to the training process.
  new path, for each encoding (v1 shards too): decode (JPEG, or the window's H.264 stream
    in-process with PyAV, the crop box cut and resized inside FFmpeg into the loader's
    hand-off format, `data.video_handoff`, default 4:2:0 YUV planes, so for H.264 the
    crop+resize time is inside "decode"; Opus / AAC / FLAC audio decoded up to the clip's
    end, or .npy) -> crop + resize + flip in uint8 (JPEG)
    -> hand uint8 video (YUV planes or RGB) + int16 audio to the training process; the YUV ->
    RGB conversion and flip, colour jitter, [-1, 1] scaling and noise run batched on the
    training device (`augment_batch`; timed here on this CPU and reported, the conversion
    also on its own, but not a loader core's work). `new:h264_opus:rgb` is the default
    encoding with the RGB hand-off (converted in the decoder), side by side.

The hand-off is what a DataLoader worker does with a clip: pickle it for the queue, which
moves the tensors into shared memory (a copy), and the training process unpickles it.

    python benchmarks/loader.py --shards DIR [--json] [--repeats 5] [--clips 8]

DIR holds one folder of shards per encoding (`v1_jpeg_pcm/`, `h264_opus/`, ...); missing ones
are written first from real-looking footage (benchmarks/footage.py: noise + motion).
Prints a table (or with --json one JSON object): clips_per_s_per_core per path,
bytes_per_window per encoding, speedup_vs_v1 (the default encoding's new path over v1).
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from footage import DEFAULT, ENCODINGS, make_footage, write_shards  # noqa: E402

from preprocessing.shard_format import decode_sample, iter_samples, members, parse_meta  # noqa: E402
from training.data.augment import (  # noqa: E402
    AugmentConfig,
    audio_to_float,
    augment_batch,
    augment_clip,
    crop_resize_flip_u8,
    draw_clip_params,
    yuv_to_rgb,
)
from training.data.loader import DataConfig  # noqa: E402

FRAMES, SIDE, AUDIO = 32, 224, 153_600  # the paper's clip (stride 1 at 10 fps / 48 kHz)
BATCH = 8  # clips per device-side augmentation call
# The loader's default hand-off format for H.264 clips (data.video_handoff).
PIX_FMT = DataConfig(audioset="-").pix_fmt(SIDE, SIDE)


def _handoff(*tensors: torch.Tensor) -> float:
    """Seconds to pass tensors to another process the DataLoader way (shared memory)."""
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing  # noqa: F401  (registers the tensor reductions)

    t0 = time.perf_counter()
    buf = ForkingPickler.dumps(tensors)
    out = pickle.loads(buf)
    dt = time.perf_counter() - t0
    del out
    return dt


class Clips:
    """The raw samples of one encoding's shards, and a seeded crop start per call."""

    def __init__(self, folder: Path):
        self.samples = list(iter_samples(sorted(str(p) for p in folder.glob("*.tar"))))
        if not self.samples:
            raise SystemExit(f"{folder}: no samples")
        self.metas = [parse_meta(s["json"]) for s in self.samples]

    def bytes_per_window(self) -> dict:
        vext, aext = members(self.metas[0])
        n = len(self.samples)
        video = sum(len(s[vext]) for s in self.samples) / n
        audio = sum(len(s[aext]) for s in self.samples) / n
        meta = sum(len(s["json"]) for s in self.samples) / n
        return {
            "video": round(video), "audio": round(audio), "json": round(meta),
            "total": round(video + audio + meta), "video_member": vext, "audio_member": aext,
        }  # fmt: skip


def v1_path(clips: Clips, i: int, gen: torch.Generator, cfg: AugmentConfig) -> dict:
    sample, meta = clips.samples[i % len(clips.samples)], clips.metas[i % len(clips.samples)]
    t0 = time.perf_counter()
    start = int(torch.randint(0, meta["num_frames"] - FRAMES + 1, (), generator=gen))
    dec = decode_sample(sample, slice(start, start + FRAMES))
    a0 = start * 4800
    wave = audio_to_float(dec["audio"][a0 : a0 + AUDIO])
    t1 = time.perf_counter()
    video, audio = augment_clip(dec["video"], wave, cfg, SIDE, SIDE, gen)
    t2 = time.perf_counter()
    handoff = _handoff(video, audio)
    return {"decode": t1 - t0, "augment_cpu_float": t2 - t1, "handoff": handoff}


def new_path(
    clips: Clips, i: int, gen: torch.Generator, cfg: AugmentConfig, pix_fmt: str = PIX_FMT
) -> tuple:
    """The loader's path: an H.264 member is cropped + resized inside the decoder into
    `pix_fmt` (so its crop_resize time is part of decode; YUV planes are flipped later, on
    the device); JPEG frames are decoded whole and cut in uint8."""
    sample, meta = clips.samples[i % len(clips.samples)], clips.metas[i % len(clips.samples)]
    t0 = time.perf_counter()
    start = int(torch.randint(0, meta["num_frames"] - FRAMES + 1, (), generator=gen))
    params = draw_clip_params(meta["height"], meta["width"], cfg, gen)
    a0 = start * 4800
    yuv = pix_fmt != "rgb24"
    dec = decode_sample(
        sample, slice(start, start + FRAMES), crop=params.box, out_size=(SIDE, SIDE),
        flip=params.flip and not yuv, audio_until=a0 + AUDIO, pix_fmt=pix_fmt,
    )  # fmt: skip
    wave = np.zeros(AUDIO, np.int16)
    part = dec["audio"][a0 : a0 + AUDIO]
    wave[: len(part)] = part
    t1 = time.perf_counter()
    if isinstance(dec["video"], tuple):  # YuvPlanes: Y [T, H, W], CbCr [T, 2, h, w]
        video = tuple(torch.from_numpy(p) for p in dec["video"])
    elif dec["cropped"]:
        video = torch.from_numpy(dec["video"])
        video = (video.flip(2) if params.flip and not dec["flipped"] else video).contiguous()
    else:
        video = crop_resize_flip_u8(dec["video"], params, SIDE, SIDE)
    t2 = time.perf_counter()
    audio = torch.from_numpy(wave)
    handoff = _handoff(*(video if isinstance(video, tuple) else (video,)), audio)
    times = {"decode": t1 - t0, "crop_resize_u8": t2 - t1, "handoff": handoff}
    return times, (video, audio, params)


def device_aug(batch: list, cfg: AugmentConfig) -> dict:
    """Seconds per clip of the batched device half, on this CPU (one thread): all of it, and
    the YUV -> RGB conversion alone (YUV hand-offs)."""
    audio = torch.stack([b[1] for b in batch])
    jitter = torch.tensor([b[2].jitter for b in batch])
    seeds = torch.tensor([b[2].noise_seed for b in batch])
    flip = None
    if isinstance(batch[0][0], tuple):  # (Y, CbCr) per clip
        video = tuple(torch.stack([b[0][k] for b in batch]) for k in range(2))
        flip = torch.tensor([b[2].flip for b in batch])
    else:
        video = torch.stack([b[0] for b in batch])
    t0 = time.perf_counter()
    augment_batch(video, audio, jitter, seeds, cfg, flip=flip)
    out = {"device_aug_on_this_cpu": (time.perf_counter() - t0) / len(batch)}
    if flip is not None:
        t0 = time.perf_counter()
        yuv_to_rgb(*video)
        out["device_yuv_to_rgb_on_this_cpu"] = (time.perf_counter() - t0) / len(batch)
    return out


def prepare(shards: Path, videos: int) -> None:
    missing = [e for e in ENCODINGS if not list((shards / e).glob("*.tar"))]
    if not missing:
        return
    print(f"writing shards for {missing} under {shards}", file=sys.stderr)
    files = [make_footage(shards / "footage" / f"f{i}.mp4", 12.0, seed=i) for i in range(videos)]
    for e in missing:
        write_shards(files, shards, e)


def run(shards: Path, repeats: int, n_clips: int, videos: int) -> dict:
    torch.set_num_threads(1)
    prepare(shards, videos)
    cfg = AugmentConfig()
    data = {e: Clips(shards / e) for e in ENCODINGS}
    paths = ["v1_reference", *(f"new:{e}" for e in ENCODINGS), f"new:{DEFAULT}:rgb"]
    per_rep: dict[str, list[dict]] = {p: [] for p in paths}
    for rep in range(repeats):
        for p in paths:  # interleaved: every repeat times every path in turn
            gen = torch.Generator().manual_seed(rep)
            stages: dict[str, list[float]] = {}
            if p == "v1_reference":
                for i in range(n_clips):
                    for k, v in v1_path(data["v1_jpeg_pcm"], i, gen, cfg).items():
                        stages.setdefault(k, []).append(v)
            else:
                batch = []
                _, enc, *rgb = p.split(":")
                for i in range(n_clips):
                    times, clip = new_path(data[enc], i, gen, cfg, "rgb24" if rgb else PIX_FMT)
                    batch.append(clip)
                    for k, v in times.items():
                        stages.setdefault(k, []).append(v)
                for j in range(0, len(batch), BATCH):
                    for k, v in device_aug(batch[j : j + BATCH], cfg).items():
                        stages.setdefault(k, []).append(v)
            per_rep[p].append({k: 1000 * statistics.mean(v) for k, v in stages.items()})
    result: dict = {"shape": {"frames": FRAMES, "height": SIDE, "width": SIDE, "audio": AUDIO}}
    result["repeats"], result["clips_per_repeat"] = repeats, n_clips
    result["windows_per_encoding"] = {e: len(d.samples) for e, d in data.items()}
    result["paths_ms_per_clip"] = {}
    cps = {}
    for p, reps in per_rep.items():
        med = {k: round(statistics.median(r[k] for r in reps), 2) for k in reps[0]}
        core = [sum(v for k, v in r.items() if not k.startswith("device_")) for r in reps]
        med["loader_core_ms"] = round(statistics.median(core), 2)
        result["paths_ms_per_clip"][p] = med
        cps[p] = round(1000 / med["loader_core_ms"], 2)
    # Flat {name: number} with a "default" entry: what `vatt plan` reads (training/plan.py).
    result["clips_per_s_per_core"] = {"default": cps[f"new:{DEFAULT}"], **cps}
    members_ = {e: d.bytes_per_window() for e, d in data.items()}
    result["bytes_per_window"] = {
        "default": members_[DEFAULT]["total"],
        **{e: m["total"] for e, m in members_.items()},
    }
    result["bytes_per_member"] = members_
    result["default_encoding"] = DEFAULT
    result["video_handoff"] = PIX_FMT
    result["speedup_yuv_handoff_vs_rgb"] = round(
        cps[f"new:{DEFAULT}"] / cps[f"new:{DEFAULT}:rgb"], 2
    )
    result["speedup_vs_v1"] = round(cps[f"new:{DEFAULT}"] / cps["v1_reference"], 2)
    result["speedup_v1_shards_new_path"] = round(cps["new:v1_jpeg_pcm"] / cps["v1_reference"], 2)
    return result


def _table(r: dict) -> str:
    lines = [f"paper shape {FRAMES}x{SIDE}x{SIDE}, {AUDIO} audio samples; ms per clip, 1 core"]
    for p, m in r["paths_ms_per_clip"].items():
        parts = "  ".join(f"{k} {v}" for k, v in m.items())
        lines.append(f"{p:<18} {r['clips_per_s_per_core'][p]:>7} clips/s/core   {parts}")
    for e, b in r["bytes_per_member"].items():
        lines.append(f"{e:<18} {b['total']:>9} B/window (video {b['video']}, audio {b['audio']})")
    lines.append(f"speedup_vs_v1 ({r['default_encoding']}): {r['speedup_vs_v1']}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shards", required=True, help="folder of per-encoding shard folders")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats (default 5)")
    ap.add_argument("--clips", type=int, default=8, help="clips per path per repeat (default 8)")
    ap.add_argument("--videos", type=int, default=3, help="footage files if shards are written")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.clips < 1 or args.videos < 1:
        ap.error("--repeats, --clips and --videos must be >= 1")
    shards = Path(args.shards)
    if shards.exists() and not shards.is_dir():
        ap.error(f"--shards {shards}: not a folder")
    result = run(shards, args.repeats, args.clips, args.videos)
    print(json.dumps(result, indent=1) if args.json else _table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
