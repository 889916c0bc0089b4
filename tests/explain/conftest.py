"""Fixtures of the explanation tests: a fake finished run directory (bundle + out-of-fold predictions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch


@pytest.fixture
def run_dir(tmp_path):
    """A run folder like 'osteolens train' leaves: bundle/ (2 folds) and oof_predictions.csv over 8 PNGs."""
    from osteolens.inference import write_bundle
    from osteolens.io import write_png
    from osteolens.models import create_model

    run = tmp_path / "run"
    torch.manual_seed(0)
    models = [create_model("simple_cnn", "binary", 1, conv_layers=2, filters=4, dense_units=8).eval() for _ in range(2)]
    write_bundle(run / "bundle", models=models, input_size=(40, 40), task="binary", labels=["normal", "osteoporosis"],
                 preprocessing=[{"name": "resize", "params": {"size": 40}}], threshold=0.5)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        path = write_png(rng.random((50, 60), dtype=np.float32), tmp_path / "img" / f"p{i}.png")
        prob = [0.9, 0.2, 0.6, 0.4, 0.95, 0.05, 0.7, 0.3][i]
        truth = "osteoporosis" if i % 2 == 0 else "normal"
        rows.append({"image": str(path), "patient_id": f"P{i}", "fold": i % 2, "y_true": truth, "prob": prob,
                     "y_pred": "osteoporosis" if prob >= 0.5 else "normal"})
    pd.DataFrame(rows).to_csv(run / "oof_predictions.csv", index=False)
    return run
