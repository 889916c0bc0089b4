"""Data-parallel training on 2 CPU processes (gloo), launched by Fabric from ``osteolens train --devices 2``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.training.conftest import make_cohort

pytestmark = pytest.mark.slow

CONFIG = {
    "target": "label", "task": "binary", "input_size": [32, 32],
    "model": {"name": "simple_cnn", "params": {"conv_layers": 2, "filters": 4, "dense_units": 8}},
    "augmentation": "none", "folds": 2, "epochs": 2, "batch_size": 4, "warmup_epochs": 0, "report": False,
    "accelerator": "cpu", "seed": 0, "out": "runs",
    # Batch-norm statistics frozen: each process would otherwise normalise its own half batch.
    "freeze_bn": True,
}


def _osteolens() -> list[str]:
    script = Path(sys.executable).with_name("osteolens")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "osteolens.cli.main"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ddp")
    make_cohort(folder / "cohort", patients=24, images_per_patient=1)
    return folder


def _config(folder: Path, **changes) -> Path:
    path = folder / f"config_{len(list(folder.glob('config_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "manifest": "cohort/manifest.csv", **changes}))
    return path


def _train(folder: Path, config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*_osteolens(), "train", str(config), "--quiet", *args], cwd=folder, capture_output=True,
                          text=True, timeout=timeout)


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_two_processes_complete_a_run_and_predict_every_row_once(cohort):
    done = _train(cohort, _config(cohort), "--devices", "2", "--name", "ddp")
    assert done.returncode == 0, done.stderr[-3000:]
    run = cohort / "runs" / "ddp"
    oof = pd.read_csv(run / "oof_predictions.csv")
    manifest = pd.read_csv(run / "manifest.csv")
    expected = sorted(Path(p).name for p in manifest.loc[manifest["fold"] >= 0, "image"])
    assert sorted(Path(p).name for p in oof["image"]) == expected  # every row once, none twice
    assert json.loads((run / "environment.json").read_text())["processes"] == 2
    assert json.loads((run / "fold0" / "result.json").read_text())["processes"] == 2
    assert (run / "bundle" / "bundle.json").is_file()


def test_two_processes_take_the_same_steps_as_one_with_the_same_global_batch(cohort):
    config = _config(cohort)
    for devices in ("1", "2"):
        done = _train(cohort, config, "--devices", devices, "--fold", "0", "--name", f"p{devices}")
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (_weights(cohort / "runs" / f"p{d}" / "fold0" / "model.safetensors") for d in ("1", "2"))
    assert one.keys() == two.keys()
    # Same global batches (each process half of each), gradients averaged by DDP: float32 round-off only.
    assert max(float((one[k].float() - two[k].float()).abs().max()) for k in one) < 1e-5
    a, b = (pd.read_csv(cohort / "runs" / f"p{d}" / "fold0" / "predictions.csv") for d in ("1", "2"))
    assert (a["prob"] - b["prob"]).abs().max() < 1e-5


def test_a_killed_process_ends_the_run_with_a_clear_error_and_resume_finishes_it(cohort):
    import psutil

    config = _config(cohort, epochs=40, patience=1000, ddp_timeout=60)
    run = cohort / "runs" / "killed"
    main = subprocess.Popen([*_osteolens(), "train", str(config), "--quiet", "--devices", "2", "--fold", "0",
                             "--name", "killed"], cwd=cohort, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (run / "fold0" / "checkpoint" / "state.json").is_file():  # rank 0 saved an epoch
            assert main.poll() is None and time.monotonic() < deadline, "the run ended or never checkpointed"
            time.sleep(0.1)
        others = psutil.Process(main.pid).children(recursive=True)  # Fabric started rank 1 as a child
        assert others
        for process in others:
            os.kill(process.pid, signal.SIGKILL)
        _, stderr = main.communicate(timeout=120)  # no hang: the lost peer fails rank 0's next collective
    finally:
        if main.poll() is None:
            main.kill()
    # Rank 0's next collective fails at once (exit 2, our message); now and then Lightning's
    # launcher, which polls its child processes every 5 s, sees the dead one first and kills
    # rank 0 itself (SIGKILL). Either way the run ends instead of hanging.
    assert main.returncode in (2, -signal.SIGKILL), stderr[-3000:]
    if main.returncode == 2:
        assert "lost contact" in stderr and "--resume" in stderr
    assert not (run / "fold0" / "result.json").exists()

    resumed = _train(cohort, config, "--devices", "2", "--fold", "0", "--name", "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "fold0" / "result.json").read_text())["epochs_run"] == 40
    unbroken = _train(cohort, config, "--devices", "2", "--fold", "0", "--name", "unbroken")
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    resumed_weights = _weights(run / "fold0" / "model.safetensors")
    unbroken_weights = _weights(cohort / "runs" / "unbroken" / "fold0" / "model.safetensors")
    assert all(bool((resumed_weights[k] == unbroken_weights[k]).all()) for k in resumed_weights)  # bit-identical
