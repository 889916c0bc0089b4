"""The Predictor on real radiographs: CR DICOM (MONOCHROME1, JPEG 2000) and knee PNGs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.inference import Predictor
from osteolens.io import read_radiograph

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_real_dicom_files_get_full_resolution_heat_maps(real_dataset, make_bundle):
    folder = real_dataset("dicom_radiographs")
    predictor = Predictor(make_bundle(), backend="onnx")
    for path in sorted(folder.glob("*.dcm"))[:2]:
        prediction = predictor.predict(path, cam=True)
        shape = read_radiograph(path).shape
        assert prediction.heatmap.shape == shape and prediction.image.shape == shape
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0)
        assert 0.0 < prediction.heatmap.max() <= 1.0


def test_predict_command_on_real_knee_images(real_dataset, make_bundle, tmp_path):
    folder = real_dataset("knee_osteoporosis") / "images"
    images = sorted(p for p in folder.rglob("*.png"))[:3]
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", *map(str, images), "--model", str(make_bundle()), "--out", str(out),
                                      "--cam"])
    assert result.exit_code == 0, result.output
    for image in images:
        record = json.loads((out / f"{image.stem}.json").read_text())
        assert record["result"] == "ok" and record["label"] in ("normal", "osteoporosis")
