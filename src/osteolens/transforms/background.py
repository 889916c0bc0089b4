"""Rolling-ball background subtraction (Sternberg 1983, as in ImageJ), exact and fast.

The maths. Read the image as a landscape whose height is the grey level (pixels x 255,
the 8-bit scale ImageJ and the dental seed worked on). A structuring surface ``k`` is
rolled under it: the *background* is the highest surface the rolling shape can reach
from below, i.e. the grey-scale opening ``B = (I erode k) dilate k`` with

- ball of radius ``r``:  ``k(d) = r - sqrt(r^2 - d^2)`` for ``d <= r`` (ImageJ's rolling ball);
- paraboloid:            ``k(d) = d^2 / (2 r)`` (ImageJ's "sliding paraboloid": the same
  curvature as the ball at its apex, with no limit on the steepness of the sides),

``d`` being the distance in pixels from the shape's apex and ``k`` the depth below the
apex in grey levels. The result is ``I - B`` (clipped to [0, 1]): the slowly varying
exposure and soft-tissue background is removed and structures narrower than the ball
(trabeculae, cortex) are kept.

ImageJ options -> parameters: "Rolling ball radius" -> ``radius`` (pixels); "Light
background" -> ``light_background`` (the image is inverted, processed and inverted back,
so the background becomes white); "Sliding paraboloid" -> ``paraboloid``; "Disable
smoothing" unticked -> ``presmooth=True`` (the background is estimated on a 3 x 3 mean of
the image, which makes it insensitive to single-pixel noise; the subtraction uses the
unsmoothed image). ImageJ itself shrinks images by up to 8x for large balls and
flattens the ball by the same factor; osteolens does not copy that quirk.

Paraboloid. Because ``x^2 + y^2`` splits into ``x^2`` and ``y^2``, a grey-scale erosion
(or dilation) by the paraboloid equals one by the 1-D parabola along the columns followed
by one along the rows, exactly; each 1-D pass is a linear-time lower-envelope sweep
(:mod:`osteolens.transforms.parabolic`), so the exact opening (``exact=True``) costs
O(H W) whatever the radius. The fast path (default) computes the erosion exactly but
only at apexes on a grid of ``radius / 30`` pixels, the dilation on that grid, and
interpolates the background back; it is a lower bound of the exact background that
misses only apexes between grid points, and reads a sixth of the first pass's output.

Ball. Not separable. Exact path: ``skimage.restoration.rolling_ball`` at full resolution
(it returns only the ball's apex height, the erosion, so the opening is two calls: the
erosion, then the dilation as ``-rolling_ball(-E)``); O(H W r^2), minutes for a 2k image
and r = 180. Fast path: the image is shrunk by area averaging until the ball's radius is
about 24 pixels, opened there and interpolated back; this cannot follow the jumps the
ball's vertical rim puts into the background next to tall edges, so it is the less
accurate of the two. ``benchmarks/rolling_ball.py`` measures both fast paths against the
exact ones on a real 2k radiograph, and scikit-image's exact paraboloid against ours
(figures in ``docs/benchmarks.md``).
"""

from __future__ import annotations

import math

import numpy as np

from osteolens.errors import TransformError
from osteolens.transforms.base import Transform, check_range, register_transform

GREY_LEVELS = 255.0
"""Heights are measured on the 8-bit scale: pixels in [0, 1] are multiplied by this."""

FAST_PARABOLOID_RADIUS = 30.0
"""Paraboloid fast path: apexes on a grid of ``radius / 30`` pixels (6 for the dental 180)."""

FAST_BALL_RADIUS = 24.0
"""Ball fast path: the image is shrunk until the ball's radius is about 24 pixels."""


def _ball_surface(radius: float, step_y: float, step_x: float) -> np.ndarray:
    """Heights of the ball's upper surface on a grid with the given pixel steps (inf outside)."""
    reach_y, reach_x = int(math.floor(radius / step_y)), int(math.floor(radius / step_x))
    y = np.arange(-reach_y, reach_y + 1, dtype=np.float64)[:, None] * step_y
    x = np.arange(-reach_x, reach_x + 1, dtype=np.float64)[None, :] * step_x
    squared = radius**2 - y**2 - x**2
    return np.where(squared >= 0, np.sqrt(np.clip(squared, 0, None)), np.inf)


def _erode(grey: np.ndarray, kernels: list[np.ndarray]) -> np.ndarray:
    """Grey-scale erosion by the min-plus composition of ``kernels`` (the ball's apex height)."""
    from skimage.restoration import rolling_ball

    for kernel in kernels:
        grey = rolling_ball(grey, kernel=kernel)
    return grey


def _dilate(grey: np.ndarray, kernels: list[np.ndarray]) -> np.ndarray:
    """Grey-scale dilation by symmetric kernels, as ``-erode(-grey)``."""
    return -_erode(-grey, kernels)


def _grid(length: int, step: int) -> tuple[int, int]:
    """``(first, count)`` of sample positions ``first + k * step``, centred inside ``[0, length)``."""
    count = -(-length // step)
    return ((length - 1) - (count - 1) * step) // 2, count


def _transpose(values: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.transpose(np.ascontiguousarray(values, dtype=np.float32))


def _paraboloid_erosion(grey: np.ndarray, radius: float, step: int = 1, spacing: float = 1.0) -> np.ndarray:
    """Erosion by the paraboloid ``(dx^2 + dy^2) spacing^2 / (2 r)``, only at apexes on a grid
    of ``step`` pixels (:func:`_grid` in each direction).

    ``x^2 + y^2`` splits into ``x^2`` and ``y^2``, so the erosion by the paraboloid is exactly
    the erosion by the 1-D parabola along the columns followed by the one along the rows,
    each an exact linear-time sweep (:func:`osteolens.transforms.parabolic.erode_lines`).
    """
    from osteolens.transforms.parabolic import erode_lines  # numba: imported when first needed

    first_y, count_y = _grid(grey.shape[0], step)
    first_x, count_x = _grid(grey.shape[1], step)
    by_columns = erode_lines(_transpose(grey), radius, first_y, step, count_y, spacing)  # (x, y_k)
    return erode_lines(_transpose(by_columns), radius, first_x, step, count_x, spacing)  # (y_k, x_k)


def _paraboloid_opening(grey: np.ndarray, radius: float, step: int) -> np.ndarray:
    """The paraboloid opening with its apexes on a grid of ``step`` pixels (every pixel: exact).

    The erosion ``E`` is exact at the grid points. Each grid point ``q`` carries a
    paraboloid ``E(q) - |p - q|^2 / (2 r)`` lying under the image, so their upper envelope
    (the dilation ``-erode(-E)`` on the grid, offsets in full-resolution pixels, then
    bilinear interpolation) is a lower bound of the exact opening: it only misses apexes
    that fall between grid points, a small underestimate next to steep dark gaps.
    """
    eroded = _paraboloid_erosion(grey, radius, step)
    coarse = -_paraboloid_erosion(-eroded, radius, 1, float(step))
    if step == 1:
        return coarse
    (first_y, _), (first_x, _) = _grid(grey.shape[0], step), _grid(grey.shape[1], step)
    return _remap(coarse, (np.arange(grey.shape[0]) - first_y) / step, (np.arange(grey.shape[1]) - first_x) / step)


def _remap(coarse: np.ndarray, map_y: np.ndarray, map_x: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``coarse`` at fractional (row, column) grid coordinates."""
    import cv2

    grid_x, grid_y = np.meshgrid(map_x.astype(np.float32), map_y.astype(np.float32))
    return cv2.remap(coarse.astype(np.float32), grid_x, grid_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _fast_ball_background(grey: np.ndarray, radius: float, step: int) -> np.ndarray:
    """Ball opening on an image shrunk ``step`` times by area averaging, interpolated back.

    The ball is not separable, so the sampled exact erosion of the paraboloid path would
    cost ``O(H W r^2 / step^2)``; averaging instead lifts narrow dark minima a little, so
    the background comes out slightly high next to them.
    """
    import cv2

    height, width = grey.shape
    small_h, small_w = -(-height // step), -(-width // step)
    pad_y, pad_x = small_h * step - height, small_w * step - width
    padded = cv2.copyMakeBorder(grey, pad_y // 2, pad_y - pad_y // 2, pad_x // 2, pad_x - pad_x // 2, cv2.BORDER_REPLICATE)
    small = cv2.resize(padded, (small_w, small_h), interpolation=cv2.INTER_AREA)
    kernels = [_ball_surface(radius, float(step), float(step))]
    coarse = _dilate(_erode(small, kernels), kernels)
    # Block k's centre is at (k + 0.5) step - 0.5 in the padded image.
    map_y = (np.arange(height) + pad_y // 2 + 0.5) / step - 0.5
    map_x = (np.arange(width) + pad_x // 2 + 0.5) / step - 0.5
    return _remap(coarse, map_y, map_x)


def auto_step(radius: float, paraboloid: bool) -> int:
    """The fast path's grid step in pixels when ``scale`` is None."""
    return max(1, int(round(radius / (FAST_PARABOLOID_RADIUS if paraboloid else FAST_BALL_RADIUS))))


def rolling_ball_background(
    pixels: np.ndarray,
    radius: float = 180.0,
    *,
    paraboloid: bool = True,
    presmooth: bool = True,
    exact: bool = False,
    scale: float | None = None,
) -> np.ndarray:
    """The rolling-ball background of a dark-background image, in the image's units.

    Args:
        pixels: ``(H, W)`` image, nominally in [0, 1].
        radius: ball radius in pixels (the curvature radius of the paraboloid).
        paraboloid: roll a paraboloid instead of a ball.
        presmooth: estimate the background on a 3 x 3 mean of the image.
        exact: the exact opening at every pixel instead of the fast path.
        scale: the fast path's resolution in (0, 1]: it works on a grid of
            ``round(1 / scale)`` pixels (1 is the exact path); None picks :func:`auto_step`.
            Ignored when ``exact``.

    Returns:
        ``float32`` background, the same shape as ``pixels``.
    """
    import cv2

    grey = np.asarray(pixels, dtype=np.float32) * np.float32(GREY_LEVELS)
    if presmooth:
        grey = cv2.blur(grey, (3, 3), borderType=cv2.BORDER_REFLECT)
    step = 1 if exact else auto_step(radius, paraboloid) if scale is None else max(1, int(round(1.0 / scale)))
    if paraboloid:
        background = _paraboloid_opening(grey, radius, step)
    elif step == 1:
        kernels = [_ball_surface(radius, 1.0, 1.0)]
        background = _dilate(_erode(grey, kernels), kernels)
    else:
        background = _fast_ball_background(grey, radius, step)
    return (background / np.float32(GREY_LEVELS)).astype(np.float32)


@register_transform("rolling_ball")
class RollingBall(Transform):
    """Rolling-ball background subtraction; dental seed: radius 180, dark background,
    paraboloid, presmoothing. ``out = clip(I - B, 0, 1)`` (see the module docstring).

    Args:
        radius: ball radius in pixels; larger than the structures to keep.
        light_background: the background is bright (invert, subtract, invert back).
        paraboloid: ImageJ's sliding paraboloid instead of a ball.
        presmooth: 3 x 3 mean before estimating the background.
        exact: the exact opening at every pixel (the paraboloid in a fraction of a second at
            2k; the ball through scikit-image: many minutes for a radius of 180).
        scale: the fast path's grid is ``round(1 / scale)`` pixels (1 = exact); None is
            ``radius / 30`` for the paraboloid and ``radius / 24`` for the ball.
    """

    def __init__(
        self,
        radius: float = 180,
        light_background: bool = False,
        paraboloid: bool = True,
        presmooth: bool = True,
        exact: bool = False,
        scale: float | None = None,
    ) -> None:
        self.radius = check_range("rolling_ball", "radius", radius, 0.5, None)
        for flag, value in (("light_background", light_background), ("paraboloid", paraboloid), ("presmooth", presmooth), ("exact", exact)):
            if not isinstance(value, bool | np.bool_):
                raise TransformError(f"transform 'rolling_ball': {flag} must be true or false, got {value!r}.")
        self.light_background = bool(light_background)
        self.paraboloid = bool(paraboloid)
        self.presmooth = bool(presmooth)
        self.exact = bool(exact)
        self.scale = None if scale is None else check_range("rolling_ball", "scale", scale, 1e-3, 1.0)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        image = 1.0 - pixels if self.light_background else pixels
        background = rolling_ball_background(
            image, self.radius, paraboloid=self.paraboloid, presmooth=self.presmooth, exact=self.exact, scale=self.scale
        )
        out = np.clip(image - background, 0.0, 1.0)
        return 1.0 - out if self.light_background else out
