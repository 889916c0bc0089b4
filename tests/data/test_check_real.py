"""``data check`` finds, on its own, the duplicates and label conflicts documented in the knee set."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from osteolens.data import assign_folds, check_manifest, from_class_folders, leaks

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def knee(request):
    from osteolens.data.paths import shared_dataset

    root = shared_dataset("knee_osteoporosis")
    if root is None:
        from tests.conftest import require_or_skip

        require_or_skip("real data 'knee_osteoporosis' not found: set $OSTEOLENS_DATA or place ../shared/data beside the checkout")
    labels = pd.read_csv(root / "labels.csv")
    report = check_manifest(from_class_folders(root / "images"), jobs=2)
    return labels, report


def _stem(image: str) -> str:
    return Path(image).stem


# The dataset's curator also grouped N26 with OP130 ("near-identical at thumbnail level").
# Looked at side by side they are two different knees (different fibula overlap, condyle
# shape and soft tissue), and on every measure we tried (pHash, thumbnail correlation at
# 32-128 px, ORB + RANSAC inliers, ECC-registered correlation) the pair is no closer than
# several pairs of distinct knees. osteolens therefore does not call them duplicates.
CURATOR_FALSE_POSITIVE = frozenset({"N26", "OP130"})


def test_duplicate_groups_match_the_dataset_columns(knee):
    labels, report = knee
    expected = {
        frozenset(map(_stem, group.image))
        for _, group in labels[labels.dup_group.notna()].groupby("dup_group")
        if len(group) > 1
    } - {CURATOR_FALSE_POSITIVE}
    found = {frozenset(map(_stem, g.images)) for g in report.duplicate_groups}
    assert found == expected
    assert len(found) == 16
    assert report.n_images == len(labels) and not report.unreadable


def test_cross_class_conflicts_match(knee):
    labels, report = knee
    exact_conflicts = {
        _stem(image)
        for g in report.duplicate_groups
        if g.label_conflict and g.kind != "near"
        for image in g.images
    }
    assert exact_conflicts == set(labels.loc[labels.label_conflict == 1, "patient_id"])
    assert len(report.label_conflicts) == 7


def test_folds_never_split_a_duplicate_cluster(knee):
    _, report = knee
    folded = assign_folds(report.annotated(), 5, seed=0, clusters=report.cluster_of)
    assert leaks(folded) == []
    frame = folded.frame
    for group in report.duplicate_groups:
        assert frame[frame.image.isin(group.images)].fold.nunique() == 1
