"""Calibration: Brier score, expected calibration error, calibration intercept and slope,
reliability curves, and Platt / isotonic / temperature recalibration stored as JSON.

* Brier score: mean squared difference between probability and outcome.
* ECE: ``sum_b (n_b / N) |mean(y_b) - mean(p_b)|`` over equal-width probability bins.
* Calibration slope: ``b`` in ``logit P(y=1) = a + b logit(p)`` (ideal 1; below 1 means
  over-confident predictions). Calibration intercept (calibration-in-the-large): ``a`` in
  ``logit P(y=1) = a + logit(p)`` with the slope fixed at 1 (ideal 0; positive means the
  model under-estimates risk). The offset model is fitted with scipy because
  scikit-learn's logistic regression has no offset term.
* Temperature scaling (Guo et al., ICML 2017) for several classes: ``p' = softmax(log(p) / T)``
  with the one ``T > 0`` that minimises the log-loss on out-of-fold predictions. ``log p``
  differs from the network's logits only by a per-image constant, which softmax ignores,
  so this is exactly temperature scaling of the logits; it keeps the ranking of the
  classes (the predicted class never changes) and only sharpens (``T < 1``) or softens
  (``T > 1``) over- or under-confident probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special

from osteolens.errors import EvaluationError

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    return special.logit(np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """ECE over ``n_bins`` equal-width bins of the predicted probability."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        sel = bins == b
        total += sel.sum() * abs(y[sel].mean() - p[sel].mean())
    return float(total / y.size)


def _fit_logistic(x: np.ndarray, y: np.ndarray, offset: np.ndarray, with_slope: bool) -> np.ndarray:
    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = offset + theta[0] + (theta[1] * x if with_slope else 0.0)
        mu = special.expit(eta)
        loss = np.sum(np.logaddexp(0.0, eta) - y * eta)
        r = mu - y
        grad = [r.sum()] + ([np.dot(r, x)] if with_slope else [])
        return float(loss), np.asarray(grad)

    start = np.array([0.0, 1.0]) if with_slope else np.array([0.0])
    return optimize.minimize(nll, start, jac=True, method="BFGS").x


def calibration_intercept_slope(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(calibration-in-the-large intercept, calibration slope) by logistic recalibration."""
    y = np.asarray(y, dtype=float)
    lp = _logit(p)
    intercept = _fit_logistic(lp, y, lp, with_slope=False)[0]
    slope = _fit_logistic(lp, y, np.zeros_like(lp), with_slope=True)[1]
    return float(intercept), float(slope)


def reliability_curve(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict[str, list[float]]:
    """Observed frequency vs mean predicted probability per non-empty equal-width bin."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    mean_p, freq, count = [], [], []
    for b in np.unique(bins):
        sel = bins == b
        mean_p.append(float(p[sel].mean()))
        freq.append(float(y[sel].mean()))
        count.append(int(sel.sum()))
    return {"mean_predicted": mean_p, "observed": freq, "count": count}


def calibration_summary(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Brier, ECE, intercept, slope and the reliability curve of binary probabilities."""
    from sklearn.metrics import brier_score_loss

    intercept, slope = calibration_intercept_slope(y, p)
    return {
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p, n_bins),
        "intercept": intercept,
        "slope": slope,
        "reliability": reliability_curve(y, p, n_bins),
    }


@dataclass
class Calibrator:
    """A fitted recalibration map from raw scores to probabilities, JSON-serialisable.

    ``platt``: ``p = expit(a * logit(s) + b)`` (logit of scores clipped to [1e-6, 1 - 1e-6]).
    ``isotonic``: piecewise-linear interpolation through the fitted isotonic steps,
    clipped at the ends (exactly sklearn's ``IsotonicRegression(out_of_bounds="clip")``).
    ``temperature``: ``softmax(log(p) / T)`` of an ``(N, K)`` probability matrix.
    """

    method: str
    params: dict[str, Any]

    def __call__(self, scores: Any) -> np.ndarray:
        s = np.asarray(scores, dtype=float)
        if self.method == "platt":
            return special.expit(self.params["a"] * _logit(s) + self.params["b"])
        if self.method == "temperature":
            return _tempered(s, self.params["temperature"])
        return np.interp(s, self.params["x"], self.params["y"])

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        if data.get("method") not in CALIBRATION_METHODS:
            raise EvaluationError(
                None, f"calibrator method {data.get('method')!r} is unknown. Fix: one of {', '.join(CALIBRATION_METHODS)}."
            )
        return cls(data["method"], dict(data["params"]))


CALIBRATION_METHODS = ("platt", "isotonic", "temperature")


def _tempered(p: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(p) / T)`` row by row."""
    log_p = np.log(np.clip(p, _EPS, 1.0)) / float(temperature)
    return special.softmax(log_p, axis=-1)


def _fit_temperature(p: np.ndarray, y: np.ndarray) -> float:
    """The ``T`` minimising the mean log-loss of ``softmax(log(p) / T)`` (searched on log T)."""
    log_p = np.log(np.clip(p, _EPS, 1.0))
    rows = np.arange(len(y))

    def loss(log_t: float) -> float:
        scaled = log_p / np.exp(log_t)
        return float(np.mean(special.logsumexp(scaled, axis=1) - scaled[rows, y]))

    result = optimize.minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                                      options={"xatol": 1e-6})
    return float(np.exp(result.x))


def fit_calibrator(scores: Any, y: Any, method: str = "platt") -> Calibrator:
    """Fit Platt or isotonic recalibration on out-of-fold positive-class scores, or temperature
    scaling on an ``(N, K)`` matrix of out-of-fold class probabilities.

    Example:
        >>> cal = fit_calibrator([0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1], "isotonic")
        >>> cal([0.2, 0.8]).tolist()
        [0.0, 1.0]
    """
    s = np.asarray(scores, dtype=float)
    y = np.asarray(y, dtype=int)
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(s)[:, None], y)
        return Calibrator("platt", {"a": float(model.coef_[0, 0]), "b": float(model.intercept_[0])})
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(s, y)
        return Calibrator("isotonic", {"x": model.X_thresholds_.tolist(), "y": model.y_thresholds_.tolist()})
    if method == "temperature":
        if s.ndim != 2 or s.shape[1] < 2:
            raise EvaluationError(None, f"temperature scaling needs an (N, K) matrix of class probabilities, got shape "
                                  f"{s.shape}. Fix: pass one probability column per class.")
        return Calibrator("temperature", {"temperature": _fit_temperature(s, y)})
    raise EvaluationError(None, f"calibration method {method!r} is unknown. Fix: use one of {', '.join(CALIBRATION_METHODS)}.")


def cross_fitted_calibration(
    scores: np.ndarray, y: np.ndarray, fold: np.ndarray | None, method: str
) -> np.ndarray | None:
    """Recalibrated scores where each fold's map is fitted on the other folds (None without folds)."""
    if fold is None or np.unique(fold[fold >= 0]).size < 2:
        return None
    out = np.empty_like(scores, dtype=float)
    for k in np.unique(fold):
        train = (fold != k) & (fold >= 0)
        if np.unique(y[train]).size < 2:
            return None
        out[fold == k] = fit_calibrator(scores[train], y[train], method)(scores[fold == k])
    return out
