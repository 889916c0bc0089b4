"""Decoding on synthetic spines whose corners are known."""

from __future__ import annotations

import numpy as np

from osteolens.landmarks.decode import (
    LEVEL_RIVAL, LOW_CONFIDENCE, UNRELIABLE_LOW, Detection, PositionPrior, count_levels, decode, order_corners, rival,
)
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
        assert found.rival == 0.0 and found.rival_side is None and not found.levels_uncertain  # fillers are no rivals


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


def _with_extra_vertebra_above(corners: np.ndarray, shape: tuple[int, int]):
    """Maps of a spine whose 18th, cranial vertebra (a C7 lookalike) is seen more strongly than L5."""
    above = corners[:1] - (corners[1:2].mean(axis=1) - corners[:1].mean(axis=1))[:, None, :]
    heat, offset, corner = _maps(np.concatenate([above, corners]), shape)
    row, col = divmod(int(encode(corners, heat.shape, STRIDE, sigma=1.0).index[-1]), heat.shape[1])
    heat[row - 2:row + 3, col - 2:col + 3] *= 0.6  # L5 seen more weakly than the extra peak
    return heat, offset, corner


def test_counting_with_the_position_prior_drops_a_strong_peak_above_t1():
    _, corners = synthetic_spine(np.random.default_rng(5), (512, 256), 17)
    prior = PositionPrior.fit([corners], [512])  # radiographs framed like this one (spread: the 0.01 floor)
    heat, offset, corner = _with_extra_vertebra_above(corners, (512, 256))
    found = decode(heat, offset, corner, STRIDE, n=17, prior=prior)
    assert np.abs(found.corners - corners).max() < 1e-4  # every level right: nothing shifted by one
    assert np.isclose(found.confidence[-1], 0.6)
    # Without the prior, the 17 strongest peaks win and every level shifts by one.
    shifted = decode(heat, offset, corner, STRIDE, n=17)
    assert np.abs(shifted.corners[1:] - corners[:-1]).max() < 1e-4


def test_a_strong_peak_beyond_the_counted_set_flags_the_levels():
    _, corners = synthetic_spine(np.random.default_rng(5), (512, 256), 17)
    prior = PositionPrior.fit([corners], [512])
    heat, offset, corner = _with_extra_vertebra_above(corners, (512, 256))
    found = decode(heat, offset, corner, STRIDE, n=17, prior=prior)
    # The C7 lookalike (1.0) is left out above T1 and is stronger than L5 (0.6): the names may be off by one.
    assert found.rival_side == "cranial" and np.isclose(found.rival, 1.0) and found.levels_uncertain
    # Without the prior the set starts at the lookalike; the rival is L5 below it, at 0.6 < 0.8 x 1.0.
    shifted = decode(heat, offset, corner, STRIDE, n=17)
    assert shifted.rival_side == "caudal" and np.isclose(shifted.rival, 0.6) and not shifted.levels_uncertain
    assert found.scaled(2.0, 2.0).rival == found.rival and found.scaled(2.0, 2.0).levels_uncertain


def test_unreliable_from_the_count_of_low_confidence_vertebrae():
    confidence = np.full(17, 0.9)
    confidence[:UNRELIABLE_LOW - 1] = LOW_CONFIDENCE - 0.01
    assert not Detection(np.zeros((17, 4, 2)), confidence).unreliable
    confidence[UNRELIABLE_LOW - 1] = LOW_CONFIDENCE - 0.01
    assert Detection(np.zeros((17, 4, 2)), confidence).unreliable


def test_levels_uncertain_threshold_and_rival_side():
    quads = np.zeros((3, 4, 2))
    weakest = 0.5
    assert Detection(quads, np.array([0.9, weakest, 0.8]), LEVEL_RIVAL * weakest, "caudal").levels_uncertain
    assert not Detection(quads, np.array([0.9, weakest, 0.8]), LEVEL_RIVAL * weakest - 0.01, "caudal").levels_uncertain
    assert rival(np.array([0.7, 0.9, 0.9, 0.2]), np.array([1, 2])) == (0.7, "cranial")
    assert rival(np.array([0.9, 0.9]), np.array([0, 1])) == (0.0, None)


def test_count_levels_moves_the_set_only_when_the_score_rises():
    prior = PositionPrior((0.1, 0.02), (0.5, 0.02))
    heights = np.array([0.02, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    strong_top = np.array([0.9, 0.8, 0.8, 0.8, 0.8, 0.5, 0.4])
    assert count_levels(heights, strong_top, 5, prior).tolist() == [1, 2, 3, 4, 5]  # down one: the prior wins
    assert count_levels(heights, strong_top, 5, None).tolist() == [0, 1, 2, 3, 4]  # no prior: the strongest
    assert count_levels(heights, strong_top, 5, prior, max_shift=0).tolist() == [0, 1, 2, 3, 4]
    faint_bottom = np.array([0.9, 0.8, 0.8, 0.8, 0.8, 0.001, 0.4])  # the vertebra below hardly seen: stay
    assert count_levels(heights, faint_bottom, 5, PositionPrior((0.06, 0.05), (0.45, 0.05))).tolist() == [0, 1, 2, 3, 4]
    low = np.array([0.5, 0.6, 0.8, 0.8, 0.8, 0.8, 0.9])  # the set starts two too low: moved up twice
    assert count_levels(heights, low, 5, PositionPrior((0.02, 0.02), (0.4, 0.02))).tolist() == [0, 1, 2, 3, 4]


def test_position_prior_fit_and_round_trip():
    quads = np.zeros((2, 3, 4, 2))
    quads[0, 0, :, 1], quads[0, -1, :, 1] = 10, 90
    quads[1, 0, :, 1], quads[1, -1, :, 1] = 30, 170
    prior = PositionPrior.fit(list(quads), [100, 200])
    assert np.allclose(prior.first, (0.125, 0.025)) and np.allclose(prior.last, (0.875, 0.025))
    assert PositionPrior.from_dict(prior.to_dict()) == prior


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


def test_unflip_brings_the_mirror_images_maps_back():
    from osteolens.landmarks.augment import _FLIP_ORDER
    from osteolens.landmarks.decode import unflip

    _, corners = synthetic_spine(np.random.default_rng(8), (512, 256), 17)
    mirrored = corners.copy()
    mirrored[..., 0] = 255 - mirrored[..., 0]  # x -> W - 1 - x
    heat, offset, corner = _maps(corners, (512, 256))
    back = unflip(*_maps(mirrored[:, _FLIP_ORDER], (512, 256)))
    rows, cols = np.divmod(encode(corners, heat.shape, STRIDE, sigma=1.0).index, heat.shape[1])
    for original, restored in zip((heat, offset, corner), back, strict=True):
        assert np.allclose(original[..., rows, cols], restored[..., rows, cols], atol=1e-6)
    found = decode(*back, STRIDE, n=17)
    assert np.abs(found.corners - corners).max() < 1e-4
