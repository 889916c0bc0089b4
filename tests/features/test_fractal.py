"""Box-counting dimension: exact on a Sierpinski carpet, 1 for lines and smooth outlines."""

from __future__ import annotations

import math

import numpy as np
import pytest

from osteolens.features import build_feature_family
from osteolens.features.fractal import box_counting_dimension, box_counts


def sierpinski_carpet(level: int) -> np.ndarray:
    carpet = np.ones((1, 1), bool)
    for _ in range(level):
        carpet = np.block([[carpet, carpet, carpet], [carpet, np.zeros_like(carpet), carpet], [carpet, carpet, carpet]])
    return carpet


def test_sierpinski_carpet_dimension_is_log8_over_log3():
    carpet = sierpinski_carpet(4)  # 81 x 81
    assert box_counts(carpet, [1, 3, 9, 27], "mass").tolist() == [8**4, 8**3, 8**2, 8]
    dimension, r2 = box_counting_dimension(carpet, [1, 3, 9, 27], "mass")
    assert dimension == pytest.approx(math.log(8) / math.log(3), rel=1e-12)
    assert r2 == pytest.approx(1.0)


def test_line_and_square_outline_have_dimension_one():
    line = np.zeros((64, 64), bool)
    line[20, :] = True
    assert box_counting_dimension(line, [1, 2, 4, 8, 16], "mass")[0] == pytest.approx(1.0)
    square = np.zeros((128, 128), bool)
    square[32:96, 32:96] = True
    # boundary boxes of a square whose sides fall on box edges: none at sizes dividing 32, so offset it
    square = np.roll(square, (3, 5), axis=(0, 1))
    assert box_counting_dimension(square, [2, 4, 8, 16], "boundary")[0] == pytest.approx(1.0, abs=0.05)


def test_family_columns_and_flat_image():
    rng = np.random.default_rng(0)
    values = build_feature_family("fractal").compute(rng.random((64, 64)))
    assert set(values) == {"fractal_dimension", "fractal_r2"}
    assert 1.5 < values["fractal_dimension"] <= 2.0  # noise: edges everywhere
    assert np.isnan(build_feature_family("fractal").compute(np.full((32, 32), 0.3))["fractal_dimension"])
