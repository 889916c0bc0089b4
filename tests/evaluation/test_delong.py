"""DeLong beyond the pROC vectors: the mid-rank placements equal DeLong's pairwise kernel."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from osteolens.errors import OsteolensError
from osteolens.evaluation import delong_auc, delong_paired_test, delong_unpaired_test


def _kernel_placements(y, s):
    cases, controls = s[y == 1], s[y == 0]
    psi = (cases[:, None] > controls[None, :]) + 0.5 * (cases[:, None] == controls[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


def test_midrank_placements_equal_the_pairwise_kernel_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 90)
    s = rng.integers(0, 7, 90).astype(float) + y  # many ties
    r = delong_auc(y, s, "<")
    v10, v01 = _kernel_placements(y, s)
    np.testing.assert_allclose(r.case_placements, v10, atol=1e-14)
    np.testing.assert_allclose(r.control_placements, v01, atol=1e-14)
    assert r.auc == pytest.approx(roc_auc_score(y, s), abs=1e-14)
    assert r.variance == pytest.approx(v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size)


def test_direction_gt_negates_scores():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.9, 0.8, 0.3, 0.2, 0.4, 0.1])
    r = delong_auc(y, s)
    assert r.direction == ">"
    assert r.auc == pytest.approx(roc_auc_score(y, -s))


def test_paired_and_unpaired_tests_are_antisymmetric():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    a, b = rng.normal(size=80) + y, rng.normal(size=80) + 0.3 * y
    ab, ba = delong_paired_test(y, a, b), delong_paired_test(y, b, a)
    assert ab.z == pytest.approx(-ba.z) and ab.p == pytest.approx(ba.p)
    greater = delong_paired_test(y, a, b, alternative="greater")
    assert greater.p == pytest.approx(ab.p / 2) if ab.z > 0 else greater.p == pytest.approx(1 - ab.p / 2)
    u = delong_unpaired_test(y[:40], a[:40], y[40:], b[40:])
    assert 0 < u.p < 1 and u.df > 1


def test_errors_name_the_problem():
    with pytest.raises(OsteolensError, match="one class"):
        delong_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(OsteolensError, match="0/1"):
        delong_auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(OsteolensError, match="alternative"):
        delong_paired_test([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], [0.3, 0.5, 0.2, 0.4], alternative="bigger")
