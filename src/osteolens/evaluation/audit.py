"""Baselines and shortcut audit, fitted in the same folds as the image model.

Two baselines answer two questions a reviewer asks of any image model:

* **covariates-only** (age, sex, site: whatever the manifest has): does the image add
  anything to what the chart already says? In the knee set the labels track age, so age
  and sex alone predict low bone density well.
* **acquisition-only** (original image size, pixel spacing, intensity statistics, view,
  manufacturer): could the model be reading the machine instead of the bone? In the spine
  set image size and brightness alone separate the classes.

Each baseline is a standardised logistic regression (ridge for regression) trained on the
other folds and scored on the held-out fold, exactly like the image model's out-of-fold
predictions. The image model's added value is the difference in the primary metric with a
paired interval: DeLong for a binary AUC, a paired patient bootstrap for macro AUC and MAE.
A warning is raised when a baseline is informative (its interval excludes chance: AUC 0.5, or
the MAE of predicting the training mean) and comes within ``margin`` of the image model (AUC
points, or a share of the baseline's MAE), or the image model is not significantly better.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from osteolens.evaluation import metrics as M
from osteolens.evaluation.bootstrap import bootstrap, bootstrap_weights, patient_strata, percentile_interval
from osteolens.evaluation.delong import delong_paired_test
from osteolens.evaluation.predictions import Predictions, load_predictions

COVARIATES = ("age", "sex", "site")
ACQUISITION_CATEGORICAL = ("view", "manufacturer")
ORIGINAL_SIZE_COLUMNS = (("orig_height", "orig_width"), ("original_height", "original_width"))
_THUMB_STEP_TARGET = 512  # intensity statistics on a grid of at most ~512 x 512 pixels


@dataclass
class AuditResult:
    """Baseline models, their comparison with the image model, and warnings."""

    metric: str
    models: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flags: dict[str, bool] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    fold_source: str = ""

    def to_dict(self) -> dict[str, Any]:
        from osteolens.evaluation.evaluate import _jsonable

        return _jsonable(asdict(self))


def image_statistics(path: Any) -> dict[str, Any]:
    """Acquisition facts of one file: size, spacing, intensity statistics, view, manufacturer."""
    from osteolens.io import read_radiograph

    rg = read_radiograph(path)
    h, w = rg.shape
    step = max(1, int(np.ceil(max(h, w) / _THUMB_STEP_TARGET)))
    px = rg.pixels[::step, ::step].astype(np.float64)
    p5, p50, p95 = np.percentile(px, [5, 50, 95])
    fg = px[px >= 0.02]  # non-background pixels: brightness of the anatomy, not of the border
    fg = fg if fg.size else px.ravel()
    shape = rg.meta.original_shape or (h, w)
    return {
        "height": float(shape[0]),
        "width": float(shape[1]),
        "aspect": float(shape[1]) / float(shape[0]),
        "spacing_row": None if rg.spacing_mm is None else float(rg.spacing_mm[0]),
        "spacing_col": None if rg.spacing_mm is None else float(rg.spacing_mm[1]),
        "intensity_mean": float(px.mean()),
        "intensity_std": float(px.std()),
        "intensity_p5": float(p5),
        "intensity_p50": float(p50),
        "intensity_p95": float(p95),
        "dark_fraction": float((px < 0.02).mean()),
        "foreground_mean": float(fg.mean()),
        "foreground_std": float(fg.std()),
        "foreground_p50": float(np.median(fg)),
        "view": rg.meta.view,
        "manufacturer": rg.meta.manufacturer,
    }


def acquisition_table(manifest: Any, images: list[str]) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """One row of acquisition features per image; unreadable files are recorded, not fatal.

    The original size comes from the manifest (``orig_height`` / ``orig_width``) when it has
    it, since files may have been resized after acquisition; else from the file.
    """
    rows, failures = [], []
    for image in images:
        try:
            rows.append(image_statistics(manifest.resolve(image)))
        except Exception as exc:  # a batch never dies on one bad file
            failures.append((str(image), str(exc)))
            rows.append({})
    table = pd.DataFrame(rows, index=range(len(images)))
    frame = manifest.frame.set_index("image").reindex(images)
    for hcol, wcol in ORIGINAL_SIZE_COLUMNS:
        if hcol in frame.columns and wcol in frame.columns:
            table["height"] = frame[hcol].to_numpy(dtype=float)
            table["width"] = frame[wcol].to_numpy(dtype=float)
            table["aspect"] = table["width"] / table["height"]
            break
    for col in ACQUISITION_CATEGORICAL:
        if col in frame.columns and frame[col].notna().any():
            table[col] = frame[col].to_numpy()
    return table, failures


def _usable(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    numeric, categorical = [], []
    for col in table.columns:
        values = table[col]
        if values.notna().sum() == 0 or values.dropna().nunique() < 2:
            continue
        (numeric if pd.api.types.is_numeric_dtype(values) else categorical).append(col)
    return numeric, categorical


def _pipeline(numeric: list[str], categorical: list[str], task: str, seed: int):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts = []
    if numeric:
        parts.append(("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric))
    if categorical:
        parts.append(
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"), OneHotEncoder(handle_unknown="ignore")
                ),
                categorical,
            )
        )
    model = Ridge(alpha=1.0) if task == "regression" else LogisticRegression(max_iter=2000, C=1.0, random_state=seed)
    return make_pipeline(ColumnTransformer(parts), model)


def _folds(preds: Predictions, manifest_frame: pd.DataFrame, seed: int) -> tuple[np.ndarray, str]:
    if preds.fold is not None:
        return preds.fold, "fold column of the predictions"
    if "fold" in manifest_frame.columns and manifest_frame["fold"].notna().all():
        return manifest_frame["fold"].to_numpy(dtype=int), "fold column of the manifest"
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    n_groups = np.unique(preds.patient).size
    k = min(5, n_groups)
    splitter = GroupKFold(k) if preds.task == "regression" else StratifiedGroupKFold(k, shuffle=True, random_state=seed)
    fold = np.empty(len(preds), dtype=int)
    for i, (_, test) in enumerate(splitter.split(np.zeros(len(preds)), preds.y, preds.patient)):
        fold[test] = i
    return fold, f"StratifiedGroupKFold({k}) by patient_id (no fold column given)"


def _oof(table: pd.DataFrame, preds: Predictions, fold: np.ndarray, seed: int) -> np.ndarray | None:
    numeric, categorical = _usable(table)
    if not numeric and not categorical:
        return None
    X = table[numeric + categorical]
    k = len(preds.classes)
    out = np.zeros((len(preds), k)) if preds.task == "multiclass" else np.zeros(len(preds))
    for f in np.unique(fold):
        train, test = (fold != f) & (fold >= 0), fold == f
        model = _pipeline(numeric, categorical, preds.task, seed)
        if preds.task == "regression":
            out[test] = model.fit(X[train], preds.y[train]).predict(X[test])
            continue
        prevalence = np.bincount(preds.y[train], minlength=k) / train.sum()
        if np.count_nonzero(prevalence) < 2:  # one class only: the prevalence is all it can learn
            out[test] = prevalence[1] if preds.task == "binary" else prevalence
            continue
        model.fit(X[train], preds.y[train])
        proba = model.predict_proba(X[test])
        if preds.task == "binary":
            out[test] = proba[:, 1]
        else:
            full = np.zeros((int(test.sum()), k))
            full[:, model.classes_] = proba
            out[test] = full
    return out


def _metric_fn(preds: Predictions, scores: np.ndarray):
    if preds.task == "binary":
        return lambda W: {"auc": M.weighted_auc(W, preds.y.astype(float), scores)}
    if preds.task == "multiclass":
        return lambda W: {"auc_macro": M.multiclass_metrics(W, preds.y, scores, preds.classes, False)["auc_macro"]}
    return lambda W: {"mae": M.regression_metrics(W, preds.y, scores, ())["mae"]}


def _paired_bootstrap(
    preds: Predictions, a: np.ndarray, b: np.ndarray, key: str, n: int, seed: int, conf: float
) -> dict[str, Any]:
    fa, fb = _metric_fn(preds, a), _metric_fn(preds, b)
    row_patient, stratum = patient_strata(preds.patient, None if preds.task == "regression" else preds.y)
    ones = np.ones((1, len(preds)))
    diff = float(fa(ones)[key][0] - fb(ones)[key][0])
    reps = np.concatenate([fa(W)[key] - fb(W)[key] for W in bootstrap_weights(row_patient, stratum, n, seed)])
    lo, hi = percentile_interval(reps, conf)
    finite = reps[np.isfinite(reps)]
    p = float(min(1.0, 2 * min((finite <= 0).mean(), (finite >= 0).mean()))) if finite.size else None
    return {
        "difference": diff,
        "ci_low": lo,
        "ci_high": hi,
        "p": p,
        "method": f"paired patient bootstrap ({n} resamples), percentile interval",
    }


def audit_shortcuts(
    manifest: Any,
    predictions: Predictions | pd.DataFrame | str,
    *,
    seed: int = 0,
    n_bootstrap: int = 2000,
    conf_level: float = 0.95,
    margin: float = 0.05,
    acquisition: pd.DataFrame | bool | None = None,
) -> AuditResult:
    """Fit the covariates-only and acquisition-only baselines and compare the image model.

    Args:
        manifest: the run's ``Manifest`` (or a path), joined to the predictions by ``image``.
        predictions: the image model's out-of-fold predictions (``Predictions``, DataFrame or CSV).
        seed: seed of the folds (when none are given) and the bootstrap.
        n_bootstrap: resamples of the intervals.
        conf_level: level of every interval.
        margin: a baseline within this much of the image model's AUC (or within this share
            of its MAE) "comes close".
        acquisition: precomputed acquisition features, one row per prediction row;
            ``False`` skips the acquisition baseline; default: read every image with
            :func:`osteolens.io.read_radiograph`.

    Returns:
        An :class:`AuditResult`; ``flags["covariates_close"]`` and
        ``flags["acquisition_close"]`` say which warning fired.
    """
    from osteolens.evaluation.evaluate import _as_manifest

    manifest = _as_manifest(manifest)
    preds = predictions if isinstance(predictions, Predictions) else load_predictions(predictions)
    if "image" not in preds.frame.columns:
        from osteolens.errors import EvaluationError

        raise EvaluationError(
            None, "the audit joins predictions to the manifest by 'image', but the predictions have no 'image' column."
        )
    images = preds.frame["image"].astype(str).tolist()
    mframe = manifest.frame.set_index("image").reindex(images).reset_index()
    fold, fold_source = _folds(preds, mframe, seed)
    key = {"binary": "auc", "multiclass": "auc_macro", "regression": "mae"}[preds.task]
    cov_cols = [c for c in COVARIATES if c in mframe.columns]
    covariates = mframe[cov_cols].copy()
    if "age" in covariates.columns:
        covariates["age"] = pd.to_numeric(covariates["age"], errors="coerce")
    failures: list[tuple[str, str]] = []
    if acquisition is None or acquisition is True:
        acquisition, failures = acquisition_table(manifest, images)
    result = AuditResult(metric=key, models=[], comparisons=[], failures=failures, fold_source=fold_source)
    if failures:
        result.notes.append(
            f"{len(failures)} image(s) could not be read for acquisition statistics; their features were imputed."
        )
    scores = {"image model": preds.scores}
    features = {"image model": ["the model's own out-of-fold scores"]}
    baselines = [("covariates-only", covariates)]
    if acquisition is not False:
        baselines.append(("acquisition-only", acquisition))
    for name, table in baselines:
        oof = _oof(table, preds, fold, seed)
        if oof is None:
            result.notes.append(f"{name} baseline not fitted: no usable column among {list(table.columns) or 'none'}.")
            continue
        scores[name] = oof
        features[name] = list(sum(_usable(table), []))
    row_patient, stratum = patient_strata(preds.patient, None if preds.task == "regression" else preds.y)
    for name, s in scores.items():
        point, reps = bootstrap(_metric_fn(preds, s), len(preds), row_patient, stratum, n_bootstrap, seed)
        lo, hi = percentile_interval(reps[key], conf_level)
        result.models.append(
            {"name": name, "features": features[name], "metric": {"value": point[key], "ci_low": lo, "ci_high": hi}}
        )
    image_value = result.models[0]["metric"]["value"]
    if key == "mae":  # "chance" for regression: predicting the training folds' mean
        null = np.empty(len(preds))
        for f in np.unique(fold):
            null[fold == f] = preds.y[(fold != f) & (fold >= 0)].mean()
        null_mae = float(np.mean(np.abs(null - preds.y)))
        result.notes.append(
            f"Predicting the training folds' mean gives MAE {null_mae:.3f} (the regression 'chance' level)."
        )
    for model in result.models[1:]:
        name = model["name"]
        if preds.task == "binary":
            test = delong_paired_test(preds.y, preds.scores, scores[name], direction="<", conf_level=conf_level)
            comp = {
                "difference": test.difference,
                "ci_low": test.ci_diff[0],
                "ci_high": test.ci_diff[1],
                "p": test.p,
                "method": "DeLong paired test",
            }
        else:
            comp = _paired_bootstrap(preds, preds.scores, scores[name], key, n_bootstrap, seed, conf_level)
        result.comparisons.append({"versus": name, **comp})
        base = model["metric"]
        if key == "mae":
            informative = base["ci_high"] is not None and base["ci_high"] < null_mae
            close = comp["ci_high"] is None or comp["ci_high"] >= 0 or image_value >= (1 - margin) * base["value"]
        else:
            informative = base["ci_low"] is not None and base["ci_low"] > 0.5
            close = image_value - base["value"] < margin or comp["ci_low"] is None or comp["ci_low"] <= 0
        flag = "covariates_close" if name.startswith("covariates") else "acquisition_close"
        result.flags[flag] = bool(informative and close)
        what = ", ".join(model["features"])
        summary = (
            f"{name} model ({what}) reaches {key} {base['value']:.3f} "
            f"({_f(base['ci_low'])} to {_f(base['ci_high'])}) against the image model's {image_value:.3f}; "
            f"difference {comp['difference']:+.3f} ({_f(comp['ci_low'])} to {_f(comp['ci_high'])})."
        )
        if result.flags[flag] and flag == "acquisition_close":
            result.warnings.append(
                "SHORTCUT WARNING: the " + summary + " Acquisition facts alone (not bone) nearly match the image model,"
                " which may be reading the device, protocol or image size instead of bone density."
                " Check where classes came from, harmonise acquisition, and test on another site."
            )
        elif result.flags[flag]:
            result.warnings.append(
                "NO CLEAR ADDED VALUE: the "
                + summary
                + " The image model does not clearly beat the patient covariates;"
                " report it against this baseline, not against chance."
            )
        elif informative and key != "mae":
            result.notes.append(f"The {summary} The image model is clearly better.")
    return result


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
