"""Compressed transfer syntaxes: encode small images with pydicom's encoders, decode with ours."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless, RLELossless

from osteolens.errors import RadiographReadError
from osteolens.io import read_radiograph

from .conftest import grey_dataset

# A 12-bit test card: a gradient with a bright square near the top-left corner.
_VALUES = (np.add.outer(np.arange(64), np.arange(80)) * 28).astype(np.uint16)
_VALUES[2:5, 3:7] = 4095


def _compressed(tmp_path, syntax, **encoder_kwargs):
    from pydicom.pixels import get_encoder

    try:
        encoder = get_encoder(syntax)
    except NotImplementedError:
        pytest.skip(f"pydicom has no encoder for {syntax.name}")
    if not encoder.is_available:
        pytest.skip(f"no plugin installed to encode {syntax.name}: {encoder.missing_dependencies}")
    ds = grey_dataset(_VALUES, bits_stored=12)
    ds.compress(syntax, **encoder_kwargs)
    path = tmp_path / f"{syntax.name[:12]}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless, JPEGLosslessSV1], ids=lambda s: s.name)
def test_lossless_syntaxes_decode_to_the_original_values(tmp_path, syntax):
    path = _compressed(tmp_path, syntax)
    rg = read_radiograph(path)
    assert rg.meta.extra["transfer_syntax"] == syntax.name
    # No window, no rescale: value / (2^12 - 1), absolute (not stretched).
    np.testing.assert_allclose(rg.pixels, _VALUES / 4095.0, atol=1e-7)
    assert rg.pixels[3, 4] == 1.0 and rg.pixels[0, 0] == 0.0


def test_jpeg_baseline_decodes_like_pillow(tmp_path):
    """JPEG baseline (lossy, 8-bit): Pillow encodes, pydicom's plugin decodes inside DICOM."""
    from PIL import Image

    values8 = (_VALUES >> 4).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(values8).save(buffer, format="JPEG", quality=95)
    reference = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float64) / 255
    ds = grey_dataset(values8, bits_stored=8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    path = tmp_path / "baseline.dcm"
    ds.save_as(path, enforce_file_format=True)
    rg = read_radiograph(path)
    assert rg.meta.extra["transfer_syntax"] == JPEGBaseline8Bit.name
    # Different IDCT implementations may differ by one grey level.
    assert np.abs(rg.pixels - reference).max() <= 1.5 / 255
    assert np.abs(rg.pixels - values8 / 255).mean() < 2 / 255


def test_missing_decoder_names_the_package(tmp_path, monkeypatch):
    path = _compressed(tmp_path, JPEG2000Lossless)
    from pydicom.pixels import get_decoder

    decoder = get_decoder(JPEG2000Lossless)
    # Simulate an environment without pylibjpeg-openjpeg (and without Pillow's OpenJPEG).
    monkeypatch.setattr(decoder, "_available", {})
    with pytest.raises(RadiographReadError) as info:
        read_radiograph(path)
    message = str(info.value)
    assert path.name in message
    assert "pip install pylibjpeg pylibjpeg-openjpeg" in message
    assert "JPEG 2000" in message


def test_unknown_transfer_syntax_is_refused(save_dicom):
    path = save_dicom("private.dcm", _VALUES)
    data = path.read_bytes().replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.99999.1.2.1\x00")
    path.write_bytes(data)
    with pytest.raises(RadiographReadError, match="private.dcm.*not supported by pydicom"):
        read_radiograph(path)


def _bundled(name: str):
    """A test file shipped inside the pydicom package (never downloaded)."""
    from pathlib import Path

    import pydicom

    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    if not path.is_file():
        pytest.skip(f"{name} is not bundled with this pydicom version")
    return path


def test_jpeg_lossless_from_pydicom_test_files():
    """No JPEG Lossless encoder exists in pydicom, so use its bundled GDCM-encoded twin of an RLE file."""
    jpeg_ll = read_radiograph(_bundled("SC_rgb_jpeg_gdcm.dcm"))
    rle = read_radiograph(_bundled("SC_rgb_rle.dcm"))
    assert jpeg_ll.meta.extra["transfer_syntax"] == JPEGLosslessSV1.name
    np.testing.assert_array_equal(jpeg_ll.pixels, rle.pixels)
    assert jpeg_ll.pixels.std() > 0.1  # a real test pattern, not a blank


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm"])
def test_pydicom_mr_twins_decode_identically(name):
    reference = read_radiograph(_bundled("MR_small.dcm"))
    np.testing.assert_array_equal(read_radiograph(_bundled(name)).pixels, reference.pixels)


@pytest.mark.parametrize("implicit", [True, False])
def test_dicom_without_preamble_or_file_meta(tmp_path, implicit):
    """A bare data set (no 128-byte preamble, no DICM, no group 0002) is still sniffed as DICOM."""
    from pydicom import dcmwrite

    ds = grey_dataset(_VALUES, bits_stored=12)
    del ds.file_meta
    path = tmp_path / "raw.img"
    dcmwrite(path, ds, implicit_vr=implicit, little_endian=True)
    assert path.read_bytes()[:2] == b"\x08\x00"
    rg = read_radiograph(path)
    np.testing.assert_allclose(rg.pixels, _VALUES / 4095.0, atol=1e-7)
    assert rg.meta.extra["transfer_syntax"] == ("Implicit VR Little Endian" if implicit else "Explicit VR Little Endian")
