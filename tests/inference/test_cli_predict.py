"""``osteolens predict`` and ``osteolens export-onnx`` end to end on a tiny bundle."""

from __future__ import annotations

import json

import cv2
import pytest
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.inference import load_bundle
from osteolens.inference.report import RECORD_KEYS


def test_predict_batch_goes_on_after_a_bad_file(make_bundle, radiograph_png, tmp_path):
    bundle = make_bundle(threshold=0.5)
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"this is not an image")
    (folder / "notes.csv").write_text("ignored,because,of,suffix\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(radiograph_png), str(folder), "--model", str(bundle),
                                      "--out", str(out), "--cam", "--saliency", "--backend", "torch"])
    assert result.exit_code == 1, result.output
    good = json.loads((out / "knee.json").read_text())
    bad = json.loads((out / "broken.json").read_text())
    assert tuple(good) == RECORD_KEYS and tuple(bad) == RECORD_KEYS
    assert good["result"] == "ok" and good["error"] is None and good["diagnosis"] == good["label"]
    assert good["label"] in ("normal", "osteoporosis") and 0 <= good["probability"] <= 1
    assert good["threshold"] == 0.5 and good["model"]["folds"] == 2
    heat = cv2.imread(good["saliency_img_path"])
    overlay = cv2.imread(good["overlay_img_path"])
    assert heat.shape == (90, 70, 3) and overlay.shape == (90, 70, 3)  # the original resolution
    assert cv2.imread(good["gradient_saliency_img_path"]).shape == (90, 70, 3)
    assert bad["result"] == "fail" and "not a recognised image" in bad["error"]
    assert bad["label"] is None and bad["saliency_img_path"] is None
    assert "broken.png" in (out / "failures.csv").read_text()
    assert not (out / "notes.json").exists()


def test_predict_needs_images(make_bundle, tmp_path):
    result = CliRunner().invoke(app, ["predict", "--model", str(make_bundle()), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0


def test_predict_jsonl_requires_allowed_roots(make_bundle):
    from osteolens.errors import ConfigError

    with pytest.raises(ConfigError, match="allowed-root"):
        CliRunner().invoke(app, ["predict", "--jsonl", "--model", str(make_bundle())], catch_exceptions=False)


def test_export_onnx_adds_a_checked_graph_to_the_bundle(make_bundle, tmp_path):
    bundle = make_bundle(tabular=("sex", "age"))
    result = CliRunner().invoke(app, ["export-onnx", str(bundle), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    loaded = load_bundle(bundle)
    assert loaded.onnx_model == (tmp_path / "m.onnx").read_bytes()
    assert "model.onnx" in loaded.manifest["files"]


def test_batched_predict_without_cam_matches_single_predictions(make_bundle, radiograph_png, tmp_path):
    from osteolens.inference import Predictor

    bundle = make_bundle()
    (tmp_path / "bad.dcm").write_bytes(b"\x00" * 10)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(radiograph_png), str(tmp_path / "bad.dcm"), str(radiograph_png),
                                      "--model", str(bundle), "--out", str(out), "--batch-size", "2"])
    assert result.exit_code == 1, result.output
    expected = Predictor(bundle).predict(radiograph_png).probability
    for name in ("knee.json", "knee_2.json"):
        record = json.loads((out / name).read_text())
        assert record["result"] == "ok" and record["saliency_img_path"] is None
        assert record["probability"] == pytest.approx(expected, abs=1e-6)
    assert json.loads((out / "bad.json").read_text())["result"] == "fail"


def test_predict_jsonl_command_answers_on_stdout(make_bundle, radiograph_png, tmp_path):
    root = radiograph_png.parent
    lines = "\n".join([json.dumps({"img_path": str(radiograph_png), "destination_path": str(root / "out")}),
                       "garbage", json.dumps({"img_path": "/etc/passwd", "destination_path": str(root)})]) + "\n"
    result = CliRunner().invoke(app, ["predict", "--jsonl", "--model", str(make_bundle()), "--allowed-root", str(root)],
                                input=lines)
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [a["result"] for a in answers] == ["ok", "fail", "fail"]
    assert cv2.imread(answers[0]["overlay_img_path"]).shape == (90, 70, 3)
    assert "outside the allowed roots" in answers[2]["error"]
