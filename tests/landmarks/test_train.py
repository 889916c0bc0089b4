"""Training: a 2-epoch run at tiny size beats the mean shape on its training images; run directory, resume, QC."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.errors import ConfigError
from osteolens.landmarks.evaluate import mean_shape, place_mean_shape
from osteolens.landmarks.predict import LandmarkDetector
from osteolens.landmarks.train import LandmarkConfig, repair
from osteolens.morphometry import check_annotations, read_landmarks
from tests.landmarks.conftest import synthetic_spine, write_dataset

runner = CliRunner()


def _config(tmp_path, **changes):
    landmarks, labels = write_dataset(tmp_path / "data", 16)
    config = {"landmarks": str(landmarks), "labels": str(labels), "input_size": [128, 64], "epochs": 2,
              "batch_size": 1, "lr": 0.005, "warmup_epochs": 0, "ema_decay": 0.9, "sigma": 1.0, "val_fraction": 0.2,
              "model": {"backbone": "tf_efficientnet_lite0", "weights": "imagenet", "head_channels": 32},
              "augment": {"rotate_deg": 0, "scale": 0, "translate": 0, "hflip": 0}, "out": str(tmp_path / "run"),
              **changes}
    path = tmp_path / "landmarks.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_two_epochs_beat_the_mean_shape_on_training_images(tmp_path):
    path = _config(tmp_path)
    result = runner.invoke(app, ["landmarks", "train", str(path)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    split = pd.read_csv(run / "split.csv")
    assert not set(split.loc[split.set == "train", "patient"]) & set(split.loc[split.set == "val", "patient"])
    spines = {s.key: s for s in read_landmarks(tmp_path / "data" / "landmarks.csv")}
    train = [spines[i] for i in split.loc[split.set == "train", "image"]]
    detector = LandmarkDetector.from_path(run / "bundle")
    shape = mean_shape([s.corners for s in train], [(256, 128)] * len(train))
    model_error = np.mean([np.linalg.norm(detector.predict_file(s.image_path).detection.corners - s.corners, axis=2).mean()
                           for s in train])
    baseline_error = np.mean([np.linalg.norm(place_mean_shape(shape, (256, 128)) - s.corners, axis=2).mean()
                              for s in train])
    assert model_error < baseline_error, (model_error, baseline_error)
    metrics = json.loads((run / "val_evaluation.json").read_text())
    assert {"model", "mean_shape_baseline"} <= set(metrics)
    manifest = json.loads((run / "bundle" / "bundle.json").read_text())
    assert manifest["task"] == "landmarks" and manifest["labels"] == [f"V{k}" for k in range(1, 6)]
    assert manifest["pretrained_weights"]["spec"] == "imagenet"
    # the bundle carries the detector's ONNX graph, and it finds the same corners as torch
    assert manifest["onnx"] == "model.onnx" and manifest["onnx_parity"]["max_abs_difference"] <= 1e-3
    assert not detector.exported_at_load and detector.backend == "onnx"
    torch_detector = LandmarkDetector.from_path(run / "bundle", backend="torch")
    for spine in train[:3]:
        a, b = (d.predict_file(spine.image_path).detection for d in (detector, torch_detector))
        assert np.abs(a.corners - b.corners).max() < 0.05 and np.abs(a.confidence - b.confidence).max() < 1e-3
    assert (run / "report" / "report.html").is_file()
    # the bundle holds the EMA of the weights, not the last step's, and no epoch chosen on validation
    import torch

    from osteolens.training.checkpoint import load_checkpoint

    saved, bundled = load_checkpoint(run / "checkpoint"), detector.bundle.model.state_dict()
    assert all(torch.equal(bundled[k], saved["best"][k]) for k in saved["best"])
    assert not all(torch.equal(saved["model"][k], saved["best"][k]) for k in saved["best"])
    assert manifest["training_summary"]["weights"] == "EMA (decay 0.9)"
    # a started run is not overwritten; --resume continues from the last complete epoch
    with pytest.raises(ConfigError, match="started run"):
        runner.invoke(app, ["landmarks", "train", str(path)], catch_exceptions=False)
    result = runner.invoke(app, ["landmarks", "train", str(path), "--resume", "--epochs", "3"])
    assert result.exit_code == 0 and "resumed after epoch 1" in result.output
    history = json.loads((run / "history.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2]


def test_repair_fixes_shifted_order_and_swapped_corners():
    _, corners = synthetic_spine(np.random.default_rng(0), (512, 256), 17)
    broken = np.concatenate([corners[1:], corners[:1]])  # the first vertebra listed last (AASCE's usual error)
    broken[3] = broken[3][[2, 3, 0, 1]]  # top and bottom swapped
    assert check_annotations(broken)
    assert np.allclose(repair(broken), corners) and not check_annotations(repair(broken))


def test_config_errors_name_the_key(tmp_path):
    path = _config(tmp_path, input_size=[100, 64])
    with pytest.raises(ConfigError, match="multiple of 32"):
        LandmarkConfig.from_yaml(path)
    path = _config(tmp_path, qc="ignore")
    with pytest.raises(ConfigError, match="repair, drop"):
        LandmarkConfig.from_yaml(path)
    path = _config(tmp_path, colour="red")
    with pytest.raises(ConfigError, match="colour"):
        LandmarkConfig.from_yaml(path)
