"""LBP histogram: hand case and agreement with scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.feature import local_binary_pattern

from osteolens.features import build_feature_family


def test_flat_image_is_all_code_p():
    values = build_feature_family("lbp").compute(np.full((12, 12), 0.4))
    assert values["lbp_P8_R1_8"] == 1.0
    assert sum(values.values()) == pytest.approx(1.0)
    assert list(values) == [f"lbp_P8_R1_{k}" for k in range(10)]


def test_histogram_matches_scikit_image():
    image = np.random.default_rng(0).random((30, 30))
    mask = np.zeros(image.shape, bool)
    mask[3:25, 5:28] = True
    values = build_feature_family({"name": "lbp", "params": {"points": 16, "radius": 2}}).compute(image, mask)
    codes = local_binary_pattern(np.rint(image * 255).astype(np.uint8), 16, 2, method="uniform")[mask]
    expected = np.bincount(codes.astype(int), minlength=18) / mask.sum()
    assert [values[f"lbp_P16_R2_{k}"] for k in range(18)] == pytest.approx(expected.tolist())
