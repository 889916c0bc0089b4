"""The demo's training step on a small phantom cohort (slow: two cross-validated CNNs)."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from osteolens.demo import run_demo


@pytest.mark.slow
def test_demo_trains_who_class_and_bmd_models(tmp_path):
    summary = run_demo(tmp_path / "demo", specimens=12, seed=0, folds=2, console=Console(quiet=True))
    assert set(summary.runs) == {"who_class", "bmd"}
    for name in ("who_class", "bmd"):
        run = tmp_path / "demo" / "runs" / name
        assert (run / "bundle" / "bundle.json").is_file() and (run / "oof_predictions.csv").is_file()
        metrics = json.loads((run / "metrics.json").read_text())
        assert sorted(metrics["per_fold"]) == ["0", "1"] and "external_test" in metrics
    bundle = json.loads((tmp_path / "demo" / "runs" / "bmd" / "bundle" / "bundle.json").read_text())
    assert bundle["architecture"]["tabular"] == ["sex", "age"] and set(bundle["tabular_scaling"]) == {"age"}
    # Step 5: the trained bundle explains one external-test radiograph, as 'osteolens predict --cam' would.
    prediction = summary.prediction
    record = json.loads(open(prediction["json"]).read())
    assert record["result"] == "ok" and record["label"] in ("normal", "osteopenia", "osteoporosis")
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    from PIL import Image

    from osteolens.io import read_radiograph

    assert Image.open(record["overlay_img_path"]).size[::-1] == read_radiograph(prediction["image"]).shape
