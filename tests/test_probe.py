"""Linear probes on features (training/probe.py): the low-rank classifier and the linear SVM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.eval.classifiers import LowRankClassifier, LowRankConfig, SvmConfig, probe_accuracy


def blobs(items: int, classes: int, windows: int, dim: int, spread: float, seed: int):
    """Class-mean + noise features, (items, windows, dim), balanced labels; the class means
    are the same for every seed (train and test sets share them)."""
    means = np.random.default_rng(1234).normal(size=(classes, dim)) * 3
    rng = np.random.default_rng(seed)
    labels = np.arange(items) % classes
    x = means[labels][:, None, :] + rng.normal(scale=spread, size=(items, windows, dim))
    return x.astype(np.float32), labels, np.ones((items, windows), dtype=bool)


@pytest.mark.parametrize("classifier", ["low_rank", "svm"])
def test_separable_classes_are_learned_and_noise_is_not(classifier):
    train = blobs(40, 5, 3, 32, 0.5, seed=0)
    test = blobs(20, 5, 3, 32, 0.5, seed=1)
    cfg = LowRankConfig(steps=300)
    good = probe_accuracy(*train, *test, 5, classifier, low_rank=cfg)
    assert good["top1"] == 1.0
    assert good["num_train"] == 40 * 3 and good["num_test"] == 20 and good["chance"] == 0.2
    # Labels unrelated to the features: accuracy near chance, far from the separable case.
    rng = np.random.default_rng(2)
    shuffled = (train[0], rng.permutation(train[1]), train[2])
    bad = probe_accuracy(*shuffled, *test, 5, classifier, low_rank=cfg)
    assert bad["top1"] < 0.6


def test_low_rank_uses_a_random_tenth_of_the_components_per_step():
    cfg = LowRankConfig(rank=128, component_fraction=0.1)
    clf = LowRankClassifier(16, 4, cfg).train()
    clf(torch.randn(8, 16)).sum().backward()
    used = (clf.U.grad.abs().sum(0) > 0).sum().item()
    assert used == 13  # ceil(0.1 * 128)
    assert torch.equal(clf.U.grad.abs().sum(0) > 0, clf.V.grad.abs().sum(1) > 0)
    # Evaluation uses the full C = U V.
    clf.eval()
    x = torch.randn(3, 16)
    assert torch.allclose(clf(x), x @ clf.U @ clf.V + clf.bias)


def test_test_logits_are_averaged_over_decoded_windows_only():
    train = blobs(30, 3, 2, 8, 0.3, seed=0)
    x, y, valid = blobs(9, 3, 2, 8, 0.3, seed=1)
    # Window 1 of every test item is garbage from another class but marked undecoded:
    # it must not count. Marked decoded, it drags accuracy down.
    x[:, 1] = x[np.roll(np.arange(9), 1), 0] * 5
    valid[:, 1] = False
    clean = probe_accuracy(*train, x, y, valid, 3, "svm")
    assert clean["top1"] == 1.0
    dirty = probe_accuracy(*train, x, y, np.ones_like(valid), 3, "svm")
    assert dirty["top1"] < 1.0
    # An item without any decoded window is left out of the test set.
    valid[0, 0] = False
    assert probe_accuracy(*train, x, y, valid, 3, "svm")["num_test"] == 8


def test_svm_with_a_class_missing_from_training_never_predicts_it():
    x, y, valid = blobs(30, 3, 1, 8, 0.3, seed=0)
    keep = y != 2
    res = probe_accuracy(x[keep], y[keep], valid[keep], x, y, valid, 3, "svm", svm=SvmConfig(C=0.5))
    assert res["top1"] == pytest.approx(2 / 3)


def test_bad_inputs_raise_clear_errors():
    x, y, valid = blobs(6, 2, 1, 4, 0.1, seed=0)
    with pytest.raises(ValueError, match="classifier 'knn'"):
        probe_accuracy(x, y, valid, x, y, valid, 2, "knn")
    with pytest.raises(ValueError, match="no training examples"):
        probe_accuracy(x, y, np.zeros_like(valid), x, y, valid, 2, "svm")
    with pytest.raises(ValueError, match="component_fraction"):
        LowRankConfig(component_fraction=0.0)
