"""One vertebral body from its four corners: heights, endplate angles, wedge angle, grade.

Coordinates are image pixels, ``(x, y)`` with x to the right and y down (row 0 at the top).
The four corners are given in the order of :data:`CORNERS`: the two ends of the superior
(cranial) endplate, then the two ends of the inferior (caudal) endplate, each from image
left to image right, as in the AASCE landmark files. "Left" and "right" are the image's
sides for a spine shown upright; a vertebra may be tilted or rotated in the image, the
measurements are taken in its own frame.

Views:

* ``"lateral"``: one side of the body is anterior. Which one is a convention of the display
  and is given by ``anterior="left"`` (patient facing the image left, the usual display of
  a left-lateral radiograph) or ``"right"``. Anterior, middle and posterior heights and the
  Genant grade are reported.
* ``"AP"`` (antero-posterior, also PA / coronal): the corners' sides are the patient's right
  and left, so only left, middle and right heights exist. Anterior and posterior heights,
  and so the Genant grade, need a lateral view.

Measured quantities (lengths in pixels and, when the pixel spacing is known, millimetres;
with an anisotropic spacing the corners are scaled to millimetres first, so angles are
true angles):

* side heights ``|BL - TL|`` and ``|BR - TR|``; the middle height is the distance between the
  endplate midpoints (from a mask, where the body's mid-line meets its outline, so a
  biconcave endplate is seen);
* superior / inferior endplate angle: the angle of the line from the endplate's left end to
  its right end against the image horizontal, counter-clockwise as displayed positive;
* wedge angle: superior minus inferior endplate angle, the angle between the endplates.
  Lateral: positive when they converge anteriorly (anterior wedging). AP: positive when they
  converge towards the image left (left side lower);
* tilt: the angle of the line from the left-side midpoint to the right-side midpoint, the
  vertebral inclination that Cobb angles are built from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from osteolens.errors import AnnotationError
from osteolens.morphometry.genant import GenantGrade, genant_grade

CORNERS: tuple[str, str, str, str] = ("top_left", "top_right", "bottom_left", "bottom_right")
"""Corner order of a ``(4, 2)`` corner array."""

TL, TR, BL, BR = range(4)

_VIEW_ALIASES = {
    "lateral": "lateral",
    "lat": "lateral",
    "profil": "lateral",
    "profile": "lateral",
    "sagittal": "lateral",
    "ll": "lateral",
    "ap": "AP",
    "pa": "AP",
    "face": "AP",
    "frontal": "AP",
    "coronal": "AP",
}


def normalise_view(view: str) -> str:
    """Map a view name to ``"lateral"`` or ``"AP"`` (``LAT``, ``profil``, ``PA``, ``face`` ...).

    >>> normalise_view("LAT"), normalise_view("pa")
    ('lateral', 'AP')
    """
    key = str(view).strip().lower()
    if key not in _VIEW_ALIASES:
        raise AnnotationError(
            f"view {view!r} is not known. Fix: use 'lateral' (LAT, profil) or 'AP' (PA, face)."
        )
    return _VIEW_ALIASES[key]


def spacing_pair(pixel_mm: float | tuple[float, float] | None) -> tuple[float, float] | None:
    """Normalise a pixel spacing to ``(row, column)`` millimetres, or None when unknown.

    >>> spacing_pair(0.18)
    (0.18, 0.18)
    """
    if pixel_mm is None:
        return None
    if np.isscalar(pixel_mm):
        pair = (float(pixel_mm), float(pixel_mm))  # type: ignore[arg-type]
    else:
        values = [float(v) for v in pixel_mm]  # type: ignore[union-attr]
        if len(values) != 2:
            raise AnnotationError(f"pixel spacing {pixel_mm!r} must be one number or (row, column).")
        pair = (values[0], values[1])
    if not all(math.isfinite(v) and v > 0 for v in pair):
        raise AnnotationError(f"pixel spacing {pixel_mm!r} must be positive millimetres per pixel.")
    return pair


def _angle_deg(vector: np.ndarray) -> float:
    """Angle of an image vector against the horizontal, counter-clockwise as displayed."""
    return math.degrees(math.atan2(-vector[1], vector[0])) + 0.0  # + 0.0: no "-0.0" in tables


def _wrap_deg(angle: float) -> float:
    return (angle + 180.0) % 360.0 - 180.0


@dataclass
class VertebraMeasurement:
    """Measurements of one vertebral body (see the module docstring for definitions).

    Lengths ending in ``_px`` are pixels, ``_mm`` millimetres (None when the spacing is
    unknown). Anterior / posterior values, their ratios and the Genant fields are None on an
    AP view. Neighbour ratios (a height over the mean of the same height of the adjacent
    vertebrae) are set by :func:`osteolens.morphometry.measure_spine`.
    """

    name: str | None
    view: str
    anterior_side: str | None
    corners: np.ndarray
    pixel_mm: tuple[float, float] | None
    left_height_px: float | None = None
    middle_height_px: float | None = None
    right_height_px: float | None = None
    left_height_mm: float | None = None
    middle_height_mm: float | None = None
    right_height_mm: float | None = None
    anterior_height_px: float | None = None
    posterior_height_px: float | None = None
    anterior_height_mm: float | None = None
    posterior_height_mm: float | None = None
    superior_angle_deg: float | None = None
    inferior_angle_deg: float | None = None
    wedge_angle_deg: float | None = None
    tilt_deg: float | None = None
    anterior_posterior_ratio: float | None = None
    middle_posterior_ratio: float | None = None
    left_right_ratio: float | None = None
    anterior_neighbour_ratio: float | None = None
    middle_neighbour_ratio: float | None = None
    posterior_neighbour_ratio: float | None = None
    genant: GenantGrade | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        """True when the corners were complete and the heights could be measured."""
        return self.middle_height_px is not None

    def height(self, which: str) -> float | None:
        """A height in mm when the spacing is known, else in pixels (``which``: anterior, ...)."""
        mm = getattr(self, f"{which}_height_mm")
        return mm if mm is not None else getattr(self, f"{which}_height_px")

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dictionary: one CSV row (corners as ``top_left_x`` ...)."""
        out: dict[str, Any] = {"vertebra": self.name, "view": self.view, "anterior_side": self.anterior_side}
        for i, corner in enumerate(CORNERS):
            for j, axis in enumerate("xy"):
                value = float(self.corners[i, j])
                out[f"{corner}_{axis}"] = value if math.isfinite(value) else None
        out["pixel_mm_row"] = self.pixel_mm[0] if self.pixel_mm else None
        out["pixel_mm_col"] = self.pixel_mm[1] if self.pixel_mm else None
        skip = {"name", "view", "anterior_side", "corners", "pixel_mm", "genant", "problems"}
        for key, value in self.__dict__.items():
            if key not in skip:
                out[key] = value
        out["genant_grade"] = self.genant.grade if self.genant else None
        out["fracture_type"] = self.genant.fracture_type if self.genant else None
        out["height_loss"] = self.genant.height_loss if self.genant else None
        out["problems"] = "; ".join(self.problems)
        return out


def unmeasured(
    name: str | None,
    corners: np.ndarray,
    *,
    view: str = "lateral",
    anterior: str | None = "left",
    pixel_mm: float | tuple[float, float] | None = None,
    problems: list[str] | None = None,
) -> VertebraMeasurement:
    """A row for a vertebra that could not be measured (incomplete corners), with its problems."""
    view = normalise_view(view)
    return VertebraMeasurement(
        name=name,
        view=view,
        anterior_side=anterior if view == "lateral" else None,
        corners=np.asarray(corners, dtype=float).reshape(4, 2),
        pixel_mm=spacing_pair(pixel_mm),
        problems=list(problems or []),
    )


def _validate_corners(corners: np.ndarray | list, name: str | None) -> np.ndarray:
    array = np.asarray(corners, dtype=float)
    label = f"vertebra {name}" if name else "corners"
    if array.shape != (4, 2):
        raise AnnotationError(f"{label}: expected a (4, 2) array of corners {CORNERS}, got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise AnnotationError(f"{label}: a corner is missing (NaN). Fix: annotate all four corners {CORNERS}.")
    return array


def measure_vertebra(
    corners: np.ndarray | list,
    pixel_mm: float | tuple[float, float] | None = None,
    *,
    view: str = "lateral",
    anterior: Literal["left", "right"] = "left",
    name: str | None = None,
    midpoints: np.ndarray | None = None,
) -> VertebraMeasurement:
    """Measure one vertebral body from its four corners.

    Args:
        corners: ``(4, 2)`` pixel coordinates ``(x, y)`` in :data:`CORNERS` order.
        pixel_mm: pixel spacing in mm, one number or ``(row, column)``; None for pixels only.
        view: ``"lateral"`` or ``"AP"`` (aliases accepted, see :func:`normalise_view`).
        anterior: on a lateral view, the image side that is anterior.
        name: the vertebra's level (``"L1"``), carried into the result.
        midpoints: optional ``(2, 2)`` superior and inferior endplate points of the middle
            height (from a mask); default: the midpoints of the endplates' corner pairs.

    Returns:
        The measurement; on a lateral view its ``genant`` grade uses the vertebra's own
        heights (the neighbour-based crush ratio is added by ``measure_spine``).

    Raises:
        AnnotationError: a corner is missing, or the view / side is unknown.

    >>> m = measure_vertebra([[0, 0], [30, 0], [0, 20], [30, 25]], pixel_mm=0.5)
    >>> m.anterior_height_mm, m.posterior_height_mm, round(m.wedge_angle_deg, 2)
    (10.0, 12.5, 9.46)
    """
    view = normalise_view(view)
    if anterior not in ("left", "right"):
        raise AnnotationError(f"anterior side {anterior!r} must be 'left' or 'right'.")
    px = _validate_corners(corners, name)
    spacing = spacing_pair(pixel_mm)
    mids_px = (
        np.vstack([(px[TL] + px[TR]) / 2, (px[BL] + px[BR]) / 2])
        if midpoints is None
        else np.asarray(midpoints, dtype=float).reshape(2, 2)
    )

    def heights(points: np.ndarray, mids: np.ndarray) -> tuple[float, float, float]:
        return (
            float(np.linalg.norm(points[BL] - points[TL])),
            float(np.linalg.norm(mids[1] - mids[0])),
            float(np.linalg.norm(points[BR] - points[TR])),
        )

    left_px, middle_px, right_px = heights(px, mids_px)
    if spacing is not None:
        scale = np.array([spacing[1], spacing[0]])  # x is a column, y a row
        phys, mids_phys = px * scale, mids_px * scale
        left_mm, middle_mm, right_mm = heights(phys, mids_phys)
    else:
        phys = px
        left_mm = middle_mm = right_mm = None
    sup = _angle_deg(phys[TR] - phys[TL])
    inf = _angle_deg(phys[BR] - phys[BL])
    wedge = _wrap_deg(sup - inf)
    tilt = _angle_deg((phys[TR] + phys[BR]) / 2 - (phys[TL] + phys[BL]) / 2)
    left, middle, right = (left_mm, middle_mm, right_mm) if spacing else (left_px, middle_px, right_px)

    result = VertebraMeasurement(
        name=name,
        view=view,
        anterior_side=anterior if view == "lateral" else None,
        corners=px,
        pixel_mm=spacing,
        left_height_px=left_px,
        middle_height_px=middle_px,
        right_height_px=right_px,
        left_height_mm=left_mm,
        middle_height_mm=middle_mm,
        right_height_mm=right_mm,
        superior_angle_deg=sup,
        inferior_angle_deg=inf,
        wedge_angle_deg=wedge if (view == "AP" or anterior == "left") else -wedge,
        tilt_deg=tilt,
    )
    if view == "AP":
        result.left_right_ratio = left / right if right > 0 else None  # type: ignore[operator]
        return result
    ant, post = ("left", "right") if anterior == "left" else ("right", "left")
    result.anterior_height_px = getattr(result, f"{ant}_height_px")
    result.posterior_height_px = getattr(result, f"{post}_height_px")
    result.anterior_height_mm = getattr(result, f"{ant}_height_mm")
    result.posterior_height_mm = getattr(result, f"{post}_height_mm")
    return with_grade(result)


def with_grade(measurement: VertebraMeasurement, neighbour_posterior: float | None = None) -> VertebraMeasurement:
    """Return a lateral measurement with its ratios and Genant grade (re)computed.

    Args:
        measurement: a lateral-view measurement.
        neighbour_posterior: mean posterior height of the adjacent vertebrae, in the unit of
            :meth:`VertebraMeasurement.height` (mm when the spacing is known, else pixels).
    """
    ha, hm, hp = (measurement.height(k) for k in ("anterior", "middle", "posterior"))
    if measurement.view != "lateral" or ha is None or hm is None or hp is None:
        return measurement
    if min(ha, hm, hp) <= 0:
        problems = [*measurement.problems, "degenerate: a height is zero (corners coincide)"]
        return replace(measurement, problems=problems)
    return replace(
        measurement,
        anterior_posterior_ratio=ha / hp,
        middle_posterior_ratio=hm / hp,
        genant=genant_grade(ha, hm, hp, neighbour_posterior),
    )
