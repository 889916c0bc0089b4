"""The patient bootstrap: stratification, patient grouping, and coverage on simulated data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from osteolens.evaluation import metrics as M
from osteolens.evaluation.bootstrap import bootstrap, bootstrap_weights, patient_strata, percentile_interval


def test_weights_resample_whole_patients_within_strata():
    patient = np.array(["a", "a", "b", "c", "c", "d"])
    label = np.array([0, 0, 0, 1, 1, 1])
    row_patient, stratum = patient_strata(patient, label)
    assert stratum.tolist() == [0, 0, 1, 1]
    for W in bootstrap_weights(row_patient, stratum, 50, seed=1, chunk=20):
        assert W.shape[1] == 6
        assert np.all(W[:, 0] == W[:, 1]) and np.all(W[:, 3] == W[:, 4])  # a patient's images move together
        per_patient = W[:, [0, 2, 3, 5]]
        assert np.all(per_patient[:, :2].sum(axis=1) == 2) and np.all(per_patient[:, 2:].sum(axis=1) == 2)


def test_bootstrap_is_seeded():
    y = np.array([0, 1] * 20, dtype=float)
    s = np.linspace(0, 1, 40)
    row_patient, stratum = patient_strata(np.arange(40).astype(str), y)
    fn = lambda W: {"auc": M.weighted_auc(W, y, s)}  # noqa: E731
    _, a = bootstrap(fn, 40, row_patient, stratum, 100, seed=3)
    _, b = bootstrap(fn, 40, row_patient, stratum, 100, seed=3)
    np.testing.assert_array_equal(a["auc"], b["auc"])


def test_auc_interval_covers_truth_at_about_nominal_rate():
    """200 simulated studies (120 patients x 2 correlated images each): 95 % intervals
    should cover the true AUC in roughly 95 % of them (0.90 to 0.99 allowed)."""
    rng = np.random.default_rng(0)
    d = 1.0
    true_auc = stats.norm.cdf(d / np.sqrt(2))  # binormal model, equal variances
    covered = 0
    n_sets = 200
    for _ in range(n_sets):
        n_pat = 120
        y_pat = rng.integers(0, 2, n_pat)
        patient_effect = rng.normal(0, np.sqrt(0.5), n_pat)
        y = np.repeat(y_pat, 2).astype(float)
        s = np.repeat(patient_effect, 2) + rng.normal(0, np.sqrt(0.5), 2 * n_pat) + d * y
        row_patient, stratum = patient_strata(np.repeat(np.arange(n_pat), 2), y)
        _, reps = bootstrap(lambda W: {"auc": M.weighted_auc(W, y, s)}, y.size, row_patient, stratum, 500, rng)  # noqa: B023
        lo, hi = percentile_interval(reps["auc"])
        covered += lo <= true_auc <= hi
    assert 0.90 <= covered / n_sets <= 0.99


def test_percentile_interval_needs_enough_finite_values():
    assert percentile_interval(np.array([np.nan] * 20 + [0.5] * 5)) == (None, None)
    lo, hi = percentile_interval(np.arange(101, dtype=float), 0.9)
    assert (lo, hi) == pytest.approx((5.0, 95.0))
