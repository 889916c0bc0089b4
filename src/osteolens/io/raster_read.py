"""PNG, JPEG, BMP (Pillow) and TIFF (tifffile) -> :class:`Radiograph`.

Scaling is absolute, never stretched: an integer image is divided by the largest value
its bit depth can hold (8-bit / 255, 16-bit / 65535, a 12-bit TIFF / 4095), so a 16-bit
PNG that only uses 0-4000 keeps its dark appearance and its relation to other files.
Colour is turned into grey with ITU-R 601 luma (alpha ignored). EXIF orientation is
applied so row 0 is the top as a viewer shows it. Raster files carry no trustworthy pixel
spacing (a PNG's 72 dpi is a default, not a measurement), so ``spacing_mm`` is None.
"""

from __future__ import annotations

import warnings
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from osteolens.errors import RadiographReadError
from osteolens.io.colour import luma
from osteolens.io.radiograph import Radiograph, RadiographMeta

_REEXPORT = "re-export or re-copy the image from its source."


def check_size(path: Path, rows: int, cols: int, max_pixels: int) -> None:
    """Refuse empty images and images over ``max_pixels`` (decompression bombs) before decoding."""
    if rows <= 0 or cols <= 0:
        raise RadiographReadError(path, f"the image is empty ({rows} x {cols} pixels).", _REEXPORT)
    if rows * cols > max_pixels:
        raise RadiographReadError(
            path,
            f"the header claims {rows} x {cols} = {rows * cols:,} pixels, more than the limit of "
            f"{max_pixels:,} (possible decompression bomb).",
            "if the image is genuine, pass a larger max_pixels to read_radiograph.",
        )


def _multi_frame(path: Path, frames: int, kind: str) -> RadiographReadError:
    return RadiographReadError(
        path,
        f"the {kind} file holds {frames} frames or pages; osteolens reads single-frame radiographs.",
        "extract one frame (e.g. with Pillow's ImageSequence or tifffile) and save it as its own file.",
    )


def read_pillow(data: bytes, path: Path, max_pixels: int, fmt: str) -> Radiograph:
    """Read a PNG, JPEG or BMP through Pillow (16-bit colour PNG through OpenCV)."""
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            # Our own max_pixels check replaces Pillow's bomb warning; its hard error is caught.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise RadiographReadError(path, f"Pillow refused the image as a decompression bomb ({exc}).",
                                  "if the image is genuine, convert it to TIFF and read that.") from exc
    cols, rows = image.size
    check_size(path, rows, cols, max_pixels)
    frames = int(getattr(image, "n_frames", 1))
    if frames > 1 and fmt != "JPEG":  # a JPEG's extra MPO frames (phone depth maps) are ignored
        raise _multi_frame(path, frames, fmt)
    if fmt == "PNG" and _png_bit_depth(data) == 16 and image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        return _read_png16_colour(data, path, rows, cols)
    image.load()
    image = ImageOps.exif_transpose(image)
    pixels, bits, photometric = _pillow_to_unit(image)
    meta = RadiographMeta(
        original_shape=(int(pixels.shape[0]), int(pixels.shape[1])),
        bits_stored=bits,
        photometric=photometric,
        extra={"format": fmt, "mode": image.mode},
    )
    return Radiograph(pixels=pixels, spacing_mm=None, meta=meta)


def _png_bit_depth(data: bytes) -> int:
    """Bit depth from the PNG IHDR chunk (byte 24 of the file)."""
    return data[24] if len(data) > 24 else 8


def _pillow_to_unit(image: Any) -> tuple[np.ndarray, int, str]:
    """A loaded Pillow image -> float32 [0, 1], bits per sample, grey or colour."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.float32), 1, "MONOCHROME2"
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # "I" (32-bit container) is how older Pillow versions open 16-bit grey PNG.
        return _divide(np.asarray(image), 65535), 16, "MONOCHROME2"
    if mode == "F":
        return _float_to_unit(np.asarray(image)), 32, "MONOCHROME2"
    if mode in ("L", "LA"):
        return _divide(np.asarray(image.getchannel(0)), 255), 8, "MONOCHROME2"
    if mode not in ("RGB", "RGBA", "RGBX"):
        image = image.convert("RGBA" if "A" in mode or "transparency" in image.info else "RGB")
    return _divide(luma(np.asarray(image)), 255), 8, "RGB"


def _read_png16_colour(data: bytes, path: Path, rows: int, cols: int) -> Radiograph:
    """16-bit colour PNG: Pillow would truncate it to 8 bits, OpenCV keeps all 16."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise RadiographReadError(path, "the 16-bit PNG could not be decoded; it may be truncated or corrupt.", _REEXPORT)
    if arr.ndim == 3 and arr.shape[-1] >= 3:
        arr = luma(arr[..., 2::-1])  # OpenCV order is BGR(A)
    elif arr.ndim == 3:
        arr = arr[..., 0]  # grey + alpha
    pixels = _divide(arr, 65535)
    meta = RadiographMeta(
        original_shape=(rows, cols), bits_stored=16, photometric="RGB", extra={"format": "PNG", "mode": "RGB;16"}
    )
    return Radiograph(pixels=pixels, spacing_mm=None, meta=meta)


def read_tiff(data: bytes, path: Path, max_pixels: int) -> Radiograph:
    """Read a single-page TIFF through tifffile (8/12/16/32-bit, float, MINISWHITE)."""
    import tifffile

    with tifffile.TiffFile(BytesIO(data)) as tif:
        pages = len(tif.pages)
        if pages > 1:
            raise _multi_frame(path, pages, "TIFF")
        page = tif.pages[0]
        rows, cols = int(page.imagelength), int(page.imagewidth)
        check_size(path, rows, cols, max_pixels)
        if int(page.imagedepth) > 1:
            raise RadiographReadError(path, f"the TIFF holds a volume of depth {page.imagedepth}, not a 2-D image.", _REEXPORT)
        arr = page.asarray()
        photometric = page.photometric
        bits = int(page.bitspersample)
        if photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
            arr = np.moveaxis(np.asarray(page.colormap)[:, arr], 0, -1)
            bits = 16  # TIFF colour maps are 16-bit
    arr = np.squeeze(arr) if arr.ndim > 2 and 1 in arr.shape[2:] else arr
    colour = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    if arr.ndim == 3 and arr.shape[-1] == 2:
        arr, colour = arr[..., 0], False  # grey + alpha
    if colour:
        grey = luma(arr)
    elif arr.ndim == 2:
        grey = arr
    else:
        raise RadiographReadError(path, f"the TIFF data has shape {arr.shape}, not one 2-D image.", _REEXPORT)
    notes: dict[str, Any] = {"format": "TIFF"}
    if arr.dtype.kind == "u" or arr.dtype == bool:
        pixels = _divide(grey, 2**bits - 1)
    else:
        pixels = _float_to_unit(grey)
        notes["scaling"] = f"{arr.dtype} data: kept if within [0, 1], else min-max"
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        pixels = 1.0 - pixels  # like DICOM MONOCHROME1: invert so bone is bright
    meta = RadiographMeta(
        original_shape=(rows, cols),
        bits_stored=bits,
        photometric="RGB" if colour else ("MONOCHROME1" if photometric == tifffile.PHOTOMETRIC.MINISWHITE else "MONOCHROME2"),
        extra=notes,
    )
    return Radiograph(pixels=np.asarray(pixels, dtype=np.float32), spacing_mm=None, meta=meta)


def _divide(arr: np.ndarray, full_scale: int) -> np.ndarray:
    """Absolute scaling: value / largest representable value, clipped to [0, 1].

    Integers of up to 16 bits are exact in float32, and float32 division rounds them to the
    same float32 as the float64 route (binary64 has more than 2 x 24 + 2 bits), so they take
    a quarter of the memory; wider or float data go through float64. One copy, then in place.
    """
    narrow = arr.dtype.kind in "biu" and arr.dtype.itemsize <= 2
    out = np.array(arr, dtype=np.float32 if narrow else np.float64)
    out /= float(full_scale)
    np.minimum(out, 1.0, out=out)
    np.maximum(out, 0.0, out=out)
    return out.astype(np.float32, copy=False)


def _float_to_unit(arr: np.ndarray) -> np.ndarray:
    """Float or signed data has no natural full scale: kept when already within [0, 1], else min-max."""
    arr = np.nan_to_num(np.asarray(arr, dtype=np.float64), nan=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0.0 and hi <= 1.0:
        return arr.astype(np.float32)
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.float32)
    return ((arr - lo) / (hi - lo)).astype(np.float32)
