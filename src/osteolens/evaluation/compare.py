"""Compare two models' predictions: DeLong for AUCs (paired or unpaired), bootstrap for MAE.

``compare(A, B, on="patient_id")`` joins the two tables on a key. When both cover the same
keys the comparison is paired (two models, or two views such as AP and lateral of the same
patients: the DeLong test for correlated ROC curves); when they share no key it is
unpaired (pROC's test with Welch df). Several rows per key (images of one patient) are
averaged into one score per key first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osteolens.errors import EvaluationError
from osteolens.evaluation.bootstrap import (
    bootstrap_weights,
    patient_strata,
    percentile_interval,
)
from osteolens.evaluation.delong import delong_paired_test, delong_unpaired_test
from osteolens.evaluation.metrics import regression_metrics
from osteolens.evaluation.predictions import Predictions, load_predictions


@dataclass
class ComparisonResult:
    """Outcome of :func:`compare`; ``difference`` is A minus B."""

    metric: str
    paired: bool
    key: str
    n_keys: tuple[int, int]
    value_a: float
    value_b: float
    difference: float
    ci_low: float | None
    ci_high: float | None
    p: float | None
    statistic: dict[str, float]
    method: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from osteolens.evaluation.evaluate import _jsonable

        return _jsonable(asdict(self))


def _binary_view(preds: Predictions) -> Predictions:
    if preds.task == "multiclass":
        return preds.screening()
    return preds


def _by_key(preds: Predictions, key: str) -> pd.DataFrame:
    if key == "patient_id":
        keys = preds.patient
    elif key in preds.frame.columns:
        keys = preds.frame[key].astype(str).to_numpy()
    else:
        raise EvaluationError(preds.source, f"no column {key!r} to join on.", "pick --on image, patient_id or study.")
    frame = pd.DataFrame({"key": keys, "y": preds.y, "score": preds.scores, "patient": preds.patient})
    grouped = frame.groupby("key", sort=True)
    conflicting = grouped["y"].nunique() > 1
    if conflicting.any():
        raise EvaluationError(
            preds.source,
            f"rows with the same {key} disagree on y_true: {list(conflicting.index[conflicting][:5])}.",
            "join on a key whose rows share one truth (e.g. patient_id for per-patient labels).",
        )
    return grouped.agg(y=("y", "first"), score=("score", "mean"), patient=("patient", "first"))


def compare(
    a: pd.DataFrame | str | Path,
    b: pd.DataFrame | str | Path,
    *,
    on: str = "image",
    paired: bool | None = None,
    positive: str | None = None,
    alternative: str = "two-sided",
    conf_level: float = 0.95,
    n_bootstrap: int = 2000,
    seed: int = 0,
    truth: str = "y_true",
    score: str | None = None,
    score_b: str | None = None,
) -> ComparisonResult:
    """Compare model A with model B (AUC by DeLong, MAE by patient bootstrap).

    Args:
        a, b: predictions tables (paths or DataFrames) in the format of ``evaluate``.
        on: key joining the two tables (``image``, ``patient_id``, ``study`` ...).
        paired: force paired / unpaired; by default paired when both tables hold the same
            keys, unpaired when they share none (anything in between is an error).
        positive: positive class when the tables are multiclass (ordered bone-density
            classes default to low density vs normal).
        alternative: ``"two-sided"``, ``"greater"`` (H1: A > B) or ``"less"``.
        truth, score: column names for your own CSVs; ``score_b`` names B's score column
            when it differs (two score columns of one table: pass the same file twice).
    """
    pa = load_predictions(a, positive=positive, truth=truth, score=score)
    pb = load_predictions(b, positive=positive, truth=truth, score=score_b or score)
    if pa.task != pb.task and "regression" in (pa.task, pb.task):
        raise EvaluationError(None, f"cannot compare a {pa.task} table with a {pb.task} table.")
    regression = pa.task == "regression"
    if not regression:
        pa, pb = _binary_view(pa), _binary_view(pb)
    ka, kb = _by_key(pa, on), _by_key(pb, on)
    shared = ka.index.intersection(kb.index)
    if paired is None:
        if len(shared) == len(ka) == len(kb):
            paired = True
        elif len(shared) == 0:
            paired = False
        else:
            raise EvaluationError(
                None,
                f"A and B share {len(shared)} of their {len(ka)} / {len(kb)} {on} keys: neither paired nor unpaired.",
                "pass --paired to compare on the shared keys only, or --unpaired.",
            )
    notes = []
    if paired:
        if len(shared) < max(len(ka), len(kb)):
            notes.append(f"paired on the {len(shared)} shared {on} keys only.")
        ka, kb = ka.loc[shared], kb.loc[shared]
        if not np.array_equal(ka["y"].to_numpy(), kb["y"].to_numpy()):
            raise EvaluationError(
                None, f"A and B disagree on y_true for the same {on}.", "check that both score the same labels."
            )
    if not regression:
        if paired:
            t = delong_paired_test(
                ka["y"].to_numpy(),
                ka["score"].to_numpy(),
                kb["score"].to_numpy(),
                direction="<",
                alternative=alternative,
                conf_level=conf_level,
            )
            return ComparisonResult(
                "auc",
                True,
                on,
                (len(ka), len(kb)),
                t.auc1,
                t.auc2,
                t.difference,
                t.ci_diff[0],
                t.ci_diff[1],
                t.p,
                {"z": t.z, "var1": t.var1, "var2": t.var2, "cov": t.cov},
                "DeLong test for two correlated ROC curves",
                notes,
            )
        t = delong_unpaired_test(
            ka["y"].to_numpy(),
            ka["score"].to_numpy(),
            kb["y"].to_numpy(),
            kb["score"].to_numpy(),
            direction="<",
            alternative=alternative,
        )
        return ComparisonResult(
            "auc",
            False,
            on,
            (len(ka), len(kb)),
            t.auc1,
            t.auc2,
            t.difference,
            None,
            None,
            t.p,
            {"D": t.d, "df": t.df, "var1": t.var1, "var2": t.var2},
            "DeLong unpaired test (t distribution, Welch df, as pROC)",
            notes,
        )
    return _compare_mae(ka, kb, paired, on, n_bootstrap, seed, conf_level, notes)


def _mae_reps(frame: pd.DataFrame, weights: np.ndarray) -> np.ndarray:
    y = frame["y"].to_numpy(dtype=float)
    return regression_metrics(weights, y, frame["score"].to_numpy(dtype=float), ())["mae"]


def _compare_mae(ka, kb, paired, on, n_bootstrap, seed, conf_level, notes) -> ComparisonResult:
    ones_a, ones_b = np.ones((1, len(ka))), np.ones((1, len(kb)))
    mae_a, mae_b = float(_mae_reps(ka, ones_a)[0]), float(_mae_reps(kb, ones_b)[0])
    rp_a, st_a = patient_strata(ka["patient"].to_numpy(), None)
    if paired:
        diffs = np.concatenate(
            [_mae_reps(ka, W) - _mae_reps(kb, W) for W in bootstrap_weights(rp_a, st_a, n_bootstrap, seed)]
        )
    else:
        rp_b, st_b = patient_strata(kb["patient"].to_numpy(), None)
        ra = np.concatenate([_mae_reps(ka, W) for W in bootstrap_weights(rp_a, st_a, n_bootstrap, seed)])
        rb = np.concatenate([_mae_reps(kb, W) for W in bootstrap_weights(rp_b, st_b, n_bootstrap, seed + 1)])
        diffs = ra - rb
    lo, hi = percentile_interval(diffs, conf_level)
    p = float(min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))
    kind = "paired" if paired else "independent"
    return ComparisonResult(
        "mae",
        paired,
        on,
        (len(ka), len(kb)),
        mae_a,
        mae_b,
        mae_a - mae_b,
        lo,
        hi,
        p,
        {},
        f"{kind} patient bootstrap of the MAE difference ({n_bootstrap} resamples)",
        notes,
    )
