"""Threshold rules and cross-fitting."""

from __future__ import annotations

import numpy as np
import pytest

from osteolens.errors import OsteolensError
from osteolens.evaluation.thresholds import ThresholdRule, choose_threshold


def test_youden_and_target_sensitivity_by_hand():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    # at 0.7: sens 3/4, spec 4/4 -> J = 0.75 (best); at 0.4: sens 1, spec 3/4 -> J = 0.75 too, first max wins
    assert ThresholdRule("youden").choose(y, s) == 0.7
    # the most specific threshold reaching sensitivity 1.0 is 0.4
    assert ThresholdRule("sensitivity", target_sensitivity=1.0).choose(y, s) == 0.4
    assert ThresholdRule("fixed", value=0.33).choose(y, s) == 0.33
    with pytest.raises(OsteolensError):
        ThresholdRule("magic")


def test_cross_fitted_threshold_never_sees_its_own_fold():
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 50)
    s = rng.random(100) * 0.5 + 0.3 * y
    fold = np.repeat(np.arange(5), 20)
    choice = choose_threshold(y, s, fold, ThresholdRule("youden"))
    for k in range(5):
        other = fold != k
        assert choice.per_fold[str(k)] == ThresholdRule("youden").choose(y[other], s[other])
        assert np.all(choice.row_thresholds[fold == k] == choice.per_fold[str(k)])
    assert choice.threshold == ThresholdRule("youden").choose(y, s)
    assert choice.selection.startswith("cross-fitted")
    assert choose_threshold(y, s, None, ThresholdRule()).selection.startswith("in-sample")
