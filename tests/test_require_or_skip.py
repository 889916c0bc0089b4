"""``require_or_skip``: skips by default, fails under OSTEOLENS_REQUIRE_DATA=1."""

from __future__ import annotations

import pytest

from tests import conftest
from tests.conftest import REQUIRE_ENV, require_dataset, require_or_skip


def test_skips_without_the_variable(monkeypatch):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        require_or_skip("no chromium")


@pytest.mark.parametrize("value", ["0", ""])
def test_other_values_still_skip(monkeypatch, value):
    monkeypatch.setenv(REQUIRE_ENV, value)
    with pytest.raises(pytest.skip.Exception):
        require_or_skip("no data")


def test_fails_with_the_variable(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=r"no dciodvfy \(OSTEOLENS_REQUIRE_DATA=1"):
        require_or_skip("no dciodvfy")


def test_missing_dataset_fails_only_when_required(monkeypatch, tmp_path):
    monkeypatch.setattr(conftest, "shared_dataset", lambda name: None)
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="real data 'knee_osteoporosis' not found"):
        require_dataset("knee_osteoporosis")
    monkeypatch.delenv(REQUIRE_ENV)
    with pytest.raises(pytest.skip.Exception, match="real data 'knee_osteoporosis' not found"):
        require_dataset("knee_osteoporosis")
    monkeypatch.setattr(conftest, "shared_dataset", lambda name: tmp_path)
    assert require_dataset("knee_osteoporosis") == tmp_path


def test_missing_tools_fail_when_required(monkeypatch, tmp_path):
    monkeypatch.setenv(REQUIRE_ENV, "1")
    monkeypatch.setattr(conftest, "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(pytest.fail.Exception, match="chromium is not installed"):
        conftest.require_chromium()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="dciodvfy not installed"):
        conftest.require_dciodvfy()


def test_missing_postgres_fails_when_required(monkeypatch):
    monkeypatch.setattr(conftest, "server_bin_dir", lambda: None)
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is not installed"):
        conftest.require_postgres()
    monkeypatch.delenv(REQUIRE_ENV)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        conftest.require_postgres()
