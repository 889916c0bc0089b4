"""Keypoint augmentation: the points move with the image, and the inverse brings them back."""

from __future__ import annotations

import numpy as np

from osteolens.landmarks.augment import AugmentSettings, inverse, jitter_intensity, random_matrix, transform_points, warp
from osteolens.landmarks.preprocess import prepare, to_network, to_original
from tests.landmarks.conftest import synthetic_spine


def test_transform_then_inverse_returns_the_points():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 500, (68, 2))
    for _ in range(50):
        matrix, _ = random_matrix(rng, (512, 256), AugmentSettings(rotate_deg=20, scale=0.3, translate=0.2))
        back = transform_points(transform_points(points, matrix), inverse(matrix))
        assert np.abs(back - points).max() < 1e-3


def test_points_follow_the_warped_image():
    rng = np.random.default_rng(1)
    image = np.zeros((128, 96), np.float32)
    image[40, 30] = 1.0  # one bright pixel at x=30, y=40
    corners = np.array([[[30.0, 40.0]] * 4])
    for _ in range(10):
        matrix, flip = random_matrix(rng, image.shape, AugmentSettings(rotate_deg=15, scale=0.2, translate=0.1, hflip=0.5))
        warped, moved = warp(image, corners, matrix, flip)
        y, x = np.unravel_index(np.argmax(warped), warped.shape)
        assert np.hypot(x - moved[0, 0, 0], y - moved[0, 0, 1]) <= 1.0


def test_flip_keeps_corner_names_anatomical():
    rng = np.random.default_rng(2)
    image, corners = synthetic_spine(rng, (256, 128), 5)
    matrix, flip = random_matrix(np.random.default_rng(0), image.shape, AugmentSettings(rotate_deg=0, scale=0, translate=0, hflip=1.0))
    assert flip
    _, moved = warp(image, corners, matrix, flip)
    assert (moved[:, 0, 0] < moved[:, 1, 0]).all() and (moved[:, 2, 0] < moved[:, 3, 0]).all()
    assert np.allclose(np.sort(moved[:, :, 0], axis=1), np.sort(127 - corners[:, :, 0], axis=1))


def test_intensity_jitter_stays_in_range_and_changes_the_image():
    image = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    out = jitter_intensity(image, np.random.default_rng(3), AugmentSettings())
    assert out.min() >= 0 and out.max() <= 1 and not np.allclose(out, image)


def test_network_grid_round_trip_and_scale():
    pixels = np.random.default_rng(4).uniform(0, 1, (1000, 350)).astype(np.float32)
    image, scale = prepare(pixels, (512, 256))
    assert image.shape == (512, 256) and scale == (350 / 256, 1000 / 512)
    points = np.array([[0.0, 0.0], [349.0, 999.0], [120.3, 500.7]])
    assert np.allclose(to_original(to_network(points, scale), scale), points)
