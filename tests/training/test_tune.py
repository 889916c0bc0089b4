"""osteolens tune: Optuna trials are real cross-validated runs, the study continues, bad spaces are refused."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.errors import ConfigError
from osteolens.training import load_config
from osteolens.training.config import TrainConfig
from osteolens.training.tune import parse_space, tune, with_values

SMALL = {"name": "simple_cnn", "params": {"conv_layers": 2, "filters": 4, "dense_units": 8}}
SPACE = {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "model.dropout": {"choices": [0.0, 0.3]},
         "model.params.filters": {"low": 4, "high": 8, "step": 4}}


def _config(cohort, tmp_path) -> TrainConfig:
    return TrainConfig.from_dict({
        "manifest": str(cohort), "target": "label", "task": "binary", "model": SMALL, "input_size": [32, 32],
        "augmentation": "none", "folds": 2, "epochs": 1, "batch_size": 8, "out": str(tmp_path / "runs"),
        "cache": str(tmp_path / "cache"),
    })


@pytest.mark.slow
def test_trials_are_cross_validated_runs_and_the_study_continues(cohort, tmp_path):
    config = _config(cohort, tmp_path)
    result = tune(config, parse_space(SPACE), 2, tmp_path / "tune", seed=3)
    trials = pd.read_csv(tmp_path / "tune" / "trials.csv")
    assert len(trials) == 2 and result.metric == "auc" and result.direction == "maximize"
    for _, row in trials.iterrows():
        # The objective is the trial run's own pooled out-of-fold AUC, with the trial's values.
        run_dir = tmp_path / "tune" / "trials" / f"trial{row['number']}"
        assert row["run_dir"] == str(run_dir)
        assert row["auc"] == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["pooled"]["auc"])
        resolved = yaml.safe_load((run_dir / "config.resolved.yaml").read_text())
        assert resolved["lr"] == pytest.approx(row["lr"]) and 1e-4 <= row["lr"] <= 1e-2
        assert resolved["model"]["dropout"] == row["model.dropout"]
        assert resolved["model"]["params"]["filters"] == row["model.params.filters"] in (4, 8)
    assert result.best_value == pytest.approx(trials["auc"].max())
    best = load_config(tmp_path / "tune" / "best_config.yaml")
    assert best.lr == pytest.approx(result.best_values["lr"])
    assert best.model.dropout == result.best_values["model.dropout"]
    assert best.model.params["filters"] == result.best_values["model.params.filters"]
    assert best.out == config.out and best.epochs == config.epochs  # only the searched keys change
    summary = json.loads((tmp_path / "tune" / "best.json").read_text())
    assert summary["best_trial"] in (0, 1) and "optimistic" in summary["note"]
    # Run again on the same folder with a budget of 3: the study (study.db) continues with a third trial.
    again = tune(config, parse_space(SPACE), 3, tmp_path / "tune", seed=3)
    assert len(again.trials) == 3 and (tmp_path / "tune" / "trials" / "trial2" / "metrics.json").is_file()
    assert len(tune(config, parse_space(SPACE), 3, tmp_path / "tune", seed=3).trials) == 3  # budget reached: none


def test_search_spaces_and_keys_are_checked(cohort, tmp_path):
    for space, message in [
        ({}, "non-empty mapping"),
        ({"lr": {"low": 0.1, "high": 0.01}}, "low < high"),
        ({"lr": {"low": 0.0, "high": 0.1, "log": True}}, "log scale needs low > 0"),
        ({"batch_size": {"choices": []}}, "non-empty list"),
        ({"lr": 0.01}, "not a range or a list of choices"),
        ({"lr": {"low": 1e-4, "high": 1e-2, "scale": "log"}}, "not a range"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_space(space)
    config = _config(cohort, tmp_path)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['learning_rate'\]"):
        with_values(config, {"learning_rate": 0.1})
    with pytest.raises(ConfigError, match=r"unknown model key\(s\) \['depth'\]"):
        tune(config, parse_space({"model.depth": {"low": 1, "high": 3}}), 1, tmp_path / "t")
    with pytest.raises(ConfigError, match="'auroc' is not a metric"):
        tune(config, parse_space({"lr": {"low": 1e-4, "high": 1e-3}}), 1, tmp_path / "t2", metric="auroc")


@pytest.mark.slow
def test_tune_command(cohort, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(_config(cohort, tmp_path).to_dict()))
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"lr": {"low": 1e-4, "high": 1e-2, "log": True}}))
    result = CliRunner().invoke(app, ["tune", str(config), "--space", str(space), "--trials", "1",
                                      "--out", str(tmp_path / "study")])
    assert result.exit_code == 0, result.output
    assert "best: auc" in result.output and (tmp_path / "study" / "best_config.yaml").is_file()
