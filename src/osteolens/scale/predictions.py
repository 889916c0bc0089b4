"""The ``predictions.csv`` of a batch prediction over a manifest, in the table format ``osteolens evaluate`` reads.

One row per manifest row, in the manifest's order (whatever order the workers answered in):

| column | meaning |
|---|---|
| ``image``, ``patient_id`` | the manifest's values (the keys that join the manifest) |
| ``y_true`` | the manifest's value of the model's target column (``label``, ``bmd`` ...), empty when absent |
| ``prob_<class>`` | classification: each class's probability (calibrated as the bundle says) |
| ``prob`` | binary: the positive class's probability (the one the threshold applies to) |
| ``y_pred`` | the predicted class, or the regression value |
| ``sex``, ``age``, ``view``, ``vertebra``, ``site``, ``study`` | carried over when the manifest has them (subgroups) |
| ``error`` | why the image could not be predicted; empty when it was |

A failed row keeps its keys and has empty scores; ``evaluate`` drops it and counts it as dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from osteolens.data.manifest import COVARIATE_COLUMNS


def predictions_frame(frame: pd.DataFrame, results: Mapping[int, Any], task: str, labels: Sequence[str],
                      target: str | None) -> pd.DataFrame:
    """The predictions table of ``frame``'s rows.

    Args:
        frame: the manifest's rows.
        results: per row position, its ``Prediction`` or the reason (str) it failed; a row absent
            from ``results`` is reported as not predicted.
        task: the bundle's task.
        labels: the bundle's class names (empty for regression).
        target: the bundle's target column name.

    Example:
        >>> import pandas as pd
        >>> rows = pd.DataFrame({"image": ["a.png"], "patient_id": ["P1"], "label": ["normal"]})
        >>> list(predictions_frame(rows, {0: "unreadable"}, "binary", ["normal", "osteoporosis"], "label").columns)
        ['image', 'patient_id', 'y_true', 'prob_normal', 'prob_osteoporosis', 'prob', 'y_pred', 'error']
    """
    n = len(frame)
    out = pd.DataFrame({"image": frame["image"].to_numpy(), "patient_id": frame["patient_id"].astype(str).to_numpy()})
    out["y_true"] = frame[target].to_numpy() if target and target in frame.columns else np.nan
    predictions = {i: r for i, r in results.items() if not isinstance(r, str)}
    if task == "regression":
        out["y_pred"] = [predictions[i].value if i in predictions else np.nan for i in range(n)]
    else:
        for name in labels:
            out[f"prob_{name}"] = [predictions[i].probabilities[name] if i in predictions else np.nan for i in range(n)]
        if task == "binary":
            out["prob"] = out[f"prob_{labels[1]}"]
        out["y_pred"] = [predictions[i].label if i in predictions else None for i in range(n)]
    for column in COVARIATE_COLUMNS:
        if column in frame.columns:
            out[column] = frame[column].to_numpy()
    out["error"] = [None if i in predictions else results.get(i, "not predicted") for i in range(n)]
    return out
