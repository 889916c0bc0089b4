"""Reading a predictions table into arrays: task, classes, truth, scores, patients, folds.

The format written by the cross-validation commands (``oof_predictions.csv``):

| column | meaning |
|---|---|
| ``image`` | image path (the key that joins the manifest) |
| ``patient_id`` | grouping key for the bootstrap (defaults to ``image``, else the row) |
| ``fold`` | the fold whose model scored this row (``-1`` = external test) |
| ``y_true`` | class name, 0/1, or the numeric target |
| ``prob`` | binary: probability of the positive class |
| ``prob_<class>`` | one probability column per class (class names come from the column names) |
| ``y_pred`` | optional predicted class; the prediction itself for regression |

Any other column (``sex``, ``age``, ``view``, ``site`` ...) is kept as a covariate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from osteolens.classes import BONE_DENSITY_ORDER
from osteolens.errors import EvaluationError
from osteolens.evaluation import metrics as M

TASKS = ("binary", "multiclass", "regression")
DECISIONS = ("argmax", "cumulative")
_NEGATIVE_NAMES = {"normal", "negative", "healthy", "control", "no", "false", "absent", "good", "0"}


@dataclass
class Predictions:
    """A validated predictions table.

    Attributes:
        frame: the rows kept, with the original columns (covariates included).
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        classes: class names in their order (empty for regression); for binary the
            positive class is last.
        y: binary 0/1, multiclass class index, or the regression target.
        scores: binary ``(N,)`` probability of the positive class; multiclass ``(N, K)``;
            regression ``(N,)`` predictions.
        patient: patient key per row (str).
        fold: fold per row, or None.
        ordered: whether the classes have a natural order (normal < osteopenia < osteoporosis).
        dropped: rows dropped for missing truth or scores.
    """

    frame: pd.DataFrame
    task: str
    classes: list[str]
    y: np.ndarray
    scores: np.ndarray
    patient: np.ndarray
    fold: np.ndarray | None
    ordered: bool = False
    dropped: int = 0
    source: str | None = None
    notes: list[str] = field(default_factory=list)
    screen_positive: str | None = None
    decision: str = "argmax"

    @property
    def predicted(self) -> np.ndarray:
        """Class decisions of a multiclass table: argmax, or the cumulative (ordinal) rule."""
        return M.predicted_classes(self.scores, cumulative=self.decision == "cumulative")

    @property
    def positive(self) -> str | None:
        return self.classes[-1] if self.task == "binary" else None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, mask: np.ndarray) -> Predictions:
        """Rows where ``mask`` is true."""
        mask = np.asarray(mask, dtype=bool)
        return Predictions(
            self.frame[mask].reset_index(drop=True),
            self.task,
            self.classes,
            self.y[mask],
            self.scores[mask],
            self.patient[mask],
            None if self.fold is None else self.fold[mask],
            self.ordered,
            0,
            self.source,
            screen_positive=self.screen_positive,
            decision=self.decision,
        )

    @property
    def has_screening(self) -> bool:
        """Whether a binary screening view exists (ordered classes, or a chosen positive class)."""
        return self.task == "multiclass" and (self.ordered or self.screen_positive is not None)

    def screening(self) -> Predictions:
        """A binary view of multiclass predictions: the question a screening tool answers.

        With a chosen positive class: that class vs the rest, scored by its probability.
        Otherwise, for ordered classes: anything above the lowest class vs the lowest, scored
        by ``1 - P(lowest)``; for bone density, low density (osteopenia or osteoporosis)
        vs normal.
        """
        if not self.has_screening:
            raise EvaluationError(
                self.source,
                f"no screening question for unordered classes {self.classes}.",
                "pass the positive class (--positive CLASS).",
            )
        if self.screen_positive is not None:
            c = self.classes.index(self.screen_positive)
            return Predictions(
                self.frame,
                "binary",
                [f"not_{self.screen_positive}", self.screen_positive],
                (self.y == c).astype(int),
                self.scores[:, c],
                self.patient,
                self.fold,
                False,
                0,
                self.source,
            )
        return Predictions(
            self.frame,
            "binary",
            [self.classes[0], f"not_{self.classes[0]}"],
            (self.y > 0).astype(int),
            1.0 - self.scores[:, 0],
            self.patient,
            self.fold,
            False,
            0,
            self.source,
        )


def _order_classes(names: list[str], class_order: list[str] | None, ordinal: bool | None) -> tuple[list[str], bool]:
    """Class order and whether it is ordinal (explicit, or the bone-density names)."""
    lower = {n.lower(): n for n in names}
    bone = len(names) >= 2 and set(lower) <= set(BONE_DENSITY_ORDER)
    if class_order:
        missing = set(names) - set(class_order)
        if missing:
            raise EvaluationError(None, f"classes {sorted(missing)} are not in class_order {class_order}.")
        ordered_names = [c for c in class_order if c in names]
    elif bone:
        ordered_names = [lower[c] for c in BONE_DENSITY_ORDER if c in lower]
    else:
        ordered_names = names
    if ordinal is None:
        ordinal = bone and [n.lower() for n in ordered_names] == [c for c in BONE_DENSITY_ORDER if c in lower]
    return ordered_names, bool(ordinal)


def _binary_positive(names: list[str], positive: str | None, source: object) -> str:
    if positive is not None:
        if positive not in names:
            raise EvaluationError(source, f"positive class {positive!r} is not among {names}.", "pass one of those.")
        return positive
    negatives = [n for n in names if n.lower() in _NEGATIVE_NAMES]
    if len(negatives) == 1:
        return next(n for n in names if n != negatives[0])
    return sorted(names)[-1]


def load_predictions(
    source: pd.DataFrame | str | Path,
    *,
    task: str | None = None,
    positive: str | None = None,
    truth: str = "y_true",
    score: str | None = None,
    class_order: list[str] | None = None,
    ordinal: bool | None = None,
    decision: str = "argmax",
) -> Predictions:
    """Read and validate a predictions CSV (or DataFrame).

    Args:
        source: path of a CSV or a DataFrame.
        task: force ``"binary"``, ``"multiclass"`` or ``"regression"``; inferred otherwise
            (probability columns mean classification, else regression).
        positive: the positive class of a binary task (default: the class that is not named
            like a negative (normal, negative, 0, ...), else the last in sorted order); for a
            multiclass task, the class of the screening view (that class vs the rest).
        truth: name of the truth column (a user's own CSV).
        score: name of a single score column (a user's own CSV): the positive-class
            probability for binary tasks, the prediction for regression.
        class_order: order of the classes (default: the ``prob_<class>`` column order;
            bone-density names are put in their natural order).
        ordinal: whether that order is ordinal (quadratic kappa, screening of the lowest
            class); default: only for normal < osteopenia < osteoporosis.
        decision: how a multiclass row's class is decided: ``argmax`` or ``cumulative`` (an
            ordinal model's rule, :func:`osteolens.evaluation.metrics.predicted_classes`).
    """
    name = None if isinstance(source, pd.DataFrame) else str(source)
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
    else:
        path = Path(source)
        if not path.is_file():
            raise EvaluationError(path, "file not found.", "give the path of an oof_predictions.csv or your own CSV.")
        frame = pd.read_csv(path)
    if decision not in DECISIONS:
        raise EvaluationError(name, f"unknown decision rule {decision!r}.", f"use one of {DECISIONS}.")
    if task is not None and task not in TASKS:
        raise EvaluationError(name, f"unknown task {task!r}.", f"use one of {TASKS}.")
    if truth not in frame.columns:
        raise EvaluationError(
            name, f"no truth column {truth!r}; columns are {list(frame.columns)}.", "name it with --truth COL."
        )
    if score is not None and score not in frame.columns:
        raise EvaluationError(
            name, f"no score column {score!r}; columns are {list(frame.columns)}.", "name it with --score COL."
        )
    prob_cols = [c for c in frame.columns if c.startswith("prob_")]
    if score is None and "prob" in frame.columns and len(prob_cols) != 2:
        score = "prob"  # with two prob_<class> columns those say which class is which; 'prob' is ignored
    if task is None:
        if prob_cols and score is None:
            task = "binary" if len(prob_cols) == 2 else "multiclass"
        elif score is not None and frame[truth].dropna().nunique() <= 2:
            task = "binary"
        elif score is None and "y_pred" in frame.columns and pd.api.types.is_numeric_dtype(frame[truth]):
            task = "regression"
        elif score is not None:
            task = "regression"
        else:
            raise EvaluationError(
                name,
                "found neither probability columns (prob, prob_<class>) nor y_pred.",
                "add them, or name the score column with --score COL.",
            )
    value_cols = (
        [score] if score is not None and task != "multiclass" else ["y_pred"] if task == "regression" else prob_cols
    )
    if task == "binary" and score is None and len(prob_cols) != 2:
        raise EvaluationError(name, f"binary task needs 'prob' or two prob_<class> columns, found {prob_cols}.")
    if not value_cols or any(c not in frame.columns for c in value_cols):
        raise EvaluationError(name, f"score column(s) {value_cols} missing.", "add them or pass --score COL.")
    keep = frame[truth].notna() & frame[value_cols].notna().all(axis=1)
    dropped = int((~keep).sum())
    frame = frame[keep].reset_index(drop=True)
    if frame.empty:
        raise EvaluationError(name, "no row has both a truth value and a score.")
    for col in value_cols:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            raise EvaluationError(name, f"column {col!r} is not numeric.", "write scores as numbers.")
    patient = (
        frame["patient_id"].astype(str).to_numpy()
        if "patient_id" in frame.columns
        else frame["image"].astype(str).to_numpy()
        if "image" in frame.columns
        else np.arange(len(frame)).astype(str)
    )
    fold = frame["fold"].to_numpy(dtype=int) if "fold" in frame.columns and frame["fold"].notna().all() else None
    notes = [] if "patient_id" in frame.columns else ["no patient_id column: each row is treated as its own patient."]
    if task == "regression":
        y = pd.to_numeric(frame[truth], errors="coerce").to_numpy(dtype=float)
        if np.isnan(y).any():
            raise EvaluationError(name, f"non-numeric values in {truth!r} for a regression task.")
        return Predictions(
            frame,
            task,
            [],
            y,
            frame[value_cols[0]].to_numpy(dtype=float),
            patient,
            fold,
            dropped=dropped,
            source=name,
            notes=notes,
        )

    truth_values = frame[truth]
    if prob_cols and score is None:
        names = [c[len("prob_") :] for c in prob_cols]
        labels = truth_values.astype(str).str.replace(r"\.0$", "", regex=True)
        if (
            not set(labels) <= set(names)
            and pd.api.types.is_integer_dtype(truth_values)
            and set(truth_values) <= set(range(len(names)))
        ):
            labels = truth_values.map(lambda i: names[int(i)])  # class index in prob-column order
        unknown = sorted(set(labels) - set(names))
        if unknown:
            raise EvaluationError(name, f"y_true values {unknown[:5]} have no prob_<class> column ({prob_cols}).")
        probs = frame[prob_cols].to_numpy(dtype=float)
    else:
        labels = truth_values.astype(str).str.replace(r"\.0$", "", regex=True)
        names = sorted(set(labels))
        if len(names) > 2:
            raise EvaluationError(
                name,
                f"a single score column needs two classes, found {names[:6]}.",
                "use prob_<class> columns for multiclass, or --task regression.",
            )
        if len(names) == 1:
            raise EvaluationError(name, f"only one class ({names[0]}) in {truth!r}; an AUC needs both.")
        probs = None
    if task == "binary":
        pos = _binary_positive(names, positive, name)
        neg = next(n for n in names if n != pos)
        y = (labels.to_numpy() == pos).astype(int)
        s = frame[score].to_numpy(dtype=float) if probs is None else probs[:, names.index(pos)]
        return Predictions(frame, task, [neg, pos], y, s, patient, fold, dropped=dropped, source=name, notes=notes)
    if probs is None:
        raise EvaluationError(name, "multiclass needs prob_<class> columns.")
    ordered_names, ordered = _order_classes(names, class_order, ordinal)
    probs = probs[:, [names.index(c) for c in ordered_names]]
    index = {c: i for i, c in enumerate(ordered_names)}
    y = labels.map(index).to_numpy(dtype=int)
    if positive is not None and positive not in ordered_names:
        raise EvaluationError(name, f"positive class {positive!r} is not among {ordered_names}.", "pass one of those.")
    return Predictions(frame, task, ordered_names, y, probs, patient, fold, ordered, dropped, name, notes, positive, decision)
