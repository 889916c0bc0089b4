"""Synthetic vertebrae with known geometry, and the AASCE landmark set, for the morphometry tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest


@dataclass(frozen=True)
class Quad:
    """A vertebra built in its own frame, then rotated: corners and the exact truth."""

    corners: np.ndarray  # (4, 2) TL, TR, BL, BR in the image
    left: float
    right: float
    middle: float
    superior_deg: float
    inferior_deg: float
    wedge_deg: float


def rotate_display(points: np.ndarray, theta_deg: float, centre: np.ndarray) -> np.ndarray:
    """Rotate image points counter-clockwise *as displayed* (y down) by ``theta_deg`` about ``centre``."""
    t = np.radians(theta_deg)
    rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    return (points - centre) @ rot.T + centre


def make_quad(
    width: float, left: float, right: float, superior_deg: float, theta_deg: float, centre=(0.0, 0.0)
) -> Quad:
    """A quadrilateral with vertical side walls of heights ``left`` / ``right`` in its own frame.

    Superior endplate from TL=(0,0) at ``superior_deg`` (counter-clockwise as displayed); the
    walls hang straight down, so the middle height is (left + right) / 2 and the inferior
    angle follows; then everything is rotated by ``theta_deg`` about the body's centre.
    """
    a = np.radians(superior_deg)
    tl = np.array([0.0, 0.0])
    tr = np.array([width * np.cos(a), -width * np.sin(a)])
    bl = tl + [0.0, left]
    br = tr + [0.0, right]
    corners = np.vstack([tl, tr, bl, br])
    inferior = np.degrees(np.arctan2(-(br - bl)[1], (br - bl)[0]))
    centre = np.asarray(centre, dtype=float)
    corners = corners - corners.mean(axis=0) + centre
    wrap = lambda d: (d + 180.0) % 360.0 - 180.0  # noqa: E731
    return Quad(
        corners=rotate_display(corners, theta_deg, centre),
        left=left,
        right=right,
        middle=(left + right) / 2,
        superior_deg=wrap(superior_deg + theta_deg),
        inferior_deg=wrap(inferior + theta_deg),
        wedge_deg=wrap(superior_deg - inferior),
    )


def rasterise(corners: np.ndarray, shape: tuple[int, int], supersample: int = 8) -> np.ndarray:
    """Mask of a quadrilateral: cv2.fillPoly at ``supersample`` x resolution, then area-averaged.

    At native resolution cv2.fillPoly also sets every pixel the edge passes through, which
    makes a shape about one pixel taller and wider than the polygon; drawing finer and
    keeping the pixels more than half covered gives the mask a segmentation would (a pixel
    belongs to the body when most of it does).
    """
    return rasterise_outline(corners[[0, 1, 3, 2]], shape, supersample)


def rasterise_outline(outline: np.ndarray, shape: tuple[int, int], supersample: int = 8) -> np.ndarray:
    """Mask of any closed polygon ``(k, 2)``, rasterised as :func:`rasterise` does."""
    big = np.zeros((shape[0] * supersample, shape[1] * supersample), np.uint8)
    fine = (np.asarray(outline, dtype=float) + 0.5) * supersample - 0.5  # pixel centres stay centres
    cv2.fillPoly(big, [np.round(fine * 16).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4)
    small = cv2.resize(big, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return (small > 127).astype(np.uint8)


@pytest.fixture
def aasce(real_dataset):
    """The AASCE landmark set: (folder, labels frame, landmarks frame)."""
    root: Path = real_dataset("spine_landmarks_aasce")
    labels = pd.read_csv(root / "labels.csv")
    landmarks = pd.read_csv(root / "landmarks.csv")
    return root, labels, landmarks


@pytest.fixture
def quad():
    """The :func:`make_quad` builder."""
    return make_quad


@pytest.fixture
def raster():
    """The :func:`rasterise` helper."""
    return rasterise


@pytest.fixture
def raster_outline():
    """The :func:`rasterise_outline` helper."""
    return rasterise_outline


S_TILTS = (-10, -8, -5, 0, 8, 15, 25, 15, 5, -5, -15, -25, -20, -15, -10, -8, -6)
"""Tilts (degrees) of the 17 vertebrae T1-L5 of :func:`s_spine`: main curve 25 - (-25) = 50 between
T7 and T12, 25 - (-10) = 35 above it (from T1), -6 - (-25) = 19 below it (to L5)."""

LEVELS_T1_L5 = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])


@pytest.fixture
def s_spine() -> np.ndarray:
    """A 17-vertebra S-shaped AP spine, ``(17, 4, 2)`` corners TL, TR, BL, BR.

    Rectangles 40 x 20 px centred at ``(200 + 30 sin(2 pi k / 16), 100 + 30 k)``, tilted by
    :data:`S_TILTS` (counter-clockwise as shown), so the angle between two vertebrae is the
    difference of their tilts. The inferior endplate midpoints of the main curve's end
    vertebrae (T7, T12) sum to 728.1 px: between the image height 800 (upper half: the
    midline y = 400 runs between them) and twice the middle of the spine's own extent, 680.1.
    """
    quads = []
    for k, tilt in enumerate(S_TILTS):
        t = np.radians(tilt)
        right = np.array([np.cos(t), -np.sin(t)]) * 20.0  # half the endplate
        down = np.array([np.sin(t), np.cos(t)]) * 10.0  # half the side wall
        c = np.array([200.0 + 30.0 * np.sin(2 * np.pi * k / 16), 100.0 + 30.0 * k])
        quads.append([c - right - down, c + right - down, c - right + down, c + right + down])
    return np.array(quads)


@pytest.fixture
def s_spine_table(s_spine):
    """Write :func:`s_spine` as a corner table (AP view) at ``path``; extra columns per row."""

    def write(path: Path, image: str = "s.png", **extra) -> Path:
        rows = [
            {"image": image, "vertebra": level, "corner": corner, "x": x, "y": y, "view": "AP", **extra}
            for level, quad in zip(LEVELS_T1_L5, s_spine, strict=True)
            for corner, (x, y) in zip(("top_left", "top_right", "bottom_left", "bottom_right"), quad, strict=True)
        ]
        pd.DataFrame(rows).to_csv(path, index=False)
        return path

    return write
