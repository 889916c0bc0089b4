"""Explanations: Grad-CAM / Grad-CAM++ (pytorch-grad-cam), gradient saliency, overlays, figure grids.

The names below are imported on first use: importing ``osteolens.explain`` loads neither
torch nor pytorch-grad-cam.

Example:
    >>> from osteolens.explain import colorize
    >>> import numpy as np
    >>> colorize(np.array([[0.0, 1.0]], np.float32)).tolist()  # jet: dark blue -> dark red
    [[[0, 0, 128], [128, 0, 0]]]
"""

from __future__ import annotations

from osteolens import lazy_exports

__all__ = lazy_exports(__name__, {
    "cam": ["CAM_METHODS", "OrdinalTarget", "RegressionTarget", "cam_target", "grad_cam"],
    "render": ["colorize", "encode_png", "heatmap_png", "overlay", "save_png"],
    "saliency": ["gradient_saliency"],
})
