"""create_model / OsteoNet: shapes, backbones, fine-tuning depth, fusion, views, weights."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from osteolens.errors import ModelError
from osteolens.models import create_model, registered_models


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "fastvit_t8"])
def test_seed_backbones_build_with_one_channel(name):
    net = create_model(name, "multiclass", 3).eval()
    first_conv = next(m for m in net.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 1
    with torch.no_grad():
        out = net(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 3)
    seen = []  # Grad-CAM's layer passes the final feature map (EfficientNet: after conv_head + BN + SiLU)
    handle = net.cam_layer.register_forward_hook(lambda m, i, o: seen.append(o))
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        net(x)
        assert torch.equal(seen[0], net.backbone.forward_features(x))
    handle.remove()
    assert seen[0].shape[1] == net.backbone.num_features and seen[0].ndim == 4


def test_simple_cnn_is_registered_and_filters_double_per_layer():
    assert "simple_cnn" in registered_models()
    net = create_model("simple_cnn", "regression", 1, conv_layers=4, filters=8, dense_units=32, head_hidden=[16, 16])
    convs = [m for m in net.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 64]
    linears = [m for m in net.head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 16), (16, 16), (16, 1)]
    x = torch.rand(1, 1, 32, 32)
    seen = []
    net.cam_layer.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        net.eval()(x)
        assert torch.equal(seen[0], net.backbone.blocks(x))  # the last conv block's activations, 64 channels


def test_config_rebuilds_the_same_network():
    net = create_model("simple_cnn", "ordinal", 2, tabular=["sex", "age"], conv_layers=2, filters=4, dense_units=8)
    again = create_model(**net.config)
    again.load_state_dict(net.state_dict())
    x, t = torch.rand(3, 1, 32, 32), torch.rand(3, 2)
    net.eval(), again.eval()
    assert torch.equal(net(x, t), again(x, t))


def test_tabular_fusion_changes_output_and_is_required():
    net = create_model("simple_cnn", "binary", 1, tabular=["sex", "age"], conv_layers=2, filters=4, dense_units=8).eval()
    x = torch.rand(1, 1, 32, 32)
    a = net(x, torch.tensor([[1.0, 0.0]]))
    b = net(x, torch.tensor([[0.0, 2.0]]))
    assert not torch.allclose(a, b)
    with pytest.raises(ModelError, match="covariate"):
        net(x)


def test_two_views_shared_and_separate():
    shared = create_model("simple_cnn", "binary", 1, views=2, conv_layers=2, filters=4, dense_units=8)
    separate = create_model("simple_cnn", "binary", 1, views=2, shared_backbone=False, conv_layers=2, filters=4, dense_units=8)
    assert len(shared.backbones) == 1 and len(separate.backbones) == 2
    assert shared.head[-1].in_features == 16  # two views x 8 features
    x = torch.rand(2, 2, 1, 32, 32)
    assert shared(x).shape == (2, 1) and separate(x).shape == (2, 1)
    # Late fusion: the shared model's features are the single-view features of each view, concatenated.
    shared.eval()
    feats = shared.features(x)
    assert torch.allclose(feats[:, :8], shared.backbone(x[:, 0]))
    assert torch.allclose(feats[:, 8:], shared.backbone(x[:, 1]))
    with pytest.raises(ModelError, match="views"):
        shared(torch.rand(2, 1, 32, 32))


def test_finetune_depths_freeze_the_right_parameters():
    head = create_model("resnet18", "binary", 1, finetune="head")
    assert not any(p.requires_grad for p in head.backbone.parameters())
    assert all(p.requires_grad for p in head.head.parameters())
    last1 = create_model("resnet18", "binary", 1, finetune="last:1")
    trainable = {n.split(".")[0] for n, p in last1.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"layer4"}
    last2 = create_model("resnet18", "binary", 1, finetune="last:2")
    trainable = {n.split(".")[0] for n, p in last2.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}
    # Frozen batch norms keep their running statistics in train mode.
    head.train()
    assert not head.backbone.bn1.training and head.head.training
    with pytest.raises(ModelError, match="last:1 ... last:5"):
        create_model("resnet18", "binary", 1, finetune="last:9")
    with pytest.raises(ModelError, match="finetune"):
        create_model("resnet18", "binary", 1, finetune="some")


def test_parameter_groups_scale_backbone_lr():
    net = create_model("simple_cnn", "binary", 1, conv_layers=2, filters=4, dense_units=8)
    groups = {g["name"]: g for g in net.parameter_groups(1e-3, backbone_lr_mult=0.1, weight_decay=0.05)}
    assert groups["backbone"]["lr"] == pytest.approx(1e-4) and groups["head"]["lr"] == pytest.approx(1e-3)
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["backbone"]["weight_decay"] == 0.05
    n_params = sum(len(g["params"]) for g in groups.values())
    assert n_params == len(list(net.parameters()))


def test_weights_from_local_safetensors_file(tmp_path):
    source = create_model("resnet18", "binary", 1)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(path))
    loaded = create_model("resnet18", "binary", 1, weights=path)
    assert torch.equal(loaded.backbone.conv1.weight, source.backbone.conv1.weight)
    assert loaded.config["weights"] is None and loaded.init_weights == str(path)


def test_rgb_checkpoint_is_adapted_to_one_channel(tmp_path):
    import timm

    rgb = timm.create_model("resnet18", pretrained=False, in_chans=3)
    path = tmp_path / "rgb.pth"
    torch.save(rgb.state_dict(), path)
    loaded = create_model("resnet18", "binary", 1, weights=path)
    expected = rgb.conv1.weight.sum(dim=1, keepdim=True)
    assert torch.allclose(loaded.backbone.conv1.weight, expected)


def test_missing_weights_and_offline_pretrained_say_both_ways(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="not found"):
        create_model("resnet18", "binary", 1, weights=tmp_path / "missing.safetensors")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError) as info:
        create_model("resnet18", "binary", 1, pretrained=True)
    assert "network" in str(info.value) and "weights=PATH" in str(info.value)


def test_unknown_name_and_task():
    with pytest.raises(ModelError, match="unknown model"):
        create_model("no_such_net", "binary", 1)
    with pytest.raises(ModelError, match="unknown task"):
        create_model("simple_cnn", "segmentation", 1)
