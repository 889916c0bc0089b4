"""``read_radiograph``: one entry point for every supported file, dispatched on content."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from osteolens.errors import RadiographReadError
from osteolens.io.radiograph import Radiograph
from osteolens.io.sniff import SNIFF_BYTES, sniff_format

#: Default pixel limit: 10^8 pixels (a 10,000 x 10,000 image, 400 MB as float32).
DEFAULT_MAX_PIXELS = 100_000_000


def read_radiograph(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Radiograph:
    """Read a DICOM, PNG, JPEG, TIFF or BMP file as a :class:`Radiograph`.

    The format is recognised from the file's first bytes (DICM preamble, PNG / JPEG / TIFF /
    BMP signatures), never from its extension. Pixels come back as float32 ``(H, W)`` in
    [0, 1], row 0 on top, bone bright; ``meta.source`` is the path as given and
    ``meta.sha256`` the SHA-256 of the file's bytes.

    Args:
        path: the file.
        max_pixels: refuse images with more pixels than this (checked from the header
            before decoding, against decompression bombs).

    Raises:
        RadiographReadError: for every problem with the file (missing, a directory, empty,
            not an image, truncated or corrupt, no pixel data, several frames, a missing
            decoder, too many pixels, not 2-D); its message names the file, the reason
            and the fix.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> from osteolens.io import write_png
        >>> tmp = pathlib.Path(tempfile.mkdtemp()) / "a.png"
        >>> _ = write_png(np.array([[0.0, 1.0]]), tmp, bits=8)
        >>> read_radiograph(tmp).pixels.tolist()
        [[0.0, 1.0]]
    """
    path = Path(path)
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    data = _read_bytes(path)
    fmt = sniff_format(data[:SNIFF_BYTES])
    if fmt is None:
        raise RadiographReadError(
            path,
            "is not a recognised image: its first bytes match no DICOM, PNG, JPEG, TIFF or BMP signature.",
            "pass a DICOM, PNG, JPEG, TIFF or BMP file (the extension does not matter, the content does).",
        )
    try:
        radiograph = _decode(fmt, data, path, max_pixels)
    except RadiographReadError:
        raise
    except MemoryError as exc:
        raise RadiographReadError(path, "the image is too large to decode in the memory available.",
                                  "pass a smaller max_pixels to refuse such files, or add memory.") from exc
    except Exception as exc:  # any decoder failure on a hostile or damaged file
        raise RadiographReadError(
            path,
            # Decoders quote in-memory objects ("<_io.BytesIO object at 0x7f...>"): drop the address,
            # so that the same file gives the same message in every run and process.
            f"could not be decoded as {fmt} ({type(exc).__name__}: {re.sub(r' at 0x[0-9a-fA-F]+', '', str(exc))}); "
            "the file may be truncated or corrupt.",
            "re-export or re-copy the image from its source.",
        ) from exc
    radiograph.meta.source = str(path)
    radiograph.meta.sha256 = hashlib.sha256(data).hexdigest()
    return radiograph


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise RadiographReadError(path, "file not found.", "check the path and the working directory.")
    if path.is_dir():
        raise RadiographReadError(path, "is a directory, not an image file.",
                                  "pass one image file; list a folder's images in a manifest.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RadiographReadError(path, f"cannot be read ({exc.strerror or exc}).", "check the file's permissions.") from exc
    if not data:
        raise RadiographReadError(path, "is empty (0 bytes).", "re-export or re-copy the image from its source.")
    return data


def _decode(fmt: str, data: bytes, path: Path, max_pixels: int) -> Radiograph:
    if fmt == "DICOM":
        from osteolens.io.dicom_read import read_dicom

        return read_dicom(data, path, max_pixels)
    if fmt == "TIFF":
        from osteolens.io.raster_read import read_tiff

        return read_tiff(data, path, max_pixels)
    from osteolens.io.raster_read import read_pillow

    return read_pillow(data, path, max_pixels, fmt)
