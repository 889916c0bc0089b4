"""Grad-CAM and Grad-CAM++ from arrays: a feature map and its gradients, no PyTorch.

The ONNX Grad-CAM graph (:mod:`osteolens.inference.cam_graph`) gives, for one image, each
fold's final feature map ``A [D, h, w]`` and the gradient of every raw output with respect to
it. This module turns them into the same map as :func:`osteolens.explain.cam.grad_cam`:

* the explained score ``y = c . outputs`` (:func:`score_coefficients`, the targets of
  :func:`osteolens.explain.cam.cam_target`), so ``dy/dA = sum_k c_k dO_k/dA``;
* Grad-CAM: ``w_d = mean_ij dy/dA_dij``; Grad-CAM++: ``w_d = sum_ij relu(g_dij) a_dij`` with
  ``a = g^2 / (2 g^2 + sum_ij(A_d) g^3 + 1e-6)`` (Chattopadhay et al. 2018, eq. 19);
* ``L = ReLU(sum_d w_d A_d)``, scaled to [0, 1], resized to the network input with OpenCV's
  bilinear ``resize``, scaled again (pytorch-grad-cam's ``scale_cam_image`` steps), the folds'
  maps added and divided by their maximum.

Why by hand: pytorch-grad-cam computes these from hooks on a torch module, and a process
that predicts with ONNX Runtime has no torch to hook (importing torch, timm and
pytorch-grad-cam costs about 3 s of a one-image prediction). The few lines below repeat its
formulas and are tested equal to it (``tests/inference/test_cam_graph.py``).
"""

from __future__ import annotations

import numpy as np

from osteolens.errors import ModelError

METHODS = ("gradcam", "gradcam++")


def score_coefficients(task: str, class_index: int | None, n_outputs: int) -> np.ndarray:
    """``c [K]`` with the explained score ``y = c . outputs`` of :func:`~osteolens.explain.cam.cam_target`.

    binary: ``+z`` for the positive class, ``-z`` for the negative; multiclass: the class's logit;
    ordinal: the shared CORAL score read on the first cumulative logit, + above the first class;
    regression: the standardised value.
    """
    c = np.zeros(n_outputs, np.float32)
    if task == "regression":
        c[0] = 1.0
        return c
    if class_index is None:
        raise ModelError(f"a {task} explanation needs the class to explain.")
    if task == "binary":
        c[0] = 1.0 if class_index == 1 else -1.0
    elif task == "multiclass":
        c[int(class_index)] = 1.0
    elif task == "ordinal":
        c[0] = 1.0 if class_index > 0 else -1.0
    else:
        raise ModelError(f"unknown task '{task}'.")
    return c


def _scaled(cam: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """pytorch-grad-cam's ``scale_cam_image`` for one map: min to 0, max to 1, then resized."""
    import cv2

    cam = cam - np.min(cam)
    cam = cam / (1e-7 + np.max(cam))
    if size is not None:
        cam = cv2.resize(np.float32(cam), (size[1], size[0]))
    return np.float32(cam)


def layer_map(features: np.ndarray, gradients: np.ndarray, size: tuple[int, int], method: str = "gradcam") -> np.ndarray:
    """One fold's map ``[H, W]`` from its feature map and ``dy/dA`` (both ``[D, h, w]``)."""
    if method not in METHODS:
        raise ModelError(f"unknown CAM method '{method}'. Fix: use one of {', '.join(METHODS)}.")
    if method == "gradcam":
        weights = gradients.mean(axis=(1, 2))
    else:
        squared = gradients**2
        cubed = squared * gradients
        sums = features.sum(axis=(1, 2))[:, None, None]
        alpha = np.where(gradients != 0, squared / (2 * squared + sums * cubed + 0.000001), 0)
        weights = (np.maximum(gradients, 0) * alpha).sum(axis=(1, 2))
    cam = np.maximum((weights[:, None, None] * features).sum(axis=0), 0)
    return _scaled(np.maximum(_scaled(cam, size), 0))


def ensemble_map(maps: list[np.ndarray]) -> np.ndarray:
    """The folds' maps added and divided by their maximum (left as is when that is not positive)."""
    total = np.sum(maps, axis=0, dtype=np.float32)
    peak = total.max()
    return (total / peak if peak > 0 else total).astype(np.float32)


__all__ = ["METHODS", "ensemble_map", "layer_map", "score_coefficients"]
