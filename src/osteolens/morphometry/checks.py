"""Checks of vertebral corner annotations: find bad landmarks before measuring them.

Each problem names the vertebra and what is wrong; nothing here raises, so a batch can
measure what is sound and report the rest. The checks:

* ``missing_corner``: a corner is absent (NaN).
* ``point_outside_image``: a corner lies outside the image (beyond one pixel of margin).
* ``degenerate``: the four corners enclose no area.
* ``corners_out_of_order``: the outline top-left, top-right, bottom-right, bottom-left
  crosses itself or folds (not convex), e.g. two corners of one endplate exchanged.
* ``top_bottom_swapped``: the superior endplate lies caudal to the inferior one.
* ``left_right_swapped``: the "right" corners lie on the image left of the "left" ones.
* ``vertebra_order_not_craniocaudal``: the vertebra is not below its predecessor in the
  given order (levels must run from cranial to caudal).
* ``duplicate_vertebra``: the same level name occurs twice.

"Below" and "right" are taken along the spine's own axis, the principal axis of the
vertebral centres pointing the way most of the given order runs, so a tilted or
upside-down spine is judged fairly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from osteolens.morphometry.vertebra import BL, BR, CORNERS, TL, TR

_OUTSIDE_MARGIN_PX = 1.0


@dataclass(frozen=True)
class Problem:
    """One annotation problem.

    Attributes:
        vertebra: the level name (or ``"#<index>"`` when unnamed).
        index: 0-based position of the vertebra in the given order.
        code: a short machine-readable code (see the module docstring).
        message: what is wrong, in words.
    """

    vertebra: str
    index: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


def spine_axis(centres: np.ndarray, ordered: bool = False) -> np.ndarray:
    """Unit vector of the spine's cranio-caudal axis, pointing caudally.

    The principal axis of the vertebral centres (the image vertical when fewer than two).
    Its direction: when the centres are ``ordered`` cranial first, the way most steps from
    one vertebra to the next go (so a spine shown upside down is fine, and one misplaced
    vertebra does not turn it round); otherwise, and on a tie, towards the image bottom.
    """
    points = centres[np.isfinite(centres).all(axis=1)]
    if len(points) < 2:
        return np.array([0.0, 1.0])
    _, _, vt = np.linalg.svd(points - points.mean(axis=0), full_matrices=False)
    axis = vt[0] if vt[0][1] >= 0 else -vt[0]
    if ordered:
        steps = np.diff(points @ axis)
        if (steps < 0).sum() > (steps > 0).sum():
            axis = -axis
    return axis


def _convex_and_spread(outlines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``(n, 4, 2)`` closed outlines: whether each turns the same way at every vertex
    (convex, not crossed), and the largest area of a triangle of its vertices (0 when all
    lie on one line)."""
    edges = np.roll(outlines, -1, axis=1) - outlines
    following = np.roll(edges, -1, axis=1)
    cross = edges[..., 0] * following[..., 1] - edges[..., 1] * following[..., 0]
    convex = (cross > 0).all(axis=1) | (cross < 0).all(axis=1)
    return convex, 0.5 * np.abs(cross).max(axis=1)  # triangles of three consecutive vertices


def check_annotations(
    corners: np.ndarray | list,
    names: Sequence[str] | None = None,
    image_shape: tuple[int, int] | None = None,
) -> list[Problem]:
    """Find problems in the corner annotations of one spine (or one vertebra).

    Args:
        corners: ``(n, 4, 2)`` (or ``(n*4, 2)``) pixel corners, NaN where missing, in the
            order top-left, top-right, bottom-left, bottom-right, vertebrae cranial first.
        names: the vertebrae's level names; default ``#0``, ``#1`` ...
        image_shape: ``(rows, columns)`` of the image, to find points outside it.

    Returns:
        The problems found, in vertebra order (empty when the annotation is sound).
    """
    quads = np.asarray(corners, dtype=float).reshape(-1, 4, 2)
    n = len(quads)
    labels = list(names) if names is not None else [f"#{i}" for i in range(n)]
    problems: list[Problem] = []

    def add(i: int, code: str, message: str) -> None:
        problems.append(Problem(labels[i], i, code, message))

    complete = np.isfinite(quads).all(axis=(1, 2))
    centres = np.where(complete[:, None], np.nanmean(quads, axis=1), np.nan) if n else np.empty((0, 2))
    down = spine_axis(centres, ordered=True)
    right = np.array([down[1], -down[0]])
    # Every geometric test at once; the loop below only words the results.
    filled = np.where(complete[:, None, None], quads, 0.0)
    convex, spread = _convex_and_spread(filled[:, [TL, TR, BR, BL]])
    scale = np.maximum(np.ptp(filled, axis=1).max(axis=1), 1.0)
    degenerate = spread <= 1e-9 * scale**2
    upside_down = ((filled[:, BL] + filled[:, BR]) - (filled[:, TL] + filled[:, TR])) @ down < 0
    mirrored = ((filled[:, TR] + filled[:, BR]) - (filled[:, TL] + filled[:, BL])) @ right < 0
    if image_shape is not None:
        rows, cols = image_shape
        low, high = -_OUTSIDE_MARGIN_PX, np.array([cols, rows]) + _OUTSIDE_MARGIN_PX
        outside = ((filled < low) | (filled > high)).any(axis=2).sum(axis=1)
    else:
        outside = np.zeros(n, dtype=int)
    seen: dict[str, int] = {}
    for i in range(n):
        if labels[i] in seen:
            add(i, "duplicate_vertebra", f"level {labels[i]} already given at position {seen[labels[i]]}")
        seen.setdefault(labels[i], i)
        if not complete[i]:
            missing = [c for c, row in zip(CORNERS, quads[i], strict=True) if not np.isfinite(row).all()]
            add(i, "missing_corner", f"missing {', '.join(missing)}")
            continue
        if outside[i]:
            add(i, "point_outside_image", f"{int(outside[i])} corner(s) outside the {cols}x{rows} image")
        if degenerate[i]:
            add(i, "degenerate", "the four corners enclose no area")
            continue
        if not convex[i]:
            add(i, "corners_out_of_order", "the outline TL-TR-BR-BL crosses itself or folds")
        if upside_down[i]:
            add(i, "top_bottom_swapped", "the superior endplate lies below the inferior one")
        if mirrored[i]:
            add(i, "left_right_swapped", "the right corners lie left of the left corners")
    order = centres @ down
    previous = None
    for i in range(n):
        if not complete[i]:
            continue
        if previous is not None and order[i] <= order[previous]:
            add(
                i,
                "vertebra_order_not_craniocaudal",
                f"centre is not below the previous vertebra {labels[previous]}; levels must run cranial to caudal",
            )
        previous = i
    problems.sort(key=lambda problem: problem.index)
    return problems
