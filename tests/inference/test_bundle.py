"""Bundles: round trip of weights and metadata, and a clear BundleError for every way one can break."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from osteolens.errors import BundleError
from osteolens.inference.bundle import FORMAT_VERSION, add_onnx, load_bundle, write_bundle

PREPROCESSING = [{"name": "resize", "params": {"size": [64, 64]}}]


def _models(create_model, folds=2, **kwargs):
    torch.manual_seed(0)
    return [create_model("simple_cnn", task="binary", num_outputs=1, conv_layers=2, filters=4, dense_units=8, **kwargs).eval() for _ in range(folds)]


def _write(path, models, **overrides):
    kwargs = dict(models=models, preprocessing=PREPROCESSING, input_size=(64, 64), task="binary",
                  labels=["normal", "osteoporosis"], target="label", threshold=0.3,
                  calibration=None, training_summary={"epochs": 1}, metrics={"auroc": {"value": 0.8}})
    kwargs.update(overrides)
    return write_bundle(path, **kwargs)


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_round_trip_keeps_weights_and_metadata(tmp_path, create_model, suffix):
    models = _models(create_model)
    path = _write(tmp_path / f"bundle{suffix}", models)
    bundle = load_bundle(path)
    assert bundle.task == "binary"
    assert bundle.labels == ["normal", "osteoporosis"]
    assert bundle.threshold == 0.3
    assert bundle.input_size == (64, 64)
    assert bundle.preprocessing == PREPROCESSING
    assert bundle.manifest["format_version"] == FORMAT_VERSION
    assert len(bundle.models) == 2
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        for original, loaded in zip(models, bundle.models):
            assert not loaded.training
            assert torch.equal(original(x), loaded(x))
    card = bundle.model_card()
    assert card["folds"] == 2 and card["metrics"] == {"auroc": {"value": 0.8}} and card["onnx"] is False


def test_manifest_lists_sha256_of_every_file(tmp_path, create_model):
    path = _write(tmp_path / "b", _models(create_model))
    manifest = json.loads((path / "bundle.json").read_text())
    assert sorted(manifest["files"]) == ["fold0.safetensors", "fold1.safetensors"]
    import hashlib

    for name, digest in manifest["files"].items():
        assert hashlib.sha256((path / name).read_bytes()).hexdigest() == digest


def test_missing_bundle(tmp_path):
    with pytest.raises(BundleError, match="no such model bundle"):
        load_bundle(tmp_path / "nope")


def test_folder_without_manifest(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(BundleError, match="no bundle.json"):
        load_bundle(tmp_path / "x")


def test_not_a_zip(tmp_path):
    (tmp_path / "model.pth").write_bytes(b"\x80\x04pickle")
    with pytest.raises(BundleError, match="neither a folder nor a zip"):
        load_bundle(tmp_path / "model.pth")


def test_corrupt_weights_detected_by_hash(tmp_path, create_model):
    path = _write(tmp_path / "b", _models(create_model))
    data = bytearray((path / "fold1.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "fold1.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="'fold1.safetensors' is corrupt"):
        load_bundle(path)


def test_missing_weight_file(tmp_path, create_model):
    path = _write(tmp_path / "b", _models(create_model))
    (path / "fold0.safetensors").unlink()
    with pytest.raises(BundleError, match="fold0.safetensors: listed in bundle.json but missing"):
        load_bundle(path)


def test_missing_member_in_zip(tmp_path, create_model):
    path = _write(tmp_path / "b.zip", _models(create_model, folds=1))
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(broken, "w") as dst:
        dst.writestr("bundle.json", src.read("bundle.json"))
    with pytest.raises(BundleError, match="'fold0.safetensors' listed in bundle.json is missing"):
        load_bundle(broken)


def test_invalid_json(tmp_path, create_model):
    path = _write(tmp_path / "b", _models(create_model, folds=1))
    (path / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(path)


def test_newer_format_is_incompatible(tmp_path, create_model):
    path = _write(tmp_path / "b", _models(create_model, folds=1))
    manifest = json.loads((path / "bundle.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (path / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="newer than this osteolens reads"):
        load_bundle(path)


def test_unsafe_file_name_refused(tmp_path, create_model):
    path = _write(tmp_path / "b", _models(create_model, folds=1))
    manifest = json.loads((path / "bundle.json").read_text())
    manifest["files"]["../evil.safetensors"] = "0" * 64
    (path / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unsafe file name"):
        load_bundle(path)


def test_weights_that_do_not_fit_the_architecture(tmp_path, create_model):
    path = _write(tmp_path / "b", _models(create_model, folds=1))
    manifest = json.loads((path / "bundle.json").read_text())
    manifest["architecture"]["filters"] = 6
    (path / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="does not fit architecture"):
        load_bundle(path)


def test_architecture_that_cannot_be_rebuilt(tmp_path, create_model):
    path = _write(tmp_path / "b", _models(create_model, folds=1))
    manifest = json.loads((path / "bundle.json").read_text())
    manifest["architecture"]["conv_layers"] = 0
    (path / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="cannot rebuild architecture 'simple_cnn'.*conv_layers"):
        load_bundle(path)


def test_write_refuses_inconsistent_input(tmp_path, create_model):
    models = _models(create_model, folds=1)
    with pytest.raises(BundleError, match="no models"):
        _write(tmp_path / "a", [])
    with pytest.raises(BundleError, match="unknown task"):
        _write(tmp_path / "b", models, task="segmentation")
    with pytest.raises(BundleError, match="at least two labels"):
        _write(tmp_path / "c", models, labels=["x"])
    other = create_model("simple_cnn", task="binary", num_outputs=1, conv_layers=2, filters=8, dense_units=8)
    with pytest.raises(BundleError, match="different architectures"):
        _write(tmp_path / "d", [models[0], other])


def test_add_onnx_refuses_bytes_that_are_not_the_model(tmp_path, create_model):
    path = _write(tmp_path / "b.zip", _models(create_model, folds=1))
    with pytest.raises(BundleError, match="ONNX Runtime cannot load the graph to attach"):
        add_onnx(path, b"fake onnx bytes")
    assert load_bundle(path).onnx_model is None
