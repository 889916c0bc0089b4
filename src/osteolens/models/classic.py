"""Classical models for radiomics tables: scikit-learn pipelines that keep the estimator contract.

``build_classic_model(name, task, numeric, categorical)`` returns an unfitted
``Pipeline([("features", ColumnTransformer), ("model", estimator)])``:

* numeric columns: median imputation (a failed feature must not drop the image), then
  standardisation (zero mean, unit variance on the training fold only);
* categorical columns (vertebra level, sex, view): most-frequent imputation, then one-hot
  encoding that ignores levels unseen in training;
* the estimator: ``rf`` random forest, ``svm`` RBF support-vector machine (for
  classification wrapped in ``CalibratedClassifierCV(method="sigmoid", ensemble=False)``,
  i.e. Platt probabilities, as ``SVC(probability=True)`` gave before scikit-learn 1.9), ``logreg`` (multinomial) logistic regression / ridge
  regression, ``linear`` the same two linear models made for wide embedding tables (many more
  columns than images: the penalty is searched over a wide log grid), or ``hgb`` histogram
  gradient boosting.

Being a plain ``Pipeline``, it fits, predicts, clones and grid-searches like any
scikit-learn estimator (hyperparameters are addressed as ``model__<name>``, or
``model__estimator__<name>`` for the calibrated SVM classifier).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from osteolens.errors import ModelError

CLASSIC_MODELS = ("rf", "svm", "logreg", "linear", "hgb")
CLASSIC_TASKS = ("binary", "multiclass", "regression")


def _estimator(name: str, task: str, seed: int, params: dict[str, Any]) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.svm import SVC, SVR

    classify = task != "regression"
    if name == "rf":
        cls = RandomForestClassifier if classify else RandomForestRegressor
        return cls(**{"n_estimators": 300, "random_state": seed, "n_jobs": 1, **params})
    if name == "svm":
        if classify:
            # Platt probabilities fitted on internal cross-validated decision values, then one
            # SVC refitted on all rows: what SVC(probability=True) did before scikit-learn 1.9
            # deprecated it. Hyperparameters are addressed as model__estimator__C.
            svc = SVC(**{"kernel": "rbf", "random_state": seed, **params})
            return CalibratedClassifierCV(svc, method="sigmoid", ensemble=False)
        return SVR(**{"kernel": "rbf", **params})
    if name == "logreg":
        if classify:
            return LogisticRegression(**{"max_iter": 5000, "random_state": seed, **params})
        return Ridge(**params)
    if name == "linear":
        # lbfgs fits the multinomial (softmax) model for several classes; wide, strongly
        # penalised problems converge slowly, hence the generous iteration budget.
        if classify:
            return LogisticRegression(**{"solver": "lbfgs", "max_iter": 10000, "random_state": seed, **params})
        return Ridge(**params)
    if name == "hgb":
        cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        return cls(**{"random_state": seed, **params})
    raise ModelError(f"unknown classic model '{name}'. Fix: choose one of {', '.join(CLASSIC_MODELS)}.")


def build_classic_model(
    name: str,
    task: str,
    numeric: Sequence[str],
    categorical: Sequence[str] = (),
    *,
    seed: int = 0,
    **params: Any,
) -> Any:
    """An unfitted scikit-learn pipeline: column preprocessing, then the named estimator.

    Args:
        name: ``rf``, ``svm``, ``logreg``, ``linear`` or ``hgb``.
        task: ``binary``, ``multiclass`` or ``regression`` (``logreg`` and ``linear`` become
            ridge regression for the latter).
        numeric: numeric feature columns (scaled).
        categorical: categorical columns (one-hot encoded).
        seed: ``random_state`` of the estimator.
        **params: estimator hyperparameters (``n_estimators=40``, ``C=10`` ...).

    Example:
        >>> import pandas as pd
        >>> X = pd.DataFrame({"a": [0.0, 1, 2, 3, 4, 5], "sex": list("MFMFMF")})
        >>> model = build_classic_model("logreg", "binary", ["a"], ["sex"]).fit(X, [0, 0, 0, 1, 1, 1])
        >>> model.predict(X).tolist()
        [0, 0, 0, 1, 1, 1]
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if task not in CLASSIC_TASKS:
        raise ModelError(f"unknown task '{task}'. Fix: use one of {', '.join(CLASSIC_TASKS)}.")
    if not numeric and not categorical:
        raise ModelError("no feature columns given. Fix: pass numeric and/or categorical column names.")
    overlap = set(numeric) & set(categorical)
    if overlap:
        raise ModelError(f"column(s) {sorted(overlap)} are listed as both numeric and categorical. Fix: list each once.")
    transformers = []
    if numeric:
        transformers.append(
            ("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), list(numeric))
        )
    if categorical:
        transformers.append(
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                list(categorical),
            )
        )
    columns = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)
    return Pipeline([("features", columns), ("model", _estimator(name, task, seed, dict(params)))])


def search_space(name: str, task: str, kind: str = "grid") -> dict[str, Any]:
    """Default hyperparameter space for ``GridSearchCV`` (lists) or ``RandomizedSearchCV`` (distributions).

    Keys are pipeline parameters (``model__...``). The random forest grid includes the
    seed's tuned setting (40 trees, ``min_samples_leaf=47``) among wider choices. ``linear``
    searches its one penalty on a log grid in half-decade steps, wide enough for embedding
    tables with thousands of standardised columns: the inverse penalty ``C`` of logistic
    regression from 1e-5 to 100, the ridge penalty ``alpha`` from 0.01 to 1e6 (the random
    search draws from the same ranges, log-uniformly).
    """
    from scipy.stats import loguniform, randint, uniform

    classify = task != "regression"
    svm = "model__estimator__" if classify else "model__"
    penalty, low, high = ("model__C", -5.0, 2.0) if classify else ("model__alpha", -2.0, 6.0)
    if kind == "grid":
        grids: dict[str, dict[str, Any]] = {
            "rf": {"model__n_estimators": [40, 300], "model__min_samples_leaf": [1, 5, 20, 47], "model__max_features": ["sqrt", 0.3]},
            "svm": {f"{svm}C": [0.1, 1.0, 10.0, 100.0], f"{svm}gamma": ["scale", 1e-3, 1e-2]},
            "logreg": {"model__C": [0.01, 0.1, 1.0, 10.0]} if classify else {"model__alpha": [0.1, 1.0, 10.0, 100.0]},
            "linear": {penalty: log_grid(low, high)},
            "hgb": {"model__learning_rate": [0.03, 0.1], "model__max_leaf_nodes": [7, 31], "model__min_samples_leaf": [5, 20]},
        }
        return grids[name]
    if kind == "random":
        spaces: dict[str, dict[str, Any]] = {
            "rf": {"model__n_estimators": randint(40, 500), "model__min_samples_leaf": randint(1, 50), "model__max_features": uniform(0.05, 0.6)},
            "svm": {f"{svm}C": loguniform(1e-2, 1e3), f"{svm}gamma": loguniform(1e-4, 1e-1)},
            "logreg": {"model__C": loguniform(1e-3, 1e2)} if classify else {"model__alpha": loguniform(1e-2, 1e3)},
            "linear": {penalty: loguniform(10.0**low, 10.0**high)},
            "hgb": {"model__learning_rate": loguniform(1e-2, 3e-1), "model__max_leaf_nodes": randint(4, 64), "model__min_samples_leaf": randint(3, 40)},
        }
        return spaces[name]
    raise ModelError(f"unknown search kind '{kind}'. Fix: use grid, random or none.")


def log_grid(low: float, high: float, step: float = 0.5) -> list[float]:
    """``10**low, 10**(low + step), ..., 10**high`` as plain floats (rounded to 12 significant digits).

    Example:
        >>> log_grid(-1, 1)
        [0.1, 0.316227766017, 1.0, 3.16227766017, 10.0]
    """
    import numpy as np

    exponents = np.arange(low, high + step / 2, step)
    return [float(f"{10.0**e:.12g}") for e in exponents]


def impurity_importances(fitted: Any) -> dict[str, float] | None:
    """Mean-decrease-in-impurity importances of a fitted pipeline's forest, by transformed column.

    Column names are the ColumnTransformer's output names without the ``num__`` / ``cat__``
    prefix (a one-hot level reads ``sex_F``). None for estimators without them (SVM,
    logistic regression, gradient boosting).
    """
    model = fitted.named_steps["model"]
    if not hasattr(model, "feature_importances_"):
        return None
    names = [n.split("__", 1)[1] if "__" in n else n for n in fitted.named_steps["features"].get_feature_names_out()]
    return {name: float(value) for name, value in zip(names, model.feature_importances_, strict=True)}
