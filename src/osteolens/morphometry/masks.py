"""Vertebral corners from a body mask, found in the vertebra's own frame (no fixed rotation).

No library finds the four corners of a vertebral body, so this module does, from OpenCV,
scikit-image and scipy pieces:

1. The largest connected part of the mask, holes filled, is outlined at the 0.5 level
   (``skimage.measure.find_contours``): once raw, and once after a 1-pixel Gaussian blur that
   turns the pixel staircase into a ramp whose 0.5 level follows a straight edge closely.
2. ``cv2.minAreaRect`` of the outline gives the body's own axes; the one closer to the
   cranial direction ``up`` is the height axis (``up`` defaults to the image top; in a spine
   it comes from the neighbours' centroids, so any orientation of the spine is handled).
3. In that frame, with coordinates normalised by the rectangle's half-sides (``s`` to the
   right, ``t`` up), each corner is the outline point extreme along a diagonal: top-left
   maximises ``t - s``, top-right ``t + s``, bottom-left ``-t - s``, bottom-right ``s - t``
   (right for any convex body whose sides are less steep than the normalised diagonal).
4. Each corner is refined to the crossing of straight lines fitted to its two sides near
   it (:func:`_refine_corners`): sub-pixel for a rasterised polygon.
5. The middle height is measured on the mask itself: along the line through the endplate
   midpoints, from where it leaves the outline at the top to where it leaves at the bottom,
   so a biconcave (depressed) endplate is seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from skimage import measure

from osteolens.errors import AnnotationError
from osteolens.morphometry.checks import spine_axis
from osteolens.morphometry.vertebra import BL, BR, TL, TR, VertebraMeasurement, measure_vertebra

SMOOTH_SIGMA_PX = 1.0
"""Gaussian blur of the mask before its outline is traced, in pixels."""
MAX_REFINE_PX = 4.0
"""Largest move from the outline's extreme point to the fitted corner, in pixels."""


@dataclass(frozen=True)
class MaskOutline:
    """What one mask gives: its corners, the middle-height points, outline and centroid.

    Attributes:
        corners: ``(4, 2)`` pixel ``(x, y)`` in the order top-left, top-right, bottom-left,
            bottom-right.
        midpoints: ``(2, 2)`` superior and inferior endplate points of the middle height.
        contour: ``(k, 2)`` closed sub-pixel outline ``(x, y)``.
        centroid: ``(2,)`` centre of mass ``(x, y)``.
    """

    corners: np.ndarray
    midpoints: np.ndarray
    contour: np.ndarray
    centroid: np.ndarray


_PAD = 4  # background border around the cropped body, room for the blur


def _largest_component(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest connected part, holes filled, cropped with a border; and the crop's ``(x, y)`` origin."""
    binary = np.asarray(mask) > 0
    if binary.ndim != 2:
        raise AnnotationError(f"a vertebra mask must be 2-D, got shape {binary.shape}.")
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    if count < 2:
        raise AnnotationError("the vertebra mask is empty. Fix: check the mask file (no foreground pixel).")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x0, y0, w, h = (int(v) for v in stats[largest, :4])
    body = np.pad(labels[y0 : y0 + h, x0 : x0 + w] == largest, _PAD)
    return ndimage.binary_fill_holes(body), np.array([x0 - _PAD, y0 - _PAD], dtype=float)


def _outline(body: np.ndarray, origin: np.ndarray, sigma: float) -> np.ndarray:
    """The 0.5 iso-contour ``(k, 2)`` of the body, after a Gaussian blur of ``sigma`` pixels (0: none)."""
    image = body.astype(np.float32)
    contours = measure.find_contours(ndimage.gaussian_filter(image, sigma) if sigma > 0 else image, 0.5)
    longest = max(contours, key=len)
    return longest[:, ::-1] + origin


def _frame(contour: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Centre, up axis, right axis and half extents of the minimum-area rectangle."""
    (cx, cy), _, _ = rect = cv2.minAreaRect(contour.astype(np.float32))
    box = cv2.boxPoints(rect).astype(float)
    axes = [box[1] - box[0], box[2] - box[1]]
    lengths = [float(np.linalg.norm(a)) for a in axes]
    units = [a / max(length, 1e-12) for a, length in zip(axes, lengths, strict=True)]
    k = int(np.argmax([abs(float(u @ up)) for u in units]))
    u_axis = units[k] if float(units[k] @ up) >= 0 else -units[k]
    r_axis = np.array([-u_axis[1], u_axis[0]])
    return np.array([cx, cy]), u_axis, r_axis, max(lengths[k] / 2, 1e-6), max(lengths[1 - k] / 2, 1e-6)


def _chord(contour: np.ndarray, origin: np.ndarray, direction: np.ndarray, half_window: float) -> np.ndarray | None:
    """Where the line ``origin + t * direction`` leaves the closed outline on either side of origin."""
    normal = np.array([-direction[1], direction[0]])
    start, end = contour, np.roll(contour, -1, axis=0)
    ds, de = (start - origin) @ normal, (end - origin) @ normal
    crossing = (ds * de < 0) | (ds == 0)
    if not crossing.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(ds[crossing] == 0, 0.0, ds[crossing] / (ds[crossing] - de[crossing]))
    points = start[crossing] + frac[:, None] * (end[crossing] - start[crossing])
    t = (points - origin) @ direction
    if not (t > 0).any() or not (t < 0).any():
        return None
    ends = []
    for end_t in (t[t > 0].min(), t[t < 0].max()):
        point = origin + end_t * direction
        # Average out the pixel staircase: a line through the outline within a small
        # window across the mid-line, cut by the mid-line (flat enough at a concavity's base).
        offset = contour - point
        near = contour[(np.abs(offset @ normal) < half_window) & (np.abs(offset @ direction) < half_window)]
        line = _fit_line(near) if len(near) >= 4 else None
        refined = _intersect((origin, direction), line) if line is not None else None
        ends.append(refined if refined is not None and np.linalg.norm(refined - point) < 1.5 else point)
    return np.vstack(ends)


def _fit_line(points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if len(points) < 2:
        return None
    vx, vy, x0, y0 = cv2.fitLine(points.astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
    return np.array([x0, y0], dtype=float), np.array([vx, vy], dtype=float)


def _intersect(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray | None:
    (p, d), (q, e) = a, b
    det = d[0] * -e[1] - d[1] * -e[0]
    if abs(det) < 0.2:  # sides closer than ~12 degrees to parallel: no reliable corner
        return None
    lam = ((q - p)[0] * -e[1] - (q - p)[1] * -e[0]) / det
    return p + lam * d


# Stretches of a side, as fractions of its length from the corner, tried longest first.
_STRETCHES = ((0.08, 0.85), (0.08, 0.50), (0.06, 0.25), (0.05, 0.15))
_STRAIGHT_SAGITTA_PX = 0.35


def _sagitta(points: np.ndarray, line: tuple[np.ndarray, np.ndarray]) -> float:
    """How far the points bow away from straight: the sagitta of a parabola fitted across the line.

    A straight edge rasterised as a staircase bows by a small fraction of a pixel; a curved
    stretch (an endplate dipping into a concavity) by about a pixel or more.
    """
    origin, direction = line
    along = (points - origin) @ direction
    across = (points - origin) @ np.array([-direction[1], direction[0]])
    if len(points) < 4 or np.ptp(along) <= 0:
        return 0.0
    curvature = np.polyfit(along, across, 2)[0]
    return float(abs(curvature) * (np.ptp(along) / 2) ** 2)


def _side_line(contour: np.ndarray, here: int, other: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A straight line along the side from contour index ``here`` towards ``other``, near ``here``.

    The longest stretch of :data:`_STRETCHES` that is straight (its sagitta at most
    ``_STRAIGHT_SAGITTA_PX``) is used: a long one on a straight side, where it averages
    the pixel staircase best; a short one when the side curves (an endplate concave inside
    its rims); else the shortest.
    """
    n = len(contour)
    forward, backward = (other - here) % n, (here - other) % n
    step, length = (1, forward) if forward <= backward else (-1, backward)
    line = None
    for low, high in _STRETCHES:
        first = int(round(low * length))
        index = (here + step * np.arange(first, max(int(round(high * length)), first + 3) + 1)) % n
        points = contour[index]
        line = _fit_line(points)
        if line is not None and _sagitta(points, line) <= _STRAIGHT_SAGITTA_PX:
            return line
    return line


def _refine_corners(
    contour: np.ndarray, extreme: list[int], raw_corners: np.ndarray, diagonals: np.ndarray
) -> np.ndarray:
    """Sub-pixel corners: intersect straight lines fitted to each side near each corner.

    ``extreme`` are the indices on the (blurred) ``contour`` of its diagonal-extreme points
    (TL, TR, BL, BR); ``raw_corners`` the same points on the raw outline and ``diagonals``
    ``(4, 2)`` the directions they are extreme along. Each corner's two sides are fitted
    on a straight stretch near it, clear of the rounding at the corner (:func:`_side_line`),
    so a rasterised polygon's vertices come back to a fraction of a pixel, also when an
    endplate is concave inside its rims. The raw extreme point is kept instead when the
    sides are nearly parallel, when the crossing lies more than ``MAX_REFINE_PX`` away, or
    when it lies more than a quarter pixel *behind* the raw point along the diagonal: then
    the sides bulge near the corner (a dome-shaped endplate), the fitted lines are chords
    and their crossing would cut the corner off.
    """
    corners = raw_corners.astype(float).copy()
    cyclic = [extreme[TL], extreme[TR], extreme[BR], extreme[BL]]  # around the outline
    for k, corner in enumerate((TL, TR, BR, BL)):
        here = cyclic[k]
        lines = [_side_line(contour, here, cyclic[k - 1]), _side_line(contour, here, cyclic[(k + 1) % 4])]
        if lines[0] is None or lines[1] is None:
            continue
        point = _intersect(lines[0], lines[1])
        if point is None or np.linalg.norm(point - corners[corner]) > MAX_REFINE_PX:
            continue
        if float((point - corners[corner]) @ diagonals[corner]) < -0.25:
            continue
        corners[corner] = point
    return corners


def outline_from_mask(mask: np.ndarray, up: np.ndarray | tuple[float, float] | None = None) -> MaskOutline:
    """Corners, middle-height points and outline of one vertebral body mask.

    Args:
        mask: 2-D array, non-zero inside the body (the largest connected part is used,
            holes filled).
        up: the cranial direction ``(dx, dy)`` in image coordinates; default ``(0, -1)``,
            the image top.

    Returns:
        The mask's outline and corners.

    Raises:
        AnnotationError: the mask is empty or not 2-D.
    """
    body, origin = _largest_component(mask)
    # The sides are fitted on a lightly blurred outline, where the pixel staircase becomes
    # a ramp whose 0.5 level follows a straight edge closely; corners are checked on the
    # raw outline, which keeps them sharp.
    raw = _outline(body, origin, 0.0)
    contour = _outline(body, origin, SMOOTH_SIGMA_PX)
    up_vec = np.array([0.0, -1.0]) if up is None else np.asarray(up, dtype=float)
    up_vec = up_vec / max(float(np.linalg.norm(up_vec)), 1e-12)
    centre, u_axis, r_axis, half_u, half_r = _frame(contour, up_vec)
    # With s = (p - centre) . r / half_r and t = (p - centre) . u / half_u, corner k maximises
    # TL t - s, TR t + s, BL -t - s, BR s - t, i.e. p . diagonals[k] up to a constant.
    signs = np.array([[-1, 1], [1, 1], [-1, -1], [1, -1]], dtype=float)
    diagonals = signs[:, :1] * r_axis / half_r + signs[:, 1:] * u_axis / half_u
    extreme = [int(i) for i in np.argmax(contour @ diagonals.T, axis=0)]
    raw_corners = raw[np.argmax(raw @ diagonals.T, axis=0)]
    unit = diagonals / np.linalg.norm(diagonals, axis=1, keepdims=True)
    corners = _refine_corners(contour, extreme, raw_corners, unit)
    top_mid, bottom_mid = (corners[TL] + corners[TR]) / 2, (corners[BL] + corners[BR]) / 2
    axis = top_mid - bottom_mid
    axis = axis / max(float(np.linalg.norm(axis)), 1e-12)
    width = float(np.linalg.norm(corners[TR] - corners[TL]) + np.linalg.norm(corners[BR] - corners[BL])) / 2
    midpoints = _chord(contour, (top_mid + bottom_mid) / 2, axis, max(0.05 * width, 2.0))
    if midpoints is None:
        midpoints = np.vstack([top_mid, bottom_mid])
    rows, cols = np.nonzero(body)
    return MaskOutline(corners, midpoints, contour, np.array([cols.mean(), rows.mean()]) + origin)


def mask_centroid(mask: np.ndarray) -> np.ndarray:
    """Centre of mass ``(x, y)`` of the mask's largest part (holes filled).

    Raises:
        AnnotationError: the mask is empty or not 2-D.
    """
    body, origin = _largest_component(mask)
    rows, cols = np.nonzero(body)
    return np.array([cols.mean(), rows.mean()]) + origin


def corners_from_mask(mask: np.ndarray, up: np.ndarray | tuple[float, float] | None = None) -> np.ndarray:
    """The four corners ``(4, 2)`` of a vertebral body mask (see :func:`outline_from_mask`)."""
    return outline_from_mask(mask, up).corners


def measure_mask(
    mask: np.ndarray,
    pixel_mm: float | tuple[float, float] | None = None,
    *,
    view: str = "lateral",
    anterior: str = "left",
    name: str | None = None,
    up: np.ndarray | tuple[float, float] | None = None,
) -> VertebraMeasurement:
    """Measure a vertebra from its body mask: corners from the outline, middle height on the mask."""
    outline = outline_from_mask(mask, up)
    return measure_vertebra(
        outline.corners, pixel_mm, view=view, anterior=anterior, name=name, midpoints=outline.midpoints  # type: ignore[arg-type]
    )


def cranial_directions(centroids: np.ndarray) -> np.ndarray:
    """Per vertebra, the cranial direction of the spine from its neighbours' centroids.

    ``centroids`` are ``(n, 2)`` in cranio-caudal order; the direction at vertebra ``k`` is
    from centroid ``k+1`` to centroid ``k-1`` (one-sided at the ends), the image top when
    there is a single vertebra.
    """
    n = len(centroids)
    if n < 2:
        return np.tile([0.0, -1.0], (n, 1))
    ahead = np.vstack([centroids[1:], centroids[-1:]])
    behind = np.vstack([centroids[:1], centroids[:-1]])
    direction = behind - ahead
    norms = np.linalg.norm(direction, axis=1, keepdims=True)
    return np.where(norms > 0, direction / np.maximum(norms, 1e-12), [0.0, -1.0])


def split_label_image(labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Split an integer label image into ``(label, mask)`` pairs, cranial (top) first.

    Label 0 is background; the order is by the centroid's projection on the principal axis
    of all centroids (pointing to the image bottom).
    """
    values = [int(v) for v in np.unique(labels) if v != 0]
    if not values:
        raise AnnotationError("the label image has no non-zero label.")
    masks = [labels == v for v in values]
    centres = np.array([np.argwhere(m).mean(axis=0)[::-1] for m in masks])
    order = np.argsort(centres @ spine_axis(centres), kind="stable")
    return [(values[i], masks[i]) for i in order]
