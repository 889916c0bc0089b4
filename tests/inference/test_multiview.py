"""Multi-view bundles (AP + lateral): the Predictor, the ONNX graph, Grad-CAM per view and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.errors import ModelError
from osteolens.inference import Predictor, load_bundle
from osteolens.inference.report import RECORD_KEYS
from osteolens.io import write_png
from osteolens.transforms import Pipeline

from .conftest import PREPROCESSING


@pytest.fixture
def two_views(tmp_path):
    """An AP (90 x 70) and a lateral (60 x 100) PNG with different content."""
    rng = np.random.default_rng(5)
    paths = {}
    for name, shape in (("ap", (90, 70)), ("lat", (60, 100))):
        image = np.zeros(shape, np.float32)
        image[10:-10, 12:-12] = 0.3 + 0.6 * rng.random((shape[0] - 20, shape[1] - 24), dtype=np.float32)
        paths[name] = write_png(image, tmp_path / f"{name}.png", bits=16)
    return paths


@pytest.fixture
def two_view_bundle(tmp_path, create_model):
    def _make(shared: bool = True, name: str = "bundle2v"):
        from osteolens.inference import write_bundle

        torch.manual_seed(1)
        models = [create_model("simple_cnn", "binary", 1, views=2, shared_backbone=shared, conv_layers=2, filters=4,
                               dense_units=8).eval() for _ in range(2)]
        return write_bundle(tmp_path / name, models=models, preprocessing=PREPROCESSING, input_size=(48, 48),
                            task="binary", labels=["intact", "fracture"], views=["AP", "LAT"])

    return _make


@pytest.mark.parametrize("shared", [True, False])
def test_two_view_prediction_equals_a_hand_run_on_both_backends(two_view_bundle, two_views, shared):
    from osteolens.io import read_radiograph

    bundle = two_view_bundle(shared, name=f"b{shared}")
    assert load_bundle(bundle).views == ["AP", "LAT"]
    pipeline = Pipeline.from_config(PREPROCESSING)
    x = torch.from_numpy(np.stack([pipeline(read_radiograph(two_views[v]).pixels) for v in ("ap", "lat")]))[None, :, None]
    with torch.no_grad():
        logits = torch.stack([model(x) for model in load_bundle(bundle).models]).mean(0)
    expected = float(torch.sigmoid(logits)[0, 0])
    eager = Predictor(bundle, backend="torch").predict({"ap": two_views["ap"], "LAT": two_views["lat"]})
    onnx = Predictor(bundle, backend="onnx").predict([two_views["ap"], two_views["lat"]])
    assert eager.probability == pytest.approx(expected, abs=1e-6)
    assert onnx.probability == pytest.approx(expected, abs=1e-4)
    assert eager.to_dict()["views"] == ["AP", "LAT"]
    # The views are not interchangeable: swapping them changes the answer.
    swapped = Predictor(bundle, backend="torch").predict([two_views["lat"], two_views["ap"]])
    assert swapped.probability != pytest.approx(expected, abs=1e-6)


def test_each_view_gets_its_own_heat_map_on_its_own_grid(two_view_bundle, two_views):
    predictor = Predictor(two_view_bundle(), backend="torch")
    prediction = predictor.predict({"AP": two_views["ap"], "LAT": two_views["lat"]}, cam=True, saliency=True)
    assert list(prediction.views) == ["AP", "LAT"]
    assert prediction.views["AP"].heatmap.shape == (90, 70) and prediction.views["LAT"].heatmap.shape == (60, 100)
    assert prediction.views["LAT"].saliency.shape == (60, 100)
    assert prediction.heatmap is prediction.views["AP"].heatmap
    for view in prediction.views.values():
        assert 0.0 <= view.heatmap.min() and view.heatmap.max() <= 1.0


def test_missing_or_unknown_views_name_the_fix(two_view_bundle, two_views, make_bundle, radiograph_png):
    predictor = Predictor(two_view_bundle(), backend="torch")
    with pytest.raises(ModelError, match=r"lacks view\(s\) \['LAT'\].*Fix: pass AP=FILE, LAT=FILE"):
        predictor.predict({"AP": two_views["ap"]})
    with pytest.raises(ModelError, match=r"unknown view\(s\) \['PA'\]"):
        predictor.predict({"AP": two_views["ap"], "LAT": two_views["lat"], "PA": two_views["ap"]})
    with pytest.raises(ModelError, match="takes 2 views"):
        predictor.predict(two_views["ap"])
    with pytest.raises(ModelError, match="takes one image per prediction"):
        Predictor(make_bundle(), backend="torch").predict([radiograph_png, radiograph_png])


def test_predict_command_takes_a_study_with_view_options(two_view_bundle, two_views, tmp_path):
    bundle = two_view_bundle()
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", "--model", str(bundle), "--view", f"AP={two_views['ap']}",
                                      "--view", f"LAT={two_views['lat']}", "--out", str(out), "--cam",
                                      "--backend", "torch"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "ap.json").read_text())
    assert tuple(record) == RECORD_KEYS and record["result"] == "ok" and record["views"] == ["AP", "LAT"]
    paths = record["view_img_paths"]
    assert record["saliency_img_path"] == paths["AP"]["heatmap"] and record["overlay_img_path"] == paths["AP"]["overlay"]
    from PIL import Image

    assert Image.open(paths["LAT"]["overlay"]).size == (100, 60)
    assert Image.open(paths["AP"]["heatmap"]).size == (70, 90)
    missing = CliRunner().invoke(app, ["predict", "--model", str(bundle), str(two_views["ap"]), "--out", str(out)])
    assert missing.exit_code != 0 and "--view AP=FILE --view LAT=FILE" in str(missing.exception)
