"""Patient-grouped cross-validation of the classical pipelines, with nested hyperparameter search.

The outer folds group images by patient / specimen (the table's ``fold`` column, or
``osteolens.data.splits.assign_folds``: ``StratifiedGroupKFold`` by class or by quantile
bins of a numeric target). Any hyperparameter search runs inside each outer training set
only, with an inner grouped split, so the held-out fold never tunes the model that scores
it (the biplanar seed tuned and scored on the same, ungrouped folds).

This is the classical experiment runner, beside the deep one (:mod:`osteolens.training.cv`);
the pipelines themselves are :mod:`osteolens.models.classic`, the saved model
:mod:`osteolens.models.classic_store`, and every metric comes from
:mod:`osteolens.evaluation.metrics` (one weight row of ones: the plain metric).

``positive`` on a target with more than two classes makes the task binary, that class
against the rest, labelled ``[not_<positive>, <positive>]`` as ``osteolens train`` does.

Run directory (the same layout as the deep-learning CV, so ``osteolens.evaluation`` reads both):

| file | content |
|---|---|
| ``config.resolved.yaml`` | every setting, the columns used, the folds' origin, versions |
| ``oof_predictions.csv`` | ``image, patient_id, fold, y_true``, then ``prob_<class>`` per class (and ``prob`` for binary) and ``y_pred``; ``y_pred`` only for regression; covariates |
| ``metrics.json`` | per fold and pooled metrics, confusion matrices, best hyperparameters per fold |
| ``confusion/fold_<k>.csv``, ``confusion/pooled.csv`` | confusion matrices (rows true, columns predicted) |
| ``importance.csv``, ``importance.png`` | impurity and held-out permutation importances, top-N bar plot |
| ``model.skops``, ``model.json`` | the final model: fitted (and tuned) on every CV row, saved without pickle (``osteolens.models.classic_store``); ``osteolens classic predict`` applies it |
| ``test_predictions.csv`` | rows of fold ``-1`` (external test), predicted by the final model |
| ``report/`` | the full report of :func:`osteolens.evaluation.evaluate` on the out-of-fold predictions; with the manifest (``--manifest``, or the one the feature table's sidecar names) it includes the covariates-only and acquisition-only baselines in the same folds (``metrics.json`` ``baselines`` says whether they ran, and why not) |
"""

from __future__ import annotations

import fnmatch
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osteolens.classes import BONE_DENSITY_ORDER, order_classes
from osteolens.errors import ConfigError, ManifestError
from osteolens.evaluation import metrics as M
from osteolens.data.manifest import COVARIATE_COLUMNS
from osteolens.io._files import write_atomic
from osteolens.models.classic import CLASSIC_MODELS, _estimator, build_classic_model, impurity_importances, search_space
from osteolens.models.classic_store import save_classic_model

DEFAULT_CATEGORICAL = ("vertebra", "sex", "view")
_NEGATIVE_NAMES = {"normal", "negative", "healthy", "control", "no", "false", "absent", "0"}


@dataclass
class ClassicCVConfig:
    """Settings of one classical CV run.

    Attributes:
        target: column to predict (class names, 0/1, or a number such as ``bmd``).
        model: ``rf``, ``svm``, ``logreg``, ``linear`` or ``hgb``.
        task: ``binary``, ``multiclass``, ``regression`` or None to infer (text or 0/1 ->
            classification, other numbers -> regression).
        search: ``none``, ``grid`` or ``random`` (nested in the training folds).
        folds: outer folds (used when the table has no ``fold`` column).
        inner_folds: folds of the inner grouped split of the search.
        n_iter: candidates of a random search.
        seed: seed of folds, models, search and permutations.
        numeric: numeric columns or glob patterns (``original_*``); None = the feature
            columns named in the table's JSON sidecar.
        covariates: extra numeric columns added to ``numeric`` (e.g. ``age``).
        categorical: one-hot columns; None = those of vertebra, sex, view present.
        params: fixed estimator hyperparameters (``{"n_estimators": 40}``).
        positive: positive class of a binary task (default: the class that is not
            normal/negative, else the second in sorted order). On a target with more than
            two classes it makes the task binary: this class against the rest.
        permutation_repeats: repeats of the held-out permutation importance (0 = skip).
        permutation_max_columns: skip the permutation importance above this many input
            columns (None: never skip). It costs one prediction per column and repeat: on a
            2560-column CNN embedding table, 64,000 predictions, ~15 minutes on 2 cores, for
            importances of single embedding channels that mean little.
        top_n: bars in ``importance.png``.
        jobs: parallel jobs of the search.
        report: call ``osteolens.evaluation.evaluate`` on the out-of-fold predictions.
        n_bootstrap: bootstrap resamples of that report.
        manifest: the manifest the features came from; its covariates and images give the
            report's covariates-only and acquisition-only baselines. None: the manifest
            named in the feature table's sidecar, when that file exists.
    """

    target: str
    model: str = "rf"
    task: str | None = None
    search: str = "none"
    folds: int = 5
    inner_folds: int = 3
    n_iter: int = 20
    seed: int = 0
    numeric: list[str] | None = None
    covariates: list[str] = field(default_factory=list)
    categorical: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    positive: str | None = None
    permutation_repeats: int = 5
    permutation_max_columns: int | None = 300
    top_n: int = 30
    jobs: int = 1
    report: bool = True
    n_bootstrap: int = 2000
    manifest: str | None = None

    def __post_init__(self) -> None:
        if self.model not in CLASSIC_MODELS:
            raise ConfigError("model", f"unknown model '{self.model}'.", f"use one of {', '.join(CLASSIC_MODELS)}.")
        if self.search not in ("none", "grid", "random"):
            raise ConfigError("search", f"unknown search '{self.search}'.", "use none, grid or random.")
        if self.task not in (None, "binary", "multiclass", "regression"):
            raise ConfigError("task", f"unknown task '{self.task}'.", "use binary, multiclass, regression or leave it out.")
        if self.folds < 2 or self.inner_folds < 2:
            raise ConfigError("folds", f"folds={self.folds}, inner_folds={self.inner_folds}.", "use at least 2 of each.")
        if self.positive is not None and self.task not in (None, "binary"):
            raise ConfigError("positive", f"only meaningful for a binary task, not task {self.task}.", "drop --positive, or use --task binary.")


@dataclass
class ClassicCVResult:
    """What a run produced (also written to ``run_dir`` when one was given)."""

    oof: pd.DataFrame
    metrics: dict[str, Any]
    importance: pd.DataFrame
    resolved: dict[str, Any]
    run_dir: Path | None = None
    test: pd.DataFrame | None = None
    evaluation: Any = None
    model: Any = None
    model_params: dict[str, Any] | None = None


# --------------------------------------------------------------------------- columns, task, folds
def _expand(patterns: Sequence[str], columns: Sequence[str], what: str) -> list[str]:
    out: list[str] = []
    for pattern in patterns:
        hits = [c for c in columns if fnmatch.fnmatchcase(c, pattern)]
        if not hits:
            raise ConfigError(what, f"'{pattern}' matches no column of the feature table.", "check the name or pattern (see the table's header).")
        out.extend(h for h in hits if h not in out)
    return out


def resolve_columns(table: pd.DataFrame, config: ClassicCVConfig, sidecar: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """The numeric and categorical model inputs (never the target, ids or folds)."""
    columns = list(table.columns)
    if config.numeric is not None:
        numeric = _expand(config.numeric, columns, "numeric")
    elif sidecar and sidecar.get("feature_columns"):
        numeric = [c for c in sidecar["feature_columns"] if c in table.columns]
    else:
        raise ConfigError(
            "numeric", "the feature table has no JSON sidecar naming its feature columns.",
            "pass --numeric with column names or patterns (e.g. 'original_*,fourier_*'), or extract with 'osteolens features extract'.",
        )
    numeric += [c for c in _expand(config.covariates, columns, "covariates") if c not in numeric]
    if config.categorical is None:
        categorical = [c for c in DEFAULT_CATEGORICAL if c in table.columns and table[c].notna().any()]
    else:
        categorical = _expand(config.categorical, columns, "categorical")
    forbidden = {config.target, "image", "patient_id", "fold", "group", "mask"}
    numeric = [c for c in numeric if c not in forbidden and c not in categorical]
    categorical = [c for c in categorical if c not in forbidden]
    bad = [c for c in numeric if not pd.api.types.is_numeric_dtype(table[c])]
    if bad:
        raise ConfigError("numeric", f"column(s) {bad[:5]} are not numeric.", "list them under --categorical instead.")
    return numeric, categorical


def infer_task(y: pd.Series) -> str:
    """``regression`` for numbers other than 0/1, ``binary`` / ``multiclass`` otherwise."""
    if pd.api.types.is_numeric_dtype(y) and not set(pd.unique(y.dropna())) <= {0, 1}:
        return "regression"
    return "binary" if y.nunique() == 2 else "multiclass"


def class_order(y: pd.Series, task: str, positive: str | None) -> list[str]:
    """Class names with the positive class last (binary) or in bone-density order when they are WHO classes."""
    classes = sorted(str(v) for v in pd.unique(y.dropna()))
    if task == "binary":
        if positive is None:
            others = [c for c in classes if c.lower() not in _NEGATIVE_NAMES]
            positive = others[-1] if len(others) == 1 else classes[-1]
        if positive not in classes:
            raise ConfigError("positive", f"'{positive}' is not a class of the target ({classes}).", "pass one of those names.")
        return [c for c in classes if c != positive] + [positive]
    return order_classes(classes) if task == "multiclass" else classes


def one_vs_rest(y: pd.Series, positive: str) -> pd.Series:
    """``positive`` against every other class: other labels become ``not_<positive>``.

    Example:
        >>> one_vs_rest(pd.Series(["normal", "osteopenia", "osteoporosis"]), "osteoporosis").tolist()
        ['not_osteoporosis', 'not_osteoporosis', 'osteoporosis']
    """
    names = y.astype(str)
    if positive not in set(names):
        raise ConfigError("positive", f"'{positive}' is not a class of the target ({sorted(set(names))}).", "pass one of those names.")
    return names.where(names == positive, f"not_{positive}")


def resolve_folds(table: pd.DataFrame, config: ClassicCVConfig) -> tuple[np.ndarray, str]:
    """Outer fold per row (``-1`` = not in CV) and where it came from."""
    if "fold" in table.columns and table["fold"].notna().all():
        fold = table["fold"].astype(int).to_numpy()
        source = "the table's fold column"
    else:
        from osteolens.data.manifest import Manifest
        from osteolens.data.splits import assign_folds

        frame = table[["image", "patient_id", config.target]].copy()
        stratify = config.target if config.target not in ("image", "patient_id") else None
        fold = assign_folds(Manifest(frame, Path(".")), config.folds, seed=config.seed, stratify=stratify).frame["fold"].to_numpy()
        source = f"osteolens.data.splits.assign_folds(n_folds={config.folds}, seed={config.seed}, stratify={stratify!r})"
    used = fold >= 0
    spread = pd.Series(fold[used]).groupby(table["patient_id"].astype(str).to_numpy()[used]).nunique()
    leaking = sorted(spread[spread > 1].index)
    if leaking:
        raise ManifestError(None, f"patient(s) {leaking[:5]} appear in more than one fold.", "reassign folds grouped by patient ('osteolens data folds').")
    if len(set(fold[used])) < 2:
        raise ManifestError(None, "fewer than two folds to cross-validate.", "assign at least two folds.")
    return fold, source


# --------------------------------------------------------------------------- metrics
def classification_metrics(y_true: Sequence[str], prob: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Metrics of class probabilities, from :mod:`osteolens.evaluation.metrics`.

    The predicted class is the most probable one (binary: probability of the positive
    class, the last, above 0.5). Binary: AUC, average precision, accuracy, balanced
    accuracy, sensitivity / specificity / F1 / PPV / NPV of the positive class, Brier.
    Several classes: one-vs-rest macro AUC, accuracy, balanced accuracy, the macro means of
    per-class sensitivity, specificity and F1, Brier, and quadratic kappa for bone-density
    classes. A metric undefined on these rows (AUC with a class absent) is None.
    """
    names = [str(v) for v in y_true]
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise ConfigError("y_true", f"label(s) {unknown} are not among the classes {classes}.", "list every class.")
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[v] for v in names], dtype=int)
    prob = np.asarray(prob, dtype=float)
    W = np.ones((1, len(y)))
    predicted = M.predicted_classes(prob)
    cm = M.weighted_confusion(W, y, predicted, len(classes))[0]
    if len(classes) == 2:
        m = {k: v[0] for k, v in M.binary_metrics(W, y.astype(float), prob[:, 1], predicted).items()}
        keys = ("auc", "average_precision", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1", "ppv", "npv", "brier")
        out = {k: _num(m[k]) for k in keys}
    else:
        ordered = set(classes) <= set(BONE_DENSITY_ORDER) and classes == order_classes(classes)
        m = {k: v[0] for k, v in M.multiclass_metrics(W, y, prob, classes, ordered, predicted).items()}
        tp = np.diag(cm)
        negatives = cm.sum() - cm.sum(axis=1)  # per class: rows truly of another class
        true_negatives = negatives - (cm.sum(axis=0) - tp)
        with np.errstate(invalid="ignore", divide="ignore"):
            specificity = np.where(negatives > 0, true_negatives / np.maximum(negatives, 1), np.nan)
        sensitivity = np.asarray([m[f"sensitivity_{c}"] for c in classes])
        out = {
            "auc": _num(m["auc_macro"]),
            "accuracy": _num(m["accuracy"]),
            "balanced_accuracy": _num(m["balanced_accuracy"]),
            "sensitivity": _num(np.nanmean(sensitivity)) if np.isfinite(sensitivity).any() else None,
            "specificity": _num(np.nanmean(specificity)) if np.isfinite(specificity).any() else None,
            "f1": _num(m["f1_macro"]),
            "brier": _num(m["brier"]),
            **({"kappa_quadratic": _num(m["kappa_quadratic"])} if ordered else {}),
        }
    return {"n": int(len(y)), **out, "confusion_matrix": {"labels": classes, "matrix": cm.astype(int).tolist()}}


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, Any]:
    """MAE, RMSE, R^2 (1 - SS_res / SS_tot), bias and 95 % limits of agreement (from
    :mod:`osteolens.evaluation.metrics`), and Pearson's r."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    m = {k: v[0] for k, v in M.regression_metrics(np.ones((1, len(y))), y, p, within=()).items()}
    pearson = float(np.corrcoef(y, p)[0, 1]) if len(y) > 2 and np.std(p) > 0 and np.std(y) > 0 else None
    return {"n": int(len(y)), **{k: _num(v) for k, v in m.items()}, "pearson_r": pearson}


def _num(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


# --------------------------------------------------------------------------- the run
def _inner_splitter(task: str, n_splits: int, seed: int) -> Any:
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    if task == "regression":
        return GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)


def _scoring(task: str) -> str:
    return {"binary": "roc_auc", "multiclass": "balanced_accuracy", "regression": "r2"}[task]


def _fit_fold(config: ClassicCVConfig, task: str, numeric: list[str], categorical: list[str], X: pd.DataFrame, y: pd.Series, groups: np.ndarray) -> tuple[Any, dict[str, Any] | None]:
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

    model = build_classic_model(config.model, task, numeric, categorical, seed=config.seed, **config.params)
    if config.search == "none":
        return model.fit(X, y), None
    n_groups = len(np.unique(groups))
    inner = _inner_splitter(task, min(config.inner_folds, n_groups), config.seed)
    space = search_space(config.model, task, config.search)
    if config.search == "grid":
        search = GridSearchCV(model, space, cv=inner, scoring=_scoring(task), n_jobs=config.jobs, refit=True, error_score="raise")
    else:
        search = RandomizedSearchCV(
            model, space, n_iter=config.n_iter, cv=inner, scoring=_scoring(task), n_jobs=config.jobs,
            refit=True, random_state=config.seed, error_score="raise",
        )
    search.fit(X, y, groups=groups)
    best = {k: (v.item() if hasattr(v, "item") else v) for k, v in search.best_params_.items()}
    return search.best_estimator_, {"params": best, "inner_score": float(search.best_score_), "scoring": _scoring(task)}


def run_classic_cv(
    table: pd.DataFrame,
    config: ClassicCVConfig,
    run_dir: str | Path | None = None,
    sidecar: dict[str, Any] | None = None,
    features_path: str | None = None,
) -> ClassicCVResult:
    """Cross-validate a classical model on a feature table.

    Native thread pools (OpenMP, BLAS) are limited to one thread during the run: radiomics
    tables are small, and on a shared machine the thread start-up and spinning of
    histogram gradient boosting costs ~50x its work (1.6 s vs 0.03 s per fit, measured).
    Parallelism comes from ``config.jobs`` (the search's processes) instead.

    Args:
        table: one row per image: ``image``, ``patient_id``, the target, features, covariates.
        config: the run settings.
        run_dir: where to write the run directory (nothing is written when None).
        sidecar: the table's JSON sidecar (names the feature columns).
        features_path: recorded in ``config.resolved.yaml``.

    Returns:
        out-of-fold predictions, metrics and importances.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _run_classic_cv(table, config, run_dir, sidecar, features_path)


def _run_classic_cv(
    table: pd.DataFrame,
    config: ClassicCVConfig,
    run_dir: str | Path | None,
    sidecar: dict[str, Any] | None,
    features_path: str | None,
) -> ClassicCVResult:
    from sklearn.inspection import permutation_importance

    for column in ("image", "patient_id", config.target):
        if column not in table.columns:
            raise ConfigError(features_path or "features", f"the table has no '{column}' column.", "check --target, or extract features from a manifest.")
    table = table[table[config.target].notna()].reset_index(drop=True)
    # A positive class makes the task binary; on more than two classes it is that class vs the rest.
    task = config.task or ("binary" if config.positive is not None else infer_task(table[config.target]))
    numeric, categorical = resolve_columns(table, config, sidecar)
    fold, fold_source = resolve_folds(table, config)
    classify = task != "regression"
    y_all = table[config.target].astype(str) if classify else table[config.target].astype(float)
    if task == "binary" and config.positive is not None and y_all.nunique() > 2:
        y_all = one_vs_rest(y_all, config.positive)
    classes = class_order(y_all, task, config.positive) if classify else []
    if classify and task == "binary" and len(classes) != 2:
        raise ConfigError(
            "task", f"binary task but the target has {len(classes)} classes {classes}.",
            "use --task multiclass, or --positive CLASS for that class against the rest.",
        )
    inputs = numeric + categorical
    groups_all = table["patient_id"].astype(str).to_numpy()

    oof_parts, per_fold, searches, impurity, permutation = [], {}, {}, [], []
    permute = config.permutation_repeats > 0 and (config.permutation_max_columns is None or len(inputs) <= config.permutation_max_columns)
    if config.permutation_repeats <= 0:
        permutation_note = "not run (permutation_repeats = 0)"
    elif not permute:
        permutation_note = (f"skipped: {len(inputs)} input columns > permutation_max_columns = {config.permutation_max_columns} "
                            "(raise it, --permutation-max-columns, to run it anyway)")
    else:
        permutation_note = f"{config.permutation_repeats} repeats on each held-out fold"
    for k in sorted(set(fold[fold >= 0])):
        train, test = np.flatnonzero((fold >= 0) & (fold != k)), np.flatnonzero(fold == k)
        X_train, X_test = table.loc[train, inputs], table.loc[test, inputs]
        y_train, y_test = y_all.iloc[train], y_all.iloc[test]
        fitted, search = _fit_fold(config, task, numeric, categorical, X_train, y_train, groups_all[train])
        if search is not None:
            searches[str(k)] = search
        part = _prediction_frame(fitted, table, test, k, y_test, task, classes, inputs)
        per_fold[str(k)] = _metrics(part, task, classes)
        oof_parts.append(part)
        mdi = impurity_importances(fitted)
        if mdi is not None:
            impurity.append(mdi)
        if permute:
            scoring = None if task == "multiclass" else _scoring(task)
            if task == "binary" and y_test.nunique() < 2:
                scoring = None
            perm = permutation_importance(
                fitted, X_test, y_test, scoring=scoring, n_repeats=config.permutation_repeats, random_state=config.seed, n_jobs=config.jobs
            )
            permutation.append(dict(zip(inputs, perm.importances_mean, strict=True)))

    oof = pd.concat(oof_parts, ignore_index=True)
    pooled = _metrics(oof, task, classes)
    # The final model, fitted (and tuned) on every CV row: it is saved, and it predicts the
    # external test set (fold -1), which no fold and no search has seen.
    cv_rows = np.flatnonzero(fold >= 0)
    final, final_search = _fit_fold(config, task, numeric, categorical, table.loc[cv_rows, inputs],
                                    y_all.iloc[cv_rows], groups_all[cv_rows])
    external = None
    held_out = np.flatnonzero(fold < 0)
    if len(held_out):
        external = _prediction_frame(final, table, held_out, -1, y_all.iloc[held_out], task, classes, inputs)
    keys = [m for m in pooled if m not in ("n", "confusion_matrix")]
    summary = {m: _mean_sd([per_fold[f].get(m) for f in per_fold]) for m in keys}
    metrics = {
        "task": task,
        "classes": classes,
        "positive": classes[-1] if task == "binary" else None,
        "pooled": pooled,
        "per_fold": per_fold,
        "fold_mean_sd": summary,
        "search": searches or None,
        "permutation_importance": permutation_note,
        "external_test": _metrics(external, task, classes) if external is not None else None,
    }
    manifest, manifest_note = resolve_manifest(config, sidecar, features_path)
    metrics["baselines"] = _baselines_status(config, run_dir, manifest, manifest_note)
    importance = _importance_table(impurity, permutation)
    resolved = {
        "features": features_path,
        "target": config.target,
        "task": task,
        "classes": classes,
        "model": config.model,
        "estimator": type(_estimator(config.model, task, config.seed, dict(config.params))).__name__,
        "settings": {k: v for k, v in asdict(config).items() if k not in ("numeric", "categorical", "covariates")},
        "search_space": {k: _describe_space(v) for k, v in search_space(config.model, task, config.search).items()} if config.search != "none" else None,
        "folds": {"source": fold_source, "n_folds": int(len(set(fold[fold >= 0]))), "rows_out_of_cv": int((fold < 0).sum())},
        "inner_split": type(_inner_splitter(task, 2, 0)).__name__ if config.search != "none" else None,
        "rows": int((fold >= 0).sum()),
        "patients": int(len(np.unique(groups_all[fold >= 0]))),
        "numeric_columns": numeric,
        "categorical_columns": categorical,
        "extraction": sidecar.get("config") if sidecar else None,
        "manifest": str(manifest) if manifest is not None else None,
        "versions": {p: _version(p) for p in ("osteolens", "scikit-learn", "numpy", "pandas")},
    }
    result = ClassicCVResult(oof, metrics, importance, resolved, Path(run_dir) if run_dir else None, test=external,
                             model=final, model_params=final_search["params"] if final_search else dict(config.params))
    if run_dir is not None:
        _write_run(result, config)
    return result


def _prediction_frame(fitted: Any, table: pd.DataFrame, rows: np.ndarray, fold: int, y: pd.Series, task: str, classes: list[str], inputs: list[str]) -> pd.DataFrame:
    """``image, patient_id, fold, y_true``, then ``prob_<class>`` (+ ``prob``) and ``y_pred``, then covariates."""
    X = table.loc[rows, inputs]
    part = pd.DataFrame({"image": table.loc[rows, "image"].to_numpy(), "patient_id": table.loc[rows, "patient_id"].astype(str).to_numpy(), "fold": fold, "y_true": y.to_numpy()})
    if task == "regression":
        part["y_pred"] = fitted.predict(X)
    else:
        # A class absent from the training rows gets probability 0.
        raw = fitted.predict_proba(X)
        prob = np.zeros((len(rows), len(classes)))
        for j, name in enumerate(fitted.classes_):
            prob[:, classes.index(str(name))] = raw[:, j]
        for j, name in enumerate(classes):
            part[f"prob_{name}"] = prob[:, j]
        if task == "binary":
            part["prob"] = prob[:, 1]
        part["y_pred"] = np.asarray(classes)[np.argmax(prob, axis=1)]
    for column in COVARIATE_COLUMNS:
        if column in table.columns:
            part[column] = table.loc[rows, column].to_numpy()
    return part


def _metrics(frame: pd.DataFrame, task: str, classes: list[str]) -> dict[str, Any]:
    if task == "regression":
        return regression_metrics(frame["y_true"], frame["y_pred"])
    return classification_metrics(frame["y_true"], frame[[f"prob_{c}" for c in classes]].to_numpy(), classes)


def _describe_space(value: Any) -> Any:
    """A grid list as is; a scipy distribution as ``name(args)``, e.g. ``loguniform(0.01, 1000.0)``."""
    if isinstance(value, list):
        return value
    dist = getattr(value, "dist", None)
    return f"{getattr(dist, 'name', type(value).__name__)}{tuple(getattr(value, 'args', ()))}"


def _mean_sd(values: list[Any]) -> dict[str, float | None]:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return {"mean": None, "sd": None}
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if arr.size > 1 else None}


def _importance_table(impurity: list[dict[str, float]], permutation: list[dict[str, float]]) -> pd.DataFrame:
    frames = []
    for name, rows in (("impurity", impurity), ("permutation", permutation)):
        if rows:
            data = pd.DataFrame(rows)
            frames.append(pd.DataFrame({f"{name}_mean": data.mean(), f"{name}_sd": data.std(ddof=1) if len(rows) > 1 else np.nan}))
    if not frames:
        return pd.DataFrame(columns=["feature"])
    table = pd.concat(frames, axis=1)
    key = "permutation_mean" if "permutation_mean" in table.columns else "impurity_mean"
    table = table.sort_values(key, ascending=False, na_position="last")
    table.index.name = "feature"
    return table.reset_index()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def plot_importance(importance: pd.DataFrame, out: Path, top_n: int = 30) -> Path | None:
    """Bar plots of the ``top_n`` features: permutation importance on the held-out folds and,
    for forests, mean decrease in impurity, side by side, each with its SD over folds."""
    if importance.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (key, label)
        for key, label in (
            ("permutation", "drop in score when permuted\n(held-out folds)"),
            ("impurity", "mean decrease in impurity\n(training folds)"),
        )
        if f"{key}_mean" in importance.columns
    ]
    height = 0.28 * min(top_n, len(importance)) + 1.4
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), height), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        top = importance.dropna(subset=[f"{key}_mean"]).sort_values(f"{key}_mean", ascending=False).head(top_n).iloc[::-1]
        ax.barh(top["feature"], top[f"{key}_mean"], xerr=top[f"{key}_sd"].fillna(0).to_numpy(), color="#3b6ea8", ecolor="#999999")
        ax.set_xlabel(label)
        ax.set_title(f"top {len(top)} by {key}")
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    plt.close(fig)
    return write_atomic(out, buffer.getvalue())


def _write_run(result: ClassicCVResult, config: ClassicCVConfig) -> None:
    import yaml

    run_dir = result.run_dir
    assert run_dir is not None
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / "config.resolved.yaml", yaml.safe_dump(_plain(result.resolved), sort_keys=False))
    write_atomic(run_dir / "oof_predictions.csv", result.oof.to_csv(index=False))
    if result.test is not None:
        write_atomic(run_dir / "test_predictions.csv", result.test.to_csv(index=False))
    write_atomic(run_dir / "metrics.json", json.dumps(_plain(result.metrics), indent=2))
    write_atomic(run_dir / "importance.csv", result.importance.to_csv(index=False))
    resolved = result.resolved
    save_classic_model(result.model, run_dir, _plain({
        "task": resolved["task"], "classes": resolved["classes"], "target": resolved["target"],
        "model": resolved["model"], "estimator": resolved["estimator"], "params": result.model_params,
        "numeric_columns": resolved["numeric_columns"], "categorical_columns": resolved["categorical_columns"],
        "extraction": resolved["extraction"], "features": resolved["features"], "trained_on": {
            "rows": resolved["rows"], "patients": resolved["patients"]}, "versions": resolved["versions"],
    }))
    plot_importance(result.importance, run_dir / "importance.png", config.top_n)
    if result.metrics["task"] != "regression":
        confusion = run_dir / "confusion"
        confusion.mkdir(exist_ok=True)
        blocks = {f"fold_{k}": m["confusion_matrix"] for k, m in result.metrics["per_fold"].items()}
        blocks["pooled"] = result.metrics["pooled"]["confusion_matrix"]
        for name, block in blocks.items():
            labels = block["labels"]
            frame = pd.DataFrame(block["matrix"], index=pd.Index(labels, name="true"), columns=[f"pred_{c}" for c in labels])
            write_atomic(confusion / f"{name}.csv", frame.to_csv())
    if config.report:
        from osteolens.evaluation import evaluate

        baselines = result.metrics["baselines"]
        result.evaluation = evaluate(
            run_dir / "oof_predictions.csv", run_dir / "report", task=result.metrics["task"],
            positive=result.metrics["positive"], class_order=result.metrics["classes"] or None,
            n_bootstrap=config.n_bootstrap, seed=config.seed, title=f"osteolens classic {config.model} on {config.target}",
            manifest=baselines["manifest"],
        )
        audit = getattr(result.evaluation, "audit", None)
        if baselines["run"] and audit:
            # The headline of the report's audit, beside the run's own metrics.
            baselines.update({k: audit.get(k) for k in ("metric", "models", "comparisons", "warnings")})
            write_atomic(run_dir / "metrics.json", json.dumps(_plain(result.metrics), indent=2))


def resolve_manifest(config: ClassicCVConfig, sidecar: dict[str, Any] | None, features_path: str | None) -> tuple[Path | None, str]:
    """The manifest the features came from, and where it was found (or why there is none).

    ``config.manifest`` when given (it must exist); else the ``manifest`` the feature table's
    sidecar records, as written or relative to the table's folder.
    """
    if config.manifest is not None:
        path = Path(config.manifest)
        if not path.is_file():
            raise ConfigError("manifest", f"{path}: manifest not found.", "give the manifest the features were extracted from.")
        return path, "given (--manifest)"
    source = (sidecar or {}).get("manifest")
    if not source:
        return None, "the feature table's sidecar names no manifest; pass --manifest to run the baselines"
    candidates = [Path(source)]
    if features_path is not None and not Path(source).is_absolute():
        candidates.append(Path(features_path).parent / source)
    for path in candidates:
        if path.is_file():
            return path, "named in the feature table's sidecar"
    return None, f"the manifest named in the feature table's sidecar ({source}) does not exist here; pass --manifest to run the baselines"


def _baselines_status(config: ClassicCVConfig, run_dir: str | Path | None, manifest: Path | None, note: str) -> dict[str, Any]:
    """``metrics.json`` ``baselines``: whether the report runs the covariates-only and
    acquisition-only baselines in the run's folds, with which manifest, or why not."""
    if run_dir is None or not config.report:
        return {"run": False, "manifest": None, "reason": "no report is written (no run directory, or --no-report)"}
    if manifest is None:
        return {"run": False, "manifest": None, "reason": note}
    return {"run": True, "manifest": str(manifest), "source": note, "details": "report/metrics.json (audit)"}


def _plain(obj: Any) -> Any:
    """Make numpy scalars, tuples and NaN JSON/YAML-safe."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
