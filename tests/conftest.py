"""Shared fixtures: real data from ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from osteolens.data.paths import shared_dataset


@pytest.fixture
def real_dataset():
    """Return a callable ``real_dataset(name) -> Path`` that skips when the folder is absent."""

    def _get(name: str) -> Path:
        path = shared_dataset(name)
        if path is None:
            pytest.skip(
                f"real data '{name}' not found: set $OSTEOLENS_DATA or place ../shared/data beside the checkout"
            )
        return path

    return _get
