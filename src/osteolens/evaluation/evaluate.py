"""``evaluate``: every number of the report, with intervals, from one predictions table.

What it computes (the maths is in the modules it calls):

* binary: AUC (DeLong and bootstrap intervals), average precision, and at a threshold
  chosen on validation data (cross-fitted over folds) accuracy, balanced accuracy,
  sensitivity, specificity, PPV, NPV, F1, Youden's J; calibration (Brier, ECE, intercept,
  slope) before and after Platt / isotonic recalibration fitted out of fold;
* multiclass: one-vs-rest AUCs (DeLong intervals), macro / weighted AUC and F1, accuracy,
  confusion matrix, Brier; quadratic weighted kappa and a screening analysis (lowest class
  vs the rest, e.g. low bone density vs normal) when the classes are ordered;
* regression: MAE, RMSE, R^2, bias and 95 % limits of agreement, share within +-k;
* 95 % intervals by bootstrap over patients (class-stratified), subgroups, and, when a
  manifest is given, the baselines and shortcut audit.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osteolens.evaluation import metrics as M
from osteolens.evaluation.audit import added_value, align_manifest, image_locations, not_measured
from osteolens.evaluation.bootstrap import bootstrap, patient_strata, percentile_interval
from osteolens.evaluation.calibration import calibration_summary, cross_fitted_calibration, fit_calibrator
from osteolens.evaluation.delong import delong_auc
from osteolens.evaluation.predictions import Predictions, load_predictions
from osteolens.evaluation.subgroups import subgroup_table
from osteolens.evaluation.thresholds import ThresholdRule, choose_threshold
from osteolens.io._files import write_atomic

PRIMARY = {"binary": "auc", "multiclass": "auc_macro", "regression": "mae"}


@dataclass
class EvaluationResult:
    """Everything ``evaluate`` measured; ``to_dict`` / ``to_json`` give ``metrics.json``.

    ``metrics`` maps a metric name to ``{"value", "ci_low", "ci_high"}`` (bootstrap) and,
    for AUCs, ``"delong_ci"``. ``threshold`` holds the stored operating point,
    ``calibrator`` the recalibration map to ship with the model. ``added_value`` is the
    headline of the audit (:func:`osteolens.evaluation.audit.added_value`): each baseline's
    metric, the image model's, their paired difference and a one-line verdict.
    """

    task: str
    classes: list[str]
    positive: str | None
    n_images: int
    n_patients: int
    metrics: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    primary_metric: str
    threshold: dict[str, Any] | None = None
    confusion_matrix: list[list[float]] | None = None
    calibration: dict[str, Any] | None = None
    calibrator: dict[str, Any] | None = None
    screening: dict[str, Any] | None = None
    subgroups: list[dict[str, Any]] = field(default_factory=list)
    audit: dict[str, Any] | None = None
    added_value: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    failure_cases: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    model_info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            write_atomic(path, text + "\n")
        return text

    def operating_point(self) -> dict[str, Any] | None:
        """What inference needs to turn scores into decisions (saved as ``operating_point.json``).

        Binary: the stored threshold on the raw positive-class score and the Platt
        calibrator. Multiclass with a screening view: the same for the screening score.
        None for regression and for multiclass without a screening view.
        """
        if self.task == "binary":
            source = {
                "threshold": self.threshold,
                "calibrator": self.calibrator,
                "positive": self.positive,
                "negative": self.classes[0],
                "score": f"prob_{self.positive}",
            }
        elif self.screening:
            source = self.screening
        else:
            return None
        return _jsonable(
            {
                "task": self.task,
                "classes": self.classes,
                "positive": source["positive"],
                "negative": source["negative"],
                "score": source.get("score"),
                "threshold": source["threshold"]["threshold"],
                "rule": {k: source["threshold"][k] for k in ("method", "target_sensitivity", "value")},
                "selection": source["threshold"]["selection"],
                "threshold_calibrated": source["threshold"].get("threshold_calibrated"),
                "threshold_applies_to": "threshold: the raw score; threshold_calibrated: calibrator(score). "
                "Positive when the score is >= the threshold on its scale.",
                "calibrator": source["calibrator"],
            }
        )

    def value(self, name: str) -> float | None:
        """Point value of one metric."""
        return self.metrics[name]["value"]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return None if not np.isfinite(obj) else float(obj)
    return obj


def metric_function(preds: Predictions, predicted: np.ndarray | None = None, within: tuple[float, ...] = (6.0, 12.0)):
    """The weight-matrix metric function of a task (``predicted`` = binary decisions)."""
    if preds.task == "binary":
        decided = predicted if predicted is not None else (preds.scores >= 0.5).astype(int)
        return lambda W: M.binary_metrics(W, preds.y, preds.scores, decided)
    if preds.task == "multiclass":
        decided = preds.predicted
        return lambda W: M.multiclass_metrics(W, preds.y, preds.scores, preds.classes, preds.ordered, decided)
    return lambda W: M.regression_metrics(W, preds.y, preds.scores, within)


def _with_intervals(
    preds: Predictions, fn, n_bootstrap: int, seed: int, conf_level: float
) -> dict[str, dict[str, Any]]:
    row_patient, stratum = patient_strata(preds.patient, None if preds.task == "regression" else preds.y)
    point, reps = bootstrap(fn, len(preds), row_patient, stratum, n_bootstrap, seed)
    out = {}
    for key, value in point.items():
        lo, hi = percentile_interval(reps[key], conf_level)
        out[key] = {"value": value if np.isfinite(value) else None, "ci_low": lo, "ci_high": hi}
    return out


def _binary(preds: Predictions, rule: ThresholdRule, n_bootstrap: int, seed: int, conf_level: float) -> dict[str, Any]:
    choice = choose_threshold(preds.y, preds.scores, preds.fold, rule)
    predicted = (preds.scores >= choice.row_thresholds).astype(int)
    metrics = _with_intervals(preds, metric_function(preds, predicted), n_bootstrap, seed, conf_level)
    curve = delong_auc(preds.y, preds.scores, "<")
    lo, _, hi = curve.ci(conf_level)
    metrics["auc"]["delong_ci"] = [lo, hi]
    metrics["auc"]["delong_se"] = curve.se
    cm = M.weighted_confusion(np.ones((1, len(preds))), preds.y, predicted, 2)[0]
    calibration: dict[str, Any] = {"raw": calibration_summary(preds.y, preds.scores)}
    for method in ("platt", "isotonic"):
        recal = cross_fitted_calibration(preds.scores, preds.y, preds.fold, method)
        if recal is not None:
            calibration[method] = calibration_summary(preds.y, recal)
    # The stored Platt map is increasing when the model ranks at all (a > 0), so the operating
    # point moves to the calibrated scale unchanged: s >= t  <=>  cal(s) >= cal(t).
    platt = fit_calibrator(preds.scores, preds.y, "platt")
    threshold = choice.to_dict()
    calibrator = None
    if platt.params["a"] > 0:
        calibrator = platt.to_dict()
        threshold["threshold_calibrated"] = float(platt([choice.threshold])[0])
    return {
        "metrics": metrics,
        "threshold": threshold,
        "confusion_matrix": cm.tolist(),
        "calibration": calibration,
        "calibrator": calibrator,
        "_predicted": predicted,
    }


def _multiclass(
    preds: Predictions, rule: ThresholdRule, n_bootstrap: int, seed: int, conf_level: float
) -> dict[str, Any]:
    metrics = _with_intervals(preds, metric_function(preds), n_bootstrap, seed, conf_level)
    for c, name in enumerate(preds.classes):
        curve = delong_auc(preds.y == c, preds.scores[:, c], "<")
        lo, _, hi = curve.ci(conf_level)
        metrics[f"auc_{name}"]["delong_ci"] = [lo, hi]
    cm = M.weighted_confusion(np.ones((1, len(preds))), preds.y, preds.predicted, len(preds.classes))[0]
    calibration = {name: calibration_summary(preds.y == c, preds.scores[:, c]) for c, name in enumerate(preds.classes)}
    # Temperature scaling: judged out of fold (each fold's T fitted on the others), shipped
    # fitted on all the out-of-fold predictions.
    recal = cross_fitted_calibration(preds.scores, preds.y, preds.fold, "temperature")
    if recal is not None:
        calibration.update({f"{name} (temperature)": calibration_summary(preds.y == c, recal[:, c])
                            for c, name in enumerate(preds.classes)})
    calibrator = fit_calibrator(preds.scores, preds.y, "temperature").to_dict()
    out: dict[str, Any] = {"metrics": metrics, "confusion_matrix": cm.tolist(), "calibration": calibration,
                           "calibrator": calibrator}
    if preds.has_screening:
        screen = preds.screening()
        section = _binary(screen, rule, n_bootstrap, seed, conf_level)
        section.pop("_predicted")
        score = f"prob_{screen.classes[1]}" if preds.screen_positive else f"1 - prob_{preds.classes[0]}"
        out["screening"] = {"positive": screen.classes[1], "negative": screen.classes[0], "score": score, **section}
    return out


def _data_summary(preds: Predictions, manifest: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "n_images": len(preds),
        "n_patients": int(np.unique(preds.patient).size),
        "rows_dropped": preds.dropped,
        "notes": list(preds.notes),
    }
    if preds.task != "regression":
        summary["images_per_class"] = {name: int((preds.y == c).sum()) for c, name in enumerate(preds.classes)}
        summary["patients_per_class"] = {
            name: int(np.unique(preds.patient[preds.y == c]).size) for c, name in enumerate(preds.classes)
        }
    else:
        summary["target"] = {
            "mean": float(preds.y.mean()),
            "sd": float(preds.y.std(ddof=1)) if len(preds) > 1 else None,
            "min": float(preds.y.min()),
            "max": float(preds.y.max()),
        }
    if preds.fold is not None:
        summary["folds"] = {str(int(k)): int((preds.fold == k).sum()) for k in np.unique(preds.fold)}
        summary["split"] = "patient-grouped cross-validation folds (fold column); -1 = external test"
    else:
        summary["split"] = "unknown (no fold column)"
    for col in ("sex", "view", "site"):
        if col in preds.frame.columns:
            summary[f"{col}_counts"] = {str(k): int(v) for k, v in preds.frame[col].value_counts(dropna=False).items()}
    if "age" in preds.frame.columns:
        age = pd.to_numeric(preds.frame["age"], errors="coerce")
        summary["age"] = {"mean": float(age.mean()), "min": float(age.min()), "max": float(age.max())}
    if manifest is not None:
        frame = manifest.frame
        summary["manifest_images"] = int(len(frame))
        if "dup_cluster" in frame.columns:  # written by ``osteolens data check`` (exact and near duplicates)
            clustered = frame["dup_cluster"].notna() & (frame["dup_cluster"].astype(str) != "")
            summary["duplicate_images_in_clusters"] = int(clustered.sum())
            summary["duplicate_clusters"] = int(frame.loc[clustered, "dup_cluster"].nunique())
            if "label" in frame.columns:
                conflicts = frame[clustered].groupby("dup_cluster")["label"].nunique()
                summary["duplicate_clusters_with_conflicting_labels"] = int((conflicts > 1).sum())
        if "sha256" in frame.columns and frame["sha256"].notna().any():
            dup = frame["sha256"].notna() & frame["sha256"].duplicated(keep=False)
            summary["exact_duplicate_images"] = int(dup.sum())
            if "label" in frame.columns:
                conflicts = frame[dup].groupby("sha256")["label"].nunique()
                summary["duplicate_groups_with_conflicting_labels"] = int((conflicts > 1).sum())
    return summary


def _merge_manifest(preds_frame: pd.DataFrame, manifest: Any) -> pd.DataFrame:
    """Add covariates the predictions lack (sex, age, view, site ...) from the manifest by image.

    Rows are matched by :func:`osteolens.evaluation.audit.align_manifest` (same string, else
    same file), so a training run's absolute or run-relative paths find their manifest rows.
    """
    if manifest is None or "image" not in preds_frame.columns:
        return preds_frame
    extra = [
        c
        for c in ("sex", "age", "view", "site", "study")
        if c in manifest.frame.columns and c not in preds_frame.columns
    ]
    if not extra:
        return preds_frame
    aligned = align_manifest(manifest, preds_frame["image"].astype(str).tolist())
    return preds_frame.reset_index(drop=True).assign(**{c: aligned[c].to_numpy() for c in extra})


def image_names(images: list[str], manifest: Any = None) -> tuple[list[str], Path | None]:
    """How a report names each image, and the folder those names are relative to.

    With a manifest: relative to the manifest's folder when every image lies under it, else
    to the deepest folder that holds them all (a run's copy of the manifest sits in the run
    directory, away from the data), so no name walks up with ``..``. Without one, names that
    are relative and stay inside their folder are shown as written (normalised); others
    (absolute, or leaving it with ``..``) are made relative to the folder that holds them all.

    Example:
        >>> image_names(["runs/x/../../../data/knee/a.png", "runs/x/../../../data/knee/b/c.png"])[0]
        ['a.png', 'b/c.png']
    """
    if manifest is None:
        plain = [Path(os.path.normpath(i)) for i in images]
        if not any(p.is_absolute() or p.parts[:1] == ("..",) for p in plain):
            return [p.as_posix() for p in plain], None
        files = [Path(os.path.realpath(i)) for i in images]
        root = None
    else:
        files = [Path(os.path.realpath(p)) for p in image_locations(manifest, images)]
        root = Path(os.path.realpath(manifest.root))
    if not files:
        return [], root
    if root is None or not all(f.is_relative_to(root) for f in files):
        try:
            root = Path(os.path.commonpath([str(f.parent) for f in files]))
        except ValueError:  # different drives
            return [str(f) for f in files], None
    if root == Path(root.anchor):
        return [str(f) for f in files], None
    return [f.relative_to(root).as_posix() for f in files], root


def _failure_cases(preds: Predictions, names: list[str] | None = None, k: int = 8) -> list[dict[str, Any]]:
    """The ``k`` rows the model got most wrong (largest error / lowest probability of the truth).

    ``names``: each row's image as the report shows it (:func:`image_names`); None when the
    predictions have no ``image`` column.
    """
    if preds.task == "binary":
        badness = np.abs(preds.y - preds.scores)
        shown = preds.scores
    elif preds.task == "multiclass":
        badness = 1.0 - preds.scores[np.arange(len(preds)), preds.y]
        shown = preds.scores.max(axis=1)
    else:
        badness = np.abs(preds.scores - preds.y)
        shown = preds.scores
    rows = []
    for i in np.argsort(-badness, kind="mergesort")[:k]:
        truth = preds.classes[preds.y[i]] if preds.task != "regression" else float(preds.y[i])
        if preds.task == "multiclass":
            predicted: Any = preds.classes[int(preds.predicted[i])]
        else:
            predicted = float(shown[i])
        rows.append(
            {
                "image": None if names is None else names[i],
                "patient_id": str(preds.patient[i]),
                "truth": truth,
                "prediction": predicted,
                "error": float(badness[i]),
            }
        )
    return rows


def _as_manifest(manifest: Any) -> Any:
    if manifest is None or hasattr(manifest, "frame"):
        return manifest
    from osteolens.data.manifest import Manifest

    return Manifest.read(manifest)


def evaluate(
    predictions: pd.DataFrame | str | Path,
    out_dir: str | Path | None = None,
    *,
    task: str | None = None,
    positive: str | None = None,
    n_bootstrap: int = 2000,
    seed: int = 0,
    manifest: Any = None,
    conf_level: float = 0.95,
    threshold: ThresholdRule | None = None,
    truth: str = "y_true",
    score: str | None = None,
    class_order: list[str] | None = None,
    ordinal: bool | None = None,
    decision: str = "argmax",
    within: tuple[float, ...] = (6.0, 12.0),
    audit: bool | None = None,
    title: str | None = None,
    model_info: dict[str, Any] | None = None,
) -> EvaluationResult:
    """Evaluate out-of-fold (or test) predictions honestly, with intervals.

    Args:
        predictions: an ``oof_predictions.csv`` path or DataFrame (see
            :mod:`osteolens.evaluation.predictions` for the columns).
        out_dir: when given, write ``metrics.json``, ``plots/*.png``, ``report.html``,
            ``model_card.md`` and ``operating_point.json`` there.
        task: ``"binary"``, ``"multiclass"`` or ``"regression"`` (inferred when None).
        positive: positive class of a binary task; for multiclass, the class of the
            screening view (that class vs the rest).
        n_bootstrap: bootstrap resamples (patients, stratified by class).
        seed: seed of the bootstrap.
        manifest: a ``Manifest`` or manifest path: adds covariates, the data summary, failure
            thumbnails and (unless ``audit=False``) the baselines and shortcut audit.
        conf_level: level of every interval.
        threshold: how to choose the operating threshold (default Youden, cross-fitted).
        truth, score: column names for a user's own CSV.
        class_order: order of the classes (bone-density names order themselves).
        ordinal: whether the classes are ordinal (default: only bone-density names).
        decision: the model's class decision rule: ``argmax`` or ``cumulative`` (ordinal
            models: the number of cumulative probabilities above 0.5).
        within: the ``k`` of "share within +-k" for regression (6 and 12 months for bone age).
        audit: run the shortcut audit (default: when a manifest is given).
        title: report title.
        model_info: JSON-ready facts for the model card's "preprocessing and model" item
            (e.g. ``{"preprocessing": [...], "model": {...}, "training": {...}}``).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"patient_id": list("abcdef"), "y_true": [0, 0, 0, 1, 1, 1],
        ...                    "prob": [0.1, 0.3, 0.6, 0.4, 0.8, 0.9]})
        >>> round(evaluate(df, n_bootstrap=50).value("auc"), 3)
        0.889
    """
    rule = threshold or ThresholdRule()
    manifest = _as_manifest(manifest)
    preds = load_predictions(
        predictions,
        task=task,
        positive=positive,
        truth=truth,
        score=score,
        class_order=class_order,
        ordinal=ordinal,
        decision=decision,
    )
    if manifest is not None:
        preds.frame = _merge_manifest(preds.frame, manifest)
    settings = {
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "conf_level": conf_level,
        "interval": "percentile bootstrap over patients, stratified by class; DeLong for AUC",
        "source": preds.source or "DataFrame",
    }
    warnings: list[str] = []
    predicted = None
    if preds.task == "binary":
        section = _binary(preds, rule, n_bootstrap, seed, conf_level)
        predicted = section.pop("_predicted")
    elif preds.task == "multiclass":
        section = _multiclass(preds, rule, n_bootstrap, seed, conf_level)
    else:
        section = {
            "metrics": _with_intervals(preds, metric_function(preds, within=within), n_bootstrap, seed, conf_level)
        }
    if section.get("threshold", {}).get("selection", "").startswith("in-sample"):
        warnings.append(
            "The threshold was chosen on the same predictions it is applied to (no fold column): "
            "sensitivity and specificity are optimistic."
        )
    subgroups = _subgroups(preds, predicted, within, n_bootstrap, seed, conf_level)
    names, image_folder = None, None
    if "image" in preds.frame.columns:
        names, image_folder = image_names(preds.frame["image"].astype(str).tolist(), manifest)
    result = EvaluationResult(
        task=preds.task,
        classes=list(preds.classes),
        positive=preds.positive,
        n_images=len(preds),
        n_patients=int(np.unique(preds.patient).size),
        metrics=section["metrics"],
        settings=settings,
        primary_metric=PRIMARY[preds.task],
        threshold=section.get("threshold"),
        confusion_matrix=section.get("confusion_matrix"),
        calibration=section.get("calibration"),
        calibrator=section.get("calibrator"),
        screening=section.get("screening"),
        subgroups=subgroups,
        data=_data_summary(preds, manifest),
        failure_cases=_failure_cases(preds, names),
        warnings=warnings,
        model_info=dict(model_info or {}),
    )
    if image_folder is not None:
        result.data["image_folder"] = str(image_folder)
    small = [f"{r['variable']}={r['level']}" for r in subgroups if r["too_small"]]
    if small:
        result.warnings.append(f"Subgroups too small for conclusions: {', '.join(small)}.")
    run_audit = manifest is not None and (audit if audit is not None else True)
    if manifest is None:
        result.added_value = not_measured(
            "no manifest given: pass it (evaluate --manifest) to fit the covariates-only and acquisition-only"
            " baselines in the same folds."
        )
    elif not run_audit:
        result.added_value = not_measured("the baselines were switched off (audit=False, --no-audit).")
    elif "image" not in preds.frame.columns:
        result.warnings.append("Shortcut audit skipped: the predictions have no 'image' column to join the manifest.")
        result.added_value = not_measured("the predictions have no 'image' column to join the manifest.")
    else:
        from osteolens.evaluation.audit import audit_shortcuts

        report = audit_shortcuts(manifest, preds, seed=seed, n_bootstrap=n_bootstrap, conf_level=conf_level)
        result.audit = report.to_dict()
        result.added_value = added_value(result.audit, conf_level)
        result.warnings.extend(report.warnings)
    if out_dir is not None:
        from osteolens.evaluation.report import write_outputs

        write_outputs(result, preds, Path(out_dir), manifest=manifest, title=title)
    return result


def _subgroups(preds: Predictions, predicted: np.ndarray | None, within, n_bootstrap, seed, conf_level):
    """Subgroup table; binary decisions are the cross-fitted ones of the whole run."""
    if predicted is not None:
        preds.frame = preds.frame.assign(_decision=predicted)

    def fn(sub: Predictions):
        decided = sub.frame["_decision"].to_numpy() if "_decision" in sub.frame.columns else None
        return metric_function(sub, decided, within)

    rows = subgroup_table(preds, fn, n_bootstrap=n_bootstrap, seed=seed, conf_level=conf_level)
    if "_decision" in preds.frame.columns:
        preds.frame = preds.frame.drop(columns="_decision")
    return rows
