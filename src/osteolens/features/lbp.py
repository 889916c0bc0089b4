"""Local binary pattern histogram (scikit-image)."""

from __future__ import annotations

import numpy as np

from osteolens.features.base import FeatureFamily, check_image_and_mask, register_feature_family
from osteolens.features.pyradiomics_family import to_grey_levels


@register_feature_family("lbp")
class LBPFamily(FeatureFamily):
    r"""Normalised histogram of rotation-invariant uniform local binary patterns.

    For each pixel with value :math:`g_c` and :math:`P` neighbours :math:`g_p` on a circle
    of radius :math:`R`, the pattern is :math:`s_p = [g_p \ge g_c]`. ``method="uniform"``
    (``skimage.feature.local_binary_pattern``) codes a pattern with at most two 0/1
    transitions around the circle by its number of ones (0..P) and every other pattern as
    :math:`P + 1`; the feature vector is the fraction of ROI pixels with each code, so the
    :math:`P + 2` values sum to 1. Flat regions give code :math:`P`, edges and spots the
    low and middle codes, noise the last one.

    Columns: ``lbp_P<P>_R<R>_<code>``, e.g. ``lbp_P8_R1_0`` ... ``lbp_P8_R1_9``.

    Args:
        points: number of circle neighbours :math:`P`.
        radius: circle radius :math:`R` in pixels.
        scale: grey level of a pixel equal to 1.0 (the image is quantised to integer levels
            first, as LBP compares neighbours for equality).
    """

    def __init__(self, points: int = 8, radius: float = 1.0, scale: float = 255.0) -> None:
        self.points = points
        self.radius = radius
        self.scale = scale

    def compute(self, image: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
        from skimage.feature import local_binary_pattern

        image, mask = check_image_and_mask(image, mask)
        grey = to_grey_levels(image, self.scale, quantise=True).astype(np.uint16 if self.scale > 255 else np.uint8)
        codes = local_binary_pattern(grey, self.points, self.radius, method="uniform")[mask].astype(np.int64)
        hist = np.bincount(codes, minlength=self.points + 2)[: self.points + 2] / codes.size
        tag = f"lbp_P{self.points}_R{self.radius:g}"
        return {f"{tag}_{code}": float(value) for code, value in enumerate(hist)}
