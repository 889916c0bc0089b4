"""An image's dimensions from its header alone, before any pixel is decoded.

A service uses it to refuse oversized uploads cheaply: a flat 8000 x 7000 PNG is a few
kilobytes on the wire but 224 MB as float32 once decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from osteolens.errors import RadiographReadError
from osteolens.io.sniff import SNIFF_BYTES, sniff_format


@dataclass(frozen=True)
class ImageHeader:
    """What the header of an image file claims: its format, size and frame count."""

    format: str
    rows: int
    cols: int
    frames: int = 1

    @property
    def pixels(self) -> int:
        """Pixels of one frame, ``rows * cols``."""
        return self.rows * self.cols


def read_header(data: bytes, path: str | Path = "upload") -> ImageHeader:
    """Read the dimensions of a DICOM, PNG, JPEG, TIFF or BMP image without decoding it.

    DICOM: Rows / Columns / NumberOfFrames (parsed with ``stop_before_pixels``); TIFF: the
    first page's tags; PNG / JPEG / BMP: Pillow's header parser (its own decompression-bomb
    check is skipped so that the caller's limit decides).

    Args:
        data: the file's bytes.
        path: the name to use in error messages.

    Raises:
        RadiographReadError: not a recognised image, or a header that cannot be parsed.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> from osteolens.io import write_png
        >>> tmp = pathlib.Path(tempfile.mkdtemp()) / "a.png"
        >>> _ = write_png(np.zeros((3, 5)), tmp, bits=8)
        >>> read_header(tmp.read_bytes())
        ImageHeader(format='PNG', rows=3, cols=5, frames=1)
    """
    fmt = sniff_format(data[:SNIFF_BYTES])
    if fmt is None:
        raise RadiographReadError(path, "is not a recognised image: its first bytes match no DICOM, PNG, JPEG, "
                                  "TIFF or BMP signature.", "pass a DICOM, PNG, JPEG, TIFF or BMP file.")
    try:
        rows, cols, frames = _dimensions(fmt, data)
    except Exception as exc:  # any parser failure on a hostile or damaged header
        raise RadiographReadError(path, f"the {fmt} header could not be parsed ({type(exc).__name__}: {exc}).",
                                  "re-export or re-copy the image from its source.") from exc
    return ImageHeader(fmt, rows, cols, frames)


def _dimensions(fmt: str, data: bytes) -> tuple[int, int, int]:
    if fmt == "DICOM":
        from pydicom import dcmread

        ds = dcmread(BytesIO(data), force=True, stop_before_pixels=True)
        return int(ds.get("Rows") or 0), int(ds.get("Columns") or 0), int(ds.get("NumberOfFrames") or 1)
    if fmt == "TIFF":
        import tifffile

        with tifffile.TiffFile(BytesIO(data)) as tif:
            page = tif.pages[0]
            return int(page.imagelength), int(page.imagewidth), len(tif.pages)
    from PIL import Image

    Image.init()
    factory, _ = Image.OPEN[fmt]  # Image.open would run Pillow's bomb check on the size first
    with factory(BytesIO(data)) as image:
        cols, rows = image.size
        return int(rows), int(cols), 1
