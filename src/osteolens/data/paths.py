"""Where the real, labelled radiographs live (never inside the repository)."""

from __future__ import annotations

import os
from pathlib import Path

_ENV = "OSTEOLENS_DATA"


def shared_data_dir() -> Path | None:
    """The shared data folder: ``$OSTEOLENS_DATA``, else ``../shared/data`` beside the checkout.

    Returns None when neither exists, so tests and benchmarks can skip with a reason.
    """
    env = os.environ.get(_ENV)
    candidates = [Path(env)] if env else []
    repo_root = Path(__file__).resolve().parents[3]
    candidates += [repo_root.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def shared_dataset(name: str) -> Path | None:
    """One dataset folder inside :func:`shared_data_dir`, or None when it is absent."""
    root = shared_data_dir()
    if root is None or not (root / name).is_dir():
        return None
    return root / name
