"""Overlay PNGs: each vertebra's corners, heights and grade drawn on its radiograph.

Outline colour by Genant grade (green 0, yellow 1, orange 2, red 3; cyan on AP views, which
are not graded); white lines are the measured heights (left / middle / right, i.e.
anterior / middle / posterior on a lateral view); the worst-graded vertebra gets a red frame
and a caption; a vertebra with an annotation problem gets a red ``!``. On an AP spine the
end vertebrae of the Cobb angles are drawn as magenta lines, and a caption gives each angle with
its upper and lower end vertebra (e.g. ``MT 31.2 deg (T6-T11)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from osteolens.errors import RadiographWriteError
from osteolens.morphometry.spine import SpineMeasurement
from osteolens.morphometry.vertebra import BL, BR, TL, TR

_GRADE_BGR = {0: (80, 200, 80), 1: (0, 220, 255), 2: (0, 140, 255), 3: (0, 0, 255), None: (255, 220, 0)}
_RED, _WHITE, _MAGENTA = (0, 0, 255), (255, 255, 255), (255, 0, 255)


def _canvas(image: np.ndarray | None, spine: SpineMeasurement, outlines: Sequence[np.ndarray]) -> np.ndarray:
    if image is not None:
        gray = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return cv2.cvtColor((gray * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    points = [v.corners for v in spine.vertebrae] + [o for o in outlines if len(o)]
    stacked = np.vstack(points) if points else np.zeros((1, 2))
    stacked = stacked[np.isfinite(stacked).all(axis=1)]
    high = np.ceil(stacked.max(axis=0) + [90, 20]).astype(int) if len(stacked) else np.array([100, 100])  # room for labels
    canvas = np.zeros((max(high[1], 64), max(high[0], 64), 3), np.uint8)
    for outline in outlines:
        if len(outline):
            cv2.fillPoly(canvas, [np.round(outline).astype(np.int32)], (60, 60, 60))
    return canvas


def _pt(point: np.ndarray) -> tuple[int, int]:
    return int(round(float(point[0]))), int(round(float(point[1])))


def draw_overlay(
    spine: SpineMeasurement,
    image: np.ndarray | None = None,
    outlines: Sequence[np.ndarray] = (),
    midpoints: np.ndarray | None = None,
) -> np.ndarray:
    """Draw a spine's measurements; returns a BGR ``uint8`` image.

    Args:
        spine: the measurements.
        image: the radiograph ``(H, W)`` in [0, 1]; None draws on a dark canvas (with the
            mask outlines filled grey when given).
        outlines: mask outlines ``(k, 2)`` to draw, if any.
        midpoints: ``(n, 2, 2)`` middle-height points (from masks); default endplate midpoints.
    """
    canvas = _canvas(image, spine, outlines)
    size = min(canvas.shape[:2])
    thick = max(1, round(size / 300))
    font = max(0.35, size / 900)
    for outline in outlines:
        if len(outline):
            cv2.polylines(canvas, [np.round(outline).astype(np.int32)], True, (150, 150, 150), 1)
    worst = spine.worst()
    for i, v in enumerate(spine.vertebrae):
        c = v.corners
        if not np.isfinite(c).all():
            finite = c[np.isfinite(c).all(axis=1)]
            for point in finite:
                cv2.drawMarker(canvas, _pt(point), _RED, cv2.MARKER_TILTED_CROSS, 6 * thick, thick)
            if len(finite):
                cv2.putText(canvas, f"{v.name}!", _pt(finite[0]), cv2.FONT_HERSHEY_SIMPLEX, font, _RED, thick)
            continue
        colour = _GRADE_BGR[v.genant.grade if v.genant else None]
        cv2.polylines(canvas, [np.round(c[[TL, TR, BR, BL]]).astype(np.int32)], True, colour, thick)
        mids = midpoints[i] if midpoints is not None and np.isfinite(midpoints[i]).all() else None
        if mids is None:
            mids = np.vstack([(c[TL] + c[TR]) / 2, (c[BL] + c[BR]) / 2])
        for a, b in ((c[TL], c[BL]), (mids[0], mids[1]), (c[TR], c[BR])):
            cv2.line(canvas, _pt(a), _pt(b), _WHITE, max(1, thick // 2))
        for point in c:
            cv2.circle(canvas, _pt(point), 2 * thick, colour, -1)
        label = str(v.name) + (f" g{v.genant.grade}" if v.genant else "")
        (text_w, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        x_right, y_mid = c[:, 0].max() + 4 * thick, c[:, 1].mean()
        x = x_right if x_right + text_w < canvas.shape[1] else max(c[:, 0].min() - 4 * thick - text_w, 0)
        cv2.putText(canvas, label, _pt(np.array([x, y_mid])), cv2.FONT_HERSHEY_SIMPLEX, font, colour, thick)
        if v.problems:
            mark = _pt(c[TL] - np.array([8 * thick, -4 * thick]))
            cv2.putText(canvas, "!", mark, cv2.FONT_HERSHEY_SIMPLEX, font * 1.5, _RED, thick + 1)
        if v is worst:
            low, high = c.min(axis=0) - 4 * thick, c.max(axis=0) + 4 * thick
            cv2.rectangle(canvas, _pt(low), _pt(high), _RED, thick + 1)
            g = v.genant
            text = f"worst: {v.name} grade {g.grade} {g.fracture_type} ({100 * g.height_loss:.0f}%)"  # type: ignore[union-attr]
            cv2.putText(canvas, text, (4, int(30 * font) + 4), cv2.FONT_HERSHEY_SIMPLEX, font, _RED, thick)
    if spine.cobb is not None:
        ends = {i for pair in (spine.cobb.pt_vertebrae, spine.cobb.mt_vertebrae, spine.cobb.tl_vertebrae) for i in pair}
        for i in ends:
            c = spine.vertebrae[i].corners
            left, right = (c[TL] + c[BL]) / 2, (c[TR] + c[BR]) / 2
            extend = (right - left) * 0.4
            cv2.line(canvas, _pt(left - extend), _pt(right + extend), _MAGENTA, thick)
        names = [v.name for v in spine.vertebrae]
        for row, key in enumerate(("pt", "mt", "tl")):  # each angle with its end vertebrae, one line each
            upper, lower = getattr(spine.cobb, f"{key}_vertebrae")
            text = f"{key.upper()} {getattr(spine.cobb, key):.1f} deg ({names[upper]}-{names[lower]})"
            cv2.putText(canvas, text, (4, int(30 * font) * (row + 1) + 4), cv2.FONT_HERSHEY_SIMPLEX, font, _MAGENTA, thick)
    if spine.warning:  # the first clause, at the foot of the image, in red
        cv2.putText(canvas, spine.warning.split(":")[0].upper(), (4, canvas.shape[0] - int(12 * font) - 4),
                    cv2.FONT_HERSHEY_SIMPLEX, font, _RED, thick)
    return canvas


def write_overlay(path: str | Path, canvas: np.ndarray) -> Path:
    """Write a BGR overlay as PNG (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), canvas):
        raise RadiographWriteError(path, "OpenCV could not write the overlay PNG.", "check the folder is writable.")
    return path
