"""Scores of a model's outputs: retrieval ranks and recalls, top-k classification accuracy.

Numbers in, numbers out: no model, no IO, no Ray. Used by held-out retrieval during
pretraining, `vatt eval retrieval`, fine-tuning's test-set evaluation and zero-shot reports.
"""

from __future__ import annotations

import numpy as np
import torch

RECALL_AT = (1, 5, 10)
CURVE_MAX_K = 50


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


def recall_curve(ranks: np.ndarray, max_k: int = CURVE_MAX_K) -> list[float]:
    """R@1 .. R@max_k from 1-based ranks."""
    return [float((ranks <= k).mean()) for k in range(1, max_k + 1)]


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """How many rows rank their label within the top k, per k (k capped at the number of
    classes). Ties count against the label (rank = 1 + other classes scoring >= it), and NaN
    logits are -inf: a collapsed or diverged model (e.g. the zero-initialised head) scores
    nothing instead of "predicting" class 0."""
    logits = logits.float().nan_to_num(nan=float("-inf"))  # (N, C)
    own = logits.gather(1, labels[:, None])  # (N, 1)
    rank = (logits >= own).sum(dim=1)  # (N,): 1 + others at or above the label's logit
    return {k: int((rank <= min(k, logits.shape[1])).sum()) for k in ks}


def classification_scores(
    predictions: list[tuple[str, int, list[float]]], num_classes: int
) -> dict:
    """top1 / top5 accuracy (fractions) of (key, label, mean logits) rows, with counts."""
    if not predictions:
        return {"top1": 0.0, "top5": 0.0, "num_scored": 0}
    logits = torch.tensor([p[2] for p in predictions])  # (N, classes)
    labels = torch.tensor([p[1] for p in predictions])  # (N,)
    correct = topk_correct(logits, labels, (1, 5))
    n = len(predictions)
    return {
        "top1": correct[1] / n,
        "top5": correct[5] / n,
        "num_scored": n,
        "chance_top1": 1.0 / num_classes,
    }


__all__ = [
    "RECALL_AT",
    "classification_scores",
    "recall_curve",
    "retrieval_metrics",
    "retrieval_ranks",
    "topk_correct",
]
