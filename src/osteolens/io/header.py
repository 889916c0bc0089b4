"""An image's dimensions from its header alone, before any pixel is decoded.

A service uses it to refuse oversized uploads cheaply: a flat 8000 x 7000 PNG is a few
kilobytes on the wire but 224 MB as float32 once decoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from osteolens.errors import RadiographReadError
from osteolens.io.sniff import SNIFF_BYTES, sniff_format


@dataclass(frozen=True)
class ImageHeader:
    """What the header of an image file claims: its format, size (as displayed: EXIF-turned
    rasters swapped, as :func:`osteolens.io.read_radiograph` turns them), frame count and, for
    DICOM, the (row, column) pixel spacing in mm (None when unknown)."""

    format: str
    rows: int
    cols: int
    frames: int = 1
    spacing_mm: tuple[float, float] | None = field(default=None, compare=False, repr=False)

    @property
    def pixels(self) -> int:
        """Pixels of one frame, ``rows * cols``."""
        return self.rows * self.cols


def read_header(data: bytes | str | os.PathLike[str], path: str | Path = "upload") -> ImageHeader:
    """Read the dimensions of a DICOM, PNG, JPEG, TIFF or BMP image without decoding it.

    DICOM: Rows / Columns / NumberOfFrames (parsed with ``stop_before_pixels``); TIFF: the
    first page's tags; PNG / JPEG / BMP: Pillow's header parser (its own decompression-bomb
    check is skipped so that the caller's limit decides).

    Args:
        data: the file's bytes, or its path (then only the header is read from disk).
        path: the name to use in error messages (default: the path given as ``data``).

    Raises:
        RadiographReadError: not a recognised image, a header that cannot be parsed, or a
            path that cannot be read.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> from osteolens.io import write_png
        >>> tmp = pathlib.Path(tempfile.mkdtemp()) / "a.png"
        >>> _ = write_png(np.zeros((3, 5)), tmp, bits=8)
        >>> read_header(tmp.read_bytes())
        ImageHeader(format='PNG', rows=3, cols=5, frames=1)
    """
    source: bytes | Path
    if isinstance(data, bytes):
        source, head = data, data[:SNIFF_BYTES]
    else:
        source = path = Path(data)
        try:
            with source.open("rb") as handle:
                head = handle.read(SNIFF_BYTES)
        except OSError as exc:
            raise RadiographReadError(path, f"cannot be read ({exc.strerror or exc}).", "check the path.") from exc
    fmt = sniff_format(head)
    if fmt is None:
        raise RadiographReadError(path, "is not a recognised image: its first bytes match no DICOM, PNG, JPEG, "
                                  "TIFF or BMP signature.", "pass a DICOM, PNG, JPEG, TIFF or BMP file.")
    try:
        return _parse(fmt, BytesIO(source) if isinstance(source, bytes) else source)
    except Exception as exc:  # any parser failure on a hostile or damaged header
        raise RadiographReadError(path, f"the {fmt} header could not be parsed ({type(exc).__name__}: {exc}).",
                                  "re-export or re-copy the image from its source.") from exc


def _parse(fmt: str, source: BytesIO | Path) -> ImageHeader:
    if fmt == "DICOM":
        from pydicom import dcmread

        from osteolens.io.dicom_tags import spacing_from

        ds = dcmread(source, force=True, stop_before_pixels=True)
        found = spacing_from(ds)
        return ImageHeader(fmt, int(ds.get("Rows") or 0), int(ds.get("Columns") or 0),
                           int(ds.get("NumberOfFrames") or 1), found[0] if found else None)
    if fmt == "TIFF":
        import tifffile

        with tifffile.TiffFile(source) as tif:
            page = tif.pages[0]
            return ImageHeader(fmt, int(page.imagelength), int(page.imagewidth), len(tif.pages))
    from PIL import Image

    Image.init()
    factory, _ = Image.OPEN[fmt]  # Image.open would run Pillow's bomb check on the size first
    with source.open("rb") if isinstance(source, Path) else source as handle, factory(handle) as image:
        cols, rows = image.size
        # EXIF orientation 5-8 transposes. A PNG's getexif() would decode the image when its
        # eXIf chunk follows the pixels, so only EXIF already parsed from the header is read.
        has_exif = fmt == "JPEG" or "exif" in image.info
        turned = has_exif and image.getexif().get(0x0112) in (5, 6, 7, 8)
    return ImageHeader(fmt, *((cols, rows) if turned else (rows, cols)))
