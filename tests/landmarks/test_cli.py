"""CLI round trips: landmarks predict -> landmarks.csv -> landmarks evaluate / morphometry."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.errors import ManifestError
from osteolens.landmarks.predict import COLUMNS

runner = CliRunner()


def test_predict_writes_the_shared_format_in_original_pixels(spine_tables, untrained_bundle, tmp_path):
    landmarks, _ = spine_tables
    images = sorted((landmarks.parent / "images").glob("*.png"))[:3]
    out = tmp_path / "out"
    result = runner.invoke(app, ["landmarks", "predict", *map(str, images), str(tmp_path / "nope.png"),
                                 "--model", str(untrained_bundle), "--out", str(out)])
    assert result.exit_code == 1, result.output  # one file failed, the others were written
    table = pd.read_csv(out / "landmarks.csv")
    assert list(table.columns) == COLUMNS and len(table) == 3 * 5 * 4
    assert table["point_index"].tolist()[:20] == list(range(20))
    assert table["vertebra"].unique().tolist() == ["V1", "V2", "V3", "V4", "V5"]
    assert table["confidence"].between(0, 1).all()
    assert pd.read_csv(out / "failures.csv")["path"].str.endswith("nope.png").all()
    # decoded at 128 x 64 on stride-4 cells, mapped back to the 256 x 128 originals (2 px per input pixel):
    # every vertebra's centre is a cell centre of the original grid, x = (j + 0.5) * 8 - 0.5
    cells = (table.groupby(["image", "vertebra"])[["x", "y"]].mean().to_numpy() + 0.5) / 8 - 0.5
    assert np.allclose(cells, np.round(cells)) and (cells >= 0).all()
    assert (cells[:, 0] < 16).all() and (cells[:, 1] < 32).all()


def test_evaluate_perfect_prediction_and_report(spine_tables, tmp_path):
    landmarks, labels = spine_tables
    pred = tmp_path / "pred.csv"
    table = pd.read_csv(landmarks).assign(confidence=0.9, low_confidence=False)
    table["levels_uncertain"] = table["image"] == table["image"].iloc[0]  # the detector's flag on one image
    table.to_csv(pred, index=False)
    out = tmp_path / "evaluation"
    result = runner.invoke(app, ["landmarks", "evaluate", str(pred), "--truth", str(landmarks), "--labels", str(labels),
                                 "--out", str(out), "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "evaluation.json").read_text())["summary"]
    assert summary["mre_px"] == 0.0 and summary["within_5px"] == 1.0 and summary["cobb_smape"] == 0.0
    assert summary["n_patients"] == 4  # two images per patient_key
    assert summary["levels_uncertain"] == 1 and summary["level_shifted"] == 0 and summary["level_shifted_and_flagged"] == 0
    assert (pd.read_csv(out / "per_image.csv")["level_shift"] == 0).all()
    assert len(list((out / "overlays").glob("*.png"))) == 5
    assert "Worst 5" in (out / "report.html").read_text()


def test_predicted_table_feeds_evaluate_and_morphometry(spine_tables, untrained_bundle, tmp_path):
    landmarks, labels = spine_tables
    images = sorted((landmarks.parent / "images").glob("*.png"))
    out = tmp_path / "out"
    assert runner.invoke(app, ["landmarks", "predict", *map(str, images), "--model", str(untrained_bundle),
                               "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["landmarks", "evaluate", str(out / "landmarks.csv"), "--truth", str(landmarks),
                                 "--labels", str(labels), "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    per_image = pd.read_csv(out / "evaluation" / "per_image.csv")
    assert len(per_image) == len(images) and (per_image["mre_px"] > 0).all()
    shutil.copytree(landmarks.parent / "images", out / "images", dirs_exist_ok=True)
    result = runner.invoke(app, ["morphometry", "--landmarks", str(out / "landmarks.csv"), "--view", "AP",
                                 "--out", str(tmp_path / "morpho.csv")])
    assert result.exit_code == 0, result.output
    cobb = pd.read_csv(tmp_path / "cobb.csv")
    assert len(cobb) == len(images) and np.isfinite(cobb.filter(like="pt").select_dtypes("number")).all().all()


def test_evaluate_names_a_missing_column(tmp_path, spine_tables):
    landmarks, _ = spine_tables
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"image": ["a"], "x": [1.0]}).to_csv(bad, index=False)
    result = runner.invoke(app, ["landmarks", "evaluate", str(bad), "--truth", str(landmarks)])
    assert isinstance(result.exception, ManifestError) and "missing column(s) vertebra, corner, y" in str(result.exception)


def test_predict_with_a_trusted_key_needs_the_signature(spine_tables, untrained_bundle, tmp_path):
    from osteolens.inference.signing import generate_keypair, sign_bundle

    landmarks, _ = spine_tables
    image = str(sorted((landmarks.parent / "images").glob("*.png"))[0])
    private, public = generate_keypair(tmp_path / "keys")
    command = ["landmarks", "predict", image, "--model", str(untrained_bundle), "--out", str(tmp_path / "out"),
               "--trusted-key", str(public)]
    result = runner.invoke(app, command)
    assert "not signed" in str(result.exception) and not (tmp_path / "out").exists()
    sign_bundle(untrained_bundle, private)
    assert runner.invoke(app, command).exit_code == 0
    assert len(pd.read_csv(tmp_path / "out" / "landmarks.csv")) == 5 * 4


def test_export_onnx_then_onnx_and_torch_predict_the_same_corners(spine_tables, untrained_bundle, tmp_path):
    landmarks, _ = spine_tables
    images = [str(p) for p in sorted((landmarks.parent / "images").glob("*.png"))[:3]]
    base = ["landmarks", "predict", *images, "--model", str(untrained_bundle)]
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "exported_at_load")])
    assert result.exit_code == 0 and "exported at load" in result.output
    result = runner.invoke(app, ["export-onnx", str(untrained_bundle), "--out", str(tmp_path / "detector.onnx")])
    assert result.exit_code == 0 and "model.onnx added to landmark bundle" in result.output, result.output
    manifest = json.loads((untrained_bundle / "bundle.json").read_text())
    assert (untrained_bundle / "model.onnx").read_bytes() == (tmp_path / "detector.onnx").read_bytes()
    assert manifest["onnx_parity"]["max_abs_difference"] <= manifest["onnx_parity"]["tolerance"] == 1e-3
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "onnx")])
    assert result.exit_code == 0 and "exported at load" not in result.output
    assert runner.invoke(app, [*base, "--out", str(tmp_path / "torch"), "--backend", "torch"]).exit_code == 0
    onnx, torch_table = (pd.read_csv(tmp_path / name / "landmarks.csv") for name in ("onnx", "torch"))
    assert onnx[["image", "vertebra", "corner"]].equals(torch_table[["image", "vertebra", "corner"]])
    assert np.abs(onnx[["x", "y"]].to_numpy() - torch_table[["x", "y"]].to_numpy()).max() < 0.05
    assert np.abs(onnx["confidence"] - torch_table["confidence"]).max() < 1e-3


def test_onnx_detection_never_imports_torch(spine_tables, untrained_bundle, tmp_path):
    import subprocess
    import sys

    from osteolens.landmarks.bundle import add_landmark_onnx, load_landmark_bundle
    from osteolens.landmarks.runtime import export_landmark_onnx

    loaded = load_landmark_bundle(untrained_bundle)
    add_landmark_onnx(untrained_bundle, export_landmark_onnx(loaded.model, loaded.input_size))
    landmarks, _ = spine_tables
    image = sorted((landmarks.parent / "images").glob("*.png"))[0]
    script = ("import sys; from osteolens.landmarks.predict import LandmarkDetector; "
              f"d = LandmarkDetector.from_path({str(untrained_bundle)!r}); p = d.predict_file({str(image)!r}); "
              "print(p.detection.corners.shape, d.backend, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-2:] == ["onnx", "False"], done.stdout + done.stderr


def test_no_position_prior_keeps_the_strongest_peaks(spine_tables, untrained_bundle, tmp_path):
    from osteolens.io import read_radiograph
    from osteolens.landmarks.predict import LandmarkDetector
    from osteolens.landmarks.preprocess import resize_stretch
    from osteolens.landmarks.runtime import predict_prepared

    manifest = json.loads((untrained_bundle / "bundle.json").read_text())
    manifest["position_prior"] = {"first": [0.0, 0.01], "last": [0.6, 0.01]}  # a spine framed higher than these
    (untrained_bundle / "bundle.json").write_text(json.dumps(manifest))
    landmarks, _ = spine_tables
    image = sorted((landmarks.parent / "images").glob("*.png"))[0]
    tables = {}
    for flag in ("--position-prior", "--no-position-prior"):
        result = runner.invoke(app, ["landmarks", "predict", str(image), "--model", str(untrained_bundle),
                                     "--out", str(tmp_path / flag), flag])
        assert result.exit_code == 0, result.output
        tables[flag] = pd.read_csv(tmp_path / flag / "landmarks.csv")
    assert tables["--position-prior"]["y"].mean() < tables["--no-position-prior"]["y"].mean() - 5  # pulled up
    detector = LandmarkDetector.from_path(untrained_bundle)
    prepared, scale = resize_stretch(read_radiograph(image).pixels, detector.bundle.input_size)
    strongest = predict_prepared(detector.maps, [prepared], [scale], 5, prior=None)[0]
    assert np.allclose(tables["--no-position-prior"][["x", "y"]].to_numpy(), strongest.corners.reshape(-1, 2), atol=0.01)
