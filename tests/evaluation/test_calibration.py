"""Calibration measures and recalibrators (JSON round trip, equal to sklearn's models)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import special
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from osteolens.evaluation.calibration import (
    Calibrator,
    calibration_intercept_slope,
    expected_calibration_error,
    fit_calibrator,
)


@pytest.fixture
def overconfident():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 1.5, 4000)
    y = (rng.random(4000) < special.expit(true_logit)).astype(int)
    return y, special.expit(2.0 * true_logit + 0.5)  # too extreme and shifted


def test_intercept_and_slope_recover_the_distortion(overconfident):
    y, p = overconfident
    intercept, slope = calibration_intercept_slope(y, p)
    assert slope == pytest.approx(0.5, abs=0.05)  # logit(p) = 2 * true + 0.5 -> slope 1/2
    assert intercept < 0  # predictions too high on average


def test_perfect_calibration_has_slope_one():
    rng = np.random.default_rng(1)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    intercept, slope = calibration_intercept_slope(y, p)
    assert slope == pytest.approx(1.0, abs=0.06) and intercept == pytest.approx(0.0, abs=0.05)
    assert expected_calibration_error(y, p) < 0.02


def test_ece_by_hand():
    y = np.array([0, 1, 1, 1])
    p = np.array([0.05, 0.15, 0.95, 0.85])
    # bin 0: p 0.05, y 0 -> 0.05; bin 1: 0.15 vs 1 -> 0.85; bin 8: 0.85 vs 1 -> 0.15; bin 9: 0.95 vs 1 -> 0.05
    assert expected_calibration_error(y, p) == pytest.approx((0.05 + 0.85 + 0.15 + 0.05) / 4)


def test_platt_matches_sklearn_and_round_trips_json(overconfident):
    y, p = overconfident
    cal = fit_calibrator(p, y, "platt")
    clone = Calibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    ref = LogisticRegression(C=1e6, max_iter=1000).fit(special.logit(np.clip(p, 1e-6, 1 - 1e-6))[:, None], y)
    np.testing.assert_allclose(
        clone(p), ref.predict_proba(special.logit(np.clip(p, 1e-6, 1 - 1e-6))[:, None])[:, 1], atol=1e-10
    )
    _, slope = calibration_intercept_slope(y, clone(p))
    assert slope == pytest.approx(1.0, abs=0.02)


def test_isotonic_matches_sklearn_and_round_trips_json(overconfident):
    y, p = overconfident
    cal = Calibrator.from_dict(json.loads(json.dumps(fit_calibrator(p, y, "isotonic").to_dict())))
    ref = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
    grid = np.linspace(-0.1, 1.1, 301)
    np.testing.assert_allclose(cal(grid), ref.predict(grid), atol=1e-12)


def test_temperature_scaling_recovers_the_overconfidence_and_keeps_the_ranking():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 1.5, (5000, 3))
    truth = special.softmax(logits, axis=1)
    y = (rng.random(5000)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1)  # y ~ Categorical(truth)
    overconfident = special.softmax(2.5 * logits, axis=1)  # the right temperature is 2.5
    cal = Calibrator.from_dict(json.loads(json.dumps(fit_calibrator(overconfident, y, "temperature").to_dict())))
    assert cal.params["temperature"] == pytest.approx(2.5, rel=0.08)
    fixed = cal(overconfident)
    assert np.abs(fixed - truth).max() < 0.05
    assert (fixed.argmax(axis=1) == overconfident.argmax(axis=1)).all()
    # The fitted T is where the log-loss is lowest: a nudge either way does worse.
    def log_loss(t):
        return -np.log(special.softmax(np.log(overconfident) / t, axis=1)[np.arange(5000), y]).mean()
    best = cal.params["temperature"]
    assert log_loss(best) < min(log_loss(best * 0.95), log_loss(best * 1.05))


def test_temperature_scaling_needs_a_probability_matrix():
    from osteolens.errors import EvaluationError

    with pytest.raises(EvaluationError, match=r"needs an \(N, K\) matrix"):
        fit_calibrator([0.2, 0.7], [0, 1], "temperature")
