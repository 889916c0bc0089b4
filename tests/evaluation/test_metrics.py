"""Weighted metrics equal scikit-learn's at unit weights and resampling at integer weights."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from osteolens.evaluation import metrics as M


@pytest.fixture
def binary_data():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 120)
    scores = np.round(rng.random(120) * 0.6 + 0.3 * y, 2)  # rounding creates ties
    return y, scores


def test_binary_metrics_match_sklearn(binary_data):
    y, s = binary_data
    pred = (s >= 0.45).astype(int)
    got = {k: v[0] for k, v in M.binary_metrics(np.ones((1, y.size)), y, s, pred).items()}
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert got["average_precision"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert got["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert got["specificity"] == pytest.approx(tn / (tn + fp))
    assert got["ppv"] == pytest.approx(skm.precision_score(y, pred))
    assert got["npv"] == pytest.approx(tn / (tn + fn))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert got["brier"] == pytest.approx(skm.brier_score_loss(y, s))
    assert got["youden_j"] == pytest.approx(tp / (tp + fn) + tn / (tn + fp) - 1)


def test_integer_weights_equal_a_resample(binary_data):
    y, s = binary_data
    rng = np.random.default_rng(5)
    idx = rng.integers(0, y.size, y.size)
    w = np.bincount(idx, minlength=y.size)[None, :].astype(float)
    assert M.weighted_auc(w, y.astype(float), s)[0] == pytest.approx(skm.roc_auc_score(y[idx], s[idx]), abs=1e-12)
    assert M.weighted_average_precision(w, y.astype(float), s)[0] == pytest.approx(
        skm.average_precision_score(y[idx], s[idx]), abs=1e-12
    )


def test_multiclass_metrics_match_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 150)
    logits = rng.normal(size=(150, 3))
    logits[np.arange(150), y] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    got = {k: v[0] for k, v in M.multiclass_metrics(np.ones((1, 150)), y, probs, ["a", "b", "c"], True).items()}
    assert got["auc_macro"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert got["auc_weighted"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="weighted"))
    assert got["auc_b"] == pytest.approx(skm.roc_auc_score(y == 1, probs[:, 1]))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["f1_weighted"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert got["kappa_quadratic"] == pytest.approx(skm.cohen_kappa_score(y, pred, weights="quadratic"))
    cm = M.weighted_confusion(np.ones((1, 150)), y, pred, 3)[0]
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred))


def test_regression_metrics_match_sklearn_and_hand_values():
    rng = np.random.default_rng(3)
    y = rng.uniform(10, 200, 80)
    pred = y + rng.normal(3, 9, 80)
    got = {k: v[0] for k, v in M.regression_metrics(np.ones((1, 80)), y, pred, (6, 12)).items()}
    err = pred - y
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert got["bias"] == pytest.approx(err.mean())
    assert got["loa_upper"] == pytest.approx(err.mean() + 1.96 * err.std(ddof=1))
    assert got["within_6"] == pytest.approx(np.mean(np.abs(err) <= 6))
    assert got["within_12"] == pytest.approx(np.mean(np.abs(err) <= 12))


def test_tiny_hand_example():
    # cases 0.35, 0.8; controls 0.1, 0.4: 3 of 4 pairs ordered -> AUC 0.75
    auc = M.weighted_auc(np.ones((1, 4)), np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert auc[0] == 0.75
