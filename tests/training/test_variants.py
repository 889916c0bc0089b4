"""Regression with covariates (bundle round trip through the Predictor), two views, ordinal,
augmentation at evaluation, and the exactness of folding fold scalings into the weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from osteolens.models import create_model, tabular
from osteolens.training import TrainConfig, run_training
from osteolens.training.augment import build_augmentation
from osteolens.training.dataset import ImageStore, RadiographDataset, effective_pipeline
from osteolens.training.loop import make_fabric, predict_outputs
from osteolens.training.rescale import rescale_covariates, rescale_target

SMALL_CNN = {"name": "simple_cnn", "params": {"conv_layers": 2, "filters": 4, "dense_units": 8}}


def _with_external_test(cohort: Path, out: Path) -> Path:
    frame = pd.read_csv(cohort)
    patient = frame["patient_id"].str[1:].astype(int)
    frame["fold"] = np.where(patient >= 26, -1, patient % 2)
    frame["image"] = [str(cohort.parent / p) for p in frame["image"]]
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "manifest.csv", index=False)
    return out / "manifest.csv"


def test_regression_with_covariates_bundle_predicts_like_training(cohort, tmp_path):
    from osteolens.inference.predictor import Predictor

    manifest = _with_external_test(cohort, tmp_path / "data")
    config = TrainConfig.from_dict({
        "manifest": str(manifest), "target": "bmd", "task": "regression",
        "model": {**SMALL_CNN, "tabular": ["sex", "age"], "head_hidden": [8]}, "input_size": [32, 32],
        "augmentation": "none", "epochs": 2, "batch_size": 8, "out": str(tmp_path / "runs"), "report": False,
    })
    result = run_training(config, quiet=True)
    test = pd.read_csv(result.run_dir / "test_predictions.csv")
    assert len(test) == 12 and set(test["fold"]) == {-1}
    assert {"mae", "rmse", "r2"} <= set(result.metrics["external_test"])
    predictor = Predictor(result.bundle, backend="torch")
    for row in test.head(4).itertuples():
        value = predictor.predict(row.image, covariates={"sex": row.sex, "age": row.age}).value
        assert value == pytest.approx(row.y_pred, abs=1e-4)


def test_two_views_pair_rows_by_study(cohort, tmp_path):
    config = TrainConfig.from_dict({
        "manifest": str(cohort), "target": "label", "task": "binary",
        "model": {**SMALL_CNN, "views": 2, "shared_backbone": False}, "view_order": ["AP", "LAT"],
        "input_size": [32, 32], "augmentation": "none", "folds": 2, "epochs": 1, "batch_size": 8,
        "out": str(tmp_path / "runs"), "report": False,
    })
    result = run_training(config, quiet=True)
    oof = pd.read_csv(result.run_dir / "oof_predictions.csv")
    assert len(oof) == 32 and oof["study"].is_unique  # one sample per study (AP + LAT)
    assert oof["image"].str.endswith("_0.png").all()  # keyed by the first view (AP)
    # The bundle names its views and the Predictor takes a study as {view: file}.
    from osteolens.inference import Predictor, load_bundle

    assert load_bundle(result.bundle).views == ["AP", "LAT"]
    manifest = pd.read_csv(cohort)
    study = manifest[manifest["study"] == manifest["study"].iloc[0]].set_index("view")["image"]
    prediction = Predictor(result.bundle, backend="onnx").predict(
        {view: cohort.parent / study[view] for view in ("AP", "LAT")}, cam=True)
    assert 0.0 <= prediction.probability <= 1.0 and set(prediction.views) == {"AP", "LAT"}


def test_ordinal_run_writes_class_probabilities(cohort, tmp_path):
    frame = pd.read_csv(cohort)
    frame["who"] = pd.cut(frame["bmd"], [0, 0.55, 0.8, 2], labels=["osteoporosis", "osteopenia", "normal"]).astype(str)
    frame["image"] = [str(cohort.parent / p) for p in frame["image"]]
    frame.to_csv(tmp_path / "m.csv", index=False)
    config = TrainConfig.from_dict({
        "manifest": str(tmp_path / "m.csv"), "target": "who", "task": "ordinal", "model": SMALL_CNN,
        "input_size": [32, 32], "augmentation": "none", "folds": 2, "epochs": 1, "batch_size": 8,
        "out": str(tmp_path / "runs"), "report": True, "n_bootstrap": 20, "class_balance": "sampler",
    })
    result = run_training(config, quiet=True)
    oof = pd.read_csv(result.run_dir / "oof_predictions.csv")
    cols = ["prob_normal", "prob_osteopenia", "prob_osteoporosis"]
    np.testing.assert_allclose(oof[cols].sum(axis=1), 1.0, atol=1e-5)
    assert "kappa_quadratic" in result.metrics["pooled"]
    # The bundle ships the temperature fitted on the out-of-fold probabilities, and serves it.
    from osteolens.evaluation.calibration import fit_calibrator
    from osteolens.inference import Predictor, load_bundle

    calibration = load_bundle(result.bundle).calibration
    labels = load_bundle(result.bundle).labels
    y = oof["y_true"].map({name: k for k, name in enumerate(labels)}).to_numpy()
    expected = fit_calibrator(oof[[f"prob_{name}" for name in labels]].to_numpy(), y, "temperature")
    assert calibration["method"] == "temperature"
    assert calibration["params"]["temperature"] == pytest.approx(expected.params["temperature"], rel=1e-6)
    prediction = Predictor(result.bundle, backend="torch").predict(frame["image"].iloc[0])
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-6)


def test_augmentation_is_off_at_evaluation(cohort, tmp_path):
    frame = pd.read_csv(cohort).head(8)
    frame["images"] = [[str(cohort.parent / p)] for p in frame["image"]]
    store = ImageStore(effective_pipeline([], [32, 32]), tmp_path / "cache")
    x, y = np.zeros((8, 0), np.float32), np.zeros(8, np.int64)
    plain = RadiographDataset(frame, store, x, y)
    augmented = RadiographDataset(frame, store, x, y, build_augmentation("default"))
    assert torch.equal(plain[0][0], plain[0][0])
    assert not torch.equal(augmented[0][0], augmented[0][0])
    net = create_model("simple_cnn", "binary", 1, conv_layers=2, filters=4, dense_units=8, head_hidden=[8], dropout=0.5)
    fabric = make_fabric("cpu")
    first = predict_outputs(net.train(), plain, fabric, 4)
    second = predict_outputs(net, plain, fabric, 4)
    np.testing.assert_array_equal(first, second)
    assert net.training  # restored after prediction
    with torch.no_grad():
        batch = torch.stack([plain[i][0] for i in range(4)])
        assert not torch.equal(net(batch), net(batch))  # dropout is live in train mode: eval mode matters


@pytest.mark.parametrize("fusion", ["offset", "concat"])
@pytest.mark.parametrize("task,outputs,hidden", [("regression", 1, [6]), ("ordinal", 2, []), ("multiclass", 3, [])])
def test_fold_scalings_fold_exactly_into_the_weights(task, outputs, hidden, fusion):
    torch.manual_seed(0)
    net = create_model("simple_cnn", task, outputs, tabular=["sex", "age", "bmi"], conv_layers=1, filters=2,
                       dense_units=4, head_hidden=hidden, fusion=fusion).eval()
    if fusion == "offset":  # a non-zero covariate path (a fresh one is random too; make it explicit)
        torch.nn.init.normal_(net.covariate_path.weight)
    frame = pd.DataFrame({"sex": ["F", "M", "F"], "age": [50.0, 71.0, 64.0], "bmi": [22.0, 31.0, 27.5]})
    fold = {"age": {"mean": 60.0, "std": 8.0}, "bmi": {"mean": 25.0, "std": 3.0}}
    common = {"age": {"mean": 63.0, "std": 11.0}, "bmi": {"mean": 26.5, "std": 4.0}}
    images = torch.rand(3, 1, 16, 16)
    before = net(images, torch.from_numpy(tabular.encode(frame, ["sex", "age", "bmi"], fold)))
    rescale_covariates(net, ["sex", "age", "bmi"], fold, common)
    after = net(images, torch.from_numpy(tabular.encode(frame, ["sex", "age", "bmi"], common)))
    torch.testing.assert_close(before, after, atol=1e-5, rtol=1e-5)
    if task == "regression":
        x = torch.from_numpy(tabular.encode(frame, ["sex", "age", "bmi"], common))
        z_fold = net(images, x)[:, 0]
        rescale_target(net, {"mean": 100.0, "std": 10.0}, {"mean": 90.0, "std": 20.0})
        z_common = net(images, x)[:, 0]
        torch.testing.assert_close(100.0 + 10.0 * z_fold, 90.0 + 20.0 * z_common, atol=1e-4, rtol=1e-5)
