"""Geometric transforms: crop to content, pad to square, resize.

All of them keep row 0 at the top and column 0 at the left (no transposes, no flips):
OpenCV takes sizes as ``(width, height)``, which is converted in exactly one place here.
"""

from __future__ import annotations

import numpy as np

from osteolens.errors import TransformError
from osteolens.transforms.base import Transform, check_range, register_transform


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(top, left, bottom, right)`` of the True pixels, bottom/right exclusive; None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


@register_transform("crop_to_content")
class CropToContent(Transform):
    """Crop to the bounding box of the pixels with ``low < I < high`` (bone-age seed: 0.1 < I < 1).

    Run it after ``percentile_normalise``: the dark background falls below ``low`` and the
    saturated burnt-in labels reach exactly 1, so both lie outside the box. ``margin``
    pixels of context are kept on each side (clamped to the image). When no pixel is in
    range the image is returned unchanged (there is nothing better to crop to).
    """

    def __init__(self, low: float = 0.1, high: float = 1.0, margin: int = 0) -> None:
        self.low = check_range("crop_to_content", "low", low)
        self.high = check_range("crop_to_content", "high", high)
        if self.low >= self.high:
            raise TransformError(f"transform 'crop_to_content': low={low} must be below high={high}.")
        self.margin = int(check_range("crop_to_content", "margin", margin, 0, None))

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        box = bounding_box((pixels > self.low) & (pixels < self.high))
        if box is None:
            return pixels
        top, left, bottom, right = box
        height, width = pixels.shape
        m = self.margin
        return pixels[max(0, top - m) : min(height, bottom + m), max(0, left - m) : min(width, right + m)]


@register_transform("pad_to_square")
class PadToSquare(Transform):
    """Pad the shorter side with ``value`` so the image becomes square, content centred
    (the odd extra row / column goes to the bottom / right). Bone-age seed: zero padding.
    """

    def __init__(self, value: float = 0.0) -> None:
        self.value = check_range("pad_to_square", "value", value)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        height, width = pixels.shape
        side = max(height, width)
        top, left = (side - height) // 2, (side - width) // 2
        out = np.full((side, side), self.value, dtype=np.float32)
        out[top : top + height, left : left + width] = pixels
        return out


@register_transform("resize")
class Resize(Transform):
    """Resize to a fixed ``size`` (an int for a square, or ``[h, w]``) or by a ``factor``
    (e.g. 1/3, as the dental seed's 449 x 954 images). Exactly one of the two is given.

    Shrinking uses area averaging (``cv2.INTER_AREA``, no aliasing); enlarging uses bilinear
    interpolation (``cv2.INTER_LINEAR``), so values stay within the input's range.
    """

    def __init__(self, size: int | list[int] | None = None, factor: float | None = None) -> None:
        if (size is None) == (factor is None):
            raise TransformError("transform 'resize': give exactly one of size (int or [h, w]) or factor (e.g. 0.333).")
        if size is not None:
            sizes = [size, size] if np.isscalar(size) else list(size)
            if len(sizes) != 2:
                raise TransformError(f"transform 'resize': size must be an int or [h, w], got {size!r}.")
            checked = [check_range("resize", "size", s, 1, None) for s in sizes]
            if any(c != int(c) for c in checked):
                raise TransformError(f"transform 'resize': size must hold whole pixel counts, got {size!r}.")
            size = int(checked[0]) if np.isscalar(size) else [int(c) for c in checked]
        if factor is not None:
            factor = check_range("resize", "factor", factor, 1e-6, 100.0)
        self.size = size
        self.factor = factor

    def output_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The ``(h, w)`` this transform produces from an input of ``shape``."""
        if self.size is not None:
            return (self.size, self.size) if isinstance(self.size, int) else (self.size[0], self.size[1])
        assert self.factor is not None
        return max(1, round(shape[0] * self.factor)), max(1, round(shape[1] * self.factor))

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        import cv2

        height, width = self.output_shape(pixels.shape)
        if (height, width) == pixels.shape:
            return pixels
        shrinking = height <= pixels.shape[0] and width <= pixels.shape[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        return cv2.resize(pixels, (width, height), interpolation=interpolation)
