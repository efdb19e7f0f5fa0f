"""Linear probes on frozen features: the paper's low-rank classifier and a linear SVM.

Features in, accuracies out: no model, no IO, no Ray. Training examples are single windows
(every window of a training item is one example); a test item's prediction averages its
windows' logits (spec section 5), which is why every function takes features shaped
(items, windows, D) with a mask of decoded windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CLASSIFIERS = ("low_rank", "svm")


@dataclass(frozen=True)
class LowRankConfig:
    """C = U V with U (D, n), V (n, classes); a random subset of the n components per step."""

    # n = 128 and Adam 5e-4: the paper's linear-evaluation setup (VATT section 4.3).
    rank: int = 128
    # Fraction of the n components used in each step (the paper: "a random subset";
    # the issue names 10%). Like dropout, the sampled product is rescaled by n / k so the
    # full U V used at test time has the same scale.
    component_fraction: float = 0.1
    lr: float = 5e-4
    steps: int = 2000
    batch_size: int = 256
    # Features are standardised with the training set's mean/std first: frozen towers emit
    # features of very different scales, and Adam's step size assumes unit-scale inputs.
    standardize: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"probe.rank={self.rank} must be >= 1")
        if not 0.0 < self.component_fraction <= 1.0:
            raise ValueError(
                f"probe.component_fraction={self.component_fraction} must be in (0, 1]"
            )
        if self.lr <= 0 or self.steps < 1 or self.batch_size < 1:
            raise ValueError("probe.lr must be > 0, probe.steps and probe.batch_size >= 1")


@dataclass(frozen=True)
class SvmConfig:
    """scikit-learn's LinearSVC (liblinear), one-vs-rest."""

    # C = 1.0 is liblinear's default; features are standardised the same way as above.
    C: float = 1.0
    max_iter: int = 5000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.C <= 0 or self.max_iter < 1:
            raise ValueError(f"svm.C={self.C} must be > 0 and svm.max_iter >= 1")


class LowRankClassifier(nn.Module):
    """logits = x U V + b; in training only k = ceil(fraction * n) random components are used."""

    def __init__(self, dim: int, num_classes: int, cfg: LowRankConfig):
        super().__init__()
        self.cfg = cfg
        self.U = nn.Parameter(torch.randn(dim, cfg.rank) / math.sqrt(dim))
        self.V = nn.Parameter(torch.randn(cfg.rank, num_classes) / math.sqrt(cfg.rank))
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Args: x (B, D). Returns logits (B, classes)."""
        if not self.training:
            return x @ self.U @ self.V + self.bias  # the full low-rank C = U V
        n = self.cfg.rank
        k = max(1, math.ceil(self.cfg.component_fraction * n))
        pick = torch.randperm(n, generator=generator)[:k]  # (k,) components this step
        return (x @ self.U[:, pick]) @ self.V[pick] * (n / k) + self.bias


def _flatten_windows(
    features: np.ndarray, labels: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(items, W, D) + (items,) + (items, W) mask -> (examples, D), (examples,)."""
    items, windows = np.nonzero(valid)
    return features[items, windows], labels[items]


def _standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean, np.where(std > 1e-6, std, 1.0)


def _average_over_windows(window_logits: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(items, W, C) logits + (items, W) mask -> (items, C) mean over decoded windows."""
    mask = valid[..., None]  # (items, W, 1)
    # where(), not a product: an SVM gives -inf to classes absent from training, and
    # -inf * 0 would turn an undecoded window into NaN.
    total = np.where(mask, window_logits, 0.0).sum(axis=1)  # (items, C)
    return total / np.maximum(mask.sum(axis=1), 1)


def fit_low_rank(
    x: np.ndarray, y: np.ndarray, num_classes: int, cfg: LowRankConfig
) -> LowRankClassifier:
    """Train the low-rank classifier with Adam on (examples, D) features; returns it in eval mode."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)  # parameter init
    model = LowRankClassifier(x.shape[1], num_classes, cfg)
    torch.random.set_rng_state(torch_state)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(y.astype(np.int64))
    model.train()
    for _ in range(cfg.steps):
        idx = torch.randint(len(xt), (min(cfg.batch_size, len(xt)),), generator=gen)
        loss = F.cross_entropy(model(xt[idx], gen), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def _svm_scores(
    x: np.ndarray, y: np.ndarray, test: np.ndarray, num_classes: int, cfg: SvmConfig
) -> np.ndarray:
    """LinearSVC decision values for every class, (test examples, num_classes).

    Classes absent from the training set get -inf (never predicted)."""
    from sklearn.svm import LinearSVC

    present = np.unique(y)
    out = np.full((len(test), num_classes), -np.inf)
    if len(present) == 1:  # liblinear refuses a single class: it is the only answer
        out[:, present[0]] = 0.0
        return out
    svm = LinearSVC(C=cfg.C, max_iter=cfg.max_iter, random_state=cfg.seed)
    svm.fit(x, y)
    scores = svm.decision_function(test)
    if scores.ndim == 1:  # two classes: one decision value, positive = classes_[1]
        scores = np.stack([-scores, scores], axis=1)
    out[:, svm.classes_] = scores
    return out


def probe_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    train_valid: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    test_valid: np.ndarray,
    num_classes: int,
    classifier: str,
    low_rank: LowRankConfig | None = None,
    svm: SvmConfig | None = None,
) -> dict[str, float]:
    """Fit `classifier` on the training windows, score test items by window-averaged logits.

    Args:
        *_features: (items, W, D) frozen features; *_valid: (items, W) bool, decoded windows;
        *_labels: (items,) class index. Items without a valid window are left out of both.
    Returns top1 accuracy, num_train (examples), num_test (items), chance (1 / classes).
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier {classifier!r}: choose one of {CLASSIFIERS}")
    x, y = _flatten_windows(train_features, train_labels, train_valid)
    if len(x) == 0:
        raise ValueError("no training examples with a decoded window")
    keep = test_valid.any(axis=1)
    test_features, test_labels, test_valid = (
        test_features[keep],
        test_labels[keep],
        test_valid[keep],
    )
    if len(test_labels) == 0:
        raise ValueError("no test items with a decoded window")
    mean, std = _standardizer(x)
    x = (x - mean) / std
    test = ((test_features - mean) / std).reshape(-1, x.shape[1])  # (items*W, D)
    if classifier == "low_rank":
        model = fit_low_rank(x, y, num_classes, low_rank or LowRankConfig())
        with torch.no_grad():
            scores = model(torch.from_numpy(test.astype(np.float32))).numpy()
    else:
        scores = _svm_scores(x, y, test, num_classes, svm or SvmConfig())
    W = test_features.shape[1]
    logits = _average_over_windows(scores.reshape(len(test_labels), W, num_classes), test_valid)
    pred = logits.argmax(axis=1)
    return {
        "top1": float((pred == test_labels).mean()),
        "num_train": int(len(x)),
        "num_test": int(len(test_labels)),
        "chance": 1.0 / num_classes,
    }


__all__ = [
    "CLASSIFIERS",
    "LowRankClassifier",
    "LowRankConfig",
    "SvmConfig",
    "fit_low_rank",
    "probe_accuracy",
]
