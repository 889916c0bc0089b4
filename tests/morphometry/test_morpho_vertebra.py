"""Heights, endplate and wedge angles of synthetic vertebrae with known geometry, any rotation."""

from __future__ import annotations

import numpy as np
import pytest

from osteolens.errors import AnnotationError
from osteolens.morphometry import measure_vertebra


def test_random_rotations_exact(quad):
    rng = np.random.default_rng(7)
    for _ in range(200):
        q = quad(
            width=rng.uniform(20, 80),
            left=rng.uniform(10, 40),
            right=rng.uniform(10, 40),
            superior_deg=rng.uniform(-15, 15),
            theta_deg=rng.uniform(-180, 180),
            centre=rng.uniform(-500, 500, 2),
        )
        m = measure_vertebra(q.corners, view="lateral", anterior="left")
        assert m.anterior_height_px == pytest.approx(q.left, abs=1e-6)
        assert m.posterior_height_px == pytest.approx(q.right, abs=1e-6)
        assert m.middle_height_px == pytest.approx(q.middle, abs=1e-6)
        assert m.superior_angle_deg == pytest.approx(q.superior_deg, abs=1e-6)
        assert m.inferior_angle_deg == pytest.approx(q.inferior_deg, abs=1e-6)
        assert m.wedge_angle_deg == pytest.approx(q.wedge_deg, abs=1e-6)


def test_anisotropic_spacing_gives_true_millimetres(quad):
    rng = np.random.default_rng(3)
    row_mm, col_mm = 0.2, 0.125
    for _ in range(50):
        q = quad(40, rng.uniform(15, 30), rng.uniform(15, 30), rng.uniform(-10, 10), rng.uniform(-180, 180))
        pixels = q.corners / [col_mm, row_mm]  # the same body drawn on a non-square pixel grid
        m = measure_vertebra(pixels, pixel_mm=(row_mm, col_mm), view="LAT", anterior="left")
        assert m.anterior_height_mm == pytest.approx(q.left, abs=1e-6)
        assert m.posterior_height_mm == pytest.approx(q.right, abs=1e-6)
        assert m.middle_height_mm == pytest.approx(q.middle, abs=1e-6)
        assert m.wedge_angle_deg == pytest.approx(q.wedge_deg, abs=1e-6)
        assert m.superior_angle_deg == pytest.approx(q.superior_deg, abs=1e-6)


def test_anterior_side_and_sign_of_wedge(quad):
    q = quad(width=40, left=18, right=26, superior_deg=0, theta_deg=0)
    left_front = measure_vertebra(q.corners, anterior="left")
    right_front = measure_vertebra(q.corners, anterior="right")
    assert (left_front.anterior_height_px, left_front.posterior_height_px) == pytest.approx((18, 26))
    assert (right_front.anterior_height_px, right_front.posterior_height_px) == pytest.approx((26, 18))
    # endplates converge on the short (left) side: anterior wedging is positive
    expected = np.degrees(np.arctan2(8, 40))
    assert left_front.wedge_angle_deg == pytest.approx(expected)
    assert right_front.wedge_angle_deg == pytest.approx(-expected)
    assert left_front.anterior_posterior_ratio == pytest.approx(18 / 26)
    assert left_front.genant.grade == 2 and left_front.genant.fracture_type == "wedge"  # 1 - 18/26 = 30.8 %


def test_ap_view_has_no_anterior_posterior():
    m = measure_vertebra([[0, 0], [40, 0], [0, 20], [40, 25]], pixel_mm=0.5, view="AP")
    assert m.view == "AP"
    assert m.anterior_height_mm is None and m.posterior_height_mm is None and m.genant is None
    assert (m.left_height_mm, m.right_height_mm, m.middle_height_mm) == pytest.approx((10.0, 12.5, 11.25))
    assert m.left_right_ratio == pytest.approx(0.8)
    assert m.tilt_deg == pytest.approx(np.degrees(np.arctan2(-2.5, 40)))


def test_to_dict_is_flat():
    row = measure_vertebra([[0, 0], [30, 0], [0, 20], [30, 25]], pixel_mm=0.5, name="L1").to_dict()
    assert row["vertebra"] == "L1" and row["bottom_right_y"] == 25.0
    assert row["anterior_height_mm"] == 10.0 and row["genant_grade"] == 1 and row["fracture_type"] == "wedge"
    assert row["problems"] == ""


@pytest.mark.parametrize(
    ("corners", "message"),
    [([[0, 0], [1, 0], [0, 1]], "shape"), ([[0, 0], [1, 0], [0, 1], [np.nan, 1]], "missing")],
)
def test_bad_corners_raise(corners, message):
    with pytest.raises(AnnotationError, match=message):
        measure_vertebra(corners)


def test_bad_view_and_side_raise():
    square = [[0, 0], [1, 0], [0, 1], [1, 1]]
    with pytest.raises(AnnotationError, match="view"):
        measure_vertebra(square, view="oblique")
    with pytest.raises(AnnotationError, match="anterior"):
        measure_vertebra(square, anterior="front")  # type: ignore[arg-type]
