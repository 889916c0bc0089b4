"""300 damaged files through every reader: only OsteolensError may come out (benchmarks/fuzz_readers.py).

The sources are made here (small PNG, DICOM, JPEG, TIFF, BMP, pydicom's test files, a label
and a landmark table and their workbooks), so the test runs without ``shared/data``.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.fuzz_readers import READERS, mutate, reader_name, run_reader, synthetic_sources

pytestmark = pytest.mark.filterwarnings("ignore")  # decoders warn on damaged files; the outcome is what counts
N_FILES = 300
ALL_READERS = sorted({reader for readers in READERS.values() for reader in readers}, key=reader_name)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """``(source, mutation, path)`` of 300 damaged files, seeded, round robin over the sources."""
    rng = np.random.default_rng(13)
    sources = synthetic_sources()
    folder = tmp_path_factory.mktemp("fuzz")
    files = []
    for number in range(N_FILES):
        source = sources[number % len(sources)]
        mutation, data = mutate(source, rng)
        path = folder / f"{number:03d}{source.suffix}"
        path.write_bytes(data)
        files.append((source, mutation, path))
    return files


def test_mutations_are_seeded_and_damage_the_source():
    source = next(s for s in synthetic_sources() if s.suffix == ".png")
    first = [mutate(source, np.random.default_rng(5)) for _ in range(2)]
    assert first[0] == first[1]
    assert all(mutate(source, np.random.default_rng(seed))[1] != source.data for seed in range(20))


@pytest.mark.slow
@pytest.mark.parametrize("reader", ALL_READERS, ids=reader_name)
def test_damaged_files_raise_only_osteolens_errors(fuzzed, reader):
    outcomes, others = [], []
    for source, mutation, path in fuzzed:
        if reader not in READERS[source.kind]:
            continue
        outcome, message = run_reader(reader, path)
        outcomes.append(outcome)
        if outcome is not None and not outcome.startswith("OK:"):
            others.append(f"{path.name} ({source.name}, {mutation}): {outcome}: {message}")
    assert others == []
    # The damage is real: some files are refused with an OsteolensError.
    assert any(outcome is not None for outcome in outcomes)
