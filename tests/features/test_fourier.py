"""Fourier RMS / FMS checked by hand on a 2 x 2 image."""

from __future__ import annotations

import math

import numpy as np
import pytest

from osteolens.features import build_feature_family

# fft2 of [[1, 2], [3, 5]]: F00 = 11, F01 = (1-2)+(3-5) = -3, F10 = (1+2)-(3+5) = -5, F11 = 1-2-3+5 = 1.
GREY = np.array([[1.0, 2.0], [3.0, 5.0]])
MAGNITUDES = [11.0, 3.0, 5.0, 1.0]


def _expected(log):
    s = [20.0 * log(m) for m in MAGNITUDES]
    rows = 2
    rms = math.sqrt(sum(v * v for v in s) / len(s)) / math.sqrt(rows)
    fms = sum(abs(v) for v in s) / rows
    return rms, fms


def test_natural_log_spectrum_by_hand():
    # The [0, 1] image whose 0-255 grey levels are GREY.
    values = build_feature_family("fourier").compute(GREY / 255.0)
    rms, fms = _expected(math.log)
    # 20 ln 11 = 47.958, 20 ln 3 = 21.972, 20 ln 5 = 32.189, 20 ln 1 = 0
    assert values["fourier_rms"] == pytest.approx(rms, rel=1e-12)
    assert values["fourier_fms"] == pytest.approx(fms, rel=1e-12)
    assert values["fourier_fms"] == pytest.approx((47.9579 + 21.9722 + 32.1888) / 2, abs=1e-3)


def test_log10_spectrum_by_hand():
    family = build_feature_family({"name": "fourier", "params": {"log_base": "10", "scale": 1.0, "quantise": False}})
    values = family.compute(GREY)
    rms, fms = _expected(math.log10)
    assert values["fourier_rms"] == pytest.approx(rms, rel=1e-12)
    assert values["fourier_fms"] == pytest.approx(fms, rel=1e-12)


def test_zero_magnitudes_are_floored_not_infinite():
    # A constant image: every magnitude but the DC term is zero -> floored at eps = 1e-6.
    values = build_feature_family({"name": "fourier", "params": {"scale": 1.0, "quantise": False}}).compute(np.full((2, 2), 1.0))
    s = [20 * math.log(4.0)] + [20 * math.log(1e-6)] * 3
    assert values["fourier_fms"] == pytest.approx(sum(abs(v) for v in s) / 2, rel=1e-12)
    assert np.isfinite(values["fourier_rms"])
