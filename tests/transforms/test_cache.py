from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from osteolens.transforms import Pipeline, PreprocessCache

KEY = "0f" * 32


def _pipe(radius: int = 5) -> Pipeline:
    return Pipeline.from_config([{"name": "rolling_ball", "params": {"radius": radius}}])


def test_returns_identical_arrays_without_recomputing(tmp_path):
    cache = PreprocessCache(tmp_path)
    calls = []
    image = np.random.default_rng(0).random((20, 30)).astype(np.float32)

    def compute():
        calls.append(1)
        return _pipe()(image)

    first = cache.get_or_compute(KEY, _pipe(), compute)
    second = cache.get_or_compute(KEY, _pipe(), compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, _pipe()(image))
    assert second.dtype == np.float32
    path = cache.path_for(KEY, _pipe())
    assert path.is_file() and path.parent.name == _pipe().fingerprint()[:16]
    assert (path.parent / "pipeline.json").is_file()
    assert Pipeline.from_json(path.parent / "pipeline.json") == _pipe()
    assert not list(tmp_path.rglob("*.tmp"))  # temporary files were renamed or removed


def test_different_pipelines_and_images_get_different_entries(tmp_path):
    cache = PreprocessCache(tmp_path)
    assert cache.path_for(KEY, _pipe(5)) != cache.path_for(KEY, _pipe(6))
    assert cache.path_for(KEY, _pipe(5)) != cache.path_for("1a" * 32, _pipe(5))
    a = cache.get_or_compute(KEY, _pipe(5), lambda: np.zeros((2, 2), np.float32))
    b = cache.get_or_compute(KEY, _pipe(6), lambda: np.ones((2, 2), np.float32))
    assert a.sum() == 0 and b.sum() == 4


def test_float16_returns_the_same_rounded_array_on_miss_and_hit(tmp_path):
    cache = PreprocessCache(tmp_path, dtype="float16")
    value = np.array([[0.1, 1 / 3]], np.float32)
    miss = cache.get_or_compute(KEY, _pipe(), lambda: value)
    hit = cache.get_or_compute(KEY, _pipe(), lambda: pytest.fail("recomputed"))
    np.testing.assert_array_equal(miss, hit)
    assert miss.dtype == np.float32 and np.abs(miss - value).max() < 1e-3
    assert np.load(cache.path_for(KEY, _pipe())).dtype == np.float16


def test_damaged_entry_is_recomputed(tmp_path):
    cache = PreprocessCache(tmp_path)
    cache.get_or_compute(KEY, _pipe(), lambda: np.zeros((3, 3), np.float32))
    cache.path_for(KEY, _pipe()).write_bytes(b"\x93NUMPY garbage")
    out = cache.get_or_compute(KEY, _pipe(), lambda: np.ones((3, 3), np.float32))
    assert out.sum() == 9 and cache.get(KEY, _pipe()).sum() == 9


def _fill(directory: str, value: float) -> float:
    cache = PreprocessCache(directory)
    total = 0.0
    for _ in range(20):
        total = float(cache.get_or_compute(KEY, _pipe(), lambda: np.full((64, 64), value, np.float32)).sum())
        cache.put(KEY, _pipe(), np.full((64, 64), value, np.float32))
    return total


def test_concurrent_processes_never_see_a_partial_file(tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        totals = pool.starmap(_fill, [(str(tmp_path), 1.0), (str(tmp_path), 2.0)])
    # Each reader saw a whole array written by one process or the other.
    assert all(t in (64 * 64 * 1.0, 64 * 64 * 2.0) for t in totals)
    assert PreprocessCache(tmp_path).get(KEY, _pipe()).sum() in (64 * 64 * 1.0, 64 * 64 * 2.0)
    assert not list(tmp_path.rglob("*.tmp"))


def test_rejects_non_hex_keys_and_unknown_dtype(tmp_path):
    from osteolens.errors import ConfigError

    with pytest.raises(ConfigError, match="not a hexadecimal hash"):
        PreprocessCache(tmp_path).path_for("../etc/passwd", _pipe())
    with pytest.raises(ConfigError, match="float64"):
        PreprocessCache(tmp_path, dtype="float64")
