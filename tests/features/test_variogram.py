"""Variogram ISV: hand values, the literal loop, reproducibility, and fractional Brownian surfaces."""

from __future__ import annotations

import numpy as np
import pytest

from osteolens.features import build_feature_family, semivariogram
from osteolens.features.variogram import semivariogram_loop


def test_ramp_by_hand():
    # z = 3 r + c on a 3 x 3 grid, every pixel, the 4 lattice directions.
    # lag 1: 12 vertical pairs (diff 3) and 12 horizontal pairs (diff 1): gamma = (12*9 + 12*1) / 24 / 2 = 2.5
    # lag 2: 6 vertical (diff 6) and 6 horizontal (diff 2): gamma = (6*36 + 6*4) / 12 / 2 = 10 -> slope log(4)/log(2) = 2
    z = np.arange(9, dtype=float).reshape(3, 3)
    result = semivariogram(z, np.ones((3, 3), bool), lags=(1, 2), fraction=1.0, n_directions=4, directions="fixed", n_fit=2)
    assert result.gamma == pytest.approx([2.5, 10.0], rel=1e-12)
    assert result.pairs.tolist() == [24, 12]
    assert result.isv == pytest.approx(2.0, rel=1e-12)
    # per axis: vertical pairs (0 deg) differ by 3h -> gamma 4.5 h^2, horizontal (90 deg) by h -> 0.5 h^2
    vertical = result.sums[:, [0, 2]].sum(axis=1) / result.counts[:, [0, 2]].sum(axis=1) / 2
    horizontal = result.sums[:, [1, 3]].sum(axis=1) / result.counts[:, [1, 3]].sum(axis=1) / 2
    assert vertical == pytest.approx([4.5, 18.0]) and horizontal == pytest.approx([0.5, 2.0])
    assert result.axis_isv()[0][0] == pytest.approx(2.0) and result.axis_isv()[90][0] == pytest.approx(2.0)


def test_fixed_family_sees_anisotropy():
    # Stripes that vary down the rows only: nothing changes along a row.
    rows = np.sin(np.arange(40) / 3.0)[:, None] * np.ones((1, 40))
    values = build_feature_family("variogram_fixed").compute((rows + 1) / 2)
    assert values["variogram_fixed_isv_0deg"] > 1.0
    assert np.isnan(values["variogram_fixed_isv_90deg"])  # zero horizontal variance: no slope


@pytest.mark.parametrize("directions", ["random", "fixed"])
def test_vectorised_equals_literal_loop(directions):
    rng = np.random.default_rng(3)
    image = rng.random((20, 22))
    mask = np.zeros_like(image, dtype=bool)
    mask[2:18, 3:20] = True
    mask[8:12, 8:12] = False  # a hole: neighbours falling in it are skipped
    kwargs = dict(fraction=0.5, n_directions=12, directions=directions, seed=11)
    fast = semivariogram(image, mask, **kwargs)
    slow = semivariogram_loop(image, mask, **kwargs)
    assert fast.pairs.tolist() == slow.pairs.tolist()
    np.testing.assert_allclose(fast.gamma, slow.gamma, rtol=1e-12)
    assert fast.counts.tolist() == slow.counts.tolist()
    np.testing.assert_allclose(fast.sums, slow.sums, rtol=1e-12)
    assert fast.isv == pytest.approx(slow.isv, rel=1e-12)


def test_seeded_and_reproducible():
    image = np.random.default_rng(0).random((32, 32))
    a = build_feature_family({"name": "variogram", "params": {"seed": 5}}).compute(image)
    b = build_feature_family({"name": "variogram", "params": {"seed": 5}}).compute(image)
    c = build_feature_family({"name": "variogram", "params": {"seed": 6}}).compute(image)
    assert a == b
    assert a["variogram_isv"] != c["variogram_isv"]
    assert set(a) == {"variogram_isv", "variogram_r2"} | {f"variogram_gamma_h{h}" for h in range(1, 7)}


def test_flat_image_has_no_slope():
    values = build_feature_family("variogram_fixed").compute(np.full((16, 16), 0.5))
    assert np.isnan(values["variogram_fixed_isv"]) and np.isnan(values["variogram_fixed_isv_0deg"])


def fractional_brownian_surface(size: int, hurst: float, seed: int, oversample: int = 4) -> np.ndarray:
    """Spectral synthesis: amplitude |k|^-(H+1) (power |k|^-(2H+2)), random phases, on a grid
    ``oversample`` times finer, then every ``oversample``-th sample (the lattice cut-off of the
    synthesis bends the variogram at the finest lags)."""
    rng = np.random.default_rng(seed)
    n = size * oversample
    k = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.rfftfreq(n)[None, :])
    k[0, 0] = 1.0
    amplitude = k ** -(hurst + 1.0)
    amplitude[0, 0] = 0.0
    noise = rng.normal(size=amplitude.shape) + 1j * rng.normal(size=amplitude.shape)
    return np.fft.irfft2(amplitude * noise, s=(n, n))[::oversample, ::oversample]


@pytest.mark.parametrize("hurst", [0.3, 0.5, 0.7])
def test_isv_of_fractional_brownian_surface_is_close_to_2h(hurst):
    surface = fractional_brownian_surface(256, hurst, seed=1)
    mask = np.ones(surface.shape, bool)
    lattice = semivariogram(surface, mask, n_directions=4, directions="fixed")  # no interpolation
    seed_like = semivariogram(surface, mask)  # 36 random directions, bilinear neighbours
    assert lattice.isv == pytest.approx(2 * hurst, abs=0.12)
    # Bilinear interpolation smooths the neighbour values and steepens the slope a little.
    assert seed_like.isv == pytest.approx(2 * hurst, abs=0.2)
    assert lattice.r2 > 0.99


def test_isv_orders_roughness():
    values = [semivariogram(fractional_brownian_surface(128, h, seed=2), np.ones((128, 128), bool)).isv for h in (0.2, 0.5, 0.8)]
    assert values[0] < values[1] < values[2]
