"""Reference implementations the benchmarks compare osteolens against (not part of the package)."""

from __future__ import annotations

import math

import numpy as np


def skimage_rolling_ball(pixels: np.ndarray, radius: float, paraboloid: bool = True, presmooth: bool = True) -> np.ndarray:
    """``clip(I - B, 0, 1)`` with the opening ``B`` computed by ``skimage.restoration.rolling_ball``
    at every pixel, on the 8-bit height scale osteolens uses: the erosion, then the dilation as
    ``-rolling_ball(-E)``. The paraboloid goes in as two exact 1-D kernels, truncated where
    they are deeper than the image's grey-level range (where they can no longer touch it);
    the ball as scikit-image's own 2-D ball. This is what a full-resolution rolling ball
    costs with a general-purpose library (the dental seed's setting: radius 180, paraboloid,
    presmoothing)."""
    import cv2
    from skimage.restoration import rolling_ball

    grey = np.asarray(pixels, dtype=np.float32) * np.float32(255.0)
    if presmooth:
        grey = cv2.blur(grey, (3, 3), borderType=cv2.BORDER_REFLECT)
    if paraboloid:
        reach = int(math.ceil(math.sqrt(2.0 * radius * float(grey.max() - grey.min()))))
        x = np.arange(-reach, reach + 1, dtype=np.float64)
        profile = -(x**2) / (2.0 * radius)
        eroded = rolling_ball(rolling_ball(grey, kernel=profile[None, :]), kernel=profile[:, None])
        background = -rolling_ball(rolling_ball(-eroded, kernel=profile[None, :]), kernel=profile[:, None])
    else:
        background = -rolling_ball(-rolling_ball(grey, radius=radius), radius=radius)
    return np.clip(pixels - background / np.float32(255.0), 0.0, 1.0).astype(np.float32)
