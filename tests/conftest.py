"""Shared fixtures: real data from ../shared/data (skipped with a reason when absent).

With ``OSTEOLENS_REQUIRE_DATA=1`` a test whose real data, chromium or ``dciodvfy`` is
missing fails instead of skipping, so a CI run cannot pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

from osteolens.data.paths import shared_dataset

REQUIRE_ENV = "OSTEOLENS_REQUIRE_DATA"
CHROMIUM = Path("/usr/bin/chromium")


def require_or_skip(reason: str) -> NoReturn:
    """Skip the test with ``reason``; fail it instead when ``$OSTEOLENS_REQUIRE_DATA`` is ``1``."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: missing test resources fail instead of skipping)", pytrace=False)
    pytest.skip(reason)


def require_dataset(name: str) -> Path:
    """The shared dataset ``name``, or :func:`require_or_skip` with a reason when it is absent."""
    path = shared_dataset(name)
    if path is None:
        require_or_skip(f"real data '{name}' not found: set $OSTEOLENS_DATA or place ../shared/data beside the checkout")
    return path


def require_chromium() -> Path:
    """Debian's chromium at /usr/bin/chromium (what Playwright launches), or :func:`require_or_skip`."""
    if not CHROMIUM.is_file():
        require_or_skip(f"Debian chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


def require_dciodvfy() -> str:
    """The path of dicom3tools' ``dciodvfy``, or :func:`require_or_skip`."""
    found = shutil.which("dciodvfy")
    if found is None:
        require_or_skip("dciodvfy not installed (apt-get install dicom3tools)")
    return found


@pytest.fixture
def real_dataset():
    """Return a callable ``real_dataset(name) -> Path`` that skips (or fails, see above) when the folder is absent."""
    return require_dataset
