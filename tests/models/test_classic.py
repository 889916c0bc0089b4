"""Classical pipelines and their patient-grouped, nested cross-validation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.base import clone
from typer.testing import CliRunner

from osteolens.errors import ConfigError, ModelError
from osteolens.models.classic import build_classic_model, impurity_importances
from osteolens.models.classic_cv import ClassicCVConfig, classification_metrics, regression_metrics, run_classic_cv


def synthetic_table(n_patients: int = 24, per_patient: int = 3, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Patients with a latent density; one informative feature, two noise features."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n_patients), per_patient)
    density = rng.normal(150, 30, n_patients)[pid]
    n = len(pid)
    table = pd.DataFrame({
        "image": [f"img{i}.png" for i in range(n)],
        "patient_id": [f"P{p:02d}" for p in pid],
        "label": np.where(density < 140, "osteoporosis", "normal"),
        "bmd": density,
        "sex": rng.choice(["M", "F"], n),
        "vertebra": rng.choice(["L1", "L2", "L3"], n),
        "texture": density + rng.normal(0, 8, n),
        "noise_a": rng.normal(size=n),
        "noise_b": rng.normal(size=n),
    })
    return table, {"feature_columns": ["texture", "noise_a", "noise_b"]}


def test_pipeline_follows_the_estimator_contract():
    model = build_classic_model("rf", "binary", ["a", "b"], ["sex"], n_estimators=40, min_samples_leaf=2)
    params = model.get_params()
    assert params["model__n_estimators"] == 40 and params["model__min_samples_leaf"] == 2
    copy = clone(model)
    assert copy.get_params()["model__n_estimators"] == 40 and not hasattr(copy.named_steps["model"], "estimators_")
    X = pd.DataFrame({"a": [0.0, 1, 2, 3, 4, 5, 6, 7], "b": [np.nan, 1, 0, 1, 0, 1, 0, 1], "sex": list("MFMFMFMF")})
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    fitted = model.fit(X, y)
    assert fitted.predict_proba(X).shape == (8, 2)
    unseen = X.assign(sex="O")  # a category never seen in training is ignored, not an error
    assert fitted.predict(unseen).shape == (8,)
    importances = impurity_importances(fitted)
    assert set(importances) == {"a", "b", "sex_F", "sex_M"} and sum(importances.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["rf", "svm", "logreg", "hgb"])
@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_every_model_fits_every_task(name, task):
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=30), "sex": rng.choice(["M", "F"], 30)})
    y = np.repeat(["normal", "osteopenia", "osteoporosis"], 10) if task == "multiclass" else rng.normal(size=30)
    small = {"rf": {"n_estimators": 20}, "hgb": {"max_iter": 20}}.get(name, {})
    with threadpool_limits(limits=1):  # OpenMP start-up dominates such tiny fits
        fitted = build_classic_model(name, task, ["a"], ["sex"], **small).fit(X, y)
    out = fitted.predict_proba(X) if task == "multiclass" else fitted.predict(X)
    assert out.shape[0] == 30


def test_bad_model_and_columns():
    with pytest.raises(ModelError, match="unknown classic model 'knn'"):
        build_classic_model("knn", "binary", ["a"])
    with pytest.raises(ModelError, match="both numeric and categorical"):
        build_classic_model("rf", "binary", ["a"], ["a"])


def test_classification_metrics_by_hand():
    # truth n n n p p p; P(p) = .1 .4 .6 .3 .7 .9 -> predictions n n p n p p: TP 2, FN 1, TN 2, FP 1
    # AUC: of 9 (p, n) pairs, p scores higher in 8 (0.3 < 0.4 and 0.3 < 0.6 lose, 0.3 > 0.1 wins ...) -> 7/9
    y = ["n", "n", "n", "p", "p", "p"]
    prob_p = np.array([0.1, 0.4, 0.6, 0.3, 0.7, 0.9])
    m = classification_metrics(y, np.column_stack([1 - prob_p, prob_p]), ["n", "p"])
    assert m["auc"] == pytest.approx(7 / 9)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["balanced_accuracy"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"]["matrix"] == [[2, 1], [1, 2]]


def test_regression_metrics_by_hand():
    m = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 6.0])
    assert m["mae"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(1.0)
    assert m["r2"] == pytest.approx(1 - 4 / 5)


def test_grouped_folds_and_nested_search_never_touch_the_test_fold(monkeypatch, tmp_path):
    from sklearn.model_selection import GridSearchCV

    table, sidecar = synthetic_table()
    seen: list[set[str]] = []
    original = GridSearchCV.fit

    def spying_fit(self, X, y=None, **kwargs):
        seen.append(set(table.loc[X.index, "image"]))
        assert len(kwargs["groups"]) == len(X)  # the inner split is grouped by patient
        return original(self, X, y, **kwargs)

    monkeypatch.setattr(GridSearchCV, "fit", spying_fit)
    config = ClassicCVConfig(target="label", model="logreg", search="grid", folds=3, inner_folds=2, permutation_repeats=0, report=False)
    result = run_classic_cv(table, config, run_dir=tmp_path / "run", sidecar=sidecar)
    oof = result.oof
    assert sorted(oof["image"]) == sorted(table["image"])  # every image predicted exactly once
    assert oof.groupby("patient_id")["fold"].nunique().max() == 1  # no patient in two folds
    for k, images in enumerate(seen[:3]):
        held = set(oof.loc[oof["fold"] == k, "image"])
        assert images and not images & held  # the search only saw training rows
    assert len(seen) == 4 and set(result.metrics["search"]) == {"0", "1", "2"}
    assert seen[3] == set(table["image"])  # the final, saved model is tuned on every CV row
    assert result.metrics["pooled"]["auc"] > 0.9  # 'texture' carries the density


def test_run_directory_layout(tmp_path):
    table, sidecar = synthetic_table()
    table.loc[table["patient_id"].isin(["P00", "P01"]), "fold"] = -1  # an external test set
    table["fold"] = table["fold"].fillna(pd.Series(np.arange(len(table)) // 3 % 4, index=table.index)).astype(int)
    config = ClassicCVConfig(target="label", model="rf", params={"n_estimators": 30}, permutation_repeats=2, top_n=5, report=False)
    run = tmp_path / "run"
    result = run_classic_cv(table, config, run_dir=run, sidecar=sidecar, features_path="features.parquet")
    assert {p.name for p in run.iterdir()} == {
        "config.resolved.yaml", "oof_predictions.csv", "test_predictions.csv", "metrics.json", "importance.csv", "importance.png", "confusion",
        "model.skops", "model.json",
    }
    oof = pd.read_csv(run / "oof_predictions.csv")
    assert list(oof.columns) == ["image", "patient_id", "fold", "y_true", "prob_normal", "prob_osteoporosis", "prob", "y_pred", "sex", "vertebra"]
    assert set(oof["fold"]) == {0, 1, 2, 3} and not oof["patient_id"].isin(["P00", "P01"]).any()
    test = pd.read_csv(run / "test_predictions.csv")
    assert set(test["patient_id"]) == {"P00", "P01"} and set(test["fold"]) == {-1}
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["per_fold"]) == {"0", "1", "2", "3"} and metrics["positive"] == "osteoporosis"
    assert metrics["external_test"]["n"] == 6
    pooled = pd.read_csv(run / "confusion" / "pooled.csv", index_col=0)
    assert pooled.to_numpy().sum() == len(oof)
    resolved = yaml.safe_load((run / "config.resolved.yaml").read_text())
    assert resolved["numeric_columns"] == ["texture", "noise_a", "noise_b"] and resolved["categorical_columns"] == ["vertebra", "sex"]
    assert resolved["folds"]["source"] == "the table's fold column" and resolved["estimator"] == "RandomForestClassifier"
    importance = pd.read_csv(run / "importance.csv")
    assert importance.loc[0, "feature"] == "texture"  # permutation importance on held-out folds ranks it first
    assert {"impurity_mean", "permutation_mean"} <= set(importance.columns)
    assert result.importance.loc[0, "feature"] == "texture"


def test_saved_model_reproduces_the_external_test_predictions(tmp_path):
    from osteolens.models.classic_store import load_classic_model

    table, sidecar = synthetic_table()
    table["fold"] = np.where(table["patient_id"].isin(["P00", "P01", "P02"]), -1, np.arange(len(table)) // 3 % 3)
    config = ClassicCVConfig(target="label", model="rf", params={"n_estimators": 25}, permutation_repeats=0, report=False)
    run_classic_cv(table, config, run_dir=tmp_path / "run", sidecar=sidecar)
    model = load_classic_model(tmp_path / "run")
    assert model.info["classes"] == ["normal", "osteoporosis"] and model.info["numeric_columns"] == ["texture", "noise_a", "noise_b"]
    assert model.info["trained_on"] == {"rows": 63, "patients": 21}
    test = pd.read_csv(tmp_path / "run" / "test_predictions.csv")
    new = model.predict(table[table["fold"] == -1].drop(columns=["label", "fold"]))
    np.testing.assert_allclose(new["prob"], test["prob"], atol=1e-12)
    assert new["y_pred"].tolist() == test["y_pred"].tolist() and new["image"].tolist() == test["image"].tolist()
    with pytest.raises(ModelError, match=r"lacks 1 input column\(s\) of the model, e.g. \['texture'\]"):
        model.predict(table.drop(columns=["texture"]))


def test_saved_model_is_refused_when_altered_or_foreign(tmp_path):
    import hashlib

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    from osteolens.models.classic_store import load_classic_model, save_classic_model

    with pytest.raises(ModelError, match="no model.skops with model.json"):
        load_classic_model(tmp_path)
    X = pd.DataFrame({"a": np.arange(10.0)})
    save_classic_model(build_classic_model("logreg", "binary", ["a"]).fit(X, [0] * 5 + [1] * 5), tmp_path / "m", {"task": "binary"})
    data = bytearray((tmp_path / "m" / "model.skops").read_bytes())
    data[-30] ^= 0xFF
    (tmp_path / "m" / "model.skops").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="differs from the sha256"):
        load_classic_model(tmp_path / "m")
    # A file that would build a function (here numpy.load) is refused even with a matching hash.
    evil = sio.dumps(FunctionTransformer(func=np.load))
    (tmp_path / "m" / "model.skops").write_bytes(evil)
    info = json.loads((tmp_path / "m" / "model.json").read_text())
    info["sha256"] = hashlib.sha256(evil).hexdigest()
    (tmp_path / "m" / "model.json").write_text(json.dumps(info))
    with pytest.raises(ModelError, match=r"refuses to build \['numpy.load'\]"):
        load_classic_model(tmp_path / "m" / "model.skops")


def test_regression_cv_with_random_search(tmp_path):
    table, sidecar = synthetic_table()
    config = ClassicCVConfig(target="bmd", model="hgb", search="random", n_iter=2, folds=3, inner_folds=2, permutation_repeats=0, report=False, params={"max_iter": 30})
    result = run_classic_cv(table, config, sidecar=sidecar)
    assert result.metrics["task"] == "regression"
    assert list(result.oof.columns[:5]) == ["image", "patient_id", "fold", "y_true", "y_pred"]
    assert result.metrics["pooled"]["r2"] > 0.7
    assert result.oof.groupby("patient_id")["fold"].nunique().max() == 1


def test_missing_sidecar_needs_explicit_columns():
    table, _ = synthetic_table()
    with pytest.raises(ConfigError, match="sidecar"):
        run_classic_cv(table, ClassicCVConfig(target="label", report=False))
    result = run_classic_cv(table, ClassicCVConfig(target="label", numeric=["tex*"], categorical=[], model="logreg", permutation_repeats=0, report=False))
    assert result.resolved["numeric_columns"] == ["texture"]


def test_cli_classic_cv_with_report(tmp_path):
    from osteolens.cli.main import app

    table, sidecar = synthetic_table()
    table.to_parquet(tmp_path / "features.parquet")
    (tmp_path / "features.json").write_text(json.dumps(sidecar))
    run = tmp_path / "run"
    args = ["classic", "cv", "--features", str(tmp_path / "features.parquet"), "--target", "label", "--model", "logreg",
            "--folds", "3", "--out", str(run), "--permutation-repeats", "1", "--n-bootstrap", "50"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (run / "oof_predictions.csv").is_file() and (run / "report" / "metrics.json").is_file()
    # The saved final model applied to new rows (here: a CSV of the same features, without labels).
    table.drop(columns=["label", "bmd"]).head(5).to_csv(tmp_path / "new.csv", index=False)
    predicted = CliRunner().invoke(app, ["classic", "predict", str(run), "--features", str(tmp_path / "new.csv"),
                                         "--out", str(tmp_path / "predictions.csv")])
    assert predicted.exit_code == 0, predicted.output
    from osteolens.models.classic_store import load_classic_model

    expected = load_classic_model(run).predict(table.head(5))
    got = pd.read_csv(tmp_path / "predictions.csv")
    assert got["image"].tolist() == table["image"].head(5).tolist()
    np.testing.assert_allclose(got["prob_osteoporosis"], expected["prob_osteoporosis"], atol=1e-9)


@pytest.mark.slow
def test_phantom_cohort_random_forest_separates_who_classes_and_predicts_bmd(tmp_path):
    """End to end on the phantom: features of the seed's ROI, then grouped 5-fold CV.

    Measured (cohort seed 0, 20 specimens, 160 images at 128 px): 3-class macro AUC 0.82,
    BMD R^2 0.63 (seed 1: 0.80 / 0.56). The thresholds leave room for library drift but
    fail if the texture signal or the grouping breaks.
    """
    from osteolens.features import ExtractionConfig, extract_features
    from osteolens.phantom import generate_cohort

    manifest = generate_cohort(tmp_path / "cohort", specimens=20, seed=0, size=128, formats=["png"])
    families = [{"name": "radiomics", "params": {"classes": ["firstorder", "glcm"]}}, "fourier", "variogram", "variogram_fixed", "lbp"]
    features = extract_features(manifest, ExtractionConfig(families=families, roi="rectangle"))
    assert not features.failures and len(features.table) == 160
    sidecar = {"feature_columns": features.feature_columns}

    config = ClassicCVConfig(target="label", params={"n_estimators": 100}, permutation_repeats=0, report=False)
    classes = run_classic_cv(features.table, config, sidecar=sidecar)
    assert classes.metrics["task"] == "multiclass" and classes.metrics["classes"] == ["normal", "osteopenia", "osteoporosis"]
    assert classes.metrics["pooled"]["auc"] > 0.7
    assert classes.oof.groupby("patient_id")["fold"].nunique().max() == 1  # a specimen's 8 images share one fold

    config = ClassicCVConfig(target="bmd", params={"n_estimators": 100}, permutation_repeats=0, report=False)
    bmd = run_classic_cv(features.table, config, sidecar=sidecar)
    assert bmd.metrics["task"] == "regression"
    assert bmd.metrics["pooled"]["r2"] > 0.5
    assert bmd.oof.groupby("patient_id")["fold"].nunique().max() == 1
