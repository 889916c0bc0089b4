"""Decoding on synthetic spines whose corners are known."""

from __future__ import annotations

import numpy as np

from osteolens.landmarks.decode import LOW_CONFIDENCE, decode, order_corners
from osteolens.landmarks.targets import encode, to_input, to_output
from tests.landmarks.conftest import synthetic_spine

STRIDE = 4


def _maps(corners: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The output maps a perfect network would give: the targets, offsets and levels written at each centre cell."""
    h, w = shape[0] // STRIDE, shape[1] // STRIDE
    targets = encode(corners, (h, w), STRIDE, sigma=1.0)
    offset, corner, level = np.zeros((2, h, w)), np.zeros((8, h, w)), np.full((h, w), 0.5)
    rows, cols = np.divmod(targets.index, w)
    offset[:, rows, cols] = targets.offset.T
    corner[:, rows, cols] = targets.corners.T
    level[rows, cols] = targets.level
    return targets.heatmap[0], offset, corner, level


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
    heat, offset, corner, level = _maps(corners, (512, 256))
    heat[5, 2] = 0.2  # a spurious weak peak in a corner of the map
    found = decode(heat, offset, corner, level, STRIDE, n=17)
    centres = found.corners.mean(axis=1)
    assert (np.diff(centres[:, 1]) > 0).all()
    assert np.abs(found.corners - corners).max() < 1e-4


def test_missing_vertebra_is_filled_and_flagged_low_confidence():
    _, corners = synthetic_spine(np.random.default_rng(3), (512, 256), 17)
    heat, offset, corner, level = _maps(corners, (512, 256))
    targets = encode(corners, heat.shape, STRIDE, sigma=1.0)
    row, col = divmod(int(targets.index[8]), heat.shape[1])
    heat[row - 3:row + 4, :] *= 0.1  # the network hardly sees vertebra 9
    found = decode(heat, offset, corner, level, STRIDE, n=17)
    assert found.low_confidence.sum() >= 1
    assert found.confidence.min() < LOW_CONFIDENCE
    assert len(found.corners) == 17


def _with_extra_vertebra_above(corners: np.ndarray, shape: tuple[int, int]):
    """Maps of a spine whose 18th, cranial vertebra (a C7 lookalike) is seen more strongly than L5."""
    above = corners[:1] - (corners[1:2].mean(axis=1) - corners[:1].mean(axis=1))[:, None, :]
    heat, offset, corner, level = _maps(np.concatenate([above, corners]), shape)
    targets = encode(np.concatenate([above, corners]), heat.shape, STRIDE, sigma=1.0)
    rows, cols = np.divmod(targets.index, heat.shape[1])
    level[rows, cols] = (np.arange(18) - 1) / 16  # the network's levels: T1 is 0, the extra one -1/16
    heat[rows[-1] - 2:rows[-1] + 3, cols[-1] - 2:cols[-1] + 3] *= 0.6  # L5 seen more weakly than the extra peak
    return heat, offset, corner, level


def test_counting_by_level_drops_a_strong_peak_above_t1():
    _, corners = synthetic_spine(np.random.default_rng(5), (512, 256), 17)
    heat, offset, corner, level = _with_extra_vertebra_above(corners, (512, 256))
    found = decode(heat, offset, corner, level, STRIDE, n=17)
    assert np.abs(found.corners - corners).max() < 1e-4  # every level right: nothing shifted by one
    assert np.isclose(found.confidence[-1], 0.6)
    # Without level information (a flat map), the 17 strongest peaks win and every level shifts by one.
    shifted = decode(heat, offset, corner, np.full_like(level, 0.5), STRIDE, n=17)
    assert np.abs(shifted.corners[1:] - corners[:-1]).max() < 1e-4


def test_count_levels_moves_the_set_down_and_up():
    from osteolens.landmarks.decode import count_levels

    levels = (np.arange(8) - 1) / 4  # candidates sorted top to bottom: one above the first level, two below the last
    heat = np.array([0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.5, 0.4])
    assert count_levels(levels, heat, 5).tolist() == [1, 2, 3, 4, 5]  # the strong extra peak on top is dropped
    up = (np.arange(8) + 1) / 4  # the same candidates read one level lower: the set must start one higher
    assert count_levels(up, np.array([0.5, 0.9, 0.8, 0.8, 0.8, 0.8, 0.9, 0.4]), 5).tolist() == [0, 1, 2, 3, 4]
    noisy = np.arange(6) / 4 + np.array([0.1, -0.1, 0.05, -0.05, 0.2, 0.0])  # a few levels off, none shifted
    assert count_levels(noisy, np.ones(6) - np.arange(6) * 0.01, 5).tolist() == [0, 1, 2, 3, 4]


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
