"""Patient-grouped cross-validation of the classical pipelines, with nested hyperparameter search.

The outer folds group images by patient / specimen (the table's ``fold`` column, or
``osteolens.data.splits.assign_folds``: ``StratifiedGroupKFold`` by class or by quantile
bins of a numeric target). Any hyperparameter search runs inside each outer training set
only, with an inner grouped split, so the held-out fold never tunes the model that scores
it (the biplanar seed tuned and scored on the same, ungrouped folds).

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
| ``report/`` | the full report of :func:`osteolens.evaluation.evaluate` on the out-of-fold predictions |
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osteolens.errors import ConfigError, ManifestError
from osteolens.models.classic import CLASSIC_MODELS, _estimator, build_classic_model, impurity_importances, search_space
from osteolens.models.classic_store import save_classic_model

DEFAULT_CATEGORICAL = ("vertebra", "sex", "view")
COVARIATE_COLUMNS = ("sex", "age", "view", "vertebra", "site", "study")
_NEGATIVE_NAMES = {"normal", "negative", "healthy", "control", "no", "false", "absent", "0"}
_DENSITY_ORDER = ("normal", "osteopenia", "osteoporosis")


@dataclass
class ClassicCVConfig:
    """Settings of one classical CV run.

    Attributes:
        target: column to predict (class names, 0/1, or a number such as ``bmd``).
        model: ``rf``, ``svm``, ``logreg`` or ``hgb``.
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
            normal/negative, else the second in sorted order).
        permutation_repeats: repeats of the held-out permutation importance (0 = skip).
        top_n: bars in ``importance.png``.
        jobs: parallel jobs of the search.
        report: call ``osteolens.evaluation.evaluate`` on the out-of-fold predictions.
        n_bootstrap: bootstrap resamples of that report.
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
    top_n: int = 30
    jobs: int = 1
    report: bool = True
    n_bootstrap: int = 2000

    def __post_init__(self) -> None:
        if self.model not in CLASSIC_MODELS:
            raise ConfigError("model", f"unknown model '{self.model}'.", f"use one of {', '.join(CLASSIC_MODELS)}.")
        if self.search not in ("none", "grid", "random"):
            raise ConfigError("search", f"unknown search '{self.search}'.", "use none, grid or random.")
        if self.task not in (None, "binary", "multiclass", "regression"):
            raise ConfigError("task", f"unknown task '{self.task}'.", "use binary, multiclass, regression or leave it out.")
        if self.folds < 2 or self.inner_folds < 2:
            raise ConfigError("folds", f"folds={self.folds}, inner_folds={self.inner_folds}.", "use at least 2 of each.")


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
    if task == "multiclass" and set(classes) <= set(_DENSITY_ORDER):
        return [c for c in _DENSITY_ORDER if c in classes]
    return classes


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
    """AUC (from probabilities), accuracy, balanced accuracy, sensitivity, specificity, F1, confusion matrix.

    Binary: sensitivity, specificity and F1 of the positive class (the last), predicted
    class = the most probable (probability 0.5). Multiclass: AUC one-vs-rest macro, and the
    macro means of per-class sensitivity, specificity and F1. A metric undefined on these
    rows (AUC with one class present) is None.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

    y = np.asarray([str(v) for v in y_true])
    y_pred = np.asarray(classes)[np.argmax(prob, axis=1)]
    cm = confusion_matrix(y, y_pred, labels=classes)
    tp = np.diag(cm).astype(float)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = cm.sum() - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        spec = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
    present = set(y)
    if len(classes) == 2:
        auc = float(roc_auc_score(y == classes[1], prob[:, 1])) if len(present) == 2 else None
        out = {
            "sensitivity": _num(sens[1]),
            "specificity": _num(spec[1]),
            "f1": float(f1_score(y, y_pred, pos_label=classes[1], labels=classes, average="binary", zero_division=0)),
        }
    else:
        auc = None
        if present == set(classes):
            auc = float(roc_auc_score(y, prob, labels=classes, multi_class="ovr", average="macro"))
        out = {
            "sensitivity": _num(np.nanmean(sens)),
            "specificity": _num(np.nanmean(spec)),
            "f1": float(f1_score(y, y_pred, labels=classes, average="macro", zero_division=0)),
        }
    return {
        "n": int(len(y)),
        "auc": auc,
        "accuracy": float(accuracy_score(y, y_pred)),
        # Mean recall over the classes present (scikit-learn's definition, without its warning
        # when a fold's predictions include a class absent from its truth).
        "balanced_accuracy": _num(np.nanmean(sens)) if present else None,
        **out,
        "confusion_matrix": {"labels": classes, "matrix": cm.tolist()},
    }


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, Any]:
    """MAE, RMSE, R^2 (1 - SS_res / SS_tot) and Pearson's r."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    return {
        "n": int(len(y)),
        "mae": float(mean_absolute_error(y, p)),
        "rmse": float(np.sqrt(mean_squared_error(y, p))),
        "r2": float(r2_score(y, p)) if len(y) > 1 else None,
        "pearson_r": float(np.corrcoef(y, p)[0, 1]) if len(y) > 2 and np.std(p) > 0 and np.std(y) > 0 else None,
    }


def _num(value: float) -> float | None:
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
    task = config.task or infer_task(table[config.target])
    numeric, categorical = resolve_columns(table, config, sidecar)
    fold, fold_source = resolve_folds(table, config)
    classify = task != "regression"
    y_all = table[config.target].astype(str) if classify else table[config.target].astype(float)
    classes = class_order(y_all, task, config.positive) if classify else []
    if classify and task == "binary" and len(classes) != 2:
        raise ConfigError("task", f"binary task but the target has {len(classes)} classes {classes}.", "use --task multiclass.")
    inputs = numeric + categorical
    groups_all = table["patient_id"].astype(str).to_numpy()

    oof_parts, per_fold, searches, impurity, permutation = [], {}, {}, [], []
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
        if config.permutation_repeats > 0:
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
        "external_test": _metrics(external, task, classes) if external is not None else None,
    }
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
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _write_run(result: ClassicCVResult, config: ClassicCVConfig) -> None:
    import yaml

    run_dir = result.run_dir
    assert run_dir is not None
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.resolved.yaml").write_text(yaml.safe_dump(_plain(result.resolved), sort_keys=False))
    result.oof.to_csv(run_dir / "oof_predictions.csv", index=False)
    if result.test is not None:
        result.test.to_csv(run_dir / "test_predictions.csv", index=False)
    (run_dir / "metrics.json").write_text(json.dumps(_plain(result.metrics), indent=2))
    result.importance.to_csv(run_dir / "importance.csv", index=False)
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
            frame.to_csv(confusion / f"{name}.csv")
    if config.report:
        from osteolens.evaluation import evaluate

        result.evaluation = evaluate(
            run_dir / "oof_predictions.csv", run_dir / "report", task=result.metrics["task"],
            positive=result.metrics["positive"], class_order=result.metrics["classes"] or None,
            n_bootstrap=config.n_bootstrap, seed=config.seed, title=f"osteolens classic {config.model} on {config.target}",
        )


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
