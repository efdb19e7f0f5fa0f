"""Held-out zero-shot text->video retrieval (spec section 5), run during pretraining.

Owns the whole evaluation path for an MSR-VTT 1k-A style set (CSV `key,vid_key,video_id,sentence`
plus `<videos>/<video_id>.mp4`):
  read_msrvtt        the CSV -> usable items + one-line errors for the rest
  decode_windows     one video -> `num_windows` uniformly spaced, centre-cropped clips
  HeldoutRetrieval   decodes and tokenizes the set once, then `evaluate(model)` any number
                     of times (video windows embedded, averaged, l2-normalised; sentences
                     embedded, l2-normalised; cosine similarity; metrics both directions)
  retrieval_metrics  the pure scoring function, reusable by other evaluation commands

A broken item (missing video, empty sentence, undecodable file) becomes an error line and the
rest are still scored. No Ray or DeepSpeed here: batches in, numbers out.
"""

from __future__ import annotations

import csv
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import ffmpeg
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from preprocessing.probe import ffmpeg_reason
from preprocessing.vocab import UNK, encode_captions, load_tokenizer
from training.augment import center_crop_resize

if TYPE_CHECKING:
    from training.config import EvalConfig, TrainConfig

MSRVTT_COLUMNS = ("key", "video_id", "sentence")  # vid_key is not needed
RECALL_AT = (1, 5, 10)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def _ranks(sim: torch.Tensor, gt: torch.Tensor, pessimistic: bool) -> torch.Tensor:
    """1-based rank of the correct column in each row: [Q, C] scores, [Q, C] bool targets -> [Q].

    The correct score of a row is its best target; rank = 1 + the number of non-target
    columns that beat it (strictly, or also on a tie when pessimistic)."""
    best = sim.masked_fill(~gt, float("-inf")).amax(dim=1, keepdim=True)  # [Q, 1]
    beats = sim >= best if pessimistic else sim > best  # [Q, C]
    return 1 + (beats & ~gt).sum(dim=1)  # [Q]


def _summary(ranks: torch.Tensor, prefix: str) -> dict[str, float]:
    r = ranks.double()
    out = {f"{prefix}_r{k}": (r <= k).double().mean().item() for k in RECALL_AT}
    # quantile(0.5) averages the two middle ranks of an even count, like np.median.
    out[f"{prefix}_medr"] = r.quantile(0.5).item()
    out[f"{prefix}_meanr"] = r.mean().item()
    return out


def retrieval_metrics(
    sim: torch.Tensor, gt: torch.Tensor, *, ties: str = "pessimistic"
) -> dict[str, float]:
    """Recall@1/5/10, median and mean rank both ways (arguments: `retrieval_ranks`)."""
    t2v, v2t = retrieval_ranks(sim, gt, ties=ties)
    out = _summary(t2v, "t2v") | _summary(v2t, "v2t")
    out["num_texts"], out["num_videos"] = sim.shape
    return out


def retrieval_ranks(
    sim: torch.Tensor, gt: torch.Tensor, *, ties: str = "pessimistic"
) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based rank of the correct item for text->video and video->text retrieval.

    Args:
        sim: [N_text, N_video] similarity scores (higher = more alike).
        gt: [N_text] int, the index of each text's video (several texts may share a video).
        ties: how a score equal to the correct one counts. "pessimistic" (default): it ranks
            ahead of the correct item, so rank = 1 + #{wrong items scoring >= the correct
            one}; a collapsed model (all embeddings equal) then scores chance-or-worse
            instead of a perfect R@1. "optimistic": rank = 1 + #{wrong items scoring strictly
            higher}. NaN scores count as -inf, so a diverged model cannot look good either.
    Returns:
        (t2v ranks [N_text], v2t ranks [videos with a text]), 1-based. t2v ranks each
        text's video among all videos; v2t ranks, for each video that has a text, its
        best-scoring text among all texts (videos without a text are not scored in v2t).
        `retrieval_metrics` summarises them as {t2v_r1, t2v_r5, t2v_r10, t2v_medr,
        t2v_meanr, v2t_... (same), num_texts, num_videos} (recalls are fractions).
    """
    if ties not in ("pessimistic", "optimistic"):
        raise ValueError(f"ties={ties!r}: choose 'pessimistic' or 'optimistic'")
    if sim.ndim != 2 or gt.shape != (sim.shape[0],):
        raise ValueError(
            f"sim must be [N_text, N_video] and gt [N_text]; got {sim.shape}, {gt.shape}"
        )
    n_text, n_video = sim.shape
    if n_text == 0 or n_video == 0:
        raise ValueError("retrieval_metrics needs at least one text and one video")
    gt = gt.long().cpu()
    if gt.min() < 0 or gt.max() >= n_video:
        raise ValueError(f"gt holds video indices outside [0, {n_video})")
    sim = sim.detach().double().cpu().nan_to_num(nan=float("-inf"))
    target = torch.zeros(n_text, n_video, dtype=torch.bool)  # [N_text, N_video]
    target[torch.arange(n_text), gt] = True
    pessimistic = ties == "pessimistic"
    has_text = target.any(dim=0)  # [N_video]
    t2v = _ranks(sim, target, pessimistic)  # [N_text]
    v2t = _ranks(sim.T[has_text], target.T[has_text], pessimistic)  # [N_video with a text]
    return t2v, v2t


# ---------------------------------------------------------------------------------------------
# The CSV
# ---------------------------------------------------------------------------------------------


class RetrievalItem(NamedTuple):
    key: str  # the CSV's `key` (e.g. ret0): names the item in error lines
    video_id: str
    sentence: str
    path: Path  # <videos_dir>/<video_id>.mp4


def read_msrvtt(
    csv_path: str | Path, videos_dir: str | Path
) -> tuple[list[RetrievalItem], list[str]]:
    """Read an MSR-VTT 1k-A style CSV and match each row to `<videos_dir>/<video_id>.mp4`.

    Returns (items, errors): the usable rows in CSV order, and "key: reason" for rows whose
    video is missing or whose sentence is empty (the evaluation goes on without them).
    Raises ValueError, naming the file, when the CSV is unreadable or lacks a column."""
    csv_path, videos_dir = Path(csv_path), Path(videos_dir)
    try:
        # utf-8-sig: a CSV saved by a spreadsheet may start with a byte-order mark.
        with csv_path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in MSRVTT_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(
                    f"{csv_path}: missing column(s) {', '.join(missing)} "
                    f"(expected a header with {', '.join(MSRVTT_COLUMNS)})"
                )
            rows = list(reader)
    except OSError as e:
        raise ValueError(f"{csv_path}: cannot read the retrieval CSV: {e.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{csv_path}: not a readable UTF-8 CSV: {e}") from None

    items, errors = [], []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        key = (row.get("key") or "").strip() or f"line {line}"
        video_id = (row.get("video_id") or "").strip()
        sentence = " ".join((row.get("sentence") or "").split())
        if not video_id:
            errors.append(f"{key}: empty video_id")
            continue
        path = videos_dir / f"{video_id}.mp4"
        if not sentence:
            errors.append(f"{key}: empty sentence")
        elif not path.is_file():
            errors.append(f"{key}: video {path} not found")
        else:
            items.append(RetrievalItem(key, video_id, sentence, path))
    return items, errors


# ---------------------------------------------------------------------------------------------
# Video windows
# ---------------------------------------------------------------------------------------------


class VideoDecodeError(Exception):
    """A held-out video cannot be decoded; the message is the one-line reason."""


def _decode_square(
    path: Path, fps: float, side: int, threads: int, span: tuple[float, float] | None = None
) -> np.ndarray:
    """Every frame at `fps` (of [start, end] seconds when `span` is given), scaled to cover
    side x side and centre-cropped to it.

    Returns uint8 [T, side, side, 3]. Cropping inside ffmpeg makes the output size known
    in advance (raw RGB carries no header) and keeps the pipe small."""
    # Input-side -ss/-t: ffmpeg seeks to the keyframe before `start` and decodes from there,
    # discarding frames before it (exact, and cheap for a segment deep inside a long video).
    seek = {} if span is None else {"ss": f"{span[0]:.3f}"}
    if span is not None and span[1] != float("inf"):
        seek["t"] = f"{span[1] - span[0]:.3f}"
    stream = (
        ffmpeg.input(str(path), threads=threads, **seek)
        .video.filter("fps", fps=fps)
        # "increase" makes both sides >= side (ffmpeg takes the max), so the crop always fits.
        .filter("scale", w=side, h=side, force_original_aspect_ratio="increase")
        .filter("crop", side, side)
        .output("pipe:", format="rawvideo", pix_fmt="rgb24", threads=threads)
    )
    cmd = stream.compile()
    # Global options go before the inputs (see preprocessing.decode._run).
    cmd[1:1] = ["-nostdin", "-hide_banner", "-loglevel", "error", "-filter_threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise VideoDecodeError(f"ffmpeg cannot decode it: {ffmpeg_reason(proc)}")
    frame_bytes = side * side * 3
    if len(proc.stdout) < frame_bytes:
        where = "" if span is None else f" in [{span[0]:g}, {span[1]:g}] s"
        raise VideoDecodeError(f"no video frames decoded{where}")
    n = len(proc.stdout) // frame_bytes
    return np.frombuffer(proc.stdout, np.uint8, n * frame_bytes).reshape(n, side, side, 3)


def window_starts(num_frames: int, span: int, num_windows: int) -> list[int]:
    """First frame of each of `num_windows` windows of `span` frames, uniformly spaced from
    the start to the end of the video (DMVR's linspace sampling); one window is centred.
    A video shorter than a window gets windows starting at 0."""
    last = max(0, num_frames - span)
    if num_windows == 1:
        return [last // 2]
    return [round(s) for s in np.linspace(0, last, num_windows)]


def decode_windows(
    path: str | Path,
    *,
    num_windows: int,
    clip_seconds: float,
    frames: int,
    height: int,
    width: int,
    fps: float = 10.0,
    threads: int = 1,
    start: float | None = None,
    end: float | None = None,
) -> torch.Tensor:
    """`num_windows` uniformly spaced clips of `clip_seconds` from one video, as the model
    sees them at evaluation: `frames` frames (every stride-th frame at `fps`) centre-cropped
    to height x width. With `start`/`end` (seconds; either may be None = the video's own
    start/end) the windows are spread over that segment only (YouCook2 clips inside longer
    videos).

    The video is decoded once, at `fps` and with its short side scaled to max(height, width)
    (cheap: no full-resolution frame reaches Python). A video shorter than a window repeats
    its last frame. Returns uint8 [num_windows, frames, height, width, 3] (uint8 keeps a
    whole held-out set in memory 4x smaller; `to_model_input` makes the [-1, 1] floats).
    Raises VideoDecodeError with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path} not found")
    span = None
    if start is not None or end is not None:
        lo, hi = start or 0.0, float("inf") if end is None else end
        if not 0.0 <= lo < hi:
            raise VideoDecodeError(f"segment [{lo:g}, {hi:g}] s is empty or negative")
        span = (lo, hi)
    # e.g. 3.2 s at 10 fps = 32 decoded frames -> every 4th for an 8-frame model.
    stride = max(1, round(clip_seconds * fps / frames))
    video = _decode_square(path, fps, max(height, width), threads, span)  # [T, S, S, 3]
    starts = window_starts(len(video), (frames - 1) * stride + 1, num_windows)
    offsets = np.arange(frames) * stride
    index = np.minimum(np.add.outer(starts, offsets), len(video) - 1)  # [W, frames]
    clips = center_crop_resize(video[index.reshape(-1)], height, width)  # [W*frames, h, w, 3]
    # Back to uint8: exact when no resize happened (the usual case), else within 0.5/255.
    clips = clips.add_(1.0).mul_(127.5).round_().to(torch.uint8)
    return clips.reshape(num_windows, frames, height, width, 3)


def to_model_input(clips: torch.Tensor) -> torch.Tensor:
    """uint8 clips [..., 3] -> float32 in [-1, 1] (the same map as training.augment)."""
    return clips.float().div_(127.5).sub_(1.0)


# ---------------------------------------------------------------------------------------------
# The held-out set
# ---------------------------------------------------------------------------------------------


class HeldoutRetrieval:
    """An MSR-VTT style set decoded and tokenized once; `evaluate(model)` scores a model.

    Each distinct video is decoded once into `num_windows` clips (uint8, in memory:
    videos x windows x frames x height x width x 3 bytes, e.g. 1000 x 4 x 8 x 64 x 64 x 3 =
    393 MB for the debug model, but 19 GB at the paper's 32 x 224 x 224: build it on one
    worker only); each sentence becomes one caption of `max_words` ids.
    Broken items are listed in `errors` ("key: reason") and left out of the scores.
    """

    def __init__(
        self,
        eval_cfg: EvalConfig,
        *,
        tokenizer: str | Path,
        frames: int,
        height: int,
        width: int,
        clip_seconds: float = 3.2,
        max_words: int = 16,
        vocab_size: int | None = None,
        fps: float = 10.0,
        workers: int = 1,
    ):
        """
        Args:
            eval_cfg: msrvtt_csv, msrvtt_videos and num_windows are used.
            tokenizer: tokenizer.json of the training captions (or its folder).
            frames, height, width: the model's clip shape (`model.cfg.tokenizer`).
            clip_seconds, max_words: as in training (DataConfig).
            vocab_size: the model's vocabulary; word ids at or above it become [UNK]
                (a tokenizer built with more words than the model has rows would crash
                the embedding). None = keep every id.
            workers: ffmpeg processes decoding in parallel.
        Raises:
            ValueError: bad CSV or tokenizer, or not one item could be used.
        """
        began = time.perf_counter()
        items, self.errors = read_msrvtt(eval_cfg.msrvtt_csv, eval_cfg.msrvtt_videos)
        try:
            tok = load_tokenizer(tokenizer)
        except Exception as e:  # tokenizers raises a bare Exception on a bad file
            raise ValueError(f"{tokenizer}: cannot load the tokenizer: {e}") from None

        # Decode every distinct video once (a CSV may give a video several sentences).
        paths = list(dict.fromkeys(item.path for item in items))

        def decode(path: Path) -> torch.Tensor | str:
            try:
                return decode_windows(
                    path,
                    num_windows=eval_cfg.num_windows,
                    clip_seconds=clip_seconds,
                    frames=frames,
                    height=height,
                    width=width,
                    fps=fps,
                )
            except VideoDecodeError as e:
                return str(e)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            decoded = dict(zip(paths, pool.map(decode, paths)))

        good_paths = [p for p in paths if isinstance(decoded[p], torch.Tensor)]
        column = {p: i for i, p in enumerate(good_paths)}
        self.items: list[RetrievalItem] = []
        for item in items:
            result = decoded[item.path]
            if isinstance(result, str):
                self.errors.append(f"{item.key}: {item.path.name}: {result}")
            else:
                self.items.append(item)
        if not self.items:
            first = "; ".join(self.errors[:3]) or "the CSV has no rows"
            raise ValueError(f"{eval_cfg.msrvtt_csv}: no usable retrieval items ({first})")

        self.video_ids = [p.stem for p in good_paths]
        self.clips = torch.stack([decoded[p] for p in good_paths])  # uint8 [V, W, T, H, W, 3]
        self.gt = torch.tensor([column[item.path] for item in self.items])  # [N] video index
        self.text_ids = tokenize_sentences(
            tok, [it.sentence for it in self.items], max_words, vocab_size
        )  # int64 [N, L], 0 = padding
        self.setup_seconds = time.perf_counter() - began

    @classmethod
    def for_run(cls, cfg: TrainConfig, workers: int = 1) -> HeldoutRetrieval:
        """The held-out set of a training run: its eval section, model clip shape and
        vocabulary, data.clip_seconds / max_words and caption tokenizer."""
        if not cfg.eval.enabled:
            raise ValueError("eval: no held-out set configured (eval.msrvtt_csv is empty)")
        if not cfg.data.tokenizer_path():
            raise ValueError("eval: retrieval needs a caption tokenizer (set data.tokenizer)")
        shape = cfg.model_config().tokenizer
        return cls(
            cfg.eval,
            tokenizer=cfg.data.tokenizer_path(),
            frames=shape.frames,
            height=shape.height,
            width=shape.width,
            clip_seconds=cfg.data.clip_seconds,
            max_words=cfg.data.max_words,
            vocab_size=shape.vocab_size,
            workers=workers,
        )

    @property
    def num_videos(self) -> int:
        return self.clips.shape[0]

    def evaluate(self, model: nn.Module, batch_size: int = 16) -> dict[str, float]:
        """Score `model` (a VATT, or a wrapper with `.module` such as DDP/DeepSpeed with
        ZeRO <= 2) on the set; every module's train/eval mode is restored afterwards.

        Returns retrieval_metrics' keys plus num_scored (texts scored), num_errors,
        chance_r1 (t2v R@1 of a random ranking, 1 / videos) and seconds."""
        began = time.perf_counter()
        model = getattr(model, "module", model)
        # Per module, not model.train(was): a part deliberately frozen in eval stays so.
        modes = {m: m.training for m in model.modules()}
        model.eval()
        try:
            with torch.no_grad():
                video = self._embed_videos(model, batch_size)  # [V, d]
                text = self._embed_texts(model, batch_size)  # [N, d]
        finally:
            for m, training in modes.items():
                m.training = training
        sim = text @ video.T  # [N, V] cosine similarity
        out = retrieval_metrics(sim, self.gt)
        out["num_scored"] = len(self.items)
        out["num_errors"] = len(self.errors)
        out["chance_r1"] = 1.0 / self.num_videos
        out["seconds"] = time.perf_counter() - began
        return out

    def _embed_videos(self, model: nn.Module, batch_size: int) -> torch.Tensor:
        """Window embeddings averaged per video, then l2-normalised (spec section 5). -> [V, d]"""
        device = _device_of(model)
        V, W = self.clips.shape[:2]
        flat = self.clips.flatten(0, 1)  # [V*W, T, H, W, 3]
        out = [
            model.encode_video(to_model_input(flat[i : i + batch_size].to(device)))["video_vt"]
            for i in range(0, V * W, batch_size)
        ]
        per_window = torch.cat(out).float().reshape(V, W, -1)  # [V, W, d]
        return F.normalize(per_window.mean(dim=1), dim=-1)  # [V, d]

    def _embed_texts(self, model: nn.Module, batch_size: int) -> torch.Tensor:
        return embed_texts(model, self.text_ids, batch_size)


def tokenize_sentences(
    tok, sentences: list[str], max_words: int, vocab_size: int | None = None
) -> torch.Tensor:
    """One caption of `max_words` ids per sentence: int64 [N, L], 0 = padding.

    Ids at or above `vocab_size` (a tokenizer built with more words than the model has
    embedding rows) become [UNK] instead of crashing the embedding."""
    ids = torch.from_numpy(
        np.stack([encode_captions(tok, [s], 1, max_words)[0] for s in sentences])
    )  # [N, L]
    if vocab_size is not None:
        unk = tok.token_to_id(UNK)
        ids[ids >= vocab_size] = 1 if unk is None else unk
    return ids


def embed_texts(model: nn.Module, text_ids: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """One video-text-space embedding per caption, l2-normalised: [N, L] ids -> [N, d_vt].

    The text tower encodes each caption on its own (padding words are masked out), so
    [B, L] ids give exactly what caption slot 0 of a [B, K, L] training batch would."""
    device = _device_of(model)
    with torch.no_grad():
        out = [
            model.encode_text(text_ids[i : i + batch_size].to(device))["text_vt"]
            for i in range(0, len(text_ids), batch_size)
        ]
    return F.normalize(torch.cat(out).float(), dim=-1)  # [N, d]


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


__all__ = [
    "HeldoutRetrieval",
    "RetrievalItem",
    "VideoDecodeError",
    "decode_windows",
    "embed_texts",
    "read_msrvtt",
    "retrieval_metrics",
    "retrieval_ranks",
    "to_model_input",
    "tokenize_sentences",
    "window_starts",
]
