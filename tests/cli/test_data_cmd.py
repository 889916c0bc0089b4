from __future__ import annotations

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.io import write_png

runner = CliRunner()


def _folder(root):
    rng = np.random.default_rng(1)
    for cls in ("normal", "osteoporosis"):
        for i in range(6):
            write_png(rng.random((32, 32), dtype=np.float32), root / cls / f"{cls[0]}{i}_{i % 3}.png", bits=8)
    (root / "normal" / "n9_0.png").write_bytes(b"not a png")
    (root / "osteoporosis" / "o0_0.png").write_bytes((root / "normal" / "n0_0.png").read_bytes())


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("osteolens ")


def test_check_then_folds(tmp_path):
    _folder(tmp_path / "imgs")
    result = runner.invoke(app, ["data", "check", str(tmp_path / "imgs"), "--out", str(tmp_path / "chk"), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "chk" / "check.json").read_text())
    assert [u["image"] for u in report["unreadable"]] == ["normal/n9_0.png"]
    assert report["label_conflicts"] == 1 and report["n_images"] == 13

    strict = runner.invoke(app, ["data", "check", str(tmp_path / "imgs"), "--out", str(tmp_path / "chk2"), "--strict"])
    assert strict.exit_code == 1

    result = runner.invoke(app, ["data", "folds", str(tmp_path / "chk" / "manifest.csv"), "--folds", "3", "--out", str(tmp_path / "f.csv")])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "f.csv")
    assert len(frame) == 12 and set(frame.fold) == {0, 1, 2}
    # the exact copy filed as n0 and o0 lands in one fold
    assert frame[frame.image.str.contains("n0_0|o0_0")].fold.nunique() == 1


def test_bad_manifest_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    (tmp_path / "m.csv").write_text("path,who\na.png,1\n")
    done = subprocess.run(
        [sys.executable, "-m", "osteolens.cli.main", "data", "folds", str(tmp_path / "m.csv")],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 2
    assert "error:" in done.stderr and "m.csv" in done.stderr and "patient_id" in done.stderr
