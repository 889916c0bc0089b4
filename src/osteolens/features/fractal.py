"""Box-counting fractal dimension of the binarised trabecular pattern."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from osteolens.errors import ConfigError
from osteolens.features.base import FeatureFamily, check_image_and_mask, register_feature_family


def box_counts(binary: np.ndarray, sizes: Sequence[int], count: str = "boundary") -> np.ndarray:
    """Number of ``s x s`` boxes (tiling from the top-left, partial boxes dropped) that are occupied.

    ``count="mass"``: boxes holding at least one foreground pixel. ``count="boundary"``:
    boxes holding both foreground and background, i.e. covering the pattern's edges.
    Written by hand: scikit-image and SciPy have no box counter; it is one reshape per size.
    """
    if count not in ("mass", "boundary"):
        raise ConfigError("fractal.count", f"unknown count mode {count!r}.", "use 'boundary' or 'mass'.")
    binary = np.asarray(binary, dtype=bool)
    out = []
    for size in sizes:
        rows, cols = (binary.shape[0] // size) * size, (binary.shape[1] // size) * size
        blocks = binary[:rows, :cols].reshape(rows // size, size, cols // size, size).sum(axis=(1, 3))
        occupied = blocks > 0 if count == "mass" else (blocks > 0) & (blocks < size * size)
        out.append(int(occupied.sum()))
    return np.asarray(out)


def box_counting_dimension(binary: np.ndarray, sizes: Sequence[int], count: str = "boundary") -> tuple[float, float]:
    r"""Box-counting dimension :math:`D` and the :math:`R^2` of its fit.

    :math:`N(s) \propto s^{-D}`, so :math:`D` is minus the least-squares slope of
    :math:`\log N(s)` against :math:`\log s`. Sizes with no occupied box are left out; fewer
    than two usable sizes give NaN.
    """
    from scipy.stats import linregress

    counts = box_counts(binary, sizes, count)
    keep = counts > 0
    if keep.sum() < 2:
        return float("nan"), float("nan")
    fit = linregress(np.log(np.asarray(sizes, dtype=np.float64)[keep]), np.log(counts[keep]))
    return float(-fit.slope), float(fit.rvalue**2)


@register_feature_family("fractal")
class FractalFamily(FeatureFamily):
    r"""Box-counting fractal dimension of the ROI binarised at its Otsu threshold.

    Pixels above the Otsu threshold of the ROI (``skimage.filters.threshold_otsu``) and
    inside the mask form the foreground. With box sizes :math:`s = 2, 4, 8, \dots` up to a
    quarter of the shorter side (or ``sizes``), :math:`D = -\,d\log N(s) / d\log s` (see
    :func:`box_counting_dimension`). ``count="boundary"`` (default) measures the complexity of
    the trabecular edges (1 for a smooth outline, towards 2 for a space-filling one);
    ``"mass"`` that of the foreground itself.

    Columns: ``fractal_dimension``, ``fractal_r2``.

    Args:
        sizes: box sizes in pixels, or None for powers of two.
        count: ``"boundary"`` or ``"mass"``.
    """

    def __init__(self, sizes: Sequence[int] | None = None, count: str = "boundary") -> None:
        self.sizes = tuple(sizes) if sizes is not None else None
        self.count = count

    def box_sizes(self, shape: tuple[int, int]) -> list[int]:
        """The sizes used for an image of ``shape``."""
        if self.sizes is not None:
            return [int(s) for s in self.sizes]
        limit = max(2, min(shape) // 4)
        return [2**k for k in range(1, int(np.log2(limit)) + 1)]

    def compute(self, image: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
        from skimage.filters import threshold_otsu

        image, mask = check_image_and_mask(image, mask)
        values = image[mask]
        threshold = threshold_otsu(values) if np.ptp(values) > 0 else np.inf
        dimension, r2 = box_counting_dimension((image > threshold) & mask, self.box_sizes(image.shape), self.count)
        return {"fractal_dimension": dimension, "fractal_r2": r2}
