"""Covariates (sex, age, ...) as the float matrix the fusion head takes.

Encoding: ``sex`` M -> 1, F -> 0, anything else or missing -> 0.5 (unknown, halfway);
every other covariate is numeric and standardised ``(x - mean) / std`` with the training
folds' mean and standard deviation, which are stored in the bundle
(``tabular_scaling``); a missing value becomes 0, the training mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from osteolens.errors import ModelError

_SEX_VALUE = {"M": 1.0, "F": 0.0}


def _sex_column(values: pd.Series) -> np.ndarray:
    from osteolens.data.manifest import normalise_sex

    return np.array([_SEX_VALUE.get(normalise_sex(v) or "", 0.5) for v in values], dtype=np.float32)


def fit_scaling(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each numeric covariate (not ``sex``) over ``frame``.

    Raises:
        ModelError: a covariate column is missing or not numeric.
    """
    scaling: dict[str, dict[str, float]] = {}
    for column in columns:
        if column == "sex":
            continue
        if column not in frame.columns:
            raise ModelError(f"covariate '{column}' is not a manifest column. Fix: add it or drop it from model.tabular.")
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().sum() == 0:
            raise ModelError(f"covariate '{column}' has no numeric value. Fix: give numbers or drop it from model.tabular.")
        std = float(values.std(ddof=0))
        scaling[column] = {"mean": float(values.mean()), "std": std if std > 0 else 1.0}
    return scaling


def encode(
    rows: pd.DataFrame | Mapping[str, Any], columns: Sequence[str], scaling: Mapping[str, Mapping[str, float]]
) -> np.ndarray:
    """Encode covariates as ``float32 [N, len(columns)]`` (one row for a mapping).

    Example:
        >>> encode({"sex": "F", "age": 70}, ["sex", "age"], {"age": {"mean": 60.0, "std": 10.0}})
        array([[0., 1.]], dtype=float32)
    """
    frame = pd.DataFrame([dict(rows)]) if isinstance(rows, Mapping) else rows
    out = np.zeros((len(frame), len(columns)), dtype=np.float32)
    for j, column in enumerate(columns):
        if column not in frame.columns:
            raise ModelError(
                f"covariate '{column}' is missing. Fix: give it (the model was trained with {list(columns)})."
            )
        if column == "sex":
            out[:, j] = _sex_column(frame[column])
            continue
        if column not in scaling:
            raise ModelError(f"no scaling stored for covariate '{column}'. Fix: fit_scaling on the training rows.")
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        z = (values - scaling[column]["mean"]) / scaling[column]["std"]
        out[:, j] = np.where(np.isnan(z), 0.0, z)
    return out
