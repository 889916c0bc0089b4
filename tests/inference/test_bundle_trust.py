"""What a bundle may make osteolens do: allow-listed architecture keys, ONNX parity on attach."""

from __future__ import annotations

import json

import pytest
import torch

from osteolens.errors import BundleError
from osteolens.inference.bundle import add_onnx, allowed_architecture_keys, load_bundle, write_bundle
from osteolens.inference.runtime import export_onnx, parity

from .conftest import LABELS, PREPROCESSING


def _timm_bundle(path, create_model, **params):
    torch.manual_seed(0)
    model = create_model("test_resnet", "binary", 1, **params).eval()
    return write_bundle(path, models=[model], preprocessing=PREPROCESSING, input_size=(48, 48), task="binary",
                        labels=LABELS["binary"])


def _edit_architecture(path, **changes):
    manifest = json.loads((path / "bundle.json").read_text())
    manifest["architecture"].update(changes)
    (path / "bundle.json").write_text(json.dumps(manifest, indent=2))


def test_allowed_keys_are_create_model_arguments_and_the_backbone_family():
    simple = allowed_architecture_keys("simple_cnn")
    assert {"name", "task", "num_outputs", "in_chans", "tabular", "views", "head_hidden", "dropout", "fusion",
            "conv_layers", "filters", "dense_units"} <= simple
    assert "drop_rate" not in simple
    timm_keys = allowed_architecture_keys("test_resnet")
    assert {"drop_rate", "drop_path_rate"} <= timm_keys and "conv_layers" not in timm_keys
    assert not {"checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"} & (simple | timm_keys)


def test_a_timm_bundle_with_allowed_keys_round_trips(tmp_path, create_model):
    path = _timm_bundle(tmp_path / "b", create_model, drop_rate=0.1)
    bundle = load_bundle(path)
    assert bundle.architecture["drop_rate"] == 0.1
    assert bundle.models[0].backbone.drop_rate == 0.1


@pytest.mark.parametrize("key", ["checkpoint_path", "pretrained_cfg_overlay"])
def test_architecture_key_that_names_a_file_is_refused(tmp_path, create_model, key):
    path = _timm_bundle(tmp_path / "b", create_model)
    # A real checkpoint of the same network: timm would load it over the bundle's weights.
    other = create_model("test_resnet", "binary", 1).backbone
    torch.save(other.state_dict(), tmp_path / "other.pth")
    value = str(tmp_path / "other.pth") if key == "checkpoint_path" else {"file": str(tmp_path / "other.pth")}
    _edit_architecture(path, **{key: value})
    with pytest.raises(BundleError, match=rf"{path}: bundle.json 'architecture' holds key\(s\) \['{key}'\].*Fix: delete"):
        load_bundle(path)


def test_simple_cnn_bundle_may_not_carry_timm_keys(make_bundle):
    path = make_bundle(folds=1)
    _edit_architecture(path, drop_rate=0.5)
    with pytest.raises(BundleError, match=r"\['drop_rate'\].*'simple_cnn'"):
        load_bundle(path)


def test_model_name_must_be_plain(make_bundle):
    path = make_bundle(folds=1)
    _edit_architecture(path, name="hf-hub:someone/model")
    with pytest.raises(BundleError, match="not a plain osteolens or timm model name"):
        load_bundle(path)


def test_write_refuses_a_config_it_could_not_load(tmp_path, create_model):
    model = create_model("simple_cnn", "binary", 1, conv_layers=2, filters=4, dense_units=8)
    model.config["cache_dir"] = str(tmp_path)
    with pytest.raises(BundleError, match=r"\['cache_dir'\]"):
        write_bundle(tmp_path / "b", models=[model], preprocessing=PREPROCESSING, input_size=(48, 48),
                     task="binary", labels=LABELS["binary"])


def test_attaching_the_bundles_own_onnx_stores_the_parity_result(make_bundle):
    path = make_bundle(folds=2, tabular=("age",))
    models = load_bundle(path).models
    graph = export_onnx(models, (48, 48), 1, n_tabular=1)
    add_onnx(path, graph)
    manifest = json.loads((path / "bundle.json").read_text())
    stored = manifest["onnx_parity"]
    # The same check done by the runtime's reference implementation (same seed, same inputs).
    assert stored["max_abs_difference"] == pytest.approx(parity(models, graph, (48, 48), 1, n_tabular=1), abs=1e-12)
    assert stored["max_abs_difference"] <= stored["tolerance"] == 1e-4
    assert stored["inputs"] == {"seed": 0, "images": [2, 1, 48, 48], "images_distribution": "uniform [0, 1)",
                                "tabular": [2, 1]}
    assert load_bundle(path).onnx_model == graph


def test_attaching_another_models_onnx_is_refused(make_bundle, create_model):
    path = make_bundle(folds=1)
    torch.manual_seed(1)  # same architecture, other weights
    other = create_model("simple_cnn", "binary", 1, conv_layers=2, filters=4, dense_units=8).eval()
    with pytest.raises(BundleError, match="differs from the bundle's torch folds by .* tolerance 1e-04"):
        add_onnx(path, export_onnx([other], (48, 48)))
    multiclass = create_model("simple_cnn", "multiclass", 3, conv_layers=2, filters=4, dense_units=8).eval()
    with pytest.raises(BundleError, match=r"outputs shape \[1, 2, 3\], the bundle's folds \[1, 2, 1\]"):
        add_onnx(path, export_onnx([multiclass], (48, 48)))
    manifest = json.loads((path / "bundle.json").read_text())
    assert manifest["onnx"] is None and "model.onnx" not in manifest["files"]


def test_write_bundle_checks_the_onnx_it_is_given(tmp_path, create_model):
    torch.manual_seed(0)
    model, other = (create_model("simple_cnn", "binary", 1, conv_layers=2, filters=4, dense_units=8).eval()
                    for _ in range(2))
    fields = dict(preprocessing=PREPROCESSING, input_size=(48, 48), task="binary", labels=LABELS["binary"])
    with pytest.raises(BundleError, match="differs from the bundle's torch folds"):
        write_bundle(tmp_path / "bad", models=[model], onnx_model=export_onnx([other], (48, 48)), **fields)
    assert not (tmp_path / "bad").exists()
    path = write_bundle(tmp_path / "good.zip", models=[model], onnx_model=export_onnx([model], (48, 48)), **fields)
    assert load_bundle(path).manifest["onnx_parity"]["max_abs_difference"] <= 1e-4
