"""The Grad-CAM graph: a bundle's fold ensemble in ONNX with the gradients Grad-CAM needs.

``cam.onnx`` (stored in the bundle beside ``model.onnx`` at training, or by ``osteolens
export-onnx``) takes one image ``images [1, C, H, W]`` (and ``tabular [1, T]``) and returns

* ``outputs [F, 1, K]``: each fold's raw outputs (as ``model.onnx``);
* ``features [F, 1, D, h, w]``: each fold's final feature map, the layer
  :mod:`osteolens.explain.cam` explains;
* ``gradients [F, 1, K, D, h, w]``: ``d outputs[k] / d features`` for every output ``k``.

The gradient is that of the tail after the feature map only (global pooling, the head and the
covariates, no convolution), traced by ``torch.fx``'s ``make_fx`` with PyTorch's core ATen
decompositions into matrix products and expansions, which the TorchScript ONNX exporter
handles; the trunk is exported forward-only, as in ``model.onnx``. ONNX Runtime then gives
Grad-CAM and Grad-CAM++ (:mod:`osteolens.explain.cam_arrays`) without importing torch, timm or
pytorch-grad-cam: a one-image ``osteolens predict --cam`` starts in about a second instead of
four. :func:`check_cam_onnx` runs it against pytorch-grad-cam on the bundle's torch folds before
it is attached. Single-view models only; multi-view models explain through torch.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from osteolens.errors import BundleError, ModelError

#: Largest tolerated difference between the graph's heat map and pytorch-grad-cam's (maps in [0, 1]).
CAM_TOLERANCE = 1e-3
OUTPUT_NAMES = ["outputs", "features", "gradients"]


def _tail_gradients(model: Any, feature_map: Any, tabular: Any) -> Any:
    """``make_fx`` graph of ``(features[, tabular]) -> (outputs, d outputs / d features)`` for one fold."""
    import torch
    from torch._decomp import core_aten_decompositions
    from torch.fx.experimental.proxy_tensor import make_fx

    def tail(features: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = features.detach().requires_grad_(True)
        with torch.enable_grad():
            outputs = model.from_features(model.backbone.forward_head(features), *rest)
            eye = torch.eye(outputs.shape[1], dtype=outputs.dtype)
            grads = [torch.autograd.grad(outputs, features, grad_outputs=eye[k : k + 1], retain_graph=True)[0]
                     for k in range(outputs.shape[1])]
        return outputs.detach(), torch.stack(grads, 1)

    args = (feature_map,) if tabular is None else (feature_map, tabular)
    return make_fx(tail, decomposition_table=core_aten_decompositions())(*args)


def export_cam_onnx(models: Sequence[Any], input_size: tuple[int, int], in_chans: int = 1, n_tabular: int = 0) -> bytes:
    """Serialise the fold ensemble as the Grad-CAM graph (batch 1; see the module docstring).

    Raises:
        ModelError: a multi-view model, or a network the exporter cannot trace.
    """
    import warnings

    import torch

    if any(getattr(model, "views", 1) != 1 for model in models):
        raise ModelError("the Grad-CAM graph is for single-view models; multi-view models explain through torch.")
    images = torch.rand(1, in_chans, *input_size)
    tabular = torch.zeros(1, n_tabular) if n_tabular else None
    flags = [[p.requires_grad for p in model.parameters()] for model in models]
    try:
        for model in models:
            model.eval().requires_grad_(False)  # weights become constants; only the feature map is differentiated
        with torch.no_grad():
            feature_map = models[0].backbone.forward_features(images)
        tails = torch.nn.ModuleList([_tail_gradients(model, feature_map, tabular) for model in models])

        class CamEnsemble(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.trunks = torch.nn.ModuleList([model.backbone for model in models])
                self.tails = tails

            def forward(self, images: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
                results = []
                for trunk, tail in zip(self.trunks, self.tails):
                    features = trunk.forward_features(images)
                    results.append((*tail(features, *rest), features))
                outputs, gradients, features = (torch.stack(part) for part in zip(*results))
                return outputs, features, gradients

        buffer = io.BytesIO()
        names = ["images"] + (["tabular"] if n_tabular else [])
        args = (images,) if tabular is None else (images, tabular)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter warns about its own deprecation
            torch.onnx.export(CamEnsemble().eval(), args, buffer, input_names=names, output_names=OUTPUT_NAMES,
                              opset_version=17, dynamo=False, do_constant_folding=True)
    except ModelError:
        raise
    except Exception as exc:  # tracing and exporter errors come in many types
        raise ModelError(f"the Grad-CAM graph cannot be exported ({type(exc).__name__}: {exc}).") from exc
    finally:
        for model, model_flags in zip(models, flags):
            for param, flag in zip(model.parameters(), model_flags):
                param.requires_grad_(flag)
    return _gemms_as_matmul_add(buffer.getvalue())


def _gemms_as_matmul_add(model: bytes) -> bytes:
    """Every ``Gemm`` node rewritten as ``MatMul`` (+ ``Transpose``) and ``Add``; no stored shapes.

    The TorchScript exporter fuses ``mm`` followed by a broadcasting ``add`` into one ``Gemm``
    even when the added tensor is larger than the product (the ordinal head's ``[1, 1]`` score
    plus its ``[K-1]`` biases), which ONNX Runtime then refuses to run; MatMul and Add broadcast
    as torch does. The exporter writes alpha = 1, no transA, and beta = 1 (or 0 for a plain
    ``mm``, whose C is then unused); anything else is refused.
    """
    import onnx
    from onnx import helper

    graph = onnx.load_from_string(model)
    nodes = []
    for node in graph.graph.node:
        if node.op_type != "Gemm":
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) not in (0.0, 1.0) or attrs.get("transA", 0):
            raise ModelError(f"unexpected Gemm attributes {attrs} in the Grad-CAM graph.")
        a, b, *c = node.input
        c = c if attrs.get("beta", 1.0) == 1.0 else []
        if attrs.get("transB", 0):
            nodes.append(helper.make_node("Transpose", [b], [f"{node.name}_bt"], name=f"{node.name}_transpose"))
            b = f"{node.name}_bt"
        product = f"{node.name}_mm" if c else node.output[0]
        nodes.append(helper.make_node("MatMul", [a, b], [product], name=f"{node.name}_matmul"))
        if c:
            nodes.append(helper.make_node("Add", [product, c[0]], [node.output[0]], name=f"{node.name}_add"))
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    # The exporter's static shapes of the traced tail can be wrong (ordinal: 1 output for K-1);
    # ONNX Runtime infers them again from the inputs.
    del graph.graph.value_info[:]
    for output in graph.graph.output:
        output.type.tensor_type.ClearField("shape")
    return graph.SerializeToString()


class OnnxGradCam:
    """Grad-CAM / Grad-CAM++ of one image with ONNX Runtime (no torch), from ``cam.onnx``."""

    def __init__(self, model: bytes, threads: int | None = None) -> None:
        from osteolens.inference.session import OnnxBackend

        self.session = OnnxBackend(model, threads).session
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(self, image: np.ndarray, tabular: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(outputs [F, 1, K], features [F, 1, D, h, w], gradients [F, 1, K, D, h, w])`` of ``image [C, H, W]``."""
        feed: dict[str, Any] = {"images": np.ascontiguousarray(image[None], dtype=np.float32)}
        if "tabular" in self.inputs:
            feed["tabular"] = np.ascontiguousarray(tabular, dtype=np.float32)
        outputs, features, gradients = self.session.run(OUTPUT_NAMES, feed)
        return outputs, features, gradients

    @staticmethod
    def heatmap(run: tuple[np.ndarray, np.ndarray, np.ndarray], size: tuple[int, int], task: str,
                class_index: int | None, method: str = "gradcam") -> np.ndarray:
        """The heat map ``float32 [H, W]`` in [0, 1] at the network input ``size`` from a :meth:`run`
        (as :func:`osteolens.explain.cam.grad_cam` of the torch folds)."""
        from osteolens.explain.cam_arrays import ensemble_map, layer_map, score_coefficients

        outputs, features, gradients = run
        coefficients = score_coefficients(task, class_index, outputs.shape[-1])
        return ensemble_map([layer_map(features[f, 0], np.tensordot(coefficients, gradients[f, 0], axes=1),
                                       tuple(size), method) for f in range(features.shape[0])])

    def __call__(self, image: np.ndarray, tabular: np.ndarray | None, task: str, class_index: int | None,
                 method: str = "gradcam") -> np.ndarray:
        """The heat map of ``image [C, H, W]`` (see :meth:`heatmap`)."""
        return self.heatmap(self.run(image, tabular), image.shape[-2:], task, class_index, method)


def check_cam_onnx(bundle: Any, cam_model: bytes, tolerance: float = CAM_TOLERANCE, seed: int = 0) -> dict[str, Any]:
    """Compare the graph's outputs and Grad-CAM maps with the bundle's torch folds (pytorch-grad-cam)
    on one random image, for every class (or the regression value) and both methods.

    Returns:
        ``{"max_abs_output_difference", "max_abs_map_difference", "tolerance", "seed"}`` for ``bundle.json``.

    Raises:
        BundleError: the graph does not run, or it is another model (outputs or maps differ).
    """
    import torch

    from osteolens.explain.cam import cam_target, grad_cam
    from osteolens.inference.runtime import PARITY_TOLERANCE, TorchBackend

    fix = "Fix: attach the graph exported from this bundle ('osteolens export-onnx BUNDLE')."
    n_tabular = len(bundle.tabular)
    generator = np.random.default_rng(seed)
    image = generator.random((int(bundle.architecture.get("in_chans", 1)), *bundle.input_size), dtype=np.float32)
    tabular = generator.standard_normal((1, n_tabular)).astype(np.float32) if n_tabular else None
    try:
        cam = OnnxGradCam(cam_model, threads=1)
        outputs, _, _ = cam.run(image, tabular)
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidArgument types
        reason = (str(exc.__cause__ or exc).splitlines() or [""])[0]
        raise BundleError(f"{bundle.path}: the Grad-CAM graph does not run on this bundle's inputs ({reason}). {fix}") from exc
    reference = TorchBackend(bundle.models, n_tabular > 0)(image[None], tabular)
    if outputs.shape != reference.shape:
        raise BundleError(f"{bundle.path}: the Grad-CAM graph outputs shape {list(outputs.shape)}, the bundle's folds "
                          f"{list(reference.shape)}: it is another model. {fix}")
    output_difference = float(np.max(np.abs(outputs - reference)))
    classes = [None] if bundle.task == "regression" else range(len(bundle.labels))
    x, t = torch.from_numpy(image[None]), None if tabular is None else torch.from_numpy(tabular)
    map_difference = 0.0
    for method in ("gradcam", "gradcam++"):
        for index in classes:
            expected = grad_cam(bundle.models, x, [cam_target(bundle.task, index)], t, method=method)[0]
            got = cam(image, tabular, bundle.task, index, method)
            map_difference = max(map_difference, float(np.max(np.abs(expected - got))))
    if not (output_difference <= PARITY_TOLERANCE and map_difference <= tolerance):
        raise BundleError(f"{bundle.path}: the Grad-CAM graph differs from the bundle's torch folds (outputs by "
                          f"{output_difference:.2e}, maps by {map_difference:.2e}): it is another model or a broken "
                          f"export. {fix}")
    return {"max_abs_output_difference": output_difference, "max_abs_map_difference": map_difference,
            "tolerance": tolerance, "seed": seed}


__all__ = ["CAM_TOLERANCE", "OnnxGradCam", "check_cam_onnx", "export_cam_onnx"]
