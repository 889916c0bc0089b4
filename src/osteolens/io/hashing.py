"""A hash of what an image looks like, not of how its file is encoded."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from osteolens.io.radiograph import Radiograph


def pixel_hash(pixels: np.ndarray | Radiograph) -> str:
    """SHA-256 of the decoded pixels quantised to 16 bits.

    The pixels (float in [0, 1], clipped) become ``round(p * 65535)`` as little-endian
    uint16; the hash covers the shape and those bytes. The same image saved as a 16-bit
    PNG and as a DICOM, or re-encoded losslessly, gets the same hash; two files with the
    same bytes get the same hash too, so it finds duplicates that file hashes miss.

    Example:
        >>> pixel_hash(np.zeros((2, 2))) == pixel_hash(np.zeros((2, 2), dtype=np.float32))
        True
        >>> pixel_hash(np.zeros((2, 2))) == pixel_hash(np.zeros((1, 4)))
        False
    """
    arr = np.asarray(getattr(pixels, "pixels", pixels), dtype=np.float64)
    quantised = np.round(np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0) * 65535.0).astype("<u2")
    digest = hashlib.sha256()
    digest.update(("x".join(str(n) for n in quantised.shape) + ":").encode("ascii"))
    digest.update(np.ascontiguousarray(quantised).tobytes())
    return digest.hexdigest()
