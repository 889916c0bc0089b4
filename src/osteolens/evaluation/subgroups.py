"""Metrics by subgroup (sex, age band, view, site) with intervals and a small-group flag."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from osteolens.evaluation.bootstrap import bootstrap, patient_strata, percentile_interval
from osteolens.evaluation.predictions import Predictions

SUBGROUP_COLUMNS = ("sex", "age_band", "view", "site")
# Metrics shown in the report's subgroup table (metrics.json holds every metric).
HEADLINE = {
    "binary": ("auc", "sensitivity", "specificity"),
    "multiclass": ("auc_macro", "accuracy", "kappa_quadratic"),
    "regression": ("mae", "bias"),
}
ADULT_BANDS = (0, 50, 60, 70, 80, np.inf)
CHILD_BANDS = (0, 5, 10, 15, np.inf)


def age_bands(age: pd.Series) -> pd.Series:
    """Decades from 50 for adults (<50, 50-59, ..., >=80); 5-year bands when everyone is under 21."""
    values = pd.to_numeric(age, errors="coerce")
    edges = CHILD_BANDS if values.max() < 21 else ADULT_BANDS
    labels = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        labels.append(f"<{hi:g}" if lo == 0 else f">={lo:g}" if np.isinf(hi) else f"{lo:g}-{hi - 1:g}")
    return pd.cut(values, list(edges), right=False, labels=labels)


def subgroup_columns(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """The subgroup variables present in a predictions table (age turned into bands)."""
    out: dict[str, pd.Series] = {}
    for col in SUBGROUP_COLUMNS:
        if col == "age_band" and "age" in frame.columns and frame["age"].notna().any():
            out[col] = age_bands(frame["age"])
        elif col in frame.columns and frame[col].notna().any():
            out[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return out


def subgroup_table(
    preds: Predictions,
    metric_fn: Callable[[Predictions], Callable[[np.ndarray], dict[str, np.ndarray]]],
    *,
    n_bootstrap: int,
    seed: int,
    conf_level: float,
    min_patients: int = 20,
    min_per_class: int = 5,
) -> list[dict[str, Any]]:
    """One row per (variable, level): sizes, every metric with its interval, and a flag.

    A group is flagged ``too_small`` when it has fewer than ``min_patients`` patients, or
    (classification) fewer than ``min_per_class`` patients of some class: its interval is
    then too wide to support any claim about that group.
    """
    rows: list[dict[str, Any]] = []
    for variable, values in subgroup_columns(preds.frame).items():
        if isinstance(values.dtype, pd.CategoricalDtype):
            levels = [c for c in values.cat.categories if (values == c).any()]
        else:
            levels = sorted({v for v in values if v is not None}, key=str)
        for level in levels:
            mask = (values == level).to_numpy()
            sub = preds.subset(mask)
            label = sub.y if sub.task != "regression" else None
            row_patient, stratum = patient_strata(sub.patient, label)
            per_class: dict[str, int] = {}
            if sub.task != "regression":
                for c, name in enumerate(sub.classes):
                    per_class[name] = int(np.unique(sub.patient[sub.y == c]).size)
            n_patients = int(np.unique(sub.patient).size)
            too_small = n_patients < min_patients or (bool(per_class) and min(per_class.values()) < min_per_class)
            entry: dict[str, Any] = {
                "variable": variable,
                "level": str(level),
                "n_images": int(mask.sum()),
                "n_patients": n_patients,
                "patients_per_class": per_class,
                "too_small": bool(too_small),
                "metrics": {},
            }
            point, reps = bootstrap(metric_fn(sub), len(sub), row_patient, stratum, n_bootstrap, seed)
            for key, value in point.items():
                lo, hi = percentile_interval(reps[key], conf_level)
                entry["metrics"][key] = {"value": value if np.isfinite(value) else None, "ci_low": lo, "ci_high": hi}
            rows.append(entry)
    return rows
