"""Image + covariate training never loses to the covariates, and ordinal runs predict every class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from osteolens.io import write_png
from osteolens.training import TrainConfig, run_training

SMALL_CNN = {"name": "simple_cnn", "params": {"conv_layers": 2, "filters": 4, "dense_units": 8}}


def _covariate_cohort(root: Path, labels_by_age, patients: int = 48, seed: int = 0) -> Path:
    """Pure-noise images; the label is a function of age only."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(patients):
        age = float(rng.uniform(50, 90))
        sex = "F" if rng.random() < 0.5 else "M"
        name = f"img/P{p:03d}.png"
        write_png(rng.random((24, 24)).astype(np.float32), root / name, bits=8)
        rows.append({"image": name, "patient_id": f"P{p:03d}", "label": labels_by_age(age, rng), "age": age,
                     "sex": sex, "fold": p % 3})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def _config(manifest: Path, out: Path, **extra) -> TrainConfig:
    return TrainConfig.from_dict({
        "manifest": str(manifest), "target": "label", "input_size": [24, 24], "augmentation": "none",
        "epochs": 3, "batch_size": 8, "lr": 3e-3, "out": str(out), "report": False,
        "model": {**SMALL_CNN, "tabular": ["sex", "age"]}, **extra,
    })


def test_fused_model_reaches_the_covariates_only_auc_when_the_image_is_noise(tmp_path):
    def label(age, rng):
        return "osteoporosis" if age + rng.normal(0, 6) > 70 else "normal"

    manifest = _covariate_cohort(tmp_path / "data", label)
    result = run_training(_config(manifest, tmp_path / "runs", task="binary"), quiet=True)
    oof = pd.read_csv(result.run_dir / "oof_predictions.csv")  # carries the rows' age and sex
    y = (oof["y_true"] == "osteoporosis").to_numpy(int)
    # The covariates-only model in the same folds: logistic regression on standardised age and sex.
    baseline = np.empty(len(oof))
    x = np.column_stack([(oof["age"] - oof["age"].mean()) / oof["age"].std(), oof["sex"] == "M"])
    for k in sorted(oof["fold"].unique()):
        test = (oof["fold"] == k).to_numpy()
        baseline[test] = LogisticRegression().fit(x[~test], y[~test]).predict_proba(x[test])[:, 1]
    covariates_auc = roc_auc_score(y, baseline)
    fused_auc = roc_auc_score(y, oof["prob"])
    assert covariates_auc > 0.8
    assert fused_auc >= covariates_auc - 0.02


def test_ordinal_run_predicts_a_well_separated_middle_class(tmp_path):
    def label(age, rng):
        return "normal" if age < 63 else "osteopenia" if age < 77 else "osteoporosis"

    manifest = _covariate_cohort(tmp_path / "data", label, patients=60, seed=1)
    result = run_training(_config(manifest, tmp_path / "runs", task="ordinal", epochs=1), quiet=True)
    oof = pd.read_csv(result.run_dir / "oof_predictions.csv")
    assert set(oof["y_pred"]) == {"normal", "osteopenia", "osteoporosis"}
    assert (oof["y_pred"] == oof["y_true"]).mean() > 0.8
    assert result.metrics["pooled"]["sensitivity_osteopenia"] > 0.6
    folds = result.metrics["folds"]
    assert all(r["selected"] in ("trained network",) or r["selected"].startswith("covariates only") for r in folds.values())


def test_offset_uses_age_at_once_where_concat_drowns_it(tmp_path):
    """One epoch on 24 patients: the offset model starts as the age model; the concatenated
    covariates are two inputs among the image features of a randomly initialised head."""

    def label(age, rng):
        return "osteoporosis" if age > 70 else "normal"

    manifest = _covariate_cohort(tmp_path / "data", label, patients=24)
    auc = {}
    for fusion in ("offset", "concat"):
        config = _config(manifest, tmp_path / f"runs_{fusion}", task="binary", epochs=1)
        config.model.fusion = fusion
        auc[fusion] = run_training(config, quiet=True).metrics["pooled"]["auc"]
    assert auc["offset"] > 0.9
    assert auc["offset"] > auc["concat"] + 0.2
