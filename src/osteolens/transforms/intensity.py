"""Intensity transforms: percentile normalisation, histogram equalisation, CLAHE, inversion.

None of them moves a pixel, so orientation is untouched by construction.
"""

from __future__ import annotations

import numpy as np

from osteolens.errors import TransformError
from osteolens.transforms.base import Transform, check_range, register_transform


@register_transform("percentile_normalise")
class PercentileNormalise(Transform):
    """Map the ``low`` and ``high`` percentiles to 0 and 1 and clip (bone-age seed: 0.5 / 99.5 %).

    ``out = clip((I - P_low) / (P_high - P_low), 0, 1)``. Robust to a few saturated pixels
    (burnt-in labels, collimator edges) that would dominate a plain min-max stretch.
    A flat image (``P_high == P_low``) becomes all zeros.

    Example:
        >>> PercentileNormalise(0, 100)(np.array([[0.2, 0.4, 0.6]], np.float32)).round(3).tolist()
        [[0.0, 0.5, 1.0]]
    """

    def __init__(self, low: float = 0.5, high: float = 99.5) -> None:
        self.low = check_range("percentile_normalise", "low", low, 0.0, 100.0)
        self.high = check_range("percentile_normalise", "high", high, 0.0, 100.0)
        if self.low >= self.high:
            raise TransformError(f"transform 'percentile_normalise': low={low} must be below high={high}.")

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        p_low, p_high = (float(v) for v in tail_percentiles(pixels, (self.low, self.high)))
        if p_high <= p_low:
            return np.zeros_like(pixels)
        out = np.subtract(pixels, np.float32(p_low), dtype=np.float32)
        out *= np.float32(1.0 / (p_high - p_low))
        return np.clip(out, 0.0, 1.0, out=out)


def tail_percentiles(values: np.ndarray, percents: tuple[float, ...]) -> np.ndarray:
    """``np.percentile(values, percents)`` (linear interpolation between order statistics),
    finding each order statistic among the values beyond a bound instead of the whole image.

    Percentiles such as 0.5 / 99.5 sit in the image's tails, so a strided sample gives a
    bound that all the needed order statistics lie beyond; the values beyond it are counted
    (which proves the bound right, else the whole image is used) and only they are
    partitioned. The result is the same order statistics, so the same percentiles as
    NumPy's; on a 2048 x 2500 radiograph about 4x faster.
    """
    flat = np.ravel(values)
    n = flat.size
    positions = np.asarray(percents, dtype=np.float64) / 100.0 * (n - 1)
    if n < 65536:
        return np.percentile(flat, percents)
    sample = np.sort(flat[:: max(1, n // 16384)])
    out = np.empty(len(positions))
    for i, position in enumerate(positions):
        below = int(np.floor(position))
        ranks = [below, min(below + 1, n - 1)]
        upper_tail = position > (n - 1) / 2
        # Bound with a margin: the sample's order statistic 2 % of the sample further in.
        share = (n - below) / n if upper_tail else (below + 2) / n
        index = int(np.ceil((share + 0.02) * sample.size))
        if index >= sample.size:
            out[i] = np.percentile(flat, percents[i])
            continue
        if upper_tail:
            bound = sample[sample.size - 1 - index]
            tail = flat[flat >= bound]
            offset = n - tail.size  # rank of the tail's smallest value in the whole image
        else:
            bound = sample[index]
            tail = flat[flat <= bound]
            offset = 0
        local = [rank - offset for rank in ranks]
        if min(local) < 0 or max(local) >= tail.size:  # the bound was not far enough
            out[i] = np.percentile(flat, percents[i])
            continue
        part = np.partition(tail, local)
        a, b = float(part[local[0]]), float(part[local[1]])
        fraction = position - below
        # NumPy's _lerp: from the nearer end, for symmetric rounding.
        out[i] = b - (b - a) * (1 - fraction) if fraction >= 0.5 else a + (b - a) * fraction
    return out


@register_transform("equalise_histogram")
class EqualiseHistogram(Transform):
    """Global histogram equalisation (biplanar seed): each pixel becomes its grey level's
    cumulative frequency, ``out = CDF(I)``, through ``skimage.exposure.equalize_hist``.
    """

    def __init__(self, nbins: int = 256) -> None:
        self.nbins = int(check_range("equalise_histogram", "nbins", nbins, 2, 65536))

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        from skimage.exposure import equalize_hist

        return equalize_hist(pixels, nbins=self.nbins)


@register_transform("clahe")
class Clahe(Transform):
    """Contrast-limited adaptive histogram equalisation (``skimage.exposure.equalize_adapthist``).

    Args:
        clip_limit: fraction in (0, 1]; higher gives more contrast (and more noise).
        kernel_size: tile size in pixels, an int or ``[h, w]``; None is 1/8 of each side.

    Note: scikit-image first stretches the image's own min..max to the full range.
    """

    def __init__(self, clip_limit: float = 0.01, kernel_size: int | list[int] | None = None) -> None:
        self.clip_limit = check_range("clahe", "clip_limit", clip_limit, 1e-6, 1.0)
        if kernel_size is not None:
            sizes = [kernel_size] if np.isscalar(kernel_size) else list(kernel_size)
            if len(sizes) not in (1, 2) or any(int(check_range("clahe", "kernel_size", s, 2, None)) != s for s in sizes):
                raise TransformError(f"transform 'clahe': kernel_size must be an int >= 2 or [h, w], got {kernel_size!r}.")
            kernel_size = int(sizes[0]) if len(sizes) == 1 else [int(s) for s in sizes]
        self.kernel_size = kernel_size

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        from skimage.exposure import equalize_adapthist

        if float(pixels.max()) <= float(pixels.min()):
            return np.zeros_like(pixels)
        return equalize_adapthist(pixels, kernel_size=self.kernel_size, clip_limit=self.clip_limit)


@register_transform("invert")
class Invert(Transform):
    """``out = 1 - I``: turn a bone-dark image (MONOCHROME1-like) bone-bright, or back."""

    def __init__(self) -> None:
        pass

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        return 1.0 - pixels
