"""Operating thresholds chosen on validation data, never on the rows they are applied to.

A rule is Youden's J (maximise sensitivity + specificity - 1), a target sensitivity
(the highest threshold whose sensitivity reaches the target, i.e. the most specific such
point: what a screening tool needs), or a fixed value. A case is called positive when
``score >= threshold``.

With out-of-fold predictions the threshold for fold ``k`` is chosen on the other folds'
predictions (cross-fitting), so the reported sensitivity and specificity are honest; the
threshold stored with the model is chosen on all out-of-fold predictions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from osteolens.errors import EvaluationError

METHODS = ("youden", "sensitivity", "fixed")


@dataclass
class ThresholdRule:
    """How to pick a threshold: ``method`` in youden / sensitivity / fixed."""

    method: str = "youden"
    target_sensitivity: float = 0.9
    value: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise EvaluationError(None, f"threshold method {self.method!r} is unknown. Fix: use one of {METHODS}.")
        if not 0.0 < self.target_sensitivity <= 1.0:
            raise EvaluationError(None, f"target sensitivity {self.target_sensitivity} must lie in (0, 1].")

    def choose(self, y: np.ndarray, scores: np.ndarray) -> float:
        """The threshold this rule picks on ``(y, scores)``."""
        if self.method == "fixed":
            return float(self.value)
        from sklearn.metrics import roc_curve

        y = np.asarray(y)
        if y.min() == y.max():
            raise EvaluationError(None, "a threshold can only be chosen on data holding both classes.")
        fpr, tpr, thr = roc_curve(y, scores, drop_intermediate=False)
        finite = np.isfinite(thr)
        fpr, tpr, thr = fpr[finite], tpr[finite], thr[finite]
        if self.method == "youden":
            return float(thr[int(np.argmax(tpr - fpr))])
        ok = np.flatnonzero(tpr >= self.target_sensitivity - 1e-12)
        return float(thr[ok[0]])  # thresholds decrease: the first one reaching the target


@dataclass
class ThresholdChoice:
    """The stored threshold and how the reported operating point was obtained."""

    rule: ThresholdRule
    threshold: float
    selection: str
    per_fold: dict[str, float] = field(default_factory=dict)
    row_thresholds: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.rule),
            "threshold": self.threshold,
            "selection": self.selection,
            "per_fold": self.per_fold,
        }


def choose_threshold(
    y: np.ndarray, scores: np.ndarray, fold: np.ndarray | None, rule: ThresholdRule
) -> ThresholdChoice:
    """Choose the stored threshold on all rows and cross-fitted per-row thresholds.

    Rows of fold ``k`` get the threshold chosen on the rows of the other folds (external
    test rows, fold ``-1``, get the one chosen on all cross-validation rows). Without a
    usable fold column the stored threshold is applied to every row and the selection is
    marked "in-sample" (optimistic unless the rule is fixed).
    """
    cv = fold is not None and np.unique(fold[fold >= 0]).size >= 2
    final = rule.choose(y, scores[:]) if not cv else rule.choose(y[fold >= 0], scores[fold >= 0])
    if rule.method == "fixed":
        return ThresholdChoice(rule, final, "fixed", {}, np.full(y.size, final))
    if not cv:
        return ThresholdChoice(rule, final, "in-sample (no fold column: optimistic)", {}, np.full(y.size, final))
    rows = np.empty(y.size)
    per_fold: dict[str, float] = {}
    for k in np.unique(fold):
        train = (fold != k) & (fold >= 0)
        if np.unique(y[train]).size < 2:
            value = final
        else:
            value = rule.choose(y[train], scores[train])
        rows[fold == k] = value
        per_fold[str(int(k))] = value
    return ThresholdChoice(rule, final, "cross-fitted: each fold's threshold chosen on the other folds", per_fold, rows)
