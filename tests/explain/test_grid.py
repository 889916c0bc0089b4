"""Selections of the figure grids and ``osteolens explain`` on a run directory."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.explain.grid import explain_rows, run_paths, select_best_worst, select_per_class


def test_per_class_selection_is_seeded_and_capped():
    frame = pd.DataFrame({"y_true": ["a"] * 5 + ["b"] * 2, "x": range(7)})
    picked = select_per_class(frame, 3, seed=1)
    assert picked["y_true"].value_counts().to_dict() == {"a": 3, "b": 2}
    assert picked.equals(select_per_class(frame, 3, seed=1))


def test_best_worst_by_true_class_probability_and_by_error():
    frame = pd.DataFrame({"y_true": ["pos", "neg", "pos", "neg"], "prob": [0.9, 0.8, 0.3, 0.1]})
    best, worst = select_best_worst(frame, 2, "binary", ["neg", "pos"])
    # probability of the true class: 0.9, 0.2, 0.3, 0.9
    assert best.index.tolist() == [0, 3] and worst.index.tolist() == [1, 2]
    multi = pd.DataFrame({"y_true": ["a", "b"], "prob_a": [0.2, 0.5], "prob_b": [0.8, 0.5]})
    assert select_best_worst(multi, 1, "multiclass", ["a", "b"])[0].index.tolist() == [1]
    regression = pd.DataFrame({"y_true": [10.0, 20.0, 30.0], "y_pred": [11.0, 35.0, 29.5]})
    best, worst = select_best_worst(regression, 1, "regression", [])
    assert best.index.tolist() == [2] and worst.index.tolist() == [1]


def test_each_image_is_explained_by_the_model_that_did_not_train_on_it(run_dir):
    from osteolens.inference import Predictor

    bundle, predictions, resolve = run_paths(run_dir)
    predictor = Predictor(bundle, backend="torch")
    row = pd.read_csv(predictions).iloc[[1]]  # fold 1, predicted normal
    panels, failures = explain_rows(predictor, row, resolve)
    assert not failures and len(panels) == 1
    radiograph = predictor.read(resolve(row.iloc[0]))
    image, tabular, geometries = predictor.prepare([radiograph])
    (own,), _ = predictor.explain(image, tabular, geometries, [radiograph.shape], 0, models=[predictor.models[1]])
    (other,), _ = predictor.explain(image, tabular, geometries, [radiograph.shape], 0, models=[predictor.models[0]])
    assert np.allclose(panels[0].heatmap, own) and not np.allclose(own, other)
    assert panels[0].title == "true normal | pred normal (p=0.20)"


def test_explain_command_writes_grids(run_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["explain", str(run_dir), "--per-class", "3"])
    assert result.exit_code == 0, result.output
    for name in ("per_class_normal.png", "per_class_osteoporosis.png"):
        assert Image.open(run_dir / "explain" / name).size[0] > 300
    result = runner.invoke(app, ["explain", str(run_dir), "--best-worst", "2", "--out", str(tmp_path / "bw")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bw" / "best.png").is_file() and (tmp_path / "bw" / "worst.png").is_file()
    assert runner.invoke(app, ["explain", str(run_dir)]).exit_code != 0
    assert runner.invoke(app, ["explain", str(tmp_path), "--per-class", "2"]).exit_code != 0


def test_a_two_view_run_is_explained_view_by_view(tmp_path):
    """A trained AP + lateral run: each out-of-fold study gives one panel per view, from the
    study's own files in the run's manifest."""
    from osteolens.inference import Predictor
    from osteolens.training import run_training
    from osteolens.training.config import TrainConfig

    from ..training.conftest import make_cohort

    config = TrainConfig.from_dict({
        "manifest": str(make_cohort(tmp_path / "cohort", patients=12)), "target": "label", "task": "binary",
        "model": {"name": "simple_cnn", "views": 2, "params": {"conv_layers": 2, "filters": 4, "dense_units": 8}},
        "view_order": ["AP", "LAT"], "input_size": [32, 32], "augmentation": "none", "folds": 2, "epochs": 1,
        "batch_size": 4, "out": str(tmp_path / "runs"), "report": False,
    })
    run = run_training(config, quiet=True).run_dir
    bundle, predictions, resolve = run_paths(run)
    predictor = Predictor(bundle, backend="torch")
    rows = pd.read_csv(predictions).head(2)
    panels, failures = explain_rows(predictor, rows, resolve)
    assert not failures and len(panels) == 4
    assert [p.title.split(" | ")[0] for p in panels] == ["AP", "LAT", "AP", "LAT"]
    sample = resolve(rows.iloc[0], predictor.views)
    assert sample["AP"].name.endswith("_0.png") and sample["LAT"].name.endswith("_1.png")  # the study's two files
    result = CliRunner().invoke(app, ["explain", str(run), "--per-class", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run / "explain").glob("*.png")) == ["per_class_normal.png", "per_class_osteoporosis.png"]
