"""DeLong against R pROC: all 87 reference cases of ../shared/data/delong_reference.

Each case names the columns, rows and pROC options; every expected number must be
reproduced to 1e-6 relative (absolute 1e-12 for exact zeros).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osteolens.evaluation.delong import delong_auc, delong_cov, paired_test, unpaired_test

pytestmark = pytest.mark.realdata

RTOL = 1e-6


def _cases() -> list[dict]:
    from osteolens.data.paths import shared_dataset

    folder = shared_dataset("delong_reference")
    if folder is None:
        return []
    return json.loads((folder / "expected.json").read_text())["cases"]


_CASES = _cases()


@pytest.fixture(scope="module")
def asah() -> pd.DataFrame:
    from osteolens.data.paths import shared_dataset

    folder = shared_dataset("delong_reference")
    if folder is None:
        from tests.conftest import require_or_skip

        require_or_skip("real data 'delong_reference' not found: set $OSTEOLENS_DATA or place ../shared/data beside the checkout")
    return pd.read_csv(Path(folder) / "aSAH.csv")


def _close(actual: float, expected: float) -> None:
    assert actual == pytest.approx(expected, rel=RTOL, abs=1e-12), (actual, expected)


def _curve(spec: dict, data: pd.DataFrame):
    """Build one ROC curve as pROC would from a case's roc spec."""
    if "inline" in spec:
        response = np.asarray([str(v) for v in spec["inline"]["response"]])
        predictor = (
            np.asarray([float.fromhex(h) for h in spec["inline"]["predictor_hex"]])
            if "predictor_hex" in spec["inline"]
            else np.asarray(spec["inline"]["predictor"], dtype=float)
        )
    else:
        frame = data
        subset = spec.get("subset")
        if subset and "column" in subset:
            frame = frame[frame[subset["column"]] == subset["equals"]]
        elif subset:
            first, last = subset["row_range_1based"]
            frame = frame.iloc[first - 1 : last]
        response = frame[spec["response"]].astype(str).to_numpy()
        predictor = frame[spec["predictor"]].to_numpy(dtype=float)
    if spec.get("negate_predictor"):
        predictor = -predictor
    control, case = spec["levels"]
    keep = (response == control) | (response == case)
    curve = delong_auc(response[keep] == case, predictor[keep], spec["direction"])
    assert curve.direction == spec["resolved_direction"]
    return curve


def test_reference_has_87_cases(asah):
    assert len(_CASES) == 87


@pytest.mark.parametrize("case", _CASES, ids=[c["id"] for c in _CASES])
def test_proc_reference_case(case, asah):
    options = case.get("options", {})
    scale = 100.0 if options.get("percent") else 1.0
    curves = [_curve(spec, asah) for spec in case["rocs"]]
    expected = case["expected"]
    kind = case["kind"]
    first = curves[0]
    if kind == "auc":
        _close(first.auc * scale, expected["auc"])
    elif kind == "var":
        _close(first.variance * scale**2, expected["var"])
    elif kind == "cov":
        _close(delong_cov(*curves) * scale**2, expected["cov"])
    elif kind == "ci_auc":
        for got, want in zip(first.ci(options.get("conf_level", 0.95)), expected["ci"], strict=True):
            _close(got * scale, want)
    elif kind == "placements":
        _close(first.auc, expected["theta"])
        np.testing.assert_allclose(first.case_placements, expected["X_cases"], rtol=RTOL)
        np.testing.assert_allclose(first.control_placements, expected["Y_controls"], rtol=RTOL)
    elif kind == "paired_test":
        result = paired_test(
            *curves, alternative=options.get("alternative", "two.sided"), conf_level=options.get("conf_level", 0.95)
        )
        _close(result.z, expected["Z"])
        _close(result.p, expected["p"])
        if "ci_diff" in expected:
            for got, want in zip(result.ci_diff, expected["ci_diff"], strict=True):
                _close(got, want)
        for key, got in (
            ("auc1", result.auc1),
            ("auc2", result.auc2),
            ("var1", result.var1),
            ("var2", result.var2),
            ("cov", result.cov),
        ):
            if key in expected:
                _close(got, expected[key])
    elif kind == "unpaired_test":
        result = unpaired_test(*curves, alternative=options.get("alternative", "two.sided"))
        _close(result.d, expected["D"])
        _close(result.p, expected["p"])
        for key, got in (
            ("df", result.df),
            ("auc1", result.auc1),
            ("auc2", result.auc2),
            ("var1", result.var1),
            ("var2", result.var2),
        ):
            if key in expected:
                _close(got, expected[key])
    else:  # pragma: no cover - a new kind in the reference file must be handled here
        pytest.fail(f"unknown case kind {kind!r}")
