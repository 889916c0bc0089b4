"""Shared fixtures: real data from ../shared/data (skipped with a reason when absent).

With ``OSTEOLENS_REQUIRE_DATA=1`` a test whose real data, chromium, ``dciodvfy`` or
PostgreSQL server is missing fails instead of skipping, so a CI run cannot pass by skipping them.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

from osteolens.data.paths import shared_dataset
from tests.postgres_server import postgres_server, server_bin_dir

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


def require_postgres() -> Path:
    """The folder of PostgreSQL's server programs (``initdb``, ``pg_ctl``), or :func:`require_or_skip`."""
    found = server_bin_dir()
    if found is None:
        require_or_skip("PostgreSQL is not installed: no initdb on PATH or in /usr/lib/postgresql/*/bin "
                        "(apt-get install postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            require_or_skip("running as root, but there is no 'postgres' user to run the PostgreSQL server as")
    return found


@pytest.fixture(scope="session")
def postgres_url():
    """URL (with password) of a database on a PostgreSQL server started for this test session."""
    with postgres_server(require_postgres()) as server:
        yield server.url


@pytest.fixture
def real_dataset():
    """Return a callable ``real_dataset(name) -> Path`` that skips (or fails, see above) when the folder is absent."""
    return require_dataset
