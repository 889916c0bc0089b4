"""Decoding on synthetic spines whose corners are known."""

from __future__ import annotations

import numpy as np

from osteolens.landmarks.decode import LOW_CONFIDENCE, decode, order_corners
from osteolens.landmarks.targets import encode, to_input, to_output
from tests.landmarks.conftest import synthetic_spine

STRIDE = 4


def _maps(corners: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The output maps a perfect network would give: the targets, offsets written at each centre cell."""
    h, w = shape[0] // STRIDE, shape[1] // STRIDE
    targets = encode(corners, (h, w), STRIDE, sigma=1.0)
    offset, corner = np.zeros((2, h, w)), np.zeros((8, h, w))
    rows, cols = np.divmod(targets.index, w)
    offset[:, rows, cols] = targets.offset.T
    corner[:, rows, cols] = targets.corners.T
    return targets.heatmap[0], offset, corner


def test_output_grid_round_trip():
    points = np.array([[0.0, 0.0], [13.25, 101.5]])
    assert np.allclose(to_input(to_output(points, STRIDE), STRIDE), points)
    assert np.allclose(to_output(np.array([[1.5, 1.5]]), STRIDE), 0.0)  # centre of the first 4 x 4 cell


def test_decode_recovers_known_corners_of_synthetic_spines():
    rng = np.random.default_rng(1)
    for _ in range(5):
        _, corners = synthetic_spine(rng, (512, 256), 17)
        found = decode(*_maps(corners, (512, 256)), STRIDE, n=17)
        assert found.corners.shape == (17, 4, 2)
        assert np.abs(found.corners - corners).max() < 1e-4
        assert np.allclose(found.confidence, 1.0)


def test_decode_orders_vertebrae_cranio_caudally_and_ignores_weaker_peaks():
    _, corners = synthetic_spine(np.random.default_rng(2), (512, 256), 17)
    heat, offset, corner = _maps(corners, (512, 256))
    heat[5, 2] = 0.2  # a spurious weak peak in a corner of the map
    found = decode(heat, offset, corner, STRIDE, n=17)
    centres = found.corners.mean(axis=1)
    assert (np.diff(centres[:, 1]) > 0).all()
    assert np.abs(found.corners - corners).max() < 1e-4


def test_missing_vertebra_is_filled_and_flagged_low_confidence():
    _, corners = synthetic_spine(np.random.default_rng(3), (512, 256), 17)
    heat, offset, corner = _maps(corners, (512, 256))
    targets = encode(corners, heat.shape, STRIDE, sigma=1.0)
    row, col = divmod(int(targets.index[8]), heat.shape[1])
    heat[row - 3:row + 4, :] *= 0.1  # the network hardly sees vertebra 9
    found = decode(heat, offset, corner, STRIDE, n=17)
    assert found.low_confidence.sum() >= 1
    assert found.confidence.min() < LOW_CONFIDENCE
    assert len(found.corners) == 17


def test_order_corners_swaps_endplates_and_sides():
    good = np.array([[[0, 0], [10, 0], [0, 5], [10, 5]]], float)
    upside_down = good[:, [2, 3, 0, 1]]
    mirrored = good[:, [1, 0, 3, 2]]
    both = good[:, [3, 2, 1, 0]]
    for bad in (upside_down, mirrored, both, good):
        assert np.array_equal(order_corners(bad), good)


def test_scaled_detection_maps_to_the_original_grid():
    _, corners = synthetic_spine(np.random.default_rng(4), (512, 256), 17)
    found = decode(*_maps(corners, (512, 256)), STRIDE, n=17).scaled(2.0, 3.0)
    assert np.allclose(found.corners, (corners + 0.5) * [2.0, 3.0] - 0.5, atol=1e-4)
