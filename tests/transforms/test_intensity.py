from __future__ import annotations

import numpy as np
import pytest
from skimage.exposure import equalize_adapthist

from osteolens.transforms import Clahe, EqualiseHistogram, Invert, PercentileNormalise


def test_percentile_normalise_maps_percentiles_to_0_and_1_and_clips():
    values = np.arange(201, dtype=np.float32).reshape(1, -1)  # 0..200
    out = PercentileNormalise(low=10, high=90)(values)
    # numpy's linear percentiles of 0..200 are 20 and 180.
    assert out[0, 20] == 0.0 and out[0, 180] == 1.0
    assert out[0, 100] == 0.5
    assert out[0, 0] == 0.0 and out[0, 200] == 1.0  # clipped
    np.testing.assert_allclose(out[0, 20:181], (values[0, 20:181] - 20) / 160, atol=1e-6)


def test_percentile_normalise_seed_defaults():
    values = np.linspace(0, 1, 1001, dtype=np.float32).reshape(7, 143)
    out = PercentileNormalise()(values)
    low, high = np.percentile(values, [0.5, 99.5])
    np.testing.assert_allclose(out, np.clip((values - low) / (high - low), 0, 1), atol=1e-6)


def test_percentile_normalise_flat_image_is_zero():
    assert PercentileNormalise()(np.full((3, 3), 0.7, np.float32)).tolist() == [[0.0] * 3] * 3


def test_equalise_histogram_is_the_cdf():
    # Two bins over [0, 1]: counts 2 and 2, centres 0.25 and 0.75, CDF 0.5 and 1,
    # interpolated linearly between the centres.
    image = np.array([[0.0, 0.0], [0.5, 1.0]], np.float32)
    np.testing.assert_allclose(EqualiseHistogram(nbins=2)(image), [[0.5, 0.5], [0.75, 1.0]])


def test_clahe_matches_skimage_and_raises_local_contrast():
    rng = np.random.default_rng(0)
    image = (0.45 + 0.05 * rng.random((64, 64))).astype(np.float32)
    out = Clahe(clip_limit=0.02, kernel_size=16)(image)
    np.testing.assert_allclose(out, equalize_adapthist(image, kernel_size=16, clip_limit=0.02), atol=1e-6)
    assert out.std() > 3 * image.std() and 0 <= out.min() and out.max() <= 1


def test_invert():
    np.testing.assert_allclose(Invert()(np.array([[0.0, 0.25, 1.0]], np.float32)), [[1.0, 0.75, 0.0]])


@pytest.mark.parametrize("percents", [(0.5, 99.5), (0.0, 100.0), (2.5, 97.5), (40.0, 60.0), (99.9, 99.99)])
def test_tail_percentiles_equal_numpys(percents):
    from osteolens.transforms.intensity import tail_percentiles

    rng = np.random.default_rng(7)
    cases = [
        rng.random((300, 400), dtype=np.float32),  # continuous
        np.round(rng.random((250, 300)) * 4).astype(np.float32),  # five grey levels: ties everywhere
        rng.standard_normal(70001),  # odd size, float64
        np.zeros((260, 260), np.float32),  # flat
        np.concatenate([np.zeros(99000), np.ones(1000)]).astype(np.float32),  # a burnt-in label
        rng.random(1000, dtype=np.float32),  # small: NumPy itself
    ]
    for values in cases:
        np.testing.assert_allclose(tail_percentiles(values, percents), np.percentile(values, percents),
                                   rtol=1e-7, atol=1e-12)


@pytest.mark.realdata
def test_percentile_normalise_on_a_real_radiograph_matches_the_formula(real_dataset):
    from osteolens.io import read_radiograph
    from osteolens.transforms import PercentileNormalise

    pixels = read_radiograph(real_dataset("dicom_radiographs") / "RG3_UNCR.dcm").pixels
    lo, hi = np.percentile(pixels, [0.5, 99.5])
    expected = np.clip((pixels.astype(np.float64) - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(PercentileNormalise(0.5, 99.5)(pixels), expected, atol=1e-6)
