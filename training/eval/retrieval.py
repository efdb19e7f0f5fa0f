"""Zero-shot text<->video retrieval on MSR-VTT 1k-A and YouCook2 (spec section 5).

    benchmark CSV -> texts + video items (a YouCook2 segment is its own item)
    -> video windows embedded with Ray Data (z_v,vt averaged over 4 windows, l2-normalised)
    -> sentences embedded on the driver (z_t,vt, l2-normalised) -> cosine similarity
    -> R@1/5/10, median/mean rank both ways, recall@K curves, the embeddings saved

Broken rows (missing video, empty sentence) and undecodable videos are errors in the report;
the rest is scored and the report says how many were.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.eval.benchmarks import read_msrvtt, read_youcook2
from training.eval.extract import Embeddings, MediaItem, WindowSpec, extract_embeddings
from training.eval.metrics import CURVE_MAX_K, recall_curve, retrieval_ranks

BENCHMARKS = ("msrvtt", "youcook2")


@dataclass
class RetrievalSet:
    """Texts and the video items they describe (text i describes videos[text_video[i]])."""

    name: str
    text_keys: list[str]
    sentences: list[str]
    text_video: list[int]
    videos: list[MediaItem]
    errors: list[str] = field(default_factory=list)  # "key: reason"


def load_benchmark(name: str, csv_path: str | Path, videos_dir: str | Path) -> RetrievalSet:
    """Read a benchmark CSV in its real format; bad rows become errors, not exceptions.

    Raises ValueError (naming the file) when the CSV itself is unreadable."""
    if name == "msrvtt":
        rows, errors = read_msrvtt(csv_path, videos_dir)
        # A video described by several sentences (full MSR-VTT) is embedded once.
        column: dict[Path, int] = {}
        videos: list[MediaItem] = []
        for row in rows:
            if row.path not in column:
                column[row.path] = len(videos)
                videos.append(MediaItem(row.video_id, str(row.path)))
        return RetrievalSet(
            name,
            [r.key for r in rows],
            [r.sentence for r in rows],
            [column[r.path] for r in rows],
            videos,
            list(errors),
        )
    if name == "youcook2":
        segments, errors = read_youcook2(csv_path, videos_dir)
        return RetrievalSet(
            name,
            [s.key for s in segments],
            [s.text for s in segments],
            list(range(len(segments))),
            [MediaItem(s.key, str(s.path), s.start, s.end) for s in segments],
            list(errors),
        )
    raise ValueError(f"benchmark {name!r}: choose one of {BENCHMARKS}")


def score(
    model,
    bench: RetrievalSet,
    tokenizer,
    *,
    num_windows: int = 4,
    clip_seconds: float = 3.2,
    max_words: int = 16,
    size: int | None = None,
    batch_size: int = 16,
    label: str = "model",
) -> tuple[dict, Embeddings, np.ndarray, list[str]]:
    """Score `model` on `bench`.

    Returns (report, video embeddings, text embeddings (N, d) of the scored texts, their keys).

    The report holds t2v/v2t metrics, recall curves, counts and per-item errors."""
    import torch

    from training.eval.heldout import embed_texts, tokenize_sentences

    began = time.perf_counter()
    spec = WindowSpec.for_model(model.cfg, "video", num_windows, clip_seconds, size)
    video = extract_embeddings(
        model,
        bench.videos,
        spec,
        ("video_vt",),
        batch_size=batch_size,
        desc=f"{label}: video windows",
    )
    errors = list(bench.errors)
    good = [i for i in range(len(bench.videos)) if video.valid[i].any()]
    column = {v: c for c, v in enumerate(good)}
    texts = [t for t in range(len(bench.sentences)) if bench.text_video[t] in column]
    for t in range(len(bench.sentences)):  # one line per text left out, with the video's reason
        if bench.text_video[t] not in column:
            item = bench.videos[bench.text_video[t]]
            reason = video.errors.get(item.key, "no window decoded")
            errors.append(f"{bench.text_keys[t]}: {Path(item.path).name}: {reason}")
    if not texts:
        raise ValueError(f"{bench.name}: nothing to score ({'; '.join(errors[:3]) or 'no items'})")
    ids = tokenize_sentences(
        tokenizer, [bench.sentences[t] for t in texts], max_words, model.cfg.tokenizer.vocab_size
    )
    text_emb = embed_texts(model, ids).numpy()  # (N, d), l2-normalised
    video_emb = video.pooled("video_vt")[good]  # (V, d), averaged windows, l2-normalised
    sim = torch.from_numpy(text_emb @ video_emb.T)  # (N, V) cosine similarity
    gt = torch.tensor([column[bench.text_video[t]] for t in texts])
    t2v, v2t = (r.numpy() for r in retrieval_ranks(sim, gt))
    metrics = {}
    for prefix, ranks in (("t2v", t2v), ("v2t", v2t)):
        metrics[prefix] = {
            **{f"r{k}": float((ranks <= k).mean()) for k in (1, 5, 10)},
            "medr": float(np.median(ranks)),
            "meanr": float(ranks.mean()),
            "recall_curve": recall_curve(ranks, min(CURVE_MAX_K, len(good))),
        }
    report = {
        "label": label,
        **metrics,
        # Every text row of the CSV, including those rejected while reading it.
        "num_texts": len(bench.sentences) + len(bench.errors),
        "num_videos": len(bench.videos),
        "num_scored": len(texts),
        "num_videos_scored": len(good),
        "num_errors": len(errors),
        "errors": errors,
        "chance_r1": 1.0 / len(good),
        "seconds": time.perf_counter() - began,
    }
    scored_keys = [bench.text_keys[t] for t in texts]
    return report, video, text_emb, scored_keys


def save_embeddings(
    out_dir: Path,
    bench: RetrievalSet,
    video: Embeddings,
    text_emb: np.ndarray,
    text_keys: list[str],
) -> dict[str, str]:
    """Write videos.parquet (key, path, start, end, embedding) and texts.parquet (key,
    sentence, video key, embedding): l2-normalised z_vt vectors, reusable for search."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir.mkdir(parents=True, exist_ok=True)
    good = [i for i in range(len(bench.videos)) if video.valid[i].any()]
    pooled = video.pooled("video_vt")[good]
    dim = pooled.shape[1]
    videos = pa.table(
        {
            "key": [bench.videos[i].key for i in good],
            "path": [bench.videos[i].path for i in good],
            "start": [bench.videos[i].start for i in good],
            "end": [bench.videos[i].end for i in good],
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(pooled.reshape(-1)), dim),
        }
    )
    index = {k: t for t, k in enumerate(bench.text_keys)}
    rows = [index[k] for k in text_keys]
    texts = pa.table(
        {
            "key": text_keys,
            "sentence": [bench.sentences[t] for t in rows],
            "video_key": [bench.videos[bench.text_video[t]].key for t in rows],
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(text_emb.astype(np.float32).reshape(-1)), dim
            ),
        }
    )
    paths = {"videos": out_dir / "videos.parquet", "texts": out_dir / "texts.parquet"}
    pq.write_table(videos, paths["videos"])
    pq.write_table(texts, paths["texts"])
    return {k: str(v) for k, v in paths.items()}


__all__ = [
    "BENCHMARKS",
    "RetrievalSet",
    "load_benchmark",
    "save_embeddings",
    "score",
]
