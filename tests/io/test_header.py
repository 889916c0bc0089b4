"""read_header: an image's dimensions from its header, without decoding the pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
from PIL import Image

from osteolens.errors import RadiographReadError
from osteolens.io.header import ImageHeader, read_header


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP"])
def test_raster_headers(fmt):
    buffer = io.BytesIO()
    Image.new("L", (50, 30)).save(buffer, fmt)
    assert read_header(buffer.getvalue()) == ImageHeader(fmt, rows=30, cols=50, frames=1)


def test_a_huge_flat_png_is_measured_without_decoding(monkeypatch):
    buffer = io.BytesIO()
    Image.new("L", (20000, 15000)).save(buffer, "PNG")  # 3 * 10^8 pixels, beyond Pillow's own bomb limit
    data = buffer.getvalue()
    assert len(data) < 2**20

    def no_decode(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decode)
    header = read_header(data)
    assert (header.rows, header.cols, header.pixels) == (15000, 20000, 300_000_000)


def test_tiff_header_counts_pages():
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((3, 30, 50), np.uint16), photometric="minisblack")
    assert read_header(buffer.getvalue()) == ImageHeader("TIFF", rows=30, cols=50, frames=3)


def test_dicom_header_is_read_before_the_pixels(save_dicom):
    # The header claims 8000 x 7000 in 3 frames; the pixel data holds 4 values: never decoded.
    path = save_dicom("big.dcm", np.zeros((2, 2)), Rows=8000, Columns=7000, NumberOfFrames=3)
    header = read_header(path.read_bytes())
    assert header == ImageHeader("DICOM", rows=8000, cols=7000, frames=3)
    assert header.pixels == 56_000_000


def test_unreadable_headers_name_the_file():
    with pytest.raises(RadiographReadError, match="scan.png: is not a recognised image"):
        read_header(b"%PDF-1.7", "scan.png")
    with pytest.raises(RadiographReadError, match="upload: the PNG header could not be parsed"):
        read_header(b"\x89PNG\r\n\x1a\n" + bytes(20))
