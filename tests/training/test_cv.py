"""Cross-validation end to end on a synthetic cohort: learning, grouping, run directory,
bundle round trip, resume, fold jobs + merge."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from osteolens.errors import ConfigError
from osteolens.training import TrainConfig, load_config, run_training
from osteolens.training.progress import TrainingProgress

SMALL_CNN = {"name": "simple_cnn", "params": {"conv_layers": 2, "filters": 8, "dense_units": 16}}


def _config(manifest: Path, out: Path, **changes) -> TrainConfig:
    data = {
        "manifest": str(manifest), "target": "label", "task": "binary", "model": dict(SMALL_CNN),
        "input_size": [32, 32], "augmentation": "none", "folds": 3, "epochs": 8, "batch_size": 8, "lr": 3e-3,
        "warmup_epochs": 0, "patience": 8, "out": str(out), "n_bootstrap": 20, "seed": 0,
    }
    data.update(changes)
    return TrainConfig.from_dict(data)


@pytest.fixture(scope="module")
def binary_run(cohort, tmp_path_factory):
    torch.set_num_threads(1)
    return run_training(_config(cohort, tmp_path_factory.mktemp("runs")), quiet=True)


def test_model_learns_the_signal_on_held_out_folds(binary_run):
    per_fold = binary_run.metrics["per_fold"]
    assert len(per_fold) == 3
    # Chance is 0.5; the bright square is learnt within a few epochs.
    assert min(m["auc"] for m in per_fold.values()) >= 0.8
    assert binary_run.metrics["pooled"]["auc"] >= 0.7


def test_no_patient_in_two_folds_and_every_image_predicted_once(binary_run, cohort):
    manifest = pd.read_csv(binary_run.run_dir / "manifest.csv")
    assert manifest.groupby("patient_id")["fold"].nunique().max() == 1
    oof = pd.read_csv(binary_run.run_dir / "oof_predictions.csv")
    assert len(oof) == len(pd.read_csv(cohort)) and oof["image"].is_unique
    assert oof.groupby("patient_id")["fold"].nunique().max() == 1
    folds = dict(zip(manifest["patient_id"].astype(str), manifest["fold"]))
    assert all(folds[p] == f for p, f in zip(oof["patient_id"].astype(str), oof["fold"]))
    for k in range(3):
        result = json.loads((binary_run.run_dir / f"fold{k}" / "result.json").read_text())
        assert result["n_test"] == (oof["fold"] == k).sum()
        assert result["n_train"] + result["n_val"] + result["n_test"] == len(oof)


def test_run_directory_has_every_file(binary_run):
    run = binary_run.run_dir
    expected = [
        "config.resolved.yaml", "environment.json", "run.json", "manifest.csv", "oof_predictions.csv", "metrics.json",
        "plots/learning_curves.png", "plots/roc.png", "plots/confusion_fold0.png", "plots/confusion_fold2.png",
        "bundle/bundle.json", "bundle/fold0.safetensors", "report/metrics.json",
    ] + [f"fold{k}/{name}" for k in range(3) for name in ("model.safetensors", "history.csv", "predictions.csv")]
    missing = [name for name in expected if not (run / name).is_file()]
    assert not missing
    assert not (run / "fold0" / "checkpoint").exists()
    env = json.loads((run / "environment.json").read_text())
    assert env["device"] == "cpu" and env["torch"] == torch.__version__
    history = pd.read_csv(run / "fold0" / "history.csv")
    assert list(history["epoch"]) == list(range(1, len(history) + 1))
    assert {"train_loss", "val_loss", "val_auc", "lr"} <= set(history.columns)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"per_fold", "pooled", "fold_mean", "fold_std", "folds"}
    oof = pd.read_csv(run / "oof_predictions.csv")
    assert {"image", "patient_id", "fold", "y_true", "prob", "y_pred", "sex", "age"} <= set(oof.columns)
    resolved = yaml.safe_load((run / "config.resolved.yaml").read_text())
    assert resolved["model"]["name"] == "simple_cnn" and resolved["epochs"] == 8


def test_fold_weights_reproduce_the_out_of_fold_probabilities(binary_run):
    from osteolens.inference.bundle import load_bundle
    from osteolens.training.cv import build_model
    from osteolens.training.dataset import ImageStore, effective_pipeline

    bundle = load_bundle(binary_run.run_dir / "bundle")
    config = TrainConfig.from_dict(yaml.safe_load((binary_run.run_dir / "config.resolved.yaml").read_text()))
    oof = pd.read_csv(binary_run.run_dir / "oof_predictions.csv")
    store = ImageStore(effective_pipeline(config.preprocessing, config.input_size), Path(config.out) / ".cache")
    manifest_dir = binary_run.run_dir
    for k, net in enumerate(bundle.models):
        own = build_model(config, 2)
        own.load_state_dict(load_file(str(binary_run.run_dir / f"fold{k}" / "model.safetensors")))
        rows = oof[oof["fold"] == k]
        images = torch.stack([torch.from_numpy(store.load(str((manifest_dir / p).resolve())
                              if not Path(p).is_absolute() else p))[None] for p in rows["image"]])
        with torch.no_grad():
            prob = torch.sigmoid(net.eval()(images)[:, 0]).numpy()
        np.testing.assert_allclose(prob, rows["prob"].to_numpy(), atol=1e-5)
        for a, b in zip(own.state_dict().values(), net.state_dict().values()):
            assert torch.equal(a, b)


def test_existing_run_is_not_overwritten(binary_run, cohort):
    config = _config(cohort, binary_run.run_dir.parent)
    with pytest.raises(ConfigError, match="--resume"):
        run_training(config, quiet=True)
    with pytest.raises(ConfigError, match="different configuration"):
        run_training(_config(cohort, binary_run.run_dir.parent, epochs=3), quiet=True)


def test_resume_after_a_kill_gives_the_weights_of_an_unbroken_run(cohort, tmp_path, monkeypatch):
    changes = {"folds": 2, "epochs": 3, "augmentation": "default", "scheduler": "cosine", "warmup_epochs": 1,
               "patience": 5, "report": False}
    unbroken = run_training(_config(cohort, tmp_path / "a", **changes), fold=0, quiet=True)

    class Killed(Exception):
        pass

    original = TrainingProgress.fold

    def killing_fold(self, k, epochs, steps):
        from contextlib import contextmanager

        @contextmanager
        def manager():
            def callback(event):
                if event["event"] == "epoch" and event["epoch"] == 1:
                    raise Killed

            yield callback

        return manager()

    monkeypatch.setattr(TrainingProgress, "fold", killing_fold)
    broken_config = _config(cohort, tmp_path / "b", **changes)
    with pytest.raises(Killed):
        run_training(broken_config, fold=0, quiet=True)
    assert (broken_config.run_dir / "fold0" / "checkpoint" / "state.json").is_file()
    monkeypatch.setattr(TrainingProgress, "fold", original)
    with pytest.raises(ConfigError, match="interrupted"):
        run_training(broken_config, fold=0, quiet=True)
    resumed = run_training(broken_config, fold=0, resume=True, quiet=True)

    a = load_file(str(unbroken.run_dir / "fold0" / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "fold0" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    ha = pd.read_csv(unbroken.run_dir / "fold0" / "history.csv")
    hb = pd.read_csv(resumed.run_dir / "fold0" / "history.csv")
    np.testing.assert_array_equal(ha["train_loss"], hb["train_loss"])


def test_load_config_resolves_paths_and_applies_overrides(tmp_path):
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "train.yaml"
    path.write_text(yaml.safe_dump({"manifest": "data/m.csv", "task": "ordinal", "model": "resnet18", "epochs": 30}))
    config = load_config(path, {"epochs": 3, "model.finetune": "last:2", "out": "elsewhere"})
    assert config.manifest == str(tmp_path / "cfg" / "data" / "m.csv")
    assert config.epochs == 3 and config.model.name == "resnet18" and config.model.finetune == "last:2"
    assert config.out == "elsewhere"
    path.write_text(yaml.safe_dump({"manifest": "m.csv", "epocs": 3}))
    with pytest.raises(ConfigError, match="epocs"):
        load_config(path)
    path.write_text(yaml.safe_dump({"manifest": "m.csv", "task": "segmentation"}))
    with pytest.raises(ConfigError, match="task"):
        load_config(path)


def test_cli_fold_jobs_then_merge(cohort, tmp_path):
    from typer.testing import CliRunner

    from osteolens.cli.main import app

    config = {
        "manifest": str(cohort), "target": "label", "task": "binary", "model": SMALL_CNN, "input_size": [32, 32],
        "augmentation": "none", "folds": 2, "epochs": 1, "batch_size": 8, "report": False, "name": "jobs",
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    runner = CliRunner()
    for k in (0, 1):
        result = runner.invoke(app, ["train", str(path), "--fold", str(k), "--quiet", "--out", str(tmp_path / "runs")])
        assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "jobs"
    assert not (run_dir / "oof_predictions.csv").exists()  # fold jobs do not merge
    result = runner.invoke(app, ["cv", "merge", str(run_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert sorted(metrics["per_fold"]) == ["0", "1"]
    assert len(pd.read_csv(run_dir / "oof_predictions.csv")) == len(pd.read_csv(cohort))
    assert (run_dir / "bundle" / "bundle.json").is_file()
    again = runner.invoke(app, ["train", str(path), "--fold", "0", "--quiet", "--out", str(tmp_path / "runs")])
    assert again.exit_code != 0 and "--resume" in str(again.exception)
