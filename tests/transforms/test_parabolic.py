"""The linear-time parabolic erosion against the definition, evaluated by brute force."""

from __future__ import annotations

import numpy as np
import pytest

from osteolens.transforms.parabolic import erode_lines


def _brute_force(values, radius, first, step, count, spacing):
    q = np.arange(values.shape[1])
    p = first + step * np.arange(count)
    depth = ((p[:, None] - q[None, :]) * spacing) ** 2 / (2.0 * radius)
    return (values.astype(np.float64)[:, None, :] + depth[None]).min(axis=2)


@pytest.mark.parametrize(
    ("radius", "first", "step", "spacing"),
    [(5.0, 0, 1, 1.0), (180.0, 0, 1, 1.0), (180.0, 2, 6, 1.0), (0.3, 1, 3, 1.0), (180.0, 0, 1, 6.0)],
)
def test_equals_the_minimum_over_every_offset(radius, first, step, spacing):
    rng = np.random.default_rng(int(radius * 10) + step)
    values = (rng.random((9, 61)) * 255).astype(np.float32)
    values[3] = 42.0  # a flat line erodes to itself
    values[4, 30] = -500.0  # one deep pit dominates its whole neighbourhood
    count = -(-(61 - first) // step)
    ours = erode_lines(values, radius, first, step, spacing=spacing)
    assert ours.shape == (9, count)
    np.testing.assert_allclose(ours, _brute_force(values, radius, first, step, count, spacing), atol=1e-3)
    np.testing.assert_allclose(ours[3], 42.0)


def test_threads_split_rows_without_changing_the_result():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(37, 80)).astype(np.float32) * 50
    np.testing.assert_array_equal(erode_lines(values, 20.0, threads=1), erode_lines(values, 20.0, threads=3))


def test_large_radius_returns_the_line_minimum_plus_the_parabola():
    # With r huge the parabola is flat: every output is the global minimum of the line.
    values = np.array([[5.0, 3.0, 9.0, 1.0, 7.0]], np.float32)
    np.testing.assert_allclose(erode_lines(values, 1e9), 1.0, atol=1e-6)
    # With r tiny the parabola is a needle: the erosion is the identity.
    np.testing.assert_allclose(erode_lines(values, 1e-6), values)
