"""Hostile and broken inputs: always a RadiographReadError naming the file, never anything else."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from osteolens.errors import RadiographReadError
from osteolens.io import Radiograph, read_radiograph, write_dicom, write_png

# pydicom and Pillow warn about the damage they find; the errors are what is tested here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _refused(path: Path, match: str, **kwargs) -> RadiographReadError:
    with pytest.raises(RadiographReadError) as info:
        read_radiograph(path, **kwargs)
    message = str(info.value)
    assert path.name in message, message
    assert match in message, message
    assert info.value.path == path
    return info.value


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(11).random((64, 48)).astype(np.float32)


def test_missing_file(tmp_path):
    error = _refused(tmp_path / "nowhere.dcm", "file not found")
    assert error.fix


def test_directory(tmp_path):
    folder = tmp_path / "scans.dcm"
    folder.mkdir()
    _refused(folder, "is a directory")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.touch()
    _refused(path, "is empty (0 bytes)")


@pytest.mark.parametrize("name", ["noise.dcm", "noise.png", "noise"])
def test_random_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _refused(path, "is not a recognised image")


def test_random_bytes_behind_a_dicom_preamble(tmp_path):
    path = tmp_path / "fake.dcm"
    path.write_bytes(bytes(128) + b"DICM" + np.random.default_rng(2).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    _refused(path, "")


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.99])
def test_truncated_dicom(tmp_path, image, fraction):
    full = write_dicom(Radiograph(image), tmp_path / "full.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(full[: int(len(full) * fraction)])
    _refused(path, "")


def test_truncated_dicom_in_pixel_data_says_so(tmp_path, image):
    full = write_dicom(Radiograph(image), tmp_path / "full.dcm").read_bytes()
    path = tmp_path / "half.dcm"
    path.write_bytes(full[: len(full) - 1000])
    _refused(path, "truncated or corrupt")


@pytest.mark.realdata
def test_truncated_real_rg3(tmp_path, real_dataset):
    """The real 6 MB CR file cut in half."""
    data = (real_dataset("dicom_radiographs") / "RG3_UNCR.dcm").read_bytes()
    path = tmp_path / "RG3_half.dcm"
    path.write_bytes(data[: len(data) // 2])
    _refused(path, "truncated or corrupt")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP"])
def test_raster_cut_in_half(tmp_path, image, fmt):
    whole = tmp_path / f"whole.{fmt.lower()}"
    if fmt == "TIFF":
        tifffile.imwrite(whole, (image * 65535).astype(np.uint16))
    else:
        Image.fromarray((image * 255).astype(np.uint8)).save(whole, format=fmt)
    data = whole.read_bytes()
    path = tmp_path / f"half.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    _refused(path, "")


def test_png_cut_in_half_names_the_problem(tmp_path, image):
    data = write_png(image, tmp_path / "whole.png").read_bytes()
    path = tmp_path / "half.png"
    path.write_bytes(data[: len(data) // 2])
    _refused(path, "truncated")


def test_multi_frame_dicom(tmp_path, save_dicom):
    path = save_dicom("cine.dcm", np.zeros((6, 4)), NumberOfFrames=3, Rows=2)
    error = _refused(path, "holds 3 frames")
    assert "extract one frame" in error.fix


def test_multi_page_tiff(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), dtype=np.uint8))
    _refused(path, "2 frames or pages")


def test_dicom_without_pixel_data(tmp_path, save_dicom):
    from pydicom import dcmread

    path = save_dicom("report.dcm", np.zeros((2, 2)))
    ds = dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    _refused(path, "holds no pixel data")


def test_dicom_with_empty_pixel_data(tmp_path, save_dicom):
    from pydicom import dcmread

    path = save_dicom("blank.dcm", np.zeros((2, 2)))
    ds = dcmread(path)
    ds.PixelData = b""
    ds.save_as(path)
    _refused(path, "pixel data is empty")


def test_dicom_bomb_is_refused_before_decoding(tmp_path, save_dicom):
    """The header claims 60000 x 60000 pixels (7.2 GB as uint16) but carries 32 bytes."""
    path = save_dicom("bomb.dcm", np.zeros((4, 4)), Rows=60000, Columns=60000)
    _refused(path, "possible decompression bomb")


def test_max_pixels_is_configurable(tmp_path, image):
    path = write_png(image, tmp_path / "small.png")
    _refused(path, "more than the limit of 1,000", max_pixels=1000)
    assert read_radiograph(path, max_pixels=64 * 48).shape == (64, 48)
    dcm = write_dicom(Radiograph(image), tmp_path / "small.dcm")
    _refused(dcm, "3,072 pixels, more than the limit of 3,071", max_pixels=3071)


def _png_with_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with one tiny compressed row of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("width", "height"), [(20000, 20000), (100000, 100000)])
def test_png_bomb(tmp_path, width, height):
    """4e8 pixels trips our limit; 1e10 trips Pillow's own DecompressionBombError first."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_header(width, height))
    _refused(path, "decompression bomb")


def test_tiff_bomb(tmp_path):
    path = tmp_path / "bomb.tif"
    tifffile.imwrite(path, np.zeros((8, 8), dtype=np.uint8))
    data = bytearray(path.read_bytes())
    tif = tifffile.TiffFile(path)
    tags = tif.pages[0].tags
    for name in ("ImageWidth", "ImageLength"):
        tag = tags[name]
        fmt = "<I" if tag.dtype == 4 else "<H"
        struct.pack_into(fmt, data, tag.valueoffset, 60000)
    tif.close()
    path.write_bytes(bytes(data))
    _refused(path, "decompression bomb")


def test_colour_dicom_with_two_samples_is_not_an_image(tmp_path, save_dicom):
    path = save_dicom("two.dcm", np.zeros((4, 4)), SamplesPerPixel=2, PlanarConfiguration=0)
    _refused(path, "SamplesPerPixel is 2")


def test_real_multiframe_and_truncated_pydicom_files():
    from pydicom import __file__ as pydicom_init

    folder = Path(pydicom_init).parent / "data" / "test_files"
    if not (folder / "SC_rgb_rle_2frame.dcm").is_file():
        pytest.skip("pydicom's bundled test files are not installed")
    _refused(folder / "SC_rgb_rle_2frame.dcm", "holds 2 frames")
    _refused(folder / "MR_truncated.dcm", "truncated or corrupt")
    _refused(folder / "rtplan.dcm", "holds no pixel data")


def test_fuzzed_files_only_raise_read_errors(tmp_path, image):
    """Flip bytes and cut at many places in a DICOM and a PNG: success or RadiographReadError only."""
    sources = [
        write_dicom(Radiograph(image[:16, :16]), tmp_path / "src.dcm").read_bytes(),
        write_png(image[:16, :16], tmp_path / "src.png").read_bytes(),
    ]
    rng = np.random.default_rng(7)
    path = tmp_path / "fuzz.bin"
    outcomes = {"read": 0, "refused": 0}
    for source in sources:
        for trial in range(40):
            data = bytearray(source)
            if trial % 2:
                data = data[: int(rng.integers(1, len(data)))]
            else:
                for pos in rng.integers(0, len(data), 8):
                    data[pos] = int(rng.integers(0, 256))
            path.write_bytes(bytes(data))
            try:
                rg = read_radiograph(path)
            except RadiographReadError as error:
                assert "fuzz.bin" in str(error)
                outcomes["refused"] += 1
            else:
                assert rg.pixels.ndim == 2 and rg.pixels.dtype == np.float32
                outcomes["read"] += 1
    assert outcomes["refused"] > 10


def test_animated_png(tmp_path):
    frames = [Image.fromarray(np.full((4, 4), v, dtype=np.uint8)) for v in (0, 128, 255)]
    path = tmp_path / "cine.png"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    _refused(path, "3 frames or pages")
