"""Fitted classical models on disk, without pickle: ``model.skops`` + ``model.json``.

``osteolens classic cv`` fits one final pipeline on every cross-validation row (tuned by the
same grouped inner search) and stores it with skops (``skops.io``), which writes the
fitted scikit-learn objects as data and, on loading, builds only the types it is told to
trust. ``model.json`` beside it holds what applying the model needs: the task, the class
order, the target, the numeric and categorical input columns, the feature-extraction
settings of the training table, the chosen hyperparameters, package versions, and the
sha256 of ``model.skops``.

Loading checks the hash, then refuses to build anything beyond skops' default-trusted types
(containers, NumPy arrays and dtypes, scikit-learn estimators) except :data:`TRUSTED_TYPES`,
the scikit-learn internals of the models osteolens fits (``skops.io.get_untrusted_types``
lists what the file would build; a function such as ``numpy.load`` or
``sklearn.datasets.fetch_openml`` is refused), so a tampered or foreign file cannot run code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osteolens.errors import ModelError

MODEL_FILE = "model.skops"
INFO_FILE = "model.json"

#: Types skops does not trust by default that the pipelines of :mod:`osteolens.models.classic`
#: hold (random forest and HGB trees, the SVM's sigmoid calibration): classes, never a function.
TRUSTED_TYPES = frozenset({
    "numpy.dtype",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
})


@dataclass
class ClassicModel:
    """A loaded classical model and its description (``model.json``)."""

    pipeline: Any
    info: dict[str, Any]
    path: Path

    @property
    def inputs(self) -> list[str]:
        """The feature and covariate columns the pipeline reads."""
        return list(self.info["numeric_columns"]) + list(self.info["categorical_columns"])

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        """Predictions for every row of ``table``: ``prob_<class>`` (and ``prob`` for binary)
        and ``y_pred``, with the table's ``image`` / ``patient_id`` columns when present.

        Missing feature values are imputed as in training (median / most frequent); a
        missing column is an error naming it.
        """
        missing = [column for column in self.inputs if column not in table.columns]
        if missing:
            raise ModelError(f"the table lacks {len(missing)} input column(s) of the model, e.g. {missing[:5]}. "
                             "Fix: extract features with the settings in model.json ('extraction').")
        out = table[[c for c in ("image", "patient_id") if c in table.columns]].reset_index(drop=True).copy()
        X = table[self.inputs].reset_index(drop=True)
        if self.info["task"] == "regression":
            out["y_pred"] = np.asarray(self.pipeline.predict(X), dtype=float)
            return out
        classes = [str(c) for c in self.info["classes"]]
        fitted = [str(c) for c in self.pipeline.classes_]
        prob = np.zeros((len(X), len(classes)))
        prob[:, [classes.index(c) for c in fitted]] = self.pipeline.predict_proba(X)
        for k, name in enumerate(classes):
            out[f"prob_{name}"] = prob[:, k]
        if self.info["task"] == "binary":
            out["prob"] = prob[:, -1]
        out["y_pred"] = [classes[k] for k in prob.argmax(axis=1)]
        return out


def save_classic_model(pipeline: Any, folder: str | Path, info: dict[str, Any]) -> Path:
    """Write ``model.skops`` and ``model.json`` (``info`` plus the file's sha256) into ``folder``."""
    import skops.io as sio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    from osteolens.io._files import write_atomic

    data = sio.dumps(pipeline)
    write_atomic(folder / MODEL_FILE, data)
    write_atomic(folder / INFO_FILE, json.dumps({**info, "sha256": hashlib.sha256(data).hexdigest()}, indent=2) + "\n")
    return folder / MODEL_FILE


def load_classic_model(path: str | Path) -> ClassicModel:
    """Load ``model.skops`` from a ``classic cv`` run directory (or its ``model.skops``).

    Raises:
        ModelError: missing files, a hash that differs from ``model.json``, or a file that
            would build anything but skops' default-trusted types and :data:`TRUSTED_TYPES`.
    """
    import skops.io as sio

    path = Path(path)
    folder = path.parent if path.is_file() else path
    model_path, info_path = folder / MODEL_FILE, folder / INFO_FILE
    if not model_path.is_file() or not info_path.is_file():
        raise ModelError(f"{folder}: no {MODEL_FILE} with {INFO_FILE}. Fix: pass the run directory of "
                         "'osteolens classic cv' (it saves the final model there).")
    data = model_path.read_bytes()
    info = json.loads(info_path.read_text())
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        raise ModelError(f"{model_path}: the file differs from the sha256 in {INFO_FILE} (corrupt or altered). "
                         "Fix: copy the run directory again, or re-run 'osteolens classic cv'.")
    types = sio.get_untrusted_types(data=data)
    foreign = [t for t in types if t not in TRUSTED_TYPES]
    if foreign:
        raise ModelError(f"{model_path}: refuses to build {foreign} (only the scikit-learn classes of osteolens' "
                         "classical models are loaded). Fix: use a model saved by 'osteolens classic cv'.")
    return ClassicModel(sio.loads(data, trusted=types), info, model_path)
