"""Held-out zero-shot text->video retrieval during pretraining (spec section 5).

`EvalConfig` says where the MSR-VTT 1k-A style set is (CSV `key,vid_key,video_id,sentence`
plus `<videos>/<video_id>.mp4`); `HeldoutRetrieval` decodes and tokenizes it once, then
`evaluate(model)` scores any number of times: video windows embedded, averaged,
l2-normalised; sentences embedded, l2-normalised; cosine similarity; metrics both ways
(`training.eval.metrics`). A broken item (missing video, empty sentence, undecodable file)
becomes an error line and the rest are still scored. No Ray or DeepSpeed here.
`embed_texts` / `tokenize_sentences` serve every text-side evaluation.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from preprocessing.vocab import UNK, encode_captions, load_tokenizer
from training.eval.benchmarks import RetrievalItem, read_msrvtt
from training.eval.media import VideoDecodeError, decode_windows, to_model_input
from training.eval.metrics import retrieval_metrics

if TYPE_CHECKING:
    from training.pretrain.config import TrainConfig


@dataclass(frozen=True)
class EvalConfig:
    """Held-out zero-shot text->video retrieval during training (MSR-VTT 1k-A format)."""

    msrvtt_csv: str = ""  # "" = no held-out evaluation
    msrvtt_videos: str = ""  # folder of <video_id>.mp4
    every_steps: int = 0  # 0 = only before the first and after the last step
    num_windows: int = 4  # uniformly spaced windows per video, embeddings averaged

    def __post_init__(self) -> None:
        if bool(self.msrvtt_csv) != bool(self.msrvtt_videos):
            raise ValueError("eval: set both eval.msrvtt_csv and eval.msrvtt_videos, or neither")
        if self.every_steps < 0 or self.num_windows < 1:
            raise ValueError("eval.every_steps must be >= 0 and eval.num_windows >= 1")

    @property
    def enabled(self) -> bool:
        return bool(self.msrvtt_csv)


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


__all__ = ["EvalConfig", "HeldoutRetrieval", "embed_texts", "tokenize_sentences"]
