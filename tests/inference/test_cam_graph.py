"""The Grad-CAM graph (cam.onnx): ONNX Runtime's heat maps equal pytorch-grad-cam's on the torch folds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from osteolens.errors import BundleError, ModelError
from osteolens.explain import grad_cam
from osteolens.explain.cam import cam_target
from osteolens.inference import Predictor, add_cam_onnx, add_onnx, export_onnx, load_bundle
from osteolens.inference.cam_graph import OnnxGradCam, export_cam_onnx


def _with_graph(path):
    """The bundle with its model.onnx and its Grad-CAM graph, as training stores them."""
    bundle = load_bundle(path)
    add_onnx(path, export_onnx(bundle.models, bundle.input_size, 1, len(bundle.tabular)))
    add_cam_onnx(path, export_cam_onnx(bundle.models, bundle.input_size, 1, len(bundle.tabular)))
    return path


@pytest.mark.parametrize(("task", "tabular", "fusion"), [
    ("binary", (), "offset"), ("multiclass", ("age",), "offset"), ("ordinal", ("age",), "concat"),
    ("regression", (), "offset"),
])
def test_graph_maps_equal_pytorch_grad_cam_for_every_class_and_method(make_bundle, task, tabular, fusion):
    path = _with_graph(make_bundle(task, folds=2, tabular=tabular, fusion=fusion))
    bundle = load_bundle(path)
    parity = bundle.manifest["cam_onnx_parity"]
    assert parity["max_abs_map_difference"] <= 1e-3 and parity["max_abs_output_difference"] <= 1e-4
    graph = OnnxGradCam(bundle.cam_onnx, threads=1)
    rng = np.random.default_rng(5)
    image = rng.random((1, 48, 48), dtype=np.float32)
    tab = rng.standard_normal((1, len(tabular))).astype(np.float32) if tabular else None
    outputs, features, gradients = graph.run(image, tab)
    # outputs [F, 1, K]; features [F, 1, D, h, w]; gradients [F, 1, K, D, h, w]
    assert outputs.shape[:2] == (2, 1) and gradients.shape == (2, 1, outputs.shape[2], *features.shape[2:])
    x, t = torch.from_numpy(image[None]), None if tab is None else torch.from_numpy(tab)
    classes = [None] if task == "regression" else range(len(bundle.labels))
    for method in ("gradcam", "gradcam++"):
        for index in classes:
            expected = grad_cam(bundle.models, x, [cam_target(task, index)], t, method=method)[0]
            got = graph(image, tab, task, index, method)
            assert got.shape == (48, 48) and got.dtype == np.float32
            np.testing.assert_allclose(got, expected, atol=1e-4)


def test_graph_gradients_equal_autograd(make_bundle):
    """d outputs / d features from the graph equal torch autograd through pooling and the head."""
    path = _with_graph(make_bundle("multiclass", folds=1, tabular=("age",), fusion="concat"))
    bundle = load_bundle(path)
    model = bundle.models[0]
    image = np.random.default_rng(1).random((1, 48, 48), dtype=np.float32)
    tab = np.array([[0.7]], np.float32)
    _, features, gradients = OnnxGradCam(bundle.cam_onnx).run(image, tab)
    with torch.no_grad():
        fmap = model.backbone.forward_features(torch.from_numpy(image[None]))
    fmap.requires_grad_(True)
    out = model.from_features(model.backbone.forward_head(fmap), torch.from_numpy(tab))
    np.testing.assert_allclose(features[0], fmap.detach().numpy(), atol=1e-5)
    for k in range(3):
        (expected,) = torch.autograd.grad(out[0, k], fmap, retain_graph=True)
        np.testing.assert_allclose(gradients[0, 0, k], expected[0].numpy(), atol=1e-6)


def test_predictor_explains_through_the_graph_like_torch(make_bundle, radiograph_png):
    path = _with_graph(make_bundle("binary", folds=2))
    fast = Predictor(path)
    eager = Predictor(path, backend="torch")
    for method in ("gradcam", "gradcam++"):
        a = fast.predict(radiograph_png, cam=True, cam_method=method)
        b = eager.predict(radiograph_png, cam=True, cam_method=method)
        assert a.probability == pytest.approx(b.probability, abs=1e-5) and a.label == b.label
        assert a.heatmap.shape == (90, 70)
        np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-3)
    assert fast._models is None  # the torch folds were never built


def test_timm_backbone_graph_matches(tmp_path):
    from osteolens.inference import write_bundle
    from osteolens.models import create_model

    torch.manual_seed(0)
    models = [create_model("efficientnet_b0", "binary", 1).eval()]
    path = write_bundle(tmp_path / "b", models=models, preprocessing=[{"name": "resize", "params": {"size": 64}}],
                        input_size=(64, 64), task="binary", labels=["normal", "osteoporosis"], target="label")
    _with_graph(path)
    assert load_bundle(path).manifest["cam_onnx_parity"]["max_abs_map_difference"] <= 1e-3


def test_another_models_graph_is_refused(make_bundle):
    first = load_bundle(make_bundle("binary", folds=1, name="first"))
    torch.manual_seed(7)
    other = make_bundle("binary", folds=1, name="other")
    torch_other = load_bundle(other).models
    for model in torch_other:  # different weights, same architecture
        for param in model.parameters():
            param.data.normal_()
    wrong = export_cam_onnx(torch_other, first.input_size)
    with pytest.raises(BundleError, match="differs from the bundle's torch folds"):
        add_cam_onnx(first.path, wrong)
    assert load_bundle(first.path).cam_onnx is None


def test_multi_view_models_have_no_graph(create_model):
    model = create_model("simple_cnn", "binary", 1, views=2, conv_layers=2, filters=4, dense_units=8).eval()
    with pytest.raises(ModelError, match="single-view"):
        export_cam_onnx([model], (32, 32))
