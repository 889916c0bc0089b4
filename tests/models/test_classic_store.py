"""The skops store trusts only the scikit-learn classes osteolens' classical models are made of."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteolens.errors import ModelError
from osteolens.models.classic import CLASSIC_MODELS, build_classic_model
from osteolens.models.classic_store import load_classic_model, save_classic_model

TASKS = {"binary": np.array(["no", "yes"])[np.arange(40) % 2],
         "multiclass": np.array(["a", "b", "c"])[np.arange(40) % 3],
         "regression": np.linspace(0.5, 1.5, 40)}


def _table() -> pd.DataFrame:
    generator = np.random.default_rng(0)
    table = pd.DataFrame({"x": generator.normal(size=40), "z": generator.normal(size=40), "sex": list("MF") * 20})
    table.loc[3, "x"] = np.nan
    table.loc[5, "sex"] = None
    return table


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name == "hgb" else name
                                  for name in CLASSIC_MODELS])  # HGB starts OpenMP threads: seconds on a busy CPU
def test_every_model_osteolens_fits_loads_and_predicts_the_same(tmp_path, name, task):
    table = _table()
    params = {"n_estimators": 5} if name == "rf" else {"max_iter": 5} if name == "hgb" else {}
    pipeline = build_classic_model(name, task, ["x", "z"], ["sex"], seed=0, **params).fit(table, TASKS[task])
    save_classic_model(pipeline, tmp_path, {"task": task})
    loaded = load_classic_model(tmp_path).pipeline
    method = "predict" if task == "regression" else "predict_proba"
    np.testing.assert_array_equal(getattr(loaded, method)(table), getattr(pipeline, method)(table))


@pytest.mark.parametrize("function", ["sklearn.datasets.load_iris", "sklearn.datasets.fetch_openml",
                                      "sklearn.utils._testing.assert_run_python_script_without_output"])
def test_another_scikit_learn_callable_is_refused(tmp_path, function):
    import importlib

    from sklearn.preprocessing import FunctionTransformer

    module, _, attribute = function.rpartition(".")
    func = getattr(importlib.import_module(module), attribute)
    # Saved through osteolens' own writer, so model.json holds the matching sha256.
    save_classic_model(FunctionTransformer(func=func), tmp_path, {"task": "binary"})
    with pytest.raises(ModelError, match=rf"{tmp_path}/model.skops: refuses to build \['{func.__module__}.{attribute}'\]"):
        load_classic_model(tmp_path)
