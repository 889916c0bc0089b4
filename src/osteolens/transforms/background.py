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

Exact path (``exact=True``): ``skimage.restoration.rolling_ball`` at full resolution.
That function returns only the ball's apex height (the erosion ``I erode k``), so the
opening is two calls: the erosion, then the dilation as ``-rolling_ball(-E)`` (``k`` is
symmetric). The ball uses scikit-image's ``ball_kernel``; the paraboloid is passed as an
explicit kernel. Because ``x^2 + y^2`` splits into ``x^2`` and ``y^2``, a grey-scale
erosion (or dilation) by the paraboloid equals one by the 1-D parabola along the rows
followed by one along the columns, exactly, so the paraboloid is applied as two 1-D
kernels; it is truncated where its depth exceeds the image's grey-level range, where it
can no longer touch the image (also exact). The ball is not separable, so its exact path
costs O(H W r^2): minutes for a 2k image and r = 180.

Fast path (default): the same opening computed on an image shrunk by area averaging so
that the ball's radius becomes about 12 pixels (the surface is rescaled so that it is the
same shape in original pixels), then the background is enlarged back with bilinear
interpolation and subtracted. The background is smooth on the scale of the ball, so
little is lost; see ``docs/transforms.md`` and ``benchmarks/rolling_ball.py`` for the
measured speed-up and difference on a real radiograph.
"""

from __future__ import annotations

import math

import numpy as np

from osteolens.errors import TransformError
from osteolens.transforms.base import Transform, check_range, register_transform

GREY_LEVELS = 255.0
"""Heights are measured on the 8-bit scale: pixels in [0, 1] are multiplied by this."""

FAST_TARGET_RADIUS = 12.0
"""The fast path shrinks the image until the ball's radius is about this many pixels."""


def _paraboloid_profile(radius: float, reach: int, step: float) -> np.ndarray:
    """Heights of the 1-D parabola ``-(x * step)^2 / (2 r)`` for x in [-reach, reach]."""
    x = np.arange(-reach, reach + 1, dtype=np.float64) * step
    return -(x**2) / (2.0 * radius)


def _ball_surface(radius: float, step_y: float, step_x: float) -> np.ndarray:
    """Heights of the ball's upper surface on a grid with the given pixel steps (inf outside)."""
    reach_y, reach_x = int(math.floor(radius / step_y)), int(math.floor(radius / step_x))
    y = np.arange(-reach_y, reach_y + 1, dtype=np.float64)[:, None] * step_y
    x = np.arange(-reach_x, reach_x + 1, dtype=np.float64)[None, :] * step_x
    squared = radius**2 - y**2 - x**2
    return np.where(squared >= 0, np.sqrt(np.clip(squared, 0, None)), np.inf)


def _opening(grey: np.ndarray, kernels: list[np.ndarray]) -> np.ndarray:
    """Grey-scale opening by the min-plus composition of ``kernels`` (skimage surface convention)."""
    from skimage.restoration import rolling_ball

    eroded = grey
    for kernel in kernels:
        eroded = rolling_ball(eroded, kernel=kernel)
    dilated = -eroded
    for kernel in kernels:
        dilated = rolling_ball(dilated, kernel=kernel)
    return -dilated


def _kernels(radius: float, paraboloid: bool, span: float, step_y: float = 1.0, step_x: float = 1.0) -> list[np.ndarray]:
    """The structuring surface on a grid of ``step`` original pixels per grid pixel."""
    if not paraboloid:
        return [_ball_surface(radius, step_y, step_x)]
    # Beyond the distance where the parabola is deeper than the grey-level span it can
    # never be the minimum, so truncating there is exact.
    reach = math.sqrt(2.0 * radius * max(span, 0.0))
    reach_y, reach_x = int(math.ceil(reach / step_y)), int(math.ceil(reach / step_x))
    return [_paraboloid_profile(radius, reach_x, step_x)[None, :], _paraboloid_profile(radius, reach_y, step_y)[:, None]]


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
        exact: full-resolution scikit-image computation instead of the fast path.
        scale: the fast path's shrink factor in (0, 1]; None picks ``12 / radius``.

    Returns:
        ``float32`` background, the same shape as ``pixels``.
    """
    import cv2

    image = np.asarray(pixels, dtype=np.float32)
    grey = image * np.float32(GREY_LEVELS)
    if presmooth:
        grey = cv2.blur(grey, (3, 3), borderType=cv2.BORDER_REFLECT)
    span = float(grey.max() - grey.min())
    if exact:
        background = _opening(grey, _kernels(radius, paraboloid, span))
        return (background / GREY_LEVELS).astype(np.float32)
    factor = min(1.0, FAST_TARGET_RADIUS / radius) if scale is None else scale
    height, width = grey.shape
    small_h, small_w = max(1, round(height * factor)), max(1, round(width * factor))
    small = cv2.resize(grey, (small_w, small_h), interpolation=cv2.INTER_AREA) if factor < 1 else grey
    kernels = _kernels(radius, paraboloid, span, height / small_h, width / small_w)
    background = _opening(small, kernels)
    if background.shape != grey.shape:
        background = cv2.resize(background, (width, height), interpolation=cv2.INTER_LINEAR)
    return (background / GREY_LEVELS).astype(np.float32)


@register_transform("rolling_ball")
class RollingBall(Transform):
    """Rolling-ball background subtraction; dental seed: radius 180, dark background,
    paraboloid, presmoothing. ``out = clip(I - B, 0, 1)`` (see the module docstring).

    Args:
        radius: ball radius in pixels; larger than the structures to keep.
        light_background: the background is bright (invert, subtract, invert back).
        paraboloid: ImageJ's sliding paraboloid instead of a ball.
        presmooth: 3 x 3 mean before estimating the background.
        exact: full-resolution scikit-image (slow: minutes at 2k for a ball of 180).
        scale: fast-path shrink factor in (0, 1], None for automatic (ball radius ~12 px).
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
