"""Crash safety: atomic writes, consistent checkpoints, and ``osteolens train`` killed with
SIGKILL mid-epoch then ``--resume``d to the bit-identical weights of an unbroken run."""

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
import torch
import yaml
from safetensors.torch import load_file

from osteolens.errors import FileWriteError
from osteolens.io._files import write_atomic
from osteolens.training import checkpoint as ckpt


def test_write_atomic_replaces_whole_files_and_keeps_the_old_one_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "metrics.json"
    write_atomic(path, '{"auc": 0.5}')
    write_atomic(path, b'{"auc": 0.75}')
    assert json.loads(path.read_text()) == {"auc": 0.75}

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(FileWriteError, match=r"metrics\.json: cannot be written \(No space left on device\)"):
        write_atomic(path, '{"auc": 0.9')
    assert json.loads(path.read_text()) == {"auc": 0.75}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def _step(net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad()
    net(torch.ones(3, 4)).sum().backward()
    optimizer.step()


def test_a_kill_between_checkpoint_files_resumes_from_the_last_whole_epoch(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.1)
    folder = tmp_path / "checkpoint"

    _step(net, optimizer)
    epoch0 = ckpt.state_tensors(net)
    ckpt.save_checkpoint(folder, model=net, best=epoch0, optimizer=optimizer, scheduler=None,
                         state={"epoch": 0, "history": [{"epoch": 1, "val_loss": float("inf")}]})
    _step(net, optimizer)

    class Killed(Exception):
        pass

    def dies_at_state_json(path, data):
        if Path(path).name == "state.json":
            raise Killed
        return write_atomic(path, data)

    monkeypatch.setattr(ckpt, "write_atomic", dies_at_state_json)
    with pytest.raises(Killed):  # epoch 1's tensors are on disk, its state.json is not
        ckpt.save_checkpoint(folder, model=net, best=epoch0, optimizer=optimizer, scheduler=None, state={"epoch": 1})

    saved = ckpt.load_checkpoint(folder)
    assert saved["epoch"] == 0 and saved["tensors"] == "epoch0.safetensors"
    assert saved["history"] == [{"epoch": 1, "val_loss": float("inf")}]
    assert all(torch.equal(saved["model"][k], epoch0[k]) for k in epoch0)
    assert not any(torch.equal(saved["model"][k], v) for k, v in net.state_dict().items())
    assert saved["optimizer"]["state"][0]["step"] == 1
    fresh = torch.optim.AdamW(torch.nn.Linear(4, 2).parameters(), lr=0.1)
    fresh.load_state_dict(saved["optimizer"])  # the moments of epoch 0 load back

    monkeypatch.undo()
    ckpt.save_checkpoint(folder, model=net, best=epoch0, optimizer=optimizer, scheduler=None, state={"epoch": 1})
    assert sorted(p.name for p in folder.iterdir()) == ["epoch1.safetensors", "state.json"]


# --------------------------------------------------------------------------- SIGKILL + --resume
CONFIG = {
    "target": "label", "task": "binary",
    "model": {"name": "simple_cnn", "params": {"conv_layers": 2, "filters": 8, "dense_units": 16}},
    "input_size": [32, 32], "augmentation": "default", "folds": 2, "epochs": 6, "batch_size": 4, "lr": 3e-3,
    "scheduler": "cosine", "warmup_epochs": 1, "patience": 10, "ema_decay": 0.9, "accelerator": "cpu",
    "report": False, "seed": 3,
}
# One thread everywhere: CPU kernels then reduce in a fixed order, so two processes agree bit for bit.
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _train(config: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "osteolens.cli.main", "train", str(config), "--quiet", *extra]
    return subprocess.Popen(command, env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(process: subprocess.Popen) -> None:
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out.decode(errors="replace")


@pytest.mark.slow
def test_train_killed_mid_epoch_resumes_to_the_weights_of_an_unbroken_run(cohort, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "manifest": str(cohort), "out": str(tmp_path / "runs")}))
    _finish(_train(config, "--name", "unbroken"))

    broken = _train(config, "--name", "broken")
    run = tmp_path / "runs" / "broken"
    state = run / "fold1" / "checkpoint" / "state.json"
    while not state.exists() and broken.poll() is None:  # fold 0 done, fold 1 one epoch in
        time.sleep(0.005)
    time.sleep(0.02)  # into the next epoch's batches
    broken.send_signal(signal.SIGKILL)
    broken.communicate(timeout=60)
    assert broken.returncode == -signal.SIGKILL
    assert (run / "fold0" / "result.json").is_file() and not (run / "fold1" / "result.json").exists(), \
        "the run ended before the kill; the test needs it mid-fold"

    for path in run.rglob("*.json"):  # nothing half-written
        json.loads(path.read_text())
    saved = json.loads(state.read_text())
    assert (state.parent / saved["tensors"]).is_file() and (state.parent / saved["ema"]).is_file()

    _finish(_train(config, "--name", "broken", "--resume"))
    for k in (0, 1):
        a = load_file(str(tmp_path / "runs" / "unbroken" / f"fold{k}" / "model.safetensors"))
        b = load_file(str(run / f"fold{k}" / "model.safetensors"))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[key], b[key]) for key in a), f"fold {k} differs after the resume"
    histories = [pd.read_csv(r / "fold1" / "history.csv").drop(columns="seconds") for r in (tmp_path / "runs" / "unbroken", run)]
    pd.testing.assert_frame_equal(*histories, check_exact=True)
    assert not (run / "fold1" / "checkpoint").exists()
    assert json.loads((run / "metrics.json").read_text())["pooled"]["n"] == 64
