"""DeLong's method for ROC AUCs: variance, covariance, CIs and tests (pROC conventions).

The maths (DeLong, DeLong & Clarke-Pearson 1988). With ``m`` cases (positives) and
``n`` controls, the *placements* are

* ``V10_i`` for case ``i``: the share of controls scoring below it (ties count 1/2),
* ``V01_j`` for control ``j``: the share of cases scoring above it (ties count 1/2).

Both average to the Mann-Whitney AUC ``theta``. The DeLong variance of ``theta`` is
``var(V10)/m + var(V01)/n`` (sample variances, ddof = 1) and the covariance of two AUCs
measured on the same patients is ``cov(V10_1, V10_2)/m + cov(V01_1, V01_2)/n``.

The placements come from Sun & Xu's (2014) mid-rank identity, O(N log N) instead of
DeLong's O(m n) pairwise kernel: with ``Tz`` the mid-ranks in the pooled sample, ``Tx``
within the cases and ``Ty`` within the controls, ``V10 = (Tz - Tx) / n`` and
``V01 = 1 - (Tz - Ty) / m``.

Written by hand because no dependency has it: scikit-learn computes the AUC but no
variance, and scipy has no DeLong test. Conventions follow R's pROC, whose numbers the
tests reproduce (``../shared/data/delong_reference``): ``direction="auto"`` picks ``"<"``
(cases score higher) when ``median(controls) <= median(cases)`` and ``">"`` otherwise,
and for ``">"`` the scores are negated; ties are exact (``==``) ties; the CI of one AUC
is clipped to [0, 1]; the unpaired test uses a t distribution with a Welch-type df.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from osteolens.errors import EvaluationError

_ALTERNATIVES = {"two-sided": "two-sided", "two.sided": "two-sided", "greater": "greater", "less": "less"}


def _alternative(value: str) -> str:
    try:
        return _ALTERNATIVES[value]
    except KeyError:
        raise EvaluationError(
            None, f"alternative={value!r} is not understood. Fix: use 'two-sided', 'greater' or 'less'."
        ) from None


def _z(conf_level: float) -> float:
    if not 0.0 < conf_level < 1.0:
        raise EvaluationError(None, f"conf_level={conf_level} must lie strictly between 0 and 1.")
    return float(stats.norm.ppf(1.0 - (1.0 - conf_level) / 2.0))


def resolve_direction(y_true: np.ndarray, scores: np.ndarray, direction: str = "auto") -> str:
    """pROC's direction rule: ``"<"`` if median(controls) <= median(cases), else ``">"``.

    This is not "make the AUC at least 0.5": medians and the Mann-Whitney AUC can disagree.
    """
    if direction in ("<", ">"):
        return direction
    if direction != "auto":
        raise EvaluationError(None, f"direction={direction!r} is not understood. Fix: use 'auto', '<' or '>'.")
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    return "<" if np.median(s[~y]) <= np.median(s[y]) else ">"


@dataclass(frozen=True)
class DeLongAUC:
    """The AUC of one ROC curve with its DeLong placements.

    Attributes:
        auc: Mann-Whitney AUC after direction handling.
        variance: DeLong variance of ``auc``.
        direction: ``"<"`` (cases score higher) or ``">"``.
        case_placements: ``V10``, one per case, in input order.
        control_placements: ``V01``, one per control, in input order.
    """

    auc: float
    variance: float
    direction: str
    case_placements: np.ndarray
    control_placements: np.ndarray

    @property
    def n_cases(self) -> int:
        return int(self.case_placements.size)

    @property
    def n_controls(self) -> int:
        return int(self.control_placements.size)

    @property
    def se(self) -> float:
        return float(np.sqrt(self.variance))

    def ci(self, conf_level: float = 0.95) -> tuple[float, float, float]:
        """``(lower, auc, upper)``: ``auc -/+ z * se`` clipped to [0, 1] (pROC ``ci.auc``)."""
        half = _z(conf_level) * self.se
        return (max(0.0, self.auc - half), self.auc, min(1.0, self.auc + half))


def _check_binary(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=float)
    if y.ndim != 1 or s.shape != y.shape:
        raise EvaluationError(None, f"y_true and scores must be 1-D of equal length; got {y.shape} and {s.shape}.")
    if not np.isfinite(s).all():
        raise EvaluationError(None, "scores contain NaN or infinite values. Fix: drop or impute those rows first.")
    if y.dtype != bool:
        values = set(np.unique(y).tolist())
        if not values <= {0, 1}:
            raise EvaluationError(
                None,
                f"y_true must be 0/1 or boolean (1 = case), got values {sorted(values)[:5]}."
                " Fix: map the positive class to 1.",
            )
        y = y.astype(bool)
    if y.all() or not y.any():
        raise EvaluationError(None, "the AUC needs at least one case and one control; only one class is present.")
    return y, s


def delong_auc(y_true: Any, scores: Any, direction: str = "auto") -> DeLongAUC:
    """AUC, DeLong placements and variance of one ROC curve.

    Args:
        y_true: 1 / True for cases (positives), 0 / False for controls.
        scores: higher means "more likely a case" when ``direction="<"``.
        direction: ``"auto"`` (pROC's median rule), ``"<"`` or ``">"``.

    Example:
        >>> r = delong_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        >>> round(r.auc, 3), r.direction
        (0.75, '<')
    """
    y, s = _check_binary(y_true, scores)
    resolved = resolve_direction(y, s, direction)
    if resolved == ">":
        s = -s
    m, n = int(y.sum()), int((~y).sum())
    # Sun & Xu mid-ranks; rankdata compares with exact equality, as pROC does.
    tz = stats.rankdata(s, method="average")
    tx = stats.rankdata(s[y], method="average")
    ty = stats.rankdata(s[~y], method="average")
    v10 = (tz[y] - tx) / n
    v01 = 1.0 - (tz[~y] - ty) / m
    auc = float(v10.mean())
    variance = float(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n) if m > 1 and n > 1 else float("nan")
    return DeLongAUC(auc, variance, resolved, v10, v01)


def delong_cov(a: DeLongAUC, b: DeLongAUC) -> float:
    """DeLong covariance of two AUCs measured on the same cases and controls (same order)."""
    if a.n_cases != b.n_cases or a.n_controls != b.n_controls:
        raise EvaluationError(
            None,
            "the two ROC curves do not share their cases and controls, so they are not paired."
            " Fix: align both on the same patients, or use delong_unpaired_test.",
        )
    c10 = np.cov(a.case_placements, b.case_placements, ddof=1)[0, 1]
    c01 = np.cov(a.control_placements, b.control_placements, ddof=1)[0, 1]
    return float(c10 / a.n_cases + c01 / a.n_controls)


@dataclass(frozen=True)
class PairedDeLongTest:
    """DeLong's test for two correlated AUCs (same patients)."""

    auc1: float
    auc2: float
    var1: float
    var2: float
    cov: float
    z: float
    p: float
    ci_diff: tuple[float, float]
    conf_level: float
    alternative: str
    direction1: str
    direction2: str
    n_cases: int
    n_controls: int

    @property
    def difference(self) -> float:
        return self.auc1 - self.auc2

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ci_diff"] = list(self.ci_diff)
        out["difference"] = self.difference
        out["test"] = "DeLong paired"
        return out


@dataclass(frozen=True)
class UnpairedDeLongTest:
    """pROC's unpaired DeLong test: statistic ``D`` referred to Student's t with Welch df."""

    auc1: float
    auc2: float
    var1: float
    var2: float
    d: float
    df: float
    p: float
    alternative: str
    direction1: str
    direction2: str
    n1: int
    n2: int

    @property
    def difference(self) -> float:
        return self.auc1 - self.auc2

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["difference"] = self.difference
        out["test"] = "DeLong unpaired"
        return out


def _p_value(stat: float, alternative: str, dist: Any) -> float:
    if alternative == "two-sided":
        return float(2.0 * dist.cdf(-abs(stat)))
    if alternative == "greater":  # H1: AUC1 > AUC2
        return float(dist.sf(stat))
    return float(dist.cdf(stat))


def paired_test(
    a: DeLongAUC, b: DeLongAUC, *, alternative: str = "two-sided", conf_level: float = 0.95
) -> PairedDeLongTest:
    """Paired DeLong test of two already computed curves on the same patients.

    ``Z = (AUC1 - AUC2) / sqrt(V1 + V2 - 2 C)``; ``Z = 0`` when the difference and its
    standard error are both 0 (identical curves). The CI of the difference is
    ``(AUC1 - AUC2) -/+ z sd`` (not clipped).
    """
    alt = _alternative(alternative)
    cov = delong_cov(a, b)
    diff = a.auc - b.auc
    sd = float(np.sqrt(max(a.variance + b.variance - 2.0 * cov, 0.0)))
    if sd == 0.0:
        z = 0.0 if diff == 0.0 else float(np.sign(diff) * np.inf)
    else:
        z = diff / sd
    half = _z(conf_level) * sd
    return PairedDeLongTest(
        a.auc,
        b.auc,
        a.variance,
        b.variance,
        cov,
        float(z),
        _p_value(z, alt, stats.norm),
        (diff - half, diff + half),
        conf_level,
        alt,
        a.direction,
        b.direction,
        a.n_cases,
        a.n_controls,
    )


def delong_paired_test(
    y_true: Any,
    scores1: Any,
    scores2: Any,
    *,
    direction: str | tuple[str, str] = "auto",
    alternative: str = "two-sided",
    conf_level: float = 0.95,
) -> PairedDeLongTest:
    """DeLong test for two models (or two views) scored on the same patients.

    Args:
        y_true: 1 / True for cases, shared by both score vectors (same row order).
        scores1, scores2: the two models' scores.
        direction: one direction for both curves, or a pair.
        alternative: ``"two-sided"``, ``"greater"`` (H1: AUC1 > AUC2) or ``"less"``.
        conf_level: level of the CI of AUC1 - AUC2.
    """
    d1, d2 = (direction, direction) if isinstance(direction, str) else direction
    return paired_test(
        delong_auc(y_true, scores1, d1), delong_auc(y_true, scores2, d2), alternative=alternative, conf_level=conf_level
    )


def unpaired_test(a: DeLongAUC, b: DeLongAUC, *, alternative: str = "two-sided") -> UnpairedDeLongTest:
    """pROC's unpaired test of two curves from different patients.

    ``D = (AUC1 - AUC2) / sqrt(V1 + V2)``, p from Student's t with
    ``df = (V1 + V2)^2 / (V1^2 / (N1 - 1) + V2^2 / (N2 - 1))``, ``N`` = cases + controls.
    """
    alt = _alternative(alternative)
    n1, n2 = a.n_cases + a.n_controls, b.n_cases + b.n_controls
    total = a.variance + b.variance
    diff = a.auc - b.auc
    d = 0.0 if diff == 0.0 else diff / np.sqrt(total)
    df = total**2 / (a.variance**2 / (n1 - 1) + b.variance**2 / (n2 - 1))
    return UnpairedDeLongTest(
        a.auc,
        b.auc,
        a.variance,
        b.variance,
        float(d),
        float(df),
        _p_value(d, alt, stats.t(df)),
        alt,
        a.direction,
        b.direction,
        n1,
        n2,
    )


def delong_unpaired_test(
    y_true1: Any,
    scores1: Any,
    y_true2: Any,
    scores2: Any,
    *,
    direction: str | tuple[str, str] = "auto",
    alternative: str = "two-sided",
) -> UnpairedDeLongTest:
    """DeLong test for two AUCs measured on different patients (e.g. two sites)."""
    d1, d2 = (direction, direction) if isinstance(direction, str) else direction
    return unpaired_test(delong_auc(y_true1, scores1, d1), delong_auc(y_true2, scores2, d2), alternative=alternative)
