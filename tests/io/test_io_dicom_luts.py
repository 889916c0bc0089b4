"""Grey-scale pipeline of DICOM reading, checked against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from osteolens.io import read_radiograph
from osteolens.io.dicom_tags import format_age, parse_age


def _row(*values: float) -> np.ndarray:
    return np.array([values], dtype=np.float64)


def test_no_luts_keeps_the_absolute_scale(save_dicom):
    """12 bits stored, no window: value / 4095, a dark image stays dark (no stretching)."""
    rg = read_radiograph(save_dicom("plain.dcm", _row(0, 100, 600, 4095)))
    np.testing.assert_allclose(rg.pixels, _row(0, 100, 600, 4095) / 4095, atol=1e-7)
    assert "voi" not in rg.meta.extra


def test_rescale_slope_and_intercept(save_dicom):
    """Modality = 2 s - 1000; range [2*0 - 1000, 2*4095 - 1000] = [-1000, 7190]."""
    path = save_dicom("rescale.dcm", _row(0, 100, 1000, 4095), RescaleSlope=2, RescaleIntercept=-1000)
    rg = read_radiograph(path)
    np.testing.assert_allclose(rg.pixels, _row(0, 200 / 8190, 2000 / 8190, 1.0), atol=1e-7)
    assert rg.meta.extra["modality_lut"] == "rescale slope 2 intercept -1000"


def test_linear_window(save_dicom):
    """PS3.3 C.11.2.1.2.1, c = 2048, w = 1001: below x <= 1547.5 -> 0, above x > 2547.5 -> 1,
    else (x - 2047.5) / 1000 + 0.5."""
    path = save_dicom("window.dcm", _row(0, 1548, 1800, 2048, 2548, 4095), WindowCenter=2048, WindowWidth=1001)
    rg = read_radiograph(path)
    np.testing.assert_allclose(rg.pixels, _row(0, 0.0005, 0.2525, 0.5005, 1, 1), atol=1e-6)
    assert rg.meta.extra["voi"] == "window centre 2048 width 1001 LINEAR"


def test_window_in_hounsfield_units_after_rescale(save_dicom):
    """HU = s - 1024; window c = 40, w = 101 acts on HU: HU 0 -> (0 - 39.5) / 100 + 0.5 = 0.105."""
    path = save_dicom(
        "ct.dcm", _row(0, 1024, 1064, 1114, 2024), RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=101
    )
    rg = read_radiograph(path)
    np.testing.assert_allclose(rg.pixels, _row(0, 0.105, 0.505, 1, 1), atol=1e-6)


def test_linear_exact_window(save_dicom):
    """LINEAR_EXACT, c = 100, w = 50: (x - 100) / 50 + 0.5 inside (75, 125]."""
    path = save_dicom(
        "exact.dcm", _row(70, 80, 100, 125, 200), WindowCenter=100, WindowWidth=50, VOILUTFunction="LINEAR_EXACT"
    )
    np.testing.assert_allclose(read_radiograph(path).pixels, _row(0, 0.1, 0.5, 1, 1), atol=1e-6)


def test_voi_lut_sequence_is_preferred_and_scaled_by_its_entries(save_dicom):
    """4 entries from input 10: 5 -> entry 0, 11 -> 1000, 12 -> 3000, >= 13 -> 4000.
    The descriptor claims 16 bits, but the largest entry (4000) maps to 1."""
    item = Dataset()
    item.LUTDescriptor = [4, 10, 16]
    item.add_new("LUTData", "US", [0, 1000, 3000, 4000])
    path = save_dicom(
        "voilut.dcm", _row(5, 10, 11, 12, 13, 50), VOILUTSequence=Sequence([item]), WindowCenter=0, WindowWidth=1
    )
    rg = read_radiograph(path)
    np.testing.assert_allclose(rg.pixels, _row(0, 0, 0.25, 0.75, 1, 1), atol=1e-7)
    assert rg.meta.extra["voi"] == "VOI LUT Sequence"


def test_signed_pixels_use_the_signed_range(save_dicom):
    rg = read_radiograph(save_dicom("signed.dcm", _row(-2048, 0, 2047), signed=True))
    np.testing.assert_allclose(rg.pixels, _row(0, 2048 / 4095, 1), atol=1e-7)


def test_monochrome1_is_inverted(save_dicom):
    path = save_dicom("mono1.dcm", _row(0, 51, 255), bits_stored=8, PhotometricInterpretation="MONOCHROME1")
    rg = read_radiograph(path)
    np.testing.assert_allclose(rg.pixels, _row(1, 0.8, 0), atol=1e-7)
    assert rg.meta.photometric == "MONOCHROME1"


def test_invalid_window_is_ignored_and_noted(save_dicom):
    rg = read_radiograph(save_dicom("badwin.dcm", _row(0, 4095), WindowCenter=10, WindowWidth=0))
    np.testing.assert_allclose(rg.pixels, _row(0, 1))
    assert rg.meta.extra["voi"].startswith("ignored an invalid VOI LUT / window")


@pytest.mark.parametrize(
    ("text", "years"),
    [
        ("045Y", 45.0),
        ("006M", 0.5),
        ("018M", 1.5),
        ("010W", 70 / 365.25),
        ("003D", 3 / 365.25),
        ("000D", 0.0),
        ("45", 45.0),
        (" 062Y ", 62.0),
        ("", None),
        ("abcY", None),
        ("45X", None),
        (None, None),
    ],
)
def test_patient_age_parsing(text, years):
    assert parse_age(text) == (pytest.approx(years) if years is not None else None)


@pytest.mark.parametrize(
    ("years", "text"),
    [(45, "045Y"), (62.4, "062Y"), (2, "002Y"), (1.5, "018M"), (0.5, "006M"), (70 / 365.25, "010W"), (3 / 365.25, "003D"), (0, "000Y")],
)
def test_patient_age_formatting_round_trips(years, text):
    assert format_age(years) == text
    assert parse_age(text) == pytest.approx(round(years) if years >= 2 else years)


def test_age_sex_laterality_and_spacing_tags(save_dicom):
    path = save_dicom(
        "tags.dcm",
        _row(0, 1),
        PatientAge="006M",
        PatientSex="X",  # not a DICOM sex: unknown
        ImageLaterality="L",
        Laterality="R",
        PixelSpacing=[0, 0],  # zero means unknown
        ImagerPixelSpacing=[0.15, 0.2],
        ViewPosition="LL",
        BodyPartExamined="LSPINE",
    )
    rg = read_radiograph(path)
    assert rg.meta.age_years == pytest.approx(0.5)
    assert rg.meta.sex is None
    assert rg.meta.laterality == "L"  # ImageLaterality wins over the series Laterality
    assert rg.spacing_mm == (0.15, 0.2)
    assert rg.meta.extra["spacing_source"] == "ImagerPixelSpacing"
    assert (rg.meta.view, rg.meta.body_part) == ("LL", "LSPINE")


def test_pixel_spacing_wins_and_unpaired_laterality_is_none(save_dicom):
    rg = read_radiograph(
        save_dicom("sp.dcm", _row(0, 1), PixelSpacing=[0.1, 0.12], ImagerPixelSpacing=[0.15, 0.2], ImageLaterality="U")
    )
    assert rg.spacing_mm == (0.1, 0.12)
    assert rg.meta.laterality is None
