"""The landmark bundle: written, verified, rebuilt with the same outputs; altered ones refused."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from osteolens.errors import BundleError
from osteolens.landmarks.bundle import add_landmark_onnx, load_landmark_bundle, write_landmark_bundle
from osteolens.landmarks.model import LandmarkNet

LEVELS = ["V1", "V2", "V3"]


@pytest.fixture
def bundle(tmp_path):
    torch.manual_seed(0)
    net = LandmarkNet("tf_efficientnet_lite0", (1, 2), head_channels=8).eval()
    path = write_landmark_bundle(tmp_path / "bundle", net, (64, 32), LEVELS, training_summary={"epochs": 0})
    return net, path


def test_bundle_round_trip(bundle):
    net, path = bundle
    loaded = load_landmark_bundle(path)
    manifest = json.loads((path / "bundle.json").read_text())
    assert manifest["task"] == "landmarks" and manifest["labels"] == LEVELS
    assert manifest["landmark_names"][:2] == ["V1.top_left", "V1.top_right"] and len(manifest["landmark_names"]) == 12
    assert loaded.input_size == (64, 32) and loaded.stride == 4 and loaded.vertebrae == LEVELS
    x = torch.randn(1, 1, 64, 32)
    with torch.no_grad():
        a, b = net(x), loaded.model(x)
    for key in ("heatmap", "offset", "corners"):
        assert torch.equal(a[key], b[key])


def test_altered_weights_are_refused(bundle):
    _, path = bundle
    weights = path / "fold0.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        load_landmark_bundle(path)


@pytest.mark.parametrize("change", [{"task": "binary"}, {"architecture": {"name": "landmark_heatmap", "backbone":
                                    "tf_efficientnet_lite0", "out_indices": [1, 2], "head_channels": 8,
                                    "checkpoint_path": "/etc/passwd"}}])
def test_foreign_or_unsafe_manifest_is_refused(bundle, change):
    _, path = bundle
    manifest = json.loads((path / "bundle.json").read_text())
    (path / "bundle.json").write_text(json.dumps({**manifest, **change}))
    with pytest.raises(BundleError):
        load_landmark_bundle(path)


def test_zip_bundle_round_trip_and_signature(bundle, tmp_path):
    from osteolens.inference.signing import generate_keypair, sign_bundle

    net, _ = bundle
    path = write_landmark_bundle(tmp_path / "b.zip", net, (64, 32), LEVELS)
    assert zipfile.is_zipfile(path)
    loaded = load_landmark_bundle(path)
    x = torch.randn(1, 1, 64, 32)
    with torch.no_grad():
        assert torch.equal(net(x)["corners"], loaded.model(x)["corners"])
    private, public = generate_keypair(tmp_path / "keys")
    with pytest.raises(BundleError, match="unsigned|not signed|signature"):
        load_landmark_bundle(path, trusted_key=public)
    sign_bundle(path, private)
    assert load_landmark_bundle(path, trusted_key=public).vertebrae == LEVELS


def test_onnx_graph_is_checked_stored_and_reproduces_the_maps(bundle, tmp_path):
    from osteolens.landmarks.runtime import OnnxMaps, TorchMaps, export_landmark_onnx

    net, path = bundle
    add_landmark_onnx(path, export_landmark_onnx(net, (64, 32)))
    loaded = load_landmark_bundle(path, lazy=True)
    manifest = json.loads((path / "bundle.json").read_text())
    assert manifest["onnx"] == "model.onnx" and set(manifest["files"]) == {"fold0.safetensors", "model.onnx"}
    assert manifest["onnx_parity"]["max_abs_difference"] <= 1e-3
    images = np.random.default_rng(1).uniform(-1, 1, (3, 1, 64, 32)).astype(np.float32)
    onnx_maps = OnnxMaps(loaded.onnx_model, loaded.stride, threads=1)(images)
    assert "model" not in vars(loaded)  # the ONNX path never built the torch network
    for a, b in zip(TorchMaps(net)(images), onnx_maps, strict=True):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-3


def test_a_graph_of_another_network_is_refused(bundle):
    from osteolens.landmarks.runtime import export_landmark_onnx

    _, path = bundle
    torch.manual_seed(1)
    other = LandmarkNet("tf_efficientnet_lite0", (1, 2), head_channels=8).eval()
    with pytest.raises(BundleError, match="differ"):
        add_landmark_onnx(path, export_landmark_onnx(other, (64, 32)))
    with pytest.raises(BundleError, match="does not run"):
        add_landmark_onnx(path, b"not a graph")
    assert "onnx" not in json.loads((path / "bundle.json").read_text())


def test_the_classification_predictor_names_the_landmark_command(bundle):
    from osteolens.inference import Predictor

    with pytest.raises(BundleError, match="landmark detector.*osteolens landmarks predict"):
        Predictor(bundle[1])
