"""Corners and heights from rasterised masks, in any orientation, within a pixel."""

from __future__ import annotations

import numpy as np
import pytest

from osteolens.errors import AnnotationError
from osteolens.morphometry import corners_from_mask, measure_mask, measure_spine
from osteolens.morphometry.inputs import spine_from_masks
from osteolens.morphometry.masks import split_label_image


def _up(theta_deg: float) -> np.ndarray:
    t = np.radians(theta_deg)
    return np.array([-np.sin(t), -np.cos(t)])  # the image top, rotated with the body


def test_rotated_masks_within_one_pixel(quad, raster):
    """Heights from masks of randomly rotated wedges are within a pixel.

    Over 2000 such cases (docs/morphometry.md) the mean error is 0.17 px, every middle
    height and 99.8 % of side heights are within 1 px, and the largest error is 1.4 px.
    """
    rng = np.random.default_rng(11)
    errors, corner_errors = [], []
    for _ in range(60):
        theta = rng.uniform(-180, 180)
        q = quad(
            width=rng.uniform(60, 100),
            left=rng.uniform(28, 55),
            right=rng.uniform(40, 55),
            superior_deg=rng.uniform(-8, 8),
            theta_deg=theta,
            centre=(100 + rng.uniform(-2, 2), 100 + rng.uniform(-2, 2)),
        )
        mask = raster(q.corners, (200, 200))
        m = measure_mask(mask, view="lateral", anterior="left", up=_up(theta))
        errors.append([m.anterior_height_px - q.left, m.middle_height_px - q.middle, m.posterior_height_px - q.right])
        corner_errors.append(np.linalg.norm(corners_from_mask(mask, _up(theta)) - q.corners, axis=1).max())
    errors = np.abs(np.array(errors))
    assert errors.max() < 1.5
    assert (errors < 1.0).mean() >= 0.98
    assert errors[:, 1].max() < 1.0  # the middle height: always within a pixel
    assert errors.mean() < 0.3
    assert max(corner_errors) < 1.5
    assert errors.max() > 0.05  # the masks are really pixelated, not a trivially exact case


def test_default_up_is_the_image_top(quad, raster):
    q = quad(width=80, left=35, right=45, superior_deg=3, theta_deg=25, centre=(100, 100))
    mask = raster(q.corners, (200, 200))
    assert np.abs(corners_from_mask(mask) - q.corners).max() < 1.0


def test_spine_upside_down_found_from_neighbours(quad, raster):
    """A spine rotated by 150 degrees: each vertebra's frame comes from its neighbours."""
    theta = 150.0
    t = np.radians(theta)
    down = np.array([np.sin(t), np.cos(t)])  # caudal direction after the rotation
    truth, masks = [], []
    for k, (left, right) in enumerate([(40, 44), (30, 45), (44, 46), (45, 47)]):
        q = quad(width=80, left=left, right=right, superior_deg=0, theta_deg=theta, centre=np.array([200, 200]) + (k - 1.5) * 60 * down)
        truth.append(q)
        masks.append((f"L{k + 1}", raster(q.corners, (400, 400))))
    masks.reverse()  # file order does not matter: levels sort them
    spine_input = spine_from_masks("rotated", masks)
    assert spine_input.names == ["L1", "L2", "L3", "L4"]
    spine = measure_spine(spine_input.corners, spine_input.names, view="lateral", midpoints=spine_input.midpoints)
    assert spine.problems == []
    for q, v in zip(truth, spine.vertebrae, strict=True):
        assert np.linalg.norm(v.corners - q.corners, axis=1).max() < 1.0
        assert v.anterior_height_px == pytest.approx(q.left, abs=1.0)
        assert v.posterior_height_px == pytest.approx(q.right, abs=1.0)
    l2 = spine.vertebrae[1]
    assert (l2.genant.grade, l2.genant.fracture_type) == (2, "wedge")  # 1 - 30/45 = 33 %


def test_biconcave_middle_height_is_measured_on_the_mask(raster_outline):
    # a 80 x 50 px body whose endplates sag 8 px in the middle, inside intact rims
    x = np.linspace(-40, 40, 161)
    sag = np.where(np.abs(x) < 28, 8 * (1 - (x / 28) ** 2) ** 2, 0.0)
    top = np.column_stack([100.3 + x, 75.3 + sag])  # off the pixel grid: no ties
    bottom = np.column_stack([100.3 + x, 125.3 - sag])[::-1]
    outline = np.vstack([top, bottom])
    mask = (raster_outline(outline, (200, 200)) > 0).astype(np.uint8)
    m = measure_mask(mask, pixel_mm=0.5, view="lateral")
    assert m.anterior_height_mm == pytest.approx(25.0, abs=0.5)  # within a pixel (0.5 mm)
    assert m.middle_height_mm == pytest.approx(17.0, abs=0.5)  # (50 - 16) px
    assert (m.genant.grade, m.genant.fracture_type) == (2, "biconcave")


def test_label_image_split_top_first():
    labels = np.zeros((100, 60), np.int32)
    labels[60:80, 10:50] = 3
    labels[10:30, 10:50] = 7
    labels[35:55, 10:50] = 5
    parts = split_label_image(labels)
    assert [value for value, _ in parts] == [7, 5, 3]
    assert parts[0][1].sum() == 800


def test_mask_largest_part_and_holes():
    mask = np.zeros((80, 80), np.uint8)
    mask[20:60, 10:70] = 1
    mask[35:45, 30:50] = 0  # a hole
    mask[2:4, 2:4] = 1  # a speck
    corners = corners_from_mask(mask)
    expected = [[9.5, 19.5], [69.5, 19.5], [9.5, 59.5], [69.5, 59.5]]  # pixel edges of the block
    assert np.abs(corners - expected).max() < 0.1


def test_empty_mask_raises():
    with pytest.raises(AnnotationError, match="empty"):
        corners_from_mask(np.zeros((10, 10)))
