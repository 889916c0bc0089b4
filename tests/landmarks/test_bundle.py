"""The landmark bundle: written, verified, rebuilt with the same outputs; altered ones refused."""

from __future__ import annotations

import json

import pytest
import torch

from osteolens.errors import BundleError
from osteolens.landmarks.bundle import load_landmark_bundle, write_landmark_bundle
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


def test_zip_path_is_refused(tmp_path):
    net = LandmarkNet("tf_efficientnet_lite0", (1, 2), head_channels=8)
    with pytest.raises(BundleError, match="folders"):
        write_landmark_bundle(tmp_path / "b.zip", net, (64, 32), LEVELS)



def test_the_classification_predictor_names_the_landmark_command(bundle):
    from osteolens.inference import Predictor

    with pytest.raises(BundleError, match="landmark detector.*osteolens landmarks predict"):
        Predictor(bundle[1])
