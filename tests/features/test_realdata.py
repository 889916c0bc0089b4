"""Extraction on real knee radiographs (../shared/data/knee_osteoporosis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteolens.data.manifest import Manifest
from osteolens.features import ExtractionConfig, extract_features


@pytest.mark.realdata
@pytest.mark.slow
def test_knee_extraction_runs_on_every_image(real_dataset):
    root = real_dataset("knee_osteoporosis")
    frame = pd.read_csv(root / "labels.csv", dtype={"patient_id": str})
    manifest = Manifest(frame[["image", "patient_id", "label", "age"]], root, root / "labels.csv")
    families = [{"name": "radiomics", "params": {"classes": ["firstorder"]}}, "fourier", "variogram"]
    result = extract_features(manifest, ExtractionConfig(families=families, roi="none", max_size=96))
    # Every image is either in the table or in the failure list with a reason.
    assert len(result.table) + len(result.failures) == len(frame) == 184
    assert all(reason for _, reason in result.failures)
    assert result.failures == []  # all 184 PNGs are readable (measured); a regression would list them here
    values = result.table[result.feature_columns]
    assert np.isfinite(values.to_numpy()).all()
    assert values["variogram_isv"].between(0.0, 2.5).all()
    assert result.table["fourier_rms"].std() > 0
