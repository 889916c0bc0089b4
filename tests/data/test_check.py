"""Dataset check on synthetic files: missing, unreadable, unlabelled, exact and near duplicates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteolens.data import Manifest, check_manifest
from osteolens.io import write_png


@pytest.fixture
def folder(tmp_path):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    base = []
    for _ in range(4):
        smooth = gaussian_filter(rng.normal(size=(96, 96)), 6)
        base.append(((smooth - smooth.min()) / np.ptp(smooth)).astype(np.float32))
    write_png(base[0], tmp_path / "a.png", bits=8)
    (tmp_path / "a_copy.png").write_bytes((tmp_path / "a.png").read_bytes())  # exact file copy
    write_png(base[1], tmp_path / "b.png", bits=8)
    noisy = np.clip(base[1] + rng.normal(0, 0.01, base[1].shape), 0, 1).astype(np.float32)
    write_png(noisy, tmp_path / "b_near.png", bits=8)  # near duplicate
    write_png(base[2], tmp_path / "c.png", bits=8)
    write_png(base[3], tmp_path / "unlisted.png", bits=8)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    frame = pd.DataFrame(
        {
            "image": ["a.png", "a_copy.png", "b.png", "b_near.png", "c.png", "broken.png", "gone.png", "d.png"],
            "patient_id": ["1", "2", "3", "3", "4", "5", "6", "7"],
            "label": ["normal", "osteoporosis", "normal", "normal", "normal", "normal", "normal", None],
        }
    )
    write_png(base[2][::-1].copy(), tmp_path / "d.png", bits=8)
    return Manifest(frame, tmp_path)


def test_problems_are_listed_and_dropped(folder, tmp_path):
    report = check_manifest(folder, image_dir=tmp_path, jobs=1)
    assert report.missing_files == ["gone.png"]
    assert [i for i, _ in report.unreadable] == ["broken.png"]
    assert "broken.png" in report.unreadable[0][1]
    assert report.unlabelled == ["d.png"]
    assert [p.endswith("unlisted.png") for p in report.unlisted_files] == [True]
    assert set(report.clean.frame.image) == {"a.png", "a_copy.png", "b.png", "b_near.png", "c.png"}


def test_duplicates_clustered_with_conflicts(folder):
    report = check_manifest(folder, jobs=1)
    groups = {frozenset(g.images): g for g in report.duplicate_groups}
    exact = groups[frozenset({"a.png", "a_copy.png"})]
    assert exact.kind == "exact-file" and exact.cross_patient and exact.label_conflict
    near = groups[frozenset({"b.png", "b_near.png"})]
    assert near.kind == "near" and not near.cross_patient and not near.label_conflict
    assert len(report.duplicate_groups) == 2  # the flipped image d.png is not a duplicate of c.png
    assert report.cluster_of["a.png"] == report.cluster_of["a_copy.png"]
    assert report.to_dict()["label_conflicts"] == 1
