"""A whole spine: every vertebra measured, compared with its neighbours, checked, and Cobb angles.

Neighbours are the adjacent levels (``L1`` and ``L3`` for ``L2``); when the names are not
levels (``#0``, ``#1`` ...), the adjacent entries of the list. A vertebra's neighbour ratio
is its height over the mean of the same height of the measured neighbours; the mean
posterior height of the neighbours is the reference of its Genant crush ratio.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from osteolens.errors import AnnotationError
from osteolens.morphometry.checks import Problem, check_annotations
from osteolens.morphometry.cobb import CobbAngles, cobb_angles
from osteolens.morphometry.vertebra import (
    VertebraMeasurement,
    measure_vertebra,
    normalise_view,
    spacing_pair,
    unmeasured,
    with_grade,
)

LEVELS: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 8)),
    *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 7)),
    *(f"S{i}" for i in range(1, 6)),
)
"""Vertebral levels from cranial to caudal (L6 for the lumbosacral transitional vertebra)."""

HEIGHT_FALLBACK_NOTE = (
    "image height unknown: the half of the main curve was judged from the spine's own extent, not the "
    "image height of the AASCE rule; give the height (--image-height or an image_height column)"
)
"""``cobb_note`` of an S-shaped spine measured without the image height."""

_LEVEL_RE = re.compile(r"^([CTLS])(\d{1,2})$", re.I)


def level_index(name: str | None) -> int | None:
    """Position of a level name in :data:`LEVELS` (``"l1"`` -> 19), or None when not a level.

    >>> level_index("T12") - level_index("T11"), level_index("disc")
    (1, None)
    """
    match = _LEVEL_RE.match(str(name or "").strip())
    if not match:
        return None
    label = f"{match.group(1).upper()}{int(match.group(2))}"
    return LEVELS.index(label) if label in LEVELS else None


@dataclass
class SpineMeasurement:
    """All vertebrae of one spine image, its annotation problems and (AP) Cobb angles.

    Attributes:
        key: the spine's identifier (image name), or None.
        view: ``"lateral"`` or ``"AP"``.
        vertebrae: one measurement per vertebra, in the given order.
        problems: the annotation problems (also listed on each vertebra).
        cobb: the AASCE Cobb angles (AP views with complete corners), else None.
        cobb_note: why ``cobb`` is None, or a warning when the annotation has problems;
            it starts with ``warning`` when there is one.
        warning: a caution about the whole spine from its source (a detector that hardly saw
            it, say), drawn on the overlay; None without one.
    """

    key: str | None
    view: str
    vertebrae: list[VertebraMeasurement]
    problems: list[Problem] = field(default_factory=list)
    cobb: CobbAngles | None = None
    cobb_note: str | None = None
    warning: str | None = None

    def worst(self) -> VertebraMeasurement | None:
        """The vertebra with the highest Genant grade (then height loss), if any is graded >= 1."""
        graded = [v for v in self.vertebrae if v.genant is not None and v.genant.grade > 0]
        if not graded:
            return None
        return max(graded, key=lambda v: (v.genant.grade, v.genant.height_loss))  # type: ignore[union-attr]

    def rows(self) -> list[dict[str, Any]]:
        """One flat dictionary per vertebra, with the spine key first."""
        return [{"spine": self.key, **v.to_dict()} for v in self.vertebrae]

    def cobb_row(self) -> dict[str, Any]:
        """One flat dictionary of the Cobb angles, end vertebrae named."""
        row: dict[str, Any] = {"spine": self.key, "view": self.view}
        if self.cobb is None:
            row.update(pt=None, mt=None, tl=None, s_shaped=None, note=self.cobb_note)
            return row
        names = [v.name for v in self.vertebrae]
        row.update(pt=self.cobb.pt, mt=self.cobb.mt, tl=self.cobb.tl, s_shaped=self.cobb.s_shaped)
        for angle in ("pt", "mt", "tl"):
            upper, lower = getattr(self.cobb, f"{angle}_vertebrae")
            row[f"{angle}_upper"], row[f"{angle}_lower"] = names[upper], names[lower]
        row["note"] = self.cobb_note
        return row


def _neighbours(names: Sequence[str], measured: list[bool]) -> list[list[int]]:
    levels = [level_index(n) for n in names]
    by_level = all(level is not None for level in levels)
    out = []
    for i in range(len(names)):
        if by_level:
            near = [j for j in range(len(names)) if j != i and abs(levels[j] - levels[i]) == 1]  # type: ignore[operator]
        else:
            near = [j for j in (i - 1, i + 1) if 0 <= j < len(names)]
        out.append([j for j in near if measured[j]])
    return out


def _with_neighbours(vertebrae: list[VertebraMeasurement], names: Sequence[str]) -> list[VertebraMeasurement]:
    measured = [v.measured for v in vertebrae]
    result = []
    for v, near in zip(vertebrae, _neighbours(names, measured), strict=True):
        if not v.measured or not near:
            result.append(v)
            continue
        kinds = ("anterior", "middle", "posterior") if v.view == "lateral" else ("middle",)
        for kind in kinds:  # the measurements are this call's own objects: set in place
            mean = float(np.mean([vertebrae[j].height(kind) for j in near]))
            setattr(v, f"{kind}_neighbour_ratio", v.height(kind) / mean if mean > 0 else None)  # type: ignore[operator]
        if v.view == "lateral":
            posterior = float(np.mean([vertebrae[j].height("posterior") for j in near]))
            if posterior > 0:
                v = with_grade(v, posterior)
        result.append(v)
    return result


def measure_spine(
    corners: np.ndarray | list,
    names: Sequence[str] | None = None,
    *,
    pixel_mm: float | tuple[float, float] | None = None,
    view: str = "lateral",
    anterior: str = "left",
    image_shape: tuple[int, int] | None = None,
    image_height: float | None = None,
    midpoints: np.ndarray | None = None,
    key: str | None = None,
    extra_problems: dict[int, list[str]] | None = None,
    warning: str | None = None,
) -> SpineMeasurement:
    """Measure every vertebra of one spine, check the annotation, and add Cobb angles (AP).

    Args:
        corners: ``(n, 4, 2)`` (or ``(n*4, 2)``) pixel corners, NaN where missing, vertebrae
            cranial first, corners top-left, top-right, bottom-left, bottom-right.
        names: level names (``"T1"`` ...); default ``#0``, ``#1`` ...
        pixel_mm: pixel spacing in mm, one number or ``(row, column)``; None for pixels.
        view: ``"lateral"`` or ``"AP"``.
        anterior: the anterior image side on a lateral view.
        image_shape: ``(rows, columns)``: finds corners outside the image and gives the
            image height of the AASCE Cobb rule.
        image_height: the image height in pixels for the Cobb rule (wins over
            ``image_shape``); with neither, an S-shaped spine's angles use the fallback of
            :func:`cobb_angles` and ``cobb_note`` says so.
        midpoints: optional ``(n, 2, 2)`` middle-height points (masks, six-point
            annotations); a vertebra whose points are NaN uses its endplate midpoints.
        key: the spine's identifier, carried into the result.
        extra_problems: problems found while reading the input, by vertebra index.
        warning: a caution about the whole spine (``SpineMeasurement.warning``).

    Returns:
        The spine's measurements; nothing raises for a bad vertebra, it is reported.
    """
    quads = np.asarray(corners, dtype=float).reshape(-1, 4, 2)
    view = normalise_view(view)
    spacing = spacing_pair(pixel_mm)
    labels = list(names) if names is not None else [f"#{i}" for i in range(len(quads))]
    problems = check_annotations(quads, labels, image_shape)
    by_index: dict[int, list[str]] = {i: list((extra_problems or {}).get(i, [])) for i in range(len(quads))}
    for problem in problems:
        by_index[problem.index].append(str(problem))
    vertebrae = []
    for i, quad in enumerate(quads):
        if np.isfinite(quad).all():
            mids = midpoints[i] if midpoints is not None and np.isfinite(midpoints[i]).all() else None
            v = measure_vertebra(
                quad, spacing, view=view, anterior=anterior, name=labels[i], midpoints=mids  # type: ignore[arg-type]
            )
            v.problems = by_index[i] + v.problems
        else:
            v = unmeasured(labels[i], quad, view=view, anterior=anterior, pixel_mm=spacing, problems=by_index[i])
        vertebrae.append(v)
    vertebrae = _with_neighbours(vertebrae, labels)
    spine = SpineMeasurement(key=key, view=view, vertebrae=vertebrae, problems=problems, warning=warning)
    if view != "AP":
        spine.cobb_note = "Cobb angles (AASCE) are defined on AP views"
    elif not np.isfinite(quads).all() or len(quads) < 3:
        spine.cobb_note = "Cobb angles need complete corners of at least 3 vertebrae"
    else:
        scale = np.array([spacing[1], spacing[0]]) if spacing else np.ones(2)
        rows = image_height if image_height is not None else (image_shape[0] if image_shape else None)
        height = rows * scale[1] if rows is not None else None
        try:
            spine.cobb = cobb_angles(quads * scale, image_height=height)
        except AnnotationError as exc:
            spine.cobb_note = str(exc)
        else:
            notes = []
            if problems:
                notes.append(f"{len(problems)} annotation problem(s): check them before trusting these angles")
            if height is None and spine.cobb.s_shaped:
                notes.append(HEIGHT_FALLBACK_NOTE)
            spine.cobb_note = "; ".join(notes) or None
    if warning:
        spine.cobb_note = "; ".join(note for note in (warning, spine.cobb_note) if note)
    return spine
