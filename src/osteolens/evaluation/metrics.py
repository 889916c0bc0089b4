"""Point metrics written once, for a matrix of row weights.

Every function takes ``W`` of shape ``(B, N)``: one row of non-negative weights per
evaluation. ``W = ones((1, N))`` gives the ordinary metric (the tests check it equals
scikit-learn's); a patient bootstrap gives each image the number of times its patient was
drawn, so the same code computes all ``B`` bootstrap replicates at once without copying
data. That weighted form is why these are written here rather than looped over sklearn
calls (2000 sklearn calls per metric per subgroup would dominate a run).
"""

from __future__ import annotations

import numpy as np


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def weighted_auc(W: np.ndarray, y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC with ties counted 1/2, one per weight row.

    AUC = sum over tie groups g of pos_g (neg_below_g + neg_g / 2) / (P N).
    """
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    w = W[:, order]
    pos = np.add.reduceat(w * y[order], starts, axis=1)
    neg = np.add.reduceat(w * (1 - y[order]), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    total = pos.sum(axis=1) * neg.sum(axis=1)
    return _safe_div((pos * (below + 0.5 * neg)).sum(axis=1), total)


def weighted_average_precision(W: np.ndarray, y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision (area under the precision-recall step curve), as sklearn defines it."""
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    w = W[:, order]
    tp = np.cumsum(np.add.reduceat(w * y[order], starts, axis=1), axis=1)
    fp = np.cumsum(np.add.reduceat(w * (1 - y[order]), starts, axis=1), axis=1)
    precision = _safe_div(tp, tp + fp)
    d_tp = np.diff(np.concatenate([np.zeros((w.shape[0], 1)), tp], axis=1), axis=1)
    return _safe_div(np.nansum(d_tp * precision, axis=1), tp[:, -1])


def binary_metrics(W: np.ndarray, y: np.ndarray, scores: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Threshold-free and thresholded metrics of a binary classifier.

    Args:
        W: ``(B, N)`` row weights.
        y: ``(N,)`` 0/1 truth.
        scores: ``(N,)`` probability of the positive class.
        predicted: ``(N,)`` 0/1 decision at the chosen threshold.
    """
    y = y.astype(float)
    p = predicted.astype(float)
    tp = W @ (y * p)
    fn = W @ (y * (1 - p))
    fp = W @ ((1 - y) * p)
    tn = W @ ((1 - y) * (1 - p))
    total = tp + fn + fp + tn
    sens = _safe_div(tp, tp + fn)
    spec = _safe_div(tn, tn + fp)
    ppv = _safe_div(tp, tp + fp)
    return {
        "auc": weighted_auc(W, y, scores),
        "average_precision": weighted_average_precision(W, y, scores),
        "accuracy": _safe_div(tp + tn, total),
        "balanced_accuracy": (sens + spec) / 2,
        "sensitivity": sens,
        "specificity": spec,
        "ppv": ppv,
        "npv": _safe_div(tn, tn + fn),
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
        "youden_j": sens + spec - 1,
        "brier": _safe_div(W @ (scores - y) ** 2, W.sum(axis=1)),
        "prevalence": _safe_div(tp + fn, total),
    }


def predicted_classes(probs: np.ndarray, cumulative: bool = False) -> np.ndarray:
    """Class decisions from ``[N, K]`` probabilities.

    ``cumulative=False``: the most probable class. ``cumulative=True`` (ordinal models): the
    number of cumulative probabilities ``P(y > k) = sum_{j > k} p_j`` above 0.5, i.e. the
    median class. A CORAL model decides by its K-1 binary questions "is y above k?"; the
    argmax of the derived class probabilities can skip a middle class whose probability is
    the difference of two cumulative ones even when the model ranks it correctly.

    Example:
        >>> predicted_classes(np.array([[0.4, 0.2, 0.4]]), cumulative=True)
        array([1])
    """
    probs = np.asarray(probs, dtype=float)
    if not cumulative:
        return probs.argmax(axis=1)
    exceed = 1.0 - np.cumsum(probs, axis=1)[:, :-1]
    return (exceed > 0.5).sum(axis=1)


def weighted_confusion(W: np.ndarray, y: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """``(B, K, K)`` confusion matrices, rows = truth, columns = prediction."""
    onehot = np.zeros((y.size, k * k))
    onehot[np.arange(y.size), y * k + predicted] = 1.0
    return (W @ onehot).reshape(-1, k, k)


def multiclass_metrics(
    W: np.ndarray, y: np.ndarray, probs: np.ndarray, classes: list[str], ordered: bool,
    predicted: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One-vs-rest AUCs, macro / weighted AUC and F1, accuracy, Brier, and kappa if ordered.

    The predicted class is ``predicted`` when given (see :func:`predicted_classes`), else the
    most probable one. Quadratic weighted kappa:
    ``1 - sum(w O) / sum(w E)`` with ``w_ij = (i - j)^2``, O the confusion matrix and E the
    product of its margins (sklearn's ``cohen_kappa_score(weights="quadratic")``).
    """
    k = len(classes)
    predicted = probs.argmax(axis=1) if predicted is None else np.asarray(predicted, dtype=int)
    cm = weighted_confusion(W, y, predicted, k)
    support = cm.sum(axis=2)
    total = support.sum(axis=1)
    out: dict[str, np.ndarray] = {}
    aucs = np.stack([weighted_auc(W, (y == c).astype(float), probs[:, c]) for c in range(k)], axis=1)
    for c, name in enumerate(classes):
        out[f"auc_{name}"] = aucs[:, c]
    out["auc_macro"] = aucs.mean(axis=1)
    out["auc_weighted"] = _safe_div((aucs * support).sum(axis=1), total)
    diag = np.diagonal(cm, axis1=1, axis2=2)
    recall = _safe_div(diag, support)
    precision = _safe_div(diag, cm.sum(axis=1))
    f1 = np.nan_to_num(_safe_div(2 * diag, support + cm.sum(axis=1)))
    out["accuracy"] = _safe_div(diag.sum(axis=1), total)
    out["balanced_accuracy"] = np.nanmean(recall, axis=1)
    out["f1_macro"] = f1.mean(axis=1)
    out["f1_weighted"] = _safe_div((f1 * support).sum(axis=1), total)
    for c, name in enumerate(classes):
        out[f"sensitivity_{name}"] = recall[:, c]
        out[f"ppv_{name}"] = precision[:, c]
    onehot = np.eye(k)[y]
    out["brier"] = _safe_div(W @ ((probs - onehot) ** 2).sum(axis=1), W.sum(axis=1))
    if ordered:
        grid = np.arange(k)
        weights = (grid[:, None] - grid[None, :]) ** 2
        expected = support[:, :, None] * cm.sum(axis=1)[:, None, :] / total[:, None, None]
        out["kappa_quadratic"] = 1.0 - _safe_div((weights * cm).sum(axis=(1, 2)), (weights * expected).sum(axis=(1, 2)))
    return out


def regression_metrics(
    W: np.ndarray, y: np.ndarray, pred: np.ndarray, within: tuple[float, ...] = (6.0, 12.0)
) -> dict[str, np.ndarray]:
    """MAE, RMSE, R^2, bias and Bland-Altman 95 % limits of agreement, share within +-k.

    Bias is ``mean(pred - truth)``; the limits are ``bias -/+ 1.96 sd(pred - truth)``
    (sd with ddof = 1, counting weights as frequencies).
    """
    err = pred - y
    n = W.sum(axis=1)
    mean_y = _safe_div(W @ y, n)
    bias = _safe_div(W @ err, n)
    ss_res = W @ err**2
    ss_tot = (W * (y[None, :] - mean_y[:, None]) ** 2).sum(axis=1)
    sd = np.sqrt(_safe_div((W * (err[None, :] - bias[:, None]) ** 2).sum(axis=1), n - 1))
    out = {
        "mae": _safe_div(W @ np.abs(err), n),
        "rmse": np.sqrt(_safe_div(ss_res, n)),
        "r2": 1.0 - _safe_div(ss_res, ss_tot),
        "bias": bias,
        "loa_lower": bias - 1.96 * sd,
        "loa_upper": bias + 1.96 * sd,
    }
    for k in within:
        out[f"within_{k:g}"] = _safe_div(W @ (np.abs(err) <= k).astype(float), n)
    return out
