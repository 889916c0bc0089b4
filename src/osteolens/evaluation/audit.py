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
:func:`added_value` turns the comparison into the headline of ``metrics.json``, the first
screen of ``report.html`` and the model card: each baseline against the image model, with a
plain verdict. Rows with ``fold = -1`` (external test) are left out of the audit.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
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


def image_key(path: str | Path) -> str:
    """A comparable key of a file path: absolute, ``..`` and symlinks resolved, case-folded on Windows."""
    return os.path.normcase(os.path.realpath(path))


def align_manifest(manifest: Any, images: list[str]) -> pd.DataFrame:
    """The manifest's rows in the order of ``images`` (prediction rows), all-NaN where none matches.

    A prediction's ``image`` matches a manifest row when it is the same string, else when
    both name the same file: a training run writes each image as the manifest's root joined
    with its relative path (``runs/x/../../data/a.png``), while the run's copy of the
    manifest holds ``../../data/a.png`` relative to the run directory.
    """
    frame = manifest.frame
    position = pd.Series(np.arange(len(frame)), index=frame["image"].astype(str))
    position = position[~position.index.duplicated()]
    take = np.array(position.reindex(images), dtype=float)
    missing = np.flatnonzero(np.isnan(take))
    if missing.size:
        by_file = {image_key(p): i for i, p in enumerate(manifest.image_paths())}
        for j in missing:
            take[j] = by_file.get(image_key(images[j]), np.nan)
    index = np.where(np.isnan(take), -1, take).astype(int)
    return frame.reindex(index).reset_index(drop=True)


def image_locations(manifest: Any, images: list[str], aligned: pd.DataFrame | None = None) -> list[Path]:
    """The file each prediction row names: its manifest row's file, else the path as written.

    ``aligned``: :func:`align_manifest` of the same images, when already computed.
    """
    rows = (align_manifest(manifest, images) if aligned is None else aligned)["image"]
    return [Path(image) if pd.isna(row) else manifest.resolve(row) for image, row in zip(images, rows, strict=True)]


def acquisition_table(
    manifest: Any, images: list[str], workers: int | None = None
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """One row of acquisition features per image; unreadable files are recorded, not fatal.

    Files are read by a small thread pool (decoding releases the GIL; ``workers`` defaults to
    the number of CPUs, at most 4) and each is summarised on a grid of at most ~512 x 512
    pixels. The original size comes from the manifest (``orig_height`` / ``orig_width``)
    when it has it, since files may have been resized after acquisition; else from the file.
    """
    frame = align_manifest(manifest, images)
    paths = image_locations(manifest, images, frame)

    def read(path: Path) -> dict[str, Any] | str:
        try:
            return image_statistics(path)
        except Exception as exc:  # a batch never dies on one bad file
            return f"{type(exc).__name__}: {exc}"

    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(read, paths))
    failures = [(str(image), r) for image, r in zip(images, results, strict=True) if isinstance(r, str)]
    table = pd.DataFrame([{} if isinstance(r, str) else r for r in results], index=range(len(images)))
    for hcol, wcol in ORIGINAL_SIZE_COLUMNS:
        if hcol in frame.columns and wcol in frame.columns:
            table["height"] = pd.to_numeric(frame[hcol], errors="coerce").to_numpy(dtype=float)
            table["width"] = pd.to_numeric(frame[wcol], errors="coerce").to_numpy(dtype=float)
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
    manifest_fold = pd.to_numeric(manifest_frame["fold"], errors="coerce") if "fold" in manifest_frame else None
    if manifest_fold is not None and manifest_fold.notna().all() and (manifest_fold >= 0).all():
        return manifest_fold.to_numpy(dtype=int), "fold column of the manifest"
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
    notes: list[str] = []
    if preds.fold is not None and (preds.fold < 0).all():  # a test table only: no folds to share
        preds = replace(preds, fold=None)
        notes.append(
            "Every row is an external test (fold -1): the baselines are cross-validated on these rows themselves"
            " (the manifest's folds, else folds made by patient)."
        )
    elif preds.fold is not None and (preds.fold < 0).any():
        keep = preds.fold >= 0
        if isinstance(acquisition, pd.DataFrame):
            acquisition = acquisition[keep].reset_index(drop=True)
        preds = preds.subset(keep)
        notes.append(
            f"{int((~keep).sum())} external-test row(s) (fold -1) left out: the baselines are compared on the"
            " cross-validation rows only."
        )
    images = preds.frame["image"].astype(str).tolist()
    mframe = align_manifest(manifest, images)
    unmatched = int(mframe["image"].isna().sum())
    if unmatched:
        notes.append(
            f"{unmatched} of {len(images)} prediction row(s) match no manifest image; their covariates and"
            " acquisition facts are imputed."
        )
    fold, fold_source = _folds(preds, mframe, seed)
    key = {"binary": "auc", "multiclass": "auc_macro", "regression": "mae"}[preds.task]
    cov_cols = [c for c in COVARIATES if c in mframe.columns]
    covariates = mframe[cov_cols].copy()
    if "age" in covariates.columns:
        covariates["age"] = pd.to_numeric(covariates["age"], errors="coerce")
    failures: list[tuple[str, str]] = []
    if acquisition is None or acquisition is True:
        acquisition, failures = acquisition_table(manifest, images)
    result = AuditResult(
        metric=key, models=[], comparisons=[], notes=notes, failures=failures, fold_source=fold_source
    )
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


METRIC_LABELS = {"auc": "AUC", "auc_macro": "macro AUC", "mae": "MAE"}
_FEATURE_WORDS = {
    "height": "image size",
    "width": "image size",
    "aspect": "image size",
    "spacing_row": "pixel spacing",
    "spacing_col": "pixel spacing",
    "dark_fraction": "intensity statistics",
}


def added_value(audit: AuditResult | dict[str, Any], conf_level: float = 0.95) -> dict[str, Any]:
    """What the image adds: the compact summary of an audit, for ``metrics.json`` and the report.

    For each baseline: its metric with CI, the image model's, the paired difference
    ``image model - baseline`` (in the metric's units; for MAE a negative difference means the
    image model errs less) with CI, p and method, a verdict and one plain sentence. Verdicts:
    ``adds`` when the interval excludes 0 in the image model's favour, ``worse`` when it
    excludes 0 in the baseline's favour, ``nothing`` when it holds 0, ``undetermined`` when it
    could not be computed. The overall ``verdict`` is ``adds`` only when the image model
    beats every fitted baseline; ``not measured`` (with a ``reason``) when none could be fitted.

    Example:
        >>> audit = {"metric": "auc", "notes": [], "models": [
        ...     {"name": "image model", "features": [], "metric": {"value": .5, "ci_low": .4, "ci_high": .6}},
        ...     {"name": "covariates-only", "features": ["age", "sex"],
        ...      "metric": {"value": .89, "ci_low": .84, "ci_high": .93}}],
        ...     "comparisons": [{"versus": "covariates-only", "difference": -.39, "ci_low": -.47,
        ...                      "ci_high": -.31, "p": 1e-9, "method": "DeLong paired test"}]}
        >>> added_value(audit)["baselines"][0]["sentence"]  # doctest: +NORMALIZE_WHITESPACE
        'Age and sex alone reach AUC 0.89 (0.84–0.93); the image model reaches 0.50 (0.40–0.60). The image
        adds nothing measurable here (difference −0.39, 95 % CI −0.47 to −0.31, p < 0.001): age and sex
        alone do better.'
    """
    a = audit.to_dict() if isinstance(audit, AuditResult) else audit
    key = a["metric"]
    higher = key != "mae"
    image = a["models"][0]["metric"]
    by_name = {m["name"]: m for m in a["models"]}
    baselines = []
    for comp in a["comparisons"]:
        model = by_name[comp["versus"]]
        lo, hi = comp["ci_low"], comp["ci_high"]
        if lo is None or hi is None or comp["difference"] is None:
            verdict = "undetermined"
        elif (lo > 0) if higher else (hi < 0):
            verdict = "adds"
        elif (hi < 0) if higher else (lo > 0):
            verdict = "worse"
        else:
            verdict = "nothing"
        entry = {
            "name": model["name"],
            "features": model["features"],
            "metric": model["metric"],
            "image_metric": image,
            "difference": comp["difference"],
            "ci_low": lo,
            "ci_high": hi,
            "p": comp.get("p"),
            "method": comp["method"],
            "verdict": verdict,
        }
        entry["sentence"] = _sentence(entry, key, conf_level)
        baselines.append(entry)
    if not baselines:
        overall = "not measured"
    elif all(b["verdict"] == "adds" for b in baselines):
        overall = "adds"
    elif any(b["verdict"] in ("nothing", "worse") for b in baselines):
        overall = "nothing"
    else:
        overall = "undetermined"
    return {
        "metric": key,
        "metric_label": METRIC_LABELS.get(key, key),
        "higher_is_better": higher,
        "difference_is": "image model minus baseline",
        "conf_level": conf_level,
        "image_model": image,
        "baselines": baselines,
        "verdict": overall,
        "folds": a.get("fold_source", ""),
        "reason": None if baselines else "no baseline could be fitted: " + " ".join(
            n for n in a.get("notes", []) if "not fitted" in n
        ),
    }


def not_measured(reason: str) -> dict[str, Any]:
    """The ``added_value`` entry of an evaluation whose baselines were not fitted, and why."""
    return {"verdict": "not measured", "reason": reason, "baselines": []}


def baseline_features(name: str, features: list[str]) -> str:
    """What a baseline uses, in words: ``"age and sex"``, ``"image size, intensity statistics"``."""
    if name.startswith("covariates"):
        return _join([f.replace("_", " ") for f in features])
    words: list[str] = []
    for f in features:
        word = _FEATURE_WORDS.get(f) or (
            "intensity statistics" if f.startswith(("intensity_", "foreground_")) else f.replace("_", " ")
        )
        if word not in words:
            words.append(word)
    return ", ".join(words)


def baseline_subject(name: str, features: list[str]) -> str:
    """The subject of a verdict sentence: ``"Age and sex"``, ``"Acquisition facts (image size, view)"``."""
    words = baseline_features(name, features)
    return words[:1].upper() + words[1:] if name.startswith("covariates") else f"Acquisition facts ({words})"


def format_number(value: float | None, key: str, signed: bool = False) -> str:
    """AUCs with 2 decimals, errors with 3 significant digits; a true minus sign for negatives.

    Example:
        >>> format_number(-0.387, "auc", signed=True), format_number(18.46, "mae"), format_number(0.08123, "mae")
        ('−0.39', '18.5', '0.0812')
    """
    if value is None:
        return "n/a"
    if key == "mae":
        digits = 0 if value == 0 else min(6, max(0, 2 - int(np.floor(np.log10(abs(value))))))
    else:
        digits = 2
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text.replace("-", "\u2212")


def format_metric(metric: dict[str, Any], key: str, brackets: str = "()") -> str:
    """``0.89 (0.84–0.93)``: a metric's value and interval, as :func:`format_number` writes them."""
    text = format_number(metric["value"], key)
    if metric.get("ci_low") is None:
        return text
    low, high = format_number(metric["ci_low"], key), format_number(metric["ci_high"], key)
    return f"{text} {brackets[0]}{low}\u2013{high}{brackets[1]}"


def format_p(p: float | None) -> str:
    """``p < 0.001`` or ``p = 0.042``."""
    if p is None:
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _sentence(entry: dict[str, Any], key: str, conf_level: float) -> str:
    label = METRIC_LABELS.get(key, key)
    subject = baseline_subject(entry["name"], entry["features"])
    plural = entry["name"].startswith("acquisition") or len(entry["features"]) > 1
    first = (
        f"{subject} alone {'reach' if plural else 'reaches'} {label} {format_metric(entry['metric'], key)}; "
        f"the image model reaches {format_metric(entry['image_metric'], key)}."
    )
    if entry["verdict"] == "undetermined":
        return first + " The difference could not be estimated (too few patients or cases)."
    pct = f"{conf_level * 100:g} %"
    interval = (
        f"difference {format_number(entry['difference'], key, True)}, {pct} CI "
        f"{format_number(entry['ci_low'], key, True)} to {format_number(entry['ci_high'], key, True)}, "
        f"{format_p(entry['p'])}"
    )
    if entry["verdict"] == "adds":
        better = "a higher" if key != "mae" else "a lower"
        return first + f" The image adds a measurable gain: {better} {label} ({interval})."
    tail = ""
    if entry["verdict"] == "worse":
        tail = f": {subject[0].lower() + subject[1:]} alone {'do' if plural else 'does'} better"
    return first + f" The image adds nothing measurable here ({interval}){tail}."


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]
