"""Explanations: Grad-CAM / Grad-CAM++ (pytorch-grad-cam), gradient saliency, overlays, figure grids.

Example:
    >>> from osteolens.explain import colorize
    >>> import numpy as np
    >>> colorize(np.array([[0.0, 1.0]], np.float32)).tolist()  # jet: dark blue -> dark red
    [[[0, 0, 128], [128, 0, 0]]]
"""

from __future__ import annotations

from osteolens.explain.cam import CAM_METHODS, OrdinalTarget, RegressionTarget, cam_target, grad_cam
from osteolens.explain.render import colorize, encode_png, heatmap_png, overlay, save_png
from osteolens.explain.saliency import gradient_saliency

__all__ = [
    "CAM_METHODS",
    "OrdinalTarget",
    "RegressionTarget",
    "cam_target",
    "colorize",
    "encode_png",
    "grad_cam",
    "gradient_saliency",
    "heatmap_png",
    "overlay",
    "save_png",
]
