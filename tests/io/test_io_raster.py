"""PNG, JPEG, TIFF and BMP reading; write_png; pixel_hash."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from osteolens.errors import RadiographWriteError
from osteolens.io import Radiograph, pixel_hash, read_radiograph, write_dicom, write_png


def _save(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return path


def test_png_8_bit(tmp_path):
    values = np.array([[0, 51, 255], [1, 128, 254]], dtype=np.uint8)
    rg = read_radiograph(_save(Image.fromarray(values), tmp_path / "a.png"))
    np.testing.assert_allclose(rg.pixels, values / 255, atol=1e-7)
    assert rg.meta.bits_stored == 8 and rg.meta.extra["format"] == "PNG"
    assert rg.spacing_mm is None and rg.pixels.dtype == np.float32


def test_png_16_bit_partial_range_is_not_stretched(tmp_path):
    values = np.array([[0, 1000], [4000, 4095]], dtype=np.uint16)  # a 12-bit image in a 16-bit PNG
    rg = read_radiograph(_save(Image.fromarray(values), tmp_path / "b.png"))
    np.testing.assert_allclose(rg.pixels, values / 65535, atol=1e-9)
    assert rg.pixels.max() < 0.07 and rg.meta.bits_stored == 16


def test_rgb_and_rgba_to_grey_with_601_luma(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 100, 100]]], dtype=np.uint8)
    expected = np.array([[0.299, 0.587, 0.114, 100 / 255]])
    rg = read_radiograph(_save(Image.fromarray(rgb), tmp_path / "rgb.png"))
    np.testing.assert_allclose(rg.pixels, expected, atol=1e-6)
    assert rg.meta.photometric == "RGB"
    rgba = np.concatenate([rgb, np.full((1, 4, 1), 7, np.uint8)], axis=-1)  # alpha is ignored
    np.testing.assert_allclose(read_radiograph(_save(Image.fromarray(rgba), tmp_path / "rgba.png")).pixels, expected, atol=1e-6)


def test_16_bit_colour_png_keeps_16_bits(tmp_path):
    bgr = np.zeros((1, 2, 3), dtype=np.uint16)
    bgr[0, 0] = [0, 0, 65535]  # pure red in OpenCV's BGR order
    bgr[0, 1] = [1000, 1000, 1000]
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), bgr)
    np.testing.assert_allclose(read_radiograph(path).pixels, [[0.299, 1000 / 65535]], atol=1e-6)


def test_palette_and_bilevel_png(tmp_path):
    grey = Image.fromarray(np.array([[0, 85, 170, 255]], dtype=np.uint8)).convert("P")
    np.testing.assert_allclose(read_radiograph(_save(grey, tmp_path / "p.png")).pixels, [[0, 1 / 3, 2 / 3, 1]], atol=1e-6)
    bilevel = Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1")
    np.testing.assert_array_equal(read_radiograph(_save(bilevel, tmp_path / "1.png")).pixels, [[0, 1]])


def test_jpeg_grey_and_exif_orientation(tmp_path):
    values = np.zeros((16, 24), dtype=np.uint8)
    values[:8, :8] = 250  # bright block at the top-left
    rg = read_radiograph(_save(Image.fromarray(values), tmp_path / "a.jpg", quality=100))
    assert np.abs(rg.pixels - values / 255).max() < 4 / 255
    assert rg.meta.extra["format"] == "JPEG"
    # EXIF orientation 3 (rotated 180 degrees): the viewer shows the bright block bottom-right.
    exif = Image.Exif()
    exif[0x0112] = 3
    rotated = read_radiograph(_save(Image.fromarray(values), tmp_path / "r.jpg", quality=100, exif=exif))
    assert rotated.pixels[-4:, -4:].mean() > 0.9 and rotated.pixels[:4, :4].mean() < 0.1


def test_tiff_8_16_bit_float_rgb_and_miniswhite(tmp_path):
    v16 = np.array([[0, 65535], [32768, 1]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", v16)
    np.testing.assert_allclose(read_radiograph(tmp_path / "a.tif").pixels, v16 / 65535, atol=1e-9)
    v8 = np.array([[0, 255, 51]], dtype=np.uint8)
    tifffile.imwrite(tmp_path / "b.tif", v8)
    np.testing.assert_allclose(read_radiograph(tmp_path / "b.tif").pixels, v8 / 255, atol=1e-7)
    vf = np.array([[0.25, 0.75]], dtype=np.float32)
    tifffile.imwrite(tmp_path / "d.tif", vf)
    np.testing.assert_array_equal(read_radiograph(tmp_path / "d.tif").pixels, vf)
    tifffile.imwrite(tmp_path / "e.tif", v8, photometric="miniswhite")
    rg = read_radiograph(tmp_path / "e.tif")
    np.testing.assert_allclose(rg.pixels, 1 - v8 / 255, atol=1e-7)
    assert rg.meta.photometric == "MONOCHROME1"
    tifffile.imwrite(tmp_path / "rgb.tif", np.array([[[255, 0, 0]]], dtype=np.uint8), photometric="rgb")
    np.testing.assert_allclose(read_radiograph(tmp_path / "rgb.tif").pixels, [[0.299]], atol=1e-6)


def test_bmp(tmp_path):
    values = np.array([[0, 10, 200], [255, 128, 64]], dtype=np.uint8)
    rg = read_radiograph(_save(Image.fromarray(values), tmp_path / "a.bmp"))
    np.testing.assert_allclose(rg.pixels, values / 255, atol=1e-7)
    rgb = read_radiograph(_save(Image.fromarray(np.array([[[0, 255, 0]]], dtype=np.uint8)), tmp_path / "g.bmp"))
    np.testing.assert_allclose(rgb.pixels, [[0.587]], atol=1e-6)


def test_format_comes_from_content_not_extension(tmp_path):
    png_named_dcm = _save(Image.fromarray(np.array([[7]], dtype=np.uint8)), tmp_path / "x.dcm", format="PNG")
    assert read_radiograph(png_named_dcm).meta.extra["format"] == "PNG"
    dicom_named_png = write_dicom(Radiograph(np.array([[0.0, 1.0]])), tmp_path / "y.png")
    assert read_radiograph(dicom_named_png).meta.extra["format"] == "DICOM"


@pytest.mark.parametrize("bits", [8, 16])
def test_write_png_round_trip_and_orientation(tmp_path, bits):
    pixels = np.random.default_rng(3).random((10, 14))
    pixels[0, 0], pixels[9, 13] = 1.0, 0.0
    path = write_png(pixels, tmp_path / "sub" / "r.png", bits=bits)
    back = read_radiograph(path)
    assert back.meta.bits_stored == bits
    assert np.abs(back.pixels - pixels).max() <= 0.5 / (2**bits - 1) + 1e-7
    assert back.pixels[0, 0] == 1.0 and back.pixels[9, 13] == 0.0
    with Image.open(path) as image:
        assert image.size == (14, 10)  # (width, height): row 0 stays the top row
        assert image.getpixel((0, 0)) == 2**bits - 1


def test_write_png_rounds_and_clips(tmp_path):
    path = write_png(np.array([[-0.5, 0.5, 1.7, 0.2, 0.701]]), tmp_path / "c.png", bits=8)
    # clip, then round(p * 255): 127.5 -> 128 (half to even), 51.0 -> 51, 178.755 -> 179
    np.testing.assert_array_equal(np.asarray(Image.open(path)), [[0, 128, 255, 51, 179]])


@pytest.mark.parametrize(
    ("pixels", "bits", "match"),
    [(np.zeros((2, 2, 3)), 16, "2-D"), (np.zeros((2, 2)), 12, "bits=12"), (np.array([[np.inf]]), 8, "NaN or infinite")],
)
def test_write_png_errors(tmp_path, pixels, bits, match):
    with pytest.raises(RadiographWriteError, match=match):
        write_png(pixels, tmp_path / "e.png", bits=bits)


def test_pixel_hash_sees_pixels_not_files(tmp_path):
    pixels = np.random.default_rng(5).random((20, 30))
    png = read_radiograph(write_png(pixels, tmp_path / "h.png", bits=16))
    dcm = read_radiograph(write_dicom(Radiograph(pixels), tmp_path / "h.dcm", photometric="MONOCHROME1"))
    assert png.meta.sha256 != dcm.meta.sha256
    assert pixel_hash(png.pixels) == pixel_hash(dcm.pixels) == pixel_hash(dcm)
    changed = png.pixels.copy()
    changed[4, 4] += 2 / 65535
    assert pixel_hash(changed) != pixel_hash(png.pixels)
    assert pixel_hash(png.pixels) != pixel_hash(png.pixels.reshape(30, 20))
    assert len(pixel_hash(pixels)) == 64


def test_pixel_hash_known_value():
    """sha256 of b"1x2:" followed by uint16 little endian 0 and 65535."""
    import hashlib

    assert pixel_hash(np.array([[0.0, 1.0]])) == hashlib.sha256(b"1x2:\x00\x00\xff\xff").hexdigest()


def test_reading_from_memory_is_not_needed_for_bytes_io():
    # read_radiograph takes paths; make sure a PNG in memory is also sniffed right.
    from osteolens.io.sniff import sniff_format

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(buffer, format="BMP")
    assert sniff_format(buffer.getvalue()[:136]) == "BMP"
