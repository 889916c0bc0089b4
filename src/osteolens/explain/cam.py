"""Grad-CAM and Grad-CAM++ through pytorch-grad-cam, for every osteolens task.

Grad-CAM (Selvaraju et al. 2017): with ``A^k`` the activations of channel ``k`` of the
target layer and ``y`` the explained score,
``w_k = mean_ij dy/dA^k_ij`` and ``L = ReLU(sum_k w_k A^k)``; Grad-CAM++ (Chattopadhay et
al. 2018) weights the positive gradients with second-order terms, which localises several
instances of a pattern better. The map is upsampled to the network input and scaled to
[0, 1]; :class:`osteolens.inference.preprocess.AxisMap` then puts it on the original image.

The target layer is ``model.cam_layer``: the backbone's final feature map, before global
pooling (``osteolens.models.create_model`` sets it for timm models and ``simple_cnn`` alike).
The explained score depends on the task:

| task | score ``y`` |
|---|---|
| binary | the logit for the positive class, its negative for the negative class (pytorch-grad-cam's ``BinaryClassifierOutputTarget``) |
| multiclass | the logit of the chosen class (``ClassifierOutputTarget``) |
| ordinal | the shared CORAL score (every cumulative logit moves with it): + for a class above the first, - for the first |
| regression | the predicted (standardised) value, :class:`RegressionTarget` |

Only gradients above the target layer are needed, so the layer's input is cut from the
graph during the pass: nothing below it is differentiated and no weight gradient is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from osteolens.errors import ModelError

CAM_METHODS = ("gradcam", "gradcam++")


class RegressionTarget:
    """Explained score for a regression output: ``sign * output[:, index]``.

    ``sign=+1`` shows what raises the prediction (older bone age, higher BMD), ``-1`` what lowers it.
    """

    def __init__(self, index: int = 0, sign: float = 1.0) -> None:
        self.index = index
        self.sign = sign

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return self.sign * model_output[..., self.index]


class OrdinalTarget(RegressionTarget):
    """CORAL ordinal score: every cumulative logit is the shared score plus a bias, so the first
    one carries the whole gradient; + for evidence of a higher class, - for the first class."""


def cam_target(task: str, class_index: int | None) -> Any:
    """The pytorch-grad-cam target explaining ``class_index`` (None for regression)."""
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget, ClassifierOutputTarget

    if task == "regression":
        return RegressionTarget()
    if class_index is None:
        raise ModelError(f"a {task} explanation needs the class to explain.")
    if task == "binary":
        return BinaryClassifierOutputTarget(int(class_index))
    if task == "multiclass":
        return ClassifierOutputTarget(int(class_index))
    if task == "ordinal":
        return OrdinalTarget(0, 1.0 if class_index > 0 else -1.0)
    raise ModelError(f"unknown task '{task}'.")


class _CamInput(torch.nn.Module):
    """Present ``model(images, tabular)`` as ``f(images)`` on a 4-D input, the form
    pytorch-grad-cam calls (it reads a 5-D input as a volume): several views travel as
    ``[N, V * C, H, W]`` and are unfolded to ``[N, V, C, H, W]`` here."""

    def __init__(self, model: torch.nn.Module, tabular: torch.Tensor | None, views: int) -> None:
        super().__init__()
        self.model = model
        self.tabular = tabular
        self.views = views

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.views > 1:
            images = images.unflatten(1, (self.views, -1))
        return self.model(images, self.tabular) if self.tabular is not None else self.model(images)


@contextmanager
def _graph_from(layer: torch.nn.Module) -> Iterator[None]:
    """Start the autograd graph at ``layer``'s input (detached, requiring grad) for the pass."""

    def cut(module: torch.nn.Module, args: tuple) -> tuple:
        return (args[0].detach().requires_grad_(True), *args[1:])

    handle = layer.register_forward_pre_hook(cut)
    try:
        with torch.enable_grad():
            yield
    finally:
        handle.remove()


def _view_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The layer to hook for each view: the shared backbone's feature map once, or every
    view's own backbone's."""
    if getattr(model, "cam_layer", None) is None:
        raise ModelError("the model has no 'cam_layer'. Fix: build it with osteolens.models.create_model.")
    if getattr(model, "views", 1) == 1 or len(model.feature_maps) <= 1:
        return [model.cam_layer]
    return list(model.feature_maps)


def grad_cam(
    models: Sequence[torch.nn.Module],
    images: torch.Tensor,
    targets: Sequence[Any],
    tabular: torch.Tensor | None = None,
    method: str = "gradcam",
) -> np.ndarray:
    """Class activation maps of a fold ensemble.

    Args:
        models: ``OsteoNet`` s (each with ``cam_layer``); their maps are averaged.
        images: network input ``[N, C, H, W]``, or ``[N, V, C, H, W]`` for a multi-view model.
        targets: one pytorch-grad-cam target per image (see :func:`cam_target`).
        tabular: covariates ``[N, T]`` when the model takes them.
        method: ``gradcam`` or ``gradcam++``.

    Returns:
        ``float32 [N, H, W]`` (``[N, V, H, W]`` for several views) in [0, 1] at the network
        input size, each map scaled so its maximum is 1 (all zeros when no location raises
        the score). Several views: one map per view for the same explained score, from the
        shared backbone's activations of that view or from that view's own backbone.
    """
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus

    if method not in CAM_METHODS:
        raise ModelError(f"unknown CAM method '{method}'. Fix: use one of {', '.join(CAM_METHODS)}.")
    cls = GradCAM if method == "gradcam" else GradCAMPlusPlus
    n, views = images.shape[0], images.shape[1] if images.ndim == 5 else 1
    total = np.zeros((n, views, images.shape[-2], images.shape[-1]), dtype=np.float32)
    flat = images.flatten(1, 2) if images.ndim == 5 else images
    for model in models:
        wrapped = _CamInput(model, tabular, views)
        layers = _view_layers(model)
        for v, layer in enumerate(layers):
            with cls(model=wrapped, target_layers=[layer]) as cam, _graph_from(layer):
                maps = cam(input_tensor=flat, targets=list(targets)).astype(np.float32)
            if len(layers) == views:  # this view's own backbone: one map per sample
                total[:, v] += maps
            else:  # a backbone shared by the views: its batch holds sample-major [N * V] maps
                total += maps.reshape(n, views, *maps.shape[1:])
    return _unit_max(total if images.ndim == 5 else total[:, 0])


def _unit_max(maps: np.ndarray) -> np.ndarray:
    """Each ``(H, W)`` map divided by its own maximum (left as is when that is not positive)."""
    peak = maps.max(axis=(-2, -1), keepdims=True)
    return (maps / np.where(peak > 0, peak, 1.0)).astype(np.float32)
