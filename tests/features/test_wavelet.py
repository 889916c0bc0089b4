"""Seed wavelet family: 7 db2 level-2 sub-bands, normalised, through pyradiomics."""

from __future__ import annotations

import numpy as np
import pywt
import pytest

from osteolens.features import build_feature_family
from osteolens.features.pyradiomics_family import TEXTURE_CLASSES, run_pyradiomics
from osteolens.features.wavelet import normalise_subband, subband_mask, wavelet_subbands


def test_seven_subbands_with_periodization_shapes():
    image = np.random.default_rng(0).random((64, 48))
    bands = wavelet_subbands(image)
    assert list(bands) == ["A2", "H2", "V2", "D2", "H1", "V1", "D1"]
    assert bands["A2"].shape == (16, 12) and bands["H2"].shape == (16, 12) and bands["D1"].shape == (32, 24)
    # Perfect reconstruction: the bands are the whole transform.
    coeffs = [bands["A2"], (bands["H2"], bands["V2"], bands["D2"]), (bands["H1"], bands["V1"], bands["D1"])]
    np.testing.assert_allclose(pywt.waverec2(coeffs, "db2", mode="periodization"), image, atol=1e-10)


def test_normalisation_maps_to_unit_interval():
    band = np.array([[-4.0, 0.0], [2.0, 1.0]])
    np.testing.assert_allclose(normalise_subband(band, approximation=False), [[0.0, 0.5], [0.75, 0.625]])
    np.testing.assert_allclose(normalise_subband(band, approximation=True), [[0.0, 0.0], [0.5, 0.25]])
    assert normalise_subband(np.zeros((2, 2)), approximation=False).tolist() == [[0.5, 0.5], [0.5, 0.5]]


def test_family_equals_manual_pipeline():
    image = np.random.default_rng(1).random((48, 40))
    values = build_feature_family("wavelet").compute(image)
    assert len(values) == 7 * 93
    band = wavelet_subbands(image)["H1"]
    grey = np.rint(normalise_subband(band, approximation=False) * 255.0)
    manual = run_pyradiomics(grey, subband_mask(np.ones(image.shape, bool), band.shape), {"binWidth": 25.0}, TEXTURE_CLASSES)
    for key, value in manual.items():
        assert values[f"dwt-H1_{key.removeprefix('original_')}"] == pytest.approx(value, rel=1e-12)


def test_subband_mask_follows_the_roi():
    mask = np.zeros((40, 40), bool)
    mask[:, :20] = True
    small = subband_mask(mask, (10, 10))
    assert small[1:-1, 1:5].all() and not small[:, 5:].any() and not small[0].any()
