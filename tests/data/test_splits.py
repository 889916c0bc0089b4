from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteolens.data.manifest import Manifest
from osteolens.data.splits import assign_folds, inner_validation_split, iter_folds, leaks, patient_groups
from osteolens.errors import ManifestError


def _manifest(tmp_path, n_patients=40, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = ["normal", "osteopenia", "osteoporosis"][p % 3]
        for k in range(rng.integers(1, 4)):
            rows.append({"image": f"p{p}_{k}.png", "patient_id": f"p{p}", "label": label, "bmd": float(rng.normal(150, 30))})
    return Manifest(pd.DataFrame(rows), tmp_path)


def test_no_patient_or_duplicate_cluster_spans_folds(tmp_path):
    manifest = _manifest(tmp_path)
    # the same radiograph filed under p1 and p2, another under p5, p9 and p11
    clusters = {"p1_0.png": "c1", "p2_0.png": "c1", "p5_0.png": "c2", "p9_0.png": "c2", "p11_0.png": "c2"}
    result = assign_folds(manifest, 5, seed=3, clusters=clusters)
    frame = result.frame
    assert leaks(result) == []
    assert frame.groupby("patient_id")["fold"].nunique().max() == 1
    for members in (["p1", "p2"], ["p5", "p9", "p11"]):
        assert frame[frame.patient_id.isin(members)]["fold"].nunique() == 1
    assert sorted(frame["fold"].unique()) == [0, 1, 2, 3, 4]


def test_external_test_set_kept_whole_and_stratified(tmp_path):
    result = assign_folds(_manifest(tmp_path, 60), 4, seed=1, test_fraction=0.2)
    frame = result.frame
    test = frame[frame.fold == -1]
    assert 0.1 < len(test) / len(frame) < 0.3
    assert set(test.patient_id).isdisjoint(frame[frame.fold >= 0].patient_id)
    assert set(test.label) == {"normal", "osteopenia", "osteoporosis"}
    # folds iterate over CV rows only; the test set never shows up
    for _k, train, held in iter_folds(result):
        assert -1 not in set(frame.fold.iloc[train]) | set(frame.fold.iloc[held])


def test_same_seed_same_folds_and_regression_strata(tmp_path):
    manifest = _manifest(tmp_path)
    a = assign_folds(manifest, 5, seed=7, stratify="bmd").frame["fold"].tolist()
    b = assign_folds(manifest, 5, seed=7, stratify="bmd").frame["fold"].tolist()
    assert a == b


def test_inner_validation_grouped(tmp_path):
    frame = assign_folds(_manifest(tmp_path), 5).frame
    train, val = inner_validation_split(frame, 0.2, seed=0)
    assert len(val) > 0 and len(train) > len(val)
    assert set(frame.group.iloc[train]).isdisjoint(frame.group.iloc[val])


def test_union_of_clusters_is_transitive(tmp_path):
    frame = pd.DataFrame({"image": ["a", "b", "c", "d"], "patient_id": ["1", "2", "3", "4"]})
    groups = patient_groups(frame, {"a": "x", "b": "x", "c": "y", "b2": "y"})
    assert groups.tolist() == ["1", "1", "3", "4"]


def test_too_few_patients(tmp_path):
    manifest = Manifest(pd.DataFrame({"image": ["a", "b"], "patient_id": ["1", "2"], "label": ["x", "y"]}), tmp_path)
    with pytest.raises(ManifestError, match="cannot fill 5 folds"):
        assign_folds(manifest, 5)
