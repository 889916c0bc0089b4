"""Real CR files from the NEMA WG04 set (../shared/data/dicom_radiographs)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from osteolens.io import read_radiograph

pytestmark = pytest.mark.realdata


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(1.0 / mse)


@pytest.fixture(scope="module")
def rg3():
    """RG3 uncompressed, read once for the module (1760 x 1760)."""
    from osteolens.data.paths import shared_dataset

    root = shared_dataset("dicom_radiographs")
    if root is None:
        from tests.conftest import require_or_skip

        require_or_skip("real data 'dicom_radiographs' not found: set $OSTEOLENS_DATA or place ../shared/data beside the checkout")
    return root, read_radiograph(root / "RG3_UNCR.dcm")


def test_lossless_jpeg2000_decodes_to_the_uncompressed_pixels(rg3):
    root, unc = rg3
    j2k = read_radiograph(root / "RG3_J2KR.dcm")
    assert j2k.meta.extra["transfer_syntax"] == "JPEG 2000 Image Compression (Lossless Only)"
    assert unc.meta.extra["transfer_syntax"] == "Explicit VR Little Endian"
    np.testing.assert_array_equal(j2k.pixels, unc.pixels)
    assert j2k.meta.sha256 != unc.meta.sha256  # different files, same image


def test_monochrome1_comes_out_bone_bright(rg3):
    root, unc = rg3
    raw = pydicom.dcmread(root / "RG3_UNCR.dcm").pixel_array.astype(np.float64)
    assert unc.meta.photometric == "MONOCHROME1"
    corr = np.corrcoef(unc.pixels.ravel()[::7], raw.ravel()[::7])[0, 1]
    print("corr(ours, raw MONOCHROME1 values) =", corr)
    assert corr < -0.9
    # Window 550 / 1024 on 10-bit data, then inverted: stored 0 (white in MONOCHROME1)
    # is below the window, so it reads 1.0 (bright); the image spans the unit range.
    assert unc.pixels.dtype == np.float32
    assert unc.pixels.max() == pytest.approx(1.0)
    assert 0.0 <= unc.pixels.min() < 0.1


def test_window_is_the_one_in_the_file(rg3):
    """Hand check: LINEAR window c=550, w=1024 on y in [0, 1023], then 1 - y / 1023."""
    root, unc = rg3
    raw = pydicom.dcmread(root / "RG3_UNCR.dcm").pixel_array.astype(np.float64)
    c, w, y_max = 550.0, 1024.0, 1023.0
    expected = np.clip(((raw - (c - 0.5)) / (w - 1) + 0.5), 0, 1) * y_max
    expected = 1.0 - expected / y_max
    np.testing.assert_allclose(unc.pixels, expected, atol=1e-6)
    assert unc.meta.extra["voi"] == "window centre 550 width 1024 LINEAR"


def test_lossy_jpeg2000_stays_close_to_its_lossless_twin(rg3):
    root, unc = rg3
    lossy = read_radiograph(root / "RG3_J2KI.dcm")
    psnr = _psnr(lossy.pixels, unc.pixels)
    print(f"PSNR RG3_J2KI vs RG3_UNCR: {psnr:.1f} dB")
    assert psnr > 35.0
    assert not np.array_equal(lossy.pixels, unc.pixels)


def test_rg1_lossy_chest_reads_with_its_tags(real_dataset):
    rg = read_radiograph(real_dataset("dicom_radiographs") / "RG1_J2KI.dcm")
    print(rg.shape, rg.spacing_mm, rg.meta)
    assert rg.shape == (1955, 1841)
    assert rg.meta.original_shape == (1955, 1841)
    assert rg.meta.bits_stored == 15
    assert rg.meta.photometric == "MONOCHROME1"
    assert (rg.meta.patient_id, rg.meta.sex, rg.meta.view, rg.meta.body_part) == ("9RG1", "F", "PA", "CHEST")
    assert rg.meta.modality == "CR"
    assert rg.meta.manufacturer == "Philips Medical Systems"
    assert rg.meta.laterality is None
    # The file's PixelSpacing is 0\0, which means unknown, not zero millimetres.
    assert rg.spacing_mm is None
    assert rg.meta.extra["voi"] == "window centre 15000 width 30000 LINEAR"
    # Chest PA: the mediastinum (centre column) is brighter than the lungs beside it.
    h, w = rg.shape
    band = rg.pixels[h // 3 : h // 2]
    assert band[:, w // 2 - 50 : w // 2 + 50].mean() > band[:, w // 4 - 50 : w // 4 + 50].mean()


def test_rg3_tags(rg3):
    _, unc = rg3
    m = unc.meta
    print(unc.spacing_mm, m)
    assert (m.patient_id, m.sex, m.age_years, m.view, m.body_part, m.laterality) == ("11RG3", "F", None, "AP", "EXTREMITY", "R")
    assert (m.modality, m.manufacturer, m.bits_stored) == ("CR", "FUJI PHOTO FILM CO. LTD.", 10)
    assert unc.spacing_mm is None  # no PixelSpacing or ImagerPixelSpacing in this file
    assert m.source.endswith("RG3_UNCR.dcm")
    assert len(m.sha256) == 64
    assert m.extra["study_instance_uid"] == "1.3.6.1.4.1.5962.1.2.11.20040826185059.5457"
