"""Fixtures of the Dask tests: a small phantom cohort with one corrupt file, a 2-worker LocalCluster, tiny bundles."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.inference.conftest import create_model, make_bundle  # noqa: F401  (the tiny simple_cnn bundles)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """``labels.csv`` of 16 phantom PNGs (64 px, 2 specimens) plus a corrupt ``png/broken.png`` row (row 5)."""
    from osteolens.phantom import generate_cohort

    folder = tmp_path_factory.mktemp("cohort")
    manifest = generate_cohort(folder, specimens=2, seed=0, size=64, formats=("png",))
    (folder / "png" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but nothing after the signature")
    frame = manifest.frame.drop(columns=["image_png"])
    bad = frame.iloc[[0]].assign(image="png/broken.png", patient_id="S9999")
    frame = pd.concat([frame.iloc[:5], bad, frame.iloc[5:]], ignore_index=True)
    frame.to_csv(folder / "labels.csv", index=False)
    return folder / "labels.csv"


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker LocalCluster of processes (one thread each), shared by the module's tests."""
    from osteolens.scale import local_cluster

    with local_cluster(2) as local:
        yield local
