"""``osteolens evaluate`` / ``osteolens compare`` from the command line, and compare() on pROC data."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from osteolens.errors import OsteolensError
from osteolens.evaluation.compare import compare


def _cli(monkeypatch, *args: str) -> int:
    """Run ``osteolens ARGS`` in this process (as the console script does); return the exit code."""
    from osteolens.cli.main import main

    monkeypatch.setattr(sys, "argv", ["osteolens", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.mark.slow
def test_evaluate_command_writes_report(tmp_path, make_binary, monkeypatch, capsys):
    csv = tmp_path / "oof_predictions.csv"
    make_binary().to_csv(csv, index=False)
    assert (
        _cli(
            monkeypatch,
            "evaluate",
            str(csv),
            "--out",
            str(tmp_path / "eval"),
            "-b",
            "100",
            "--threshold",
            "sensitivity",
        )
        == 0
    )
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["threshold"]["method"] == "sensitivity"
    assert (tmp_path / "eval" / "report.html").stat().st_size > 10_000
    capsys.readouterr()
    assert _cli(monkeypatch, "evaluate", str(tmp_path / "missing.csv")) == 2
    assert "error:" in capsys.readouterr().err


@pytest.fixture
def asah_tables(real_dataset):
    data = pd.read_csv(real_dataset("delong_reference") / "aSAH.csv")
    base = pd.DataFrame(
        {"image": data["row_name"].astype(str), "patient_id": data["row_name"].astype(str), "y_true": data["outcome"]}
    )
    return data, base


@pytest.mark.realdata
def test_compare_paired_reproduces_proc(asah_tables, tmp_path, monkeypatch):
    """roc.test(r.wfns, r.s100b): Z = 2.20898359144091, p = 0.0271757822291882 (pROC test suite)."""
    data, base = asah_tables
    a, b = base.assign(prob=data["wfns"]), base.assign(prob=data["s100b"])
    result = compare(a, b, on="patient_id", positive="Poor")
    assert result.paired
    assert result.statistic["z"] == pytest.approx(2.20898359144091, rel=1e-6)
    assert result.p == pytest.approx(0.0271757822291882, rel=1e-6)
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    code = _cli(
        monkeypatch,
        "compare",
        str(tmp_path / "a.csv"),
        str(tmp_path / "b.csv"),
        "--on",
        "patient_id",
        "--positive",
        "Poor",
        "--out",
        str(tmp_path / "cmp.json"),
    )
    assert code == 0
    assert json.loads((tmp_path / "cmp.json").read_text())["p"] == pytest.approx(0.0271757822291882, rel=1e-6)


@pytest.mark.realdata
def test_compare_unpaired_reproduces_proc(asah_tables):
    """roc.test(men, women) on s100b: D = 0.501880774326713, df = 106.46255002893164 (pROC 1.18.0 run)."""
    data, base = asah_tables
    men = (data["gender"] == "Male").to_numpy()
    table = base.assign(prob=data["s100b"])
    result = compare(table[men], table[~men], on="patient_id", positive="Poor")
    assert not result.paired
    assert result.statistic["D"] == pytest.approx(0.501880774326713, rel=1e-6)
    assert result.statistic["df"] == pytest.approx(106.46255002893164, rel=1e-6)
    assert result.p == pytest.approx(0.6167877592582418, rel=1e-6)


def test_compare_views_per_patient_and_partial_overlap_error():
    rng = np.random.default_rng(0)
    n = 40
    y = rng.integers(0, 2, n)
    ap = pd.DataFrame(
        {
            "image": [f"ap{i}" for i in range(n)],
            "patient_id": np.arange(n).astype(str),
            "y_true": y,
            "prob": rng.random(n) * 0.5 + 0.4 * y,
        }
    )
    lat = ap.assign(image=[f"lat{i}" for i in range(n)], prob=rng.random(n))
    result = compare(ap, lat, on="patient_id")
    assert result.paired and result.value_a > result.value_b
    with pytest.raises(OsteolensError, match="neither paired nor unpaired"):
        compare(ap, lat.iloc[:20], on="patient_id")


def test_compare_regression_mae():
    rng = np.random.default_rng(1)
    y = rng.uniform(0, 100, 60)
    a = pd.DataFrame({"image": np.arange(60).astype(str), "y_true": y, "y_pred": y + rng.normal(0, 2, 60)})
    b = a.assign(y_pred=y + rng.normal(0, 10, 60))
    result = compare(a, b, n_bootstrap=300)
    assert result.metric == "mae" and result.difference < 0 and result.ci_high < 0


@pytest.mark.realdata
def test_compare_two_columns_of_one_csv(real_dataset, monkeypatch, tmp_path):
    """The aSAH CSV as is: --score wfns --score-b s100b gives pROC's paired CI (0.0104, 0.1742)."""
    csv = real_dataset("delong_reference") / "aSAH.csv"
    out = tmp_path / "cmp.json"
    args = [
        "compare",
        str(csv),
        str(csv),
        "--on",
        "row_name",
        "--truth",
        "outcome",
        "--score",
        "wfns",
        "--score-b",
        "s100b",
        "--positive",
        "Poor",
        "--out",
        str(out),
    ]
    assert _cli(monkeypatch, *args) == 0
    saved = json.loads(out.read_text())
    assert saved["ci_low"] == pytest.approx(0.0104061769564846, rel=1e-6)
    assert saved["ci_high"] == pytest.approx(0.174214419249478, rel=1e-6)
