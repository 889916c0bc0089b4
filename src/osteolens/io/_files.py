"""Shared helpers of the writers: checking an image array, and the one atomic file writer
every output of osteolens (images, run directories, checkpoints, reports, bundles) goes through."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np

from osteolens.errors import FileWriteError, RadiographWriteError


def unit_array(pixels: object, path: Path) -> np.ndarray:
    """``pixels`` as an (H, W) array clipped to [0, 1], or a RadiographWriteError.

    Values pass through float32, the in-memory type of a :class:`Radiograph`, so the same
    image quantises to the same integers whether a caller hands a float64 array to
    ``write_png`` or a Radiograph (float32) to ``write_dicom``.
    """
    try:
        arr = np.asarray(pixels, dtype=np.float32).astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise RadiographWriteError(path, f"the pixels are not a numeric array ({exc}).",
                                   "pass a float array (H, W) in [0, 1].") from exc
    if arr.ndim != 2 or arr.size == 0:
        raise RadiographWriteError(path, f"the pixels have shape {arr.shape}; a radiograph is one non-empty 2-D (H, W) array.",
                                   "convert colour to grey and pass one frame.")
    if not np.isfinite(arr).all():
        raise RadiographWriteError(path, "the pixels contain NaN or infinite values.",
                                   "replace them (e.g. np.nan_to_num) before writing.")
    return np.clip(arr, 0.0, 1.0)


def quantise(arr: np.ndarray, bits: int) -> np.ndarray:
    """Round [0, 1] values to integers 0 .. 2^bits - 1 (uint8 up to 8 bits, else uint16)."""
    full = 2**bits - 1
    return np.rint(arr * full).astype(np.uint8 if bits <= 8 else np.uint16)


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to a temporary file beside ``path``, flush it to disk
    (fsync) and rename it into place with ``os.replace``.

    A reader, or a run resumed after a kill or power cut, sees the old file or the new one,
    never half of one. Parent folders are created.

    Raises:
        FileWriteError: the folder is not writable or the disk is full.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "xb") as handle:  # not mkstemp: the file gets the umask's permissions
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise FileWriteError(path, f"cannot be written ({exc.strerror or exc}).",
                                 "check that the folder exists and is writable, and that the disk has space.") from exc
        raise
    return path
