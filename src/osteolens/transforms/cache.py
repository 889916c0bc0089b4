"""On-disk cache of preprocessed images, keyed by image hash + pipeline fingerprint.

Layout: ``DIR/<first 16 hex of the pipeline fingerprint>/<image sha256>.npy`` plus that
folder's ``pipeline.json`` (what produced the files). Every file is written to a temporary
name in the same folder and moved into place with ``os.replace``, which is atomic on
POSIX and Windows: a reader sees the whole old file, the whole new one, or none, so
several processes may fill one cache at once (at worst two compute the same entry and
the last rename wins with identical content).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from osteolens.errors import ConfigError
from osteolens.transforms.pipeline import Pipeline

_DTYPES = {"float32": np.float32, "float16": np.float16}


class PreprocessCache:
    """Arrays stored as ``.npy`` in ``directory``.

    Args:
        directory: cache folder (created when missing).
        dtype: ``"float32"`` (exact) or ``"float16"`` (half the disk, about 3 decimal
            digits; a miss returns the same rounded array a later hit will).

    Example:
        >>> import tempfile
        >>> cache = PreprocessCache(tempfile.mkdtemp())
        >>> pipe = Pipeline.from_config([{"name": "invert"}])
        >>> cache.get_or_compute("ab" * 32, pipe, lambda: np.zeros((2, 2), np.float32)).shape
        (2, 2)
        >>> cache.path_for("ab" * 32, pipe).is_file()
        True
    """

    def __init__(self, directory: str | Path, dtype: str = "float32") -> None:
        if dtype not in _DTYPES:
            raise ConfigError(None, f"cache dtype {dtype!r} is not supported.", f"use one of {sorted(_DTYPES)}.")
        self.directory = Path(directory)
        self.dtype = dtype

    def path_for(self, key_hash: str, pipeline: Pipeline) -> Path:
        """Where the entry for image hash ``key_hash`` under ``pipeline`` lives."""
        key = str(key_hash).strip().lower()
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise ConfigError(None, f"cache key {key_hash!r} is not a hexadecimal hash.", "pass the image's sha256.")
        return self.directory / pipeline.fingerprint()[:16] / f"{key}.npy"

    def get(self, key_hash: str, pipeline: Pipeline) -> np.ndarray | None:
        """The cached array, or None when absent or unreadable (a damaged file counts as a miss)."""
        path = self.path_for(key_hash, pipeline)
        try:
            return np.load(path, allow_pickle=False).astype(np.float32, copy=False)
        except (OSError, ValueError, EOFError):
            return None

    def put(self, key_hash: str, pipeline: Pipeline, array: np.ndarray) -> np.ndarray:
        """Store ``array`` atomically; return it as a later :meth:`get` will (float32)."""
        path = self.path_for(key_hash, pipeline)
        path.parent.mkdir(parents=True, exist_ok=True)
        config_path = path.parent / "pipeline.json"
        if not config_path.exists():
            _atomic_write(config_path, lambda handle: handle.write(pipeline.to_json().encode("utf-8")))
        stored = np.ascontiguousarray(array, dtype=_DTYPES[self.dtype])
        _atomic_write(path, lambda handle: np.save(handle, stored, allow_pickle=False))
        return stored.astype(np.float32, copy=False)

    def get_or_compute(self, key_hash: str, pipeline: Pipeline, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array for (image hash, pipeline), calling ``compute()`` only on a miss."""
        cached = self.get(key_hash, pipeline)
        if cached is not None:
            return cached
        return self.put(key_hash, pipeline, compute())


def _atomic_write(path: Path, write: Callable[[object], object]) -> None:
    """Write through ``write(handle)`` to a temporary file beside ``path``, then rename it over ``path``."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except OSError:
            pass
        raise
