"""Grad-CAM against a hand computation, frozen backbones, targets per task, saliency, rendering."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

from osteolens.errors import ModelError
from osteolens.explain import (
    OrdinalTarget,
    RegressionTarget,
    cam_target,
    colorize,
    grad_cam,
    gradient_saliency,
    overlay,
    save_png,
)
from osteolens.models import create_model


def _net(**kwargs):
    torch.manual_seed(1)
    return create_model("simple_cnn", "binary", 1, conv_layers=2, filters=4, dense_units=8, **kwargs).eval()


def _minmax(a):
    a = a - a.min()
    return a / (1e-7 + a.max())


def _hand_grad_cam(model, x, sign):
    """Selvaraju et al.: w_k = mean_ij dy/dA_k, L = ReLU(sum_k w_k A_k), then pytorch-grad-cam's scaling."""
    store = {}
    handle = model.cam_layer.register_forward_hook(lambda m, i, o: store.setdefault("a", o))
    x = x.clone().requires_grad_(True)
    out = model(x)
    handle.remove()
    activation = store["a"]
    (grads,) = torch.autograd.grad(sign * out[0, 0], activation)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1))[0].detach().numpy()
    cam = cv2.resize(_minmax(cam).astype(np.float32), (x.shape[-1], x.shape[-2]))
    cam = _minmax(np.maximum(cam, 0))
    return cam / cam.max()


@pytest.mark.parametrize("category", [1, 0])
def test_grad_cam_matches_the_definition(category):
    model = _net()
    x = torch.rand(1, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    expected = _hand_grad_cam(model, x, 1.0 if category == 1 else -1.0)
    got = grad_cam([model], x, [BinaryClassifierOutputTarget(category)])
    assert got.shape == (1, 48, 48) and got.dtype == np.float32
    assert np.allclose(got[0], expected, atol=1e-4)
    assert got.max() == pytest.approx(1.0)


def test_frozen_backbone_gives_the_same_map():
    x = torch.rand(1, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    trainable, frozen = _net(), _net(finetune="head")
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
    target = [BinaryClassifierOutputTarget(1)]
    reference = grad_cam([trainable], x, target)
    assert np.allclose(reference, grad_cam([frozen], x, target), atol=1e-5)
    # Fully frozen, as the Predictor holds its models: same map, and no weight gradient computed.
    inert = _net().requires_grad_(False)
    assert np.allclose(reference, grad_cam([inert], x, target), atol=1e-5)
    assert all(p.grad is None for p in inert.parameters())


def test_ensemble_map_is_the_rescaled_mean_of_fold_maps():
    x = torch.rand(1, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    a, b = _net(), create_model("simple_cnn", "binary", 1, conv_layers=2, filters=4, dense_units=8).eval()
    target = [BinaryClassifierOutputTarget(1)]
    mean = grad_cam([a], x, target) + grad_cam([b], x, target)
    assert np.allclose(grad_cam([a, b], x, target), mean / mean.max(), atol=1e-5)


def test_gradcam_plus_plus_and_covariates():
    model = create_model("simple_cnn", "regression", 1, tabular=["sex", "age"], conv_layers=2, filters=4, dense_units=8)
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    maps = grad_cam([model.eval()], x, [RegressionTarget()] * 2, tabular=torch.zeros(2, 2), method="gradcam++")
    assert maps.shape == (2, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    with pytest.raises(ModelError, match="unknown CAM method"):
        grad_cam([model], x, [RegressionTarget()] * 2, tabular=torch.zeros(2, 2), method="scorecam")


def test_targets_per_task():
    out = torch.tensor([[0.5, -1.0, 2.0]])
    assert cam_target("multiclass", 2)(out[0]).item() == 2.0
    assert cam_target("binary", 0)(out[:, :1]).item() == -0.5
    assert isinstance(cam_target("ordinal", 0), OrdinalTarget) and cam_target("ordinal", 0)(out).item() == -0.5
    assert cam_target("ordinal", 2)(out).item() == 0.5
    assert cam_target("regression", None)(out).item() == 0.5


def test_gradient_saliency_of_a_linear_model_is_its_weights():
    weights = torch.tensor([[[1.0, -4.0], [2.0, 0.0]], [[-3.0, 1.0], [0.5, 0.0]]])  # [C=2, 2, 2]

    class Linear(torch.nn.Module):
        def forward(self, x):
            return (x * weights).sum(dim=(1, 2, 3))[:, None]

    got = gradient_saliency([Linear()], torch.rand(1, 2, 2, 2), [RegressionTarget()])
    expected = weights.abs().amax(dim=0).numpy() / 4.0  # max over channels of |dy/dx|, scaled to max 1
    assert np.allclose(got[0], expected)


def test_overlay_blends_jet_over_grey(tmp_path):
    image = np.full((4, 5), 0.5, np.float32)
    heat = np.zeros((4, 5), np.float32)
    heat[0, 0] = 1.0
    out = overlay(image, heat, alpha=0.4)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    # 0.6 * grey 128 + 0.4 * jet(1.0) = (128, 0, 0) in RGB
    assert out[0, 0].tolist() == [round(0.6 * 128 + 0.4 * 128), round(0.6 * 128), round(0.6 * 128)]
    assert out[1, 1].tolist() == [round(0.6 * 128), round(0.6 * 128), round(0.6 * 128 + 0.4 * 128)]
    path = save_png(tmp_path / "o" / "overlay.png", out)
    assert cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).tolist() == out.tolist()
    assert colorize(heat, "hot").shape == (4, 5, 3)


def test_palette_heatmap_png_decodes_to_the_rgb_colour_map():
    import io

    from PIL import Image

    from osteolens.explain import heatmap_png

    heat = np.linspace(0, 1, 300 * 7, dtype=np.float32).reshape(7, 300)
    for colormap in ("jet", "hot"):
        decoded = np.asarray(Image.open(io.BytesIO(heatmap_png(heat, colormap))).convert("RGB"))
        assert np.array_equal(decoded, colorize(heat, colormap))


def test_timm_backbone_target_layer_is_found():
    torch.manual_seed(0)
    model = create_model("resnet10t", "multiclass", 3).eval().requires_grad_(False)
    x = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    seen = []  # the layer Grad-CAM hooks passes the final feature map: layer4's output, 512 channels
    handle = model.cam_layer.register_forward_hook(lambda m, i, o: seen.append(o))
    model(x)
    handle.remove()
    assert seen[0].shape == (1, 512, 2, 2) and torch.equal(seen[0], model.backbone.forward_features(x))
    maps = grad_cam([model], x, [cam_target("multiclass", 1)], method="gradcam++")
    assert maps.shape == (1, 64, 64) and maps.max() == pytest.approx(1.0)


@pytest.mark.parametrize("shared", [True, False])
def test_two_view_grad_cam_gives_each_view_its_definition(shared):
    """Views share one explained score; each view's map comes from that view's activations
    (the shared backbone's batch row, or the view's own backbone)."""
    model = _net(views=2, shared_backbone=shared)
    x = torch.rand(1, 2, 1, 48, 40, generator=torch.Generator().manual_seed(3))
    layers = list(model.feature_maps)  # one per backbone: the shared one, or each view's own
    store = []
    handles = [layer.register_forward_hook(lambda m, i, o: store.append(o)) for layer in layers]
    out = model(x)
    for handle in handles:
        handle.remove()
    grads = torch.autograd.grad(out[0, 0], store)
    if shared:  # the backbone's batch holds the views: [V, K, h, w]
        activations, grads = list(store[0]), list(grads[0])
    else:
        activations, grads = [a[0] for a in store], [g[0] for g in grads]
    expected = []
    for activation, grad in zip(activations, grads):
        cam = torch.relu((grad.mean(dim=(1, 2), keepdim=True) * activation).sum(dim=0)).detach().numpy()
        cam = _minmax(np.maximum(cv2.resize(_minmax(cam).astype(np.float32), (40, 48)), 0))
        expected.append(cam / cam.max() if cam.max() > 0 else cam)
    got = grad_cam([model], x, [BinaryClassifierOutputTarget(1)])
    assert got.shape == (1, 2, 48, 40)
    np.testing.assert_allclose(got[0], np.stack(expected), atol=1e-4)
    assert got[0].max() == pytest.approx(1.0) and not np.allclose(got[0, 0], got[0, 1])
    saliency = gradient_saliency([model], x, [BinaryClassifierOutputTarget(1)])
    assert saliency.shape == (1, 2, 48, 40) and saliency.max() == pytest.approx(1.0)


@pytest.mark.parametrize(("shape", "threads"), [((37, 23, 3), 2), ((64, 50), 3), ((1, 9, 4), 4), ((300, 7, 3), 1)])
def test_threaded_huffman_png_decodes_to_the_same_pixels(shape, threads):
    import io

    from PIL import Image

    from osteolens.explain import encode_png

    image = np.random.default_rng(len(shape) + threads).integers(0, 256, shape, dtype=np.uint8)
    image[: shape[0] // 2] //= 7  # smoother rows too, so the "up" filter has something to do
    data = encode_png(image, huffman_only=True, threads=threads)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), image)  # Pillow checks every CRC
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image.ndim == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB if shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    assert np.array_equal(decoded, image)
    import zlib

    assert zlib.decompress(data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8])  # one valid zlib stream
