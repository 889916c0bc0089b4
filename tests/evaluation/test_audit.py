"""Shortcut audit: baselines in the same folds, the added-value comparison and the warnings.

What the real-data tests prove, and what they do not: no trained image model is available
to the test suite, so the "image model" is an uninformative stand-in that predicts each
class's prevalence for every image (AUC 0.5). The tests therefore show that on the real
data the audit's own baselines find the known signal (age and sex in the knee set, image
size and brightness in the spine set) with an interval that excludes chance, and that the
audit raises the matching warning when such a baseline matches the image model. They do
not say anything about how a real CNN fares against these baselines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteolens.data.manifest import Manifest
from osteolens.evaluation.audit import audit_shortcuts


def _chance_predictions(frame: pd.DataFrame) -> pd.DataFrame:
    prevalence = frame["label"].value_counts(normalize=True)
    return pd.DataFrame(
        {
            "image": frame["image"],
            "patient_id": frame["patient_id"].astype(str),
            "y_true": frame["label"],
            **{f"prob_{c}": prevalence[c] for c in sorted(prevalence.index)},
        }
    )


def test_audit_with_given_features_binary(tmp_path):
    """Synthetic: acquisition feature 'exposure' carries the label; the image model is weaker."""
    rng = np.random.default_rng(0)
    n = 120
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame(
        {
            "image": [f"{i}.png" for i in range(n)],
            "patient_id": np.arange(n).astype(str),
            "label": np.where(y, "osteoporosis", "normal"),
            "age": rng.normal(65, 8, n),
            "sex": rng.choice(["M", "F"], n),
            "fold": np.arange(n) % 4,
        }
    )
    manifest = Manifest(frame, tmp_path)
    preds = pd.DataFrame(
        {
            "image": frame["image"],
            "patient_id": frame["patient_id"],
            "fold": frame["fold"],
            "y_true": frame["label"],
            "prob": 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y))),
        }
    )
    acquisition = pd.DataFrame({"exposure": y * 2.0 + rng.normal(0, 0.3, n), "view": "AP"})
    result = audit_shortcuts(manifest, preds, acquisition=acquisition, n_bootstrap=200)
    assert result.fold_source == "fold column of the predictions"
    names = [m["name"] for m in result.models]
    assert names == ["image model", "covariates-only", "acquisition-only"]
    acq = result.models[2]["metric"]
    assert acq["value"] > 0.9 and result.flags["acquisition_close"]
    assert not result.flags["covariates_close"]  # random age / sex: no signal
    assert any(w.startswith("SHORTCUT WARNING") for w in result.warnings)
    comp = next(c for c in result.comparisons if c["versus"] == "acquisition-only")
    assert comp["method"] == "DeLong paired test" and comp["difference"] < 0


@pytest.mark.realdata
def test_knee_covariates_alone_predict_low_bone_density(real_dataset):
    root = real_dataset("knee_osteoporosis")
    frame = pd.read_csv(root / "labels.csv").rename(columns={"gender": "sex"})
    result = audit_shortcuts(Manifest(frame, root), _chance_predictions(frame), n_bootstrap=300, acquisition=False)
    cov = next(m for m in result.models if m["name"] == "covariates-only")
    assert set(cov["features"]) == {"age", "sex"}
    assert cov["metric"]["ci_low"] > 0.75  # age and sex alone: macro AUC about 0.88
    assert result.flags["covariates_close"]
    assert any(w.startswith("NO CLEAR ADDED VALUE") for w in result.warnings)


@pytest.mark.realdata
@pytest.mark.slow
def test_spine_acquisition_alone_separates_classes(real_dataset):
    root = real_dataset("spine_osteoporosis_sriher")
    frame = pd.read_csv(root / "labels.csv")
    result = audit_shortcuts(Manifest(frame, root), _chance_predictions(frame), n_bootstrap=300)
    acq = next(m for m in result.models if m["name"] == "acquisition-only")
    assert {"height", "width", "foreground_mean"} <= set(acq["features"])
    assert acq["metric"]["ci_low"] > 0.5  # original size and brightness alone beat chance
    assert result.flags["acquisition_close"]
    assert any(w.startswith("SHORTCUT WARNING") for w in result.warnings)
    assert "covariates-only baseline not fitted" in result.notes[0]


def test_audit_regression_compares_mae(tmp_path):
    """Bone-age-like regression: sex shifts the target a little, 'exposure' tracks it closely."""
    rng = np.random.default_rng(3)
    n = 150
    sex = rng.choice(["M", "F"], n)
    target = rng.uniform(20, 220, n) + np.where(sex == "M", 10.0, -10.0)
    frame = pd.DataFrame(
        {
            "image": [f"{i}.png" for i in range(n)],
            "patient_id": np.arange(n).astype(str),
            "sex": sex,
            "fold": np.arange(n) % 5,
        }
    )
    preds = pd.DataFrame(
        {
            "image": frame["image"],
            "patient_id": frame["patient_id"],
            "fold": frame["fold"],
            "y_true": target,
            "y_pred": target + rng.normal(0, 12, n),
        }
    )
    acquisition = pd.DataFrame({"exposure": target + rng.normal(0, 11, n)})
    result = audit_shortcuts(Manifest(frame, tmp_path), preds, acquisition=acquisition, n_bootstrap=200)
    assert result.metric == "mae"
    image, cov, acq = (m["metric"]["value"] for m in result.models)
    assert image == pytest.approx(np.mean(np.abs(preds["y_pred"] - target)))
    assert cov > 2 * image  # sex alone barely helps
    assert result.flags == {"covariates_close": False, "acquisition_close": True}
    assert any(w.startswith("SHORTCUT WARNING") for w in result.warnings)
