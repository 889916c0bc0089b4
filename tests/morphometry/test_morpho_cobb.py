"""Cobb angles: hand-built spines with known tilts, and the AASCE 2019 reference angles."""

from __future__ import annotations

import numpy as np
import pytest

from osteolens.errors import AnnotationError
from osteolens.morphometry import cobb_angles, smape
from osteolens.morphometry.cobb import is_s_shaped


def _spine(offsets, tilts, height=20.0, width=40.0, gap=30.0, top=100.0):
    """Rectangles centred at (200 + offset_k, top + gap*k), tilted by tilt_k (counter-clockwise as shown)."""
    quads = []
    for k, (dx, tilt) in enumerate(zip(offsets, tilts, strict=True)):
        t = np.radians(tilt)
        right = np.array([np.cos(t), -np.sin(t)])  # along the endplate
        down = np.array([np.sin(t), np.cos(t)])  # along the side wall
        c = np.array([200.0 + dx, top + gap * k])
        w, h = width / 2 * right, height / 2 * down
        quads.append([c - w - h, c + w - h, c - w + h, c + w + h])
    return np.array(quads)


def test_c_shaped_spine():
    n = 7
    offsets = 30 * np.sin(np.pi * np.arange(n) / (n - 1))
    tilts = [0, -8, 12, 20, 6, -10, 0]
    landmarks = _spine(offsets, tilts)
    for height in (None, 100.0, 5000.0):  # the image height only matters for S shapes
        cobb = cobb_angles(landmarks.reshape(-1, 2), image_height=height)
        assert not cobb.s_shaped
        # largest: between the vertebrae tilted +20 (3) and -10 (5)
        assert cobb.pt == pytest.approx(30.0) and cobb.pt_vertebrae == (3, 5)
        # not S: from the top vertebra to 3, and from 5 to the last
        assert cobb.mt == pytest.approx(20.0) and cobb.mt_vertebrae == (0, 3)
        assert cobb.tl == pytest.approx(10.0) and cobb.tl_vertebrae == (5, 6)


def test_s_shaped_spine_upper_and_lower_main_curve():
    n = 9
    offsets = 30 * np.sin(2 * np.pi * np.arange(n) / (n - 1))
    tilts = [0, 10, 25, 5, -20, -5, 15, 30, 0]
    landmarks = _spine(offsets, tilts)
    # main curve between -20 (4) and +30 (7): 50 degrees
    upper = cobb_angles(landmarks, image_height=2000.0)  # main curve in the upper half
    assert upper.s_shaped and upper.pt == pytest.approx(50.0) and upper.pt_vertebrae == (4, 7)
    assert upper.mt == pytest.approx(45.0) and upper.mt_vertebrae == (2, 4)  # largest above 4
    assert upper.tl == pytest.approx(30.0) and upper.tl_vertebrae == (7, 8)  # largest below 7
    lower = cobb_angles(landmarks, image_height=400.0)  # main curve in the lower half
    assert lower.mt == pytest.approx(45.0) and lower.mt_vertebrae == (2, 4)
    assert lower.tl == pytest.approx(25.0) and lower.tl_vertebrae == (0, 2)  # the next curve up


def test_s_shape_test():
    x = np.linspace(0, 1, 20)
    line = np.column_stack([10 * np.sin(2 * np.pi * x) + x, 100 * x])
    assert is_s_shaped(line)
    assert not is_s_shaped(np.column_stack([10 * np.sin(np.pi * x) + x, 100 * x]))


def test_shape_and_missing_points_raise():
    with pytest.raises(AnnotationError, match="at least 3"):
        cobb_angles(np.zeros((8, 2)))
    bad = _spine([0, 0, 0], [0, 5, 0])
    bad[1, 2] = np.nan
    with pytest.raises(AnnotationError, match="missing"):
        cobb_angles(bad)


def test_smape_matches_hand_computation():
    computed = np.array([[10.0, 20.0, 30.0], [5.0, 5.0, 0.0]])
    given = np.array([[12.0, 20.0, 30.0], [5.0, 5.0, 0.0]])
    assert smape(computed, given) == pytest.approx((2 / 122 + 0) / 2 * 100)


def _original_pixels(landmarks, row):
    """One image's 68 points in the original pixels (the set rescaled x and y separately)."""
    points = landmarks[landmarks["image"] == row.image].sort_values("point_index")
    return np.column_stack([points["x"] / row.scale_x, points["y"] / row.scale_y])


@pytest.mark.realdata
def test_aasce_reference_angles(aasce):
    _, labels, landmarks = aasce
    clean = labels[labels["qc_flags"].isna()]
    assert len(clean) > 400
    computed = np.array([cobb_angles(_original_pixels(landmarks, r), r.orig_height).as_array() for r in clean.itertuples()])
    given = clean[["cobb_pt", "cobb_mt", "cobb_tl"]].to_numpy()
    error = smape(computed, given)
    assert error <= 1.0, f"SMAPE {error:.4f} % over {len(clean)} images"
    # in fact the rule is reproduced to the rounding of the published angles
    assert error < 0.05
    assert np.abs(computed - given).max() < 0.1
