"""``write_png``: a [0, 1] image as an 8- or 16-bit grey-scale PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from osteolens.errors import RadiographWriteError
from osteolens.io._files import quantise, unit_array, write_atomic


def write_png(pixels: np.ndarray, path: str | os.PathLike[str], *, bits: int = 16) -> Path:
    """Write ``pixels`` (float, (H, W), [0, 1]) as a grey-scale PNG.

    Each value becomes ``round(clip(p, 0, 1) * (2^bits - 1))``, so
    :func:`~osteolens.io.read_radiograph` gives back every pixel within
    ``0.5 / (2^bits - 1)``. Row 0 is the top row of the PNG. The file is written atomically
    (temporary file, then rename); parent folders are created.

    Args:
        pixels: 2-D array; values outside [0, 1] are clipped.
        path: destination file.
        bits: 8 or 16 bits per pixel.

    Returns:
        The path written.

    Raises:
        RadiographWriteError: not a finite 2-D array, ``bits`` not 8 or 16, unwritable path.

    Example:
        >>> import tempfile, pathlib
        >>> out = write_png(np.eye(3), pathlib.Path(tempfile.mkdtemp()) / "eye.png", bits=8)
        >>> out.suffix
        '.png'
    """
    import cv2

    path = Path(path)
    if bits not in (8, 16):
        raise RadiographWriteError(path, f"bits={bits} is not supported for PNG.", "use bits=8 or bits=16.")
    values = quantise(unit_array(pixels, path), bits)
    # OpenCV's encoder writes 8/16-bit grey PNG directly from the array. zlib's RLE strategy
    # at level 1 was measured 2x faster than the default on noisy 16-bit radiographs, with
    # files as small or smaller (flat backgrounds, masks) than level 3 default strategy.
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, encoded = cv2.imencode(".png", values, params)
    if not ok:
        raise RadiographWriteError(path, "the PNG encoder failed.", "check the array's shape and type.")
    return write_atomic(path, encoded.tobytes())
