from __future__ import annotations

import pandas as pd

from osteolens.demo import run_demo


def test_demo_data_steps(tmp_path):
    summary = run_demo(tmp_path / "demo", specimens=10, folds=2, train=False)
    folds = pd.read_csv(summary.folds_manifest)
    assert summary.n_images == 80 == len(folds)
    assert folds.groupby("patient_id")["fold"].nunique().max() == 1
    assert -1 in set(folds.fold) and {0, 1} <= set(folds.fold)
    assert summary.check_report.is_file() and summary.duplicate_groups == 0
