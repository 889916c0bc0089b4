"""Cobb angles: hand-built spines with known tilts, and the AASCE 2019 reference angles."""

from __future__ import annotations

import numpy as np
import pytest

from osteolens.errors import AnnotationError
from osteolens.morphometry import cobb_angles, smape
from osteolens.morphometry.cobb import is_s_shaped
from osteolens.morphometry.spine import HEIGHT_FALLBACK_NOTE, measure_spine


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


def test_s_spine_whose_main_curve_straddles_the_midline(s_spine):
    # by hand: the angle between two vertebrae is the difference of their tilts (conftest.S_TILTS)
    bottom_y = s_spine[:, 2:].mean(axis=1)[:, 1]  # inferior endplate midpoints
    assert bottom_y[6] < 800 / 2 < bottom_y[11]  # T7 above the image's midline, T12 below
    true = cobb_angles(s_spine, image_height=800.0)  # 289.1 + 439.1 < 800: main curve in the upper half
    assert true.s_shaped and true.pt == pytest.approx(50.0) and true.pt_vertebrae == (6, 11)
    assert true.mt == pytest.approx(35.0) and true.mt_vertebrae == (0, 6)  # largest above T7: T1
    assert true.tl == pytest.approx(19.0) and true.tl_vertebrae == (11, 16)  # largest below T12: L5
    # without the height, the spine's own middle (sum 680.1 < 728.1) sends it down the other
    # branch: the next curve above T1, which is none
    fallback = cobb_angles(s_spine)
    assert fallback.pt == pytest.approx(50.0) and fallback.mt == pytest.approx(35.0)
    assert fallback.tl == 0.0 and fallback.tl_vertebrae == (0, 0)
    assert cobb_angles(s_spine, image_height=700.0).as_array() == pytest.approx(fallback.as_array())


def test_measure_spine_notes_the_height_fallback(s_spine):
    names = [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
    without = measure_spine(s_spine, names, view="AP")
    assert without.cobb.tl == 0.0 and without.cobb_note == HEIGHT_FALLBACK_NOTE
    for spine in (
        measure_spine(s_spine, names, view="AP", image_height=800),
        measure_spine(s_spine, names, view="AP", image_shape=(800, 400)),
        measure_spine(s_spine, names, view="AP", image_shape=(600, 400), image_height=800),  # the height wins
    ):
        assert spine.cobb.tl == pytest.approx(19.0) and spine.cobb_note is None
        assert spine.cobb_row()["tl_upper"] == "T12" and spine.cobb_row()["tl_lower"] == "L5"
    # isotropic 0.5 mm pixels: corners and height scale together, the same branch
    assert measure_spine(s_spine, names, view="AP", pixel_mm=0.5, image_height=800).cobb.tl == pytest.approx(19.0)
    # a C-shaped spine never uses the height: no note
    c_spine = _spine(30 * np.sin(np.pi * np.arange(7) / 6), [0, -8, 12, 20, 6, -10, 0])
    assert measure_spine(c_spine, view="AP").cobb_note is None


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
