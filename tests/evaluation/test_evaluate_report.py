"""``evaluate`` end to end: metrics.json, plots, the HTML report (parsed) and the model card."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from osteolens.errors import OsteolensError
from osteolens.evaluation import Calibrator, evaluate, load_predictions
from osteolens.evaluation.report import SECTIONS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "img":
            self.images.append(a["src"])
        if tag in ("link", "script") or (tag == "img" and not a["src"].startswith("data:")):
            self.external.append(tag)
        self.scripts += tag == "script"


def _parse(path) -> _Collector:
    parser = _Collector()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_binary_evaluation_writes_every_output(tmp_path, make_binary):
    frame = make_binary()
    info = {"preprocessing": [{"name": "clahe", "params": {"clip": 2.0}}], "model": {"name": "resnet18"}}
    result = evaluate(frame, tmp_path, n_bootstrap=200, seed=0, model_info=info)
    assert result.task == "binary" and result.positive == "osteoporosis"
    y = (frame["y_true"] == "osteoporosis").to_numpy()
    assert result.value("auc") == pytest.approx(roc_auc_score(y, frame["prob"]))
    auc = result.metrics["auc"]
    assert auc["ci_low"] < auc["value"] < auc["ci_high"]
    assert auc["delong_ci"][0] < auc["value"] < auc["delong_ci"][1]
    assert result.threshold["selection"].startswith("cross-fitted")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"]["auc"]["value"] == pytest.approx(result.value("auc"))
    point = json.loads((tmp_path / "operating_point.json").read_text())
    assert point["threshold"] == pytest.approx(result.threshold["threshold"]) and point["positive"] == "osteoporosis"
    assert point["calibrator"]["method"] == "platt"
    cal = Calibrator.from_dict(point["calibrator"])  # same decisions on either scale
    raw = frame["prob"].to_numpy()
    np.testing.assert_array_equal(raw >= point["threshold"], cal(raw) >= point["threshold_calibrated"])
    parsed = _parse(tmp_path / "report.html")
    assert parsed.sections == [sid for sid, _ in SECTIONS]
    assert not parsed.external and parsed.scripts == 0
    assert len(parsed.images) >= 5  # roc, pr, confusion, calibration, subgroups
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    card = (tmp_path / "model_card.md").read_text()
    for heading in (
        "## Intended use",
        "## Data",
        "## Split method",
        "## Metrics",
        "## Calibration",
        "## Baselines and shortcut audit",
        "## Subgroups",
        "## Failure cases",
    ):
        assert heading in card
    assert "not a diagnosis" in card
    assert '- model: {"name": "resnet18"}' in card


def test_multiclass_orders_bone_classes_and_adds_screening(tmp_path, make_multiclass):
    frame = make_multiclass()
    result = evaluate(frame, tmp_path, n_bootstrap=100)
    assert result.classes == ["normal", "osteopenia", "osteoporosis"]
    assert "kappa_quadratic" in result.metrics
    y_low = frame["y_true"] != "normal"
    assert result.screening["metrics"]["auc"]["value"] == pytest.approx(roc_auc_score(y_low, 1 - frame["prob_normal"]))
    parsed = _parse(tmp_path / "report.html")
    assert len(parsed.images) >= 7
    assert json.loads((tmp_path / "operating_point.json").read_text())["score"] == "1 - prob_normal"
    # Temperature scaling is judged out of fold for every class and shipped for inference.
    assert {"normal (temperature)", "osteoporosis (temperature)"} <= set(result.calibration)
    assert result.calibrator["method"] == "temperature" and result.calibrator["params"]["temperature"] > 0


def test_class_order_alone_does_not_make_classes_ordinal(make_multiclass):
    frame = make_multiclass().rename(columns=lambda c: c.replace("osteo", "type_"))
    frame["y_true"] = frame["y_true"].str.replace("osteo", "type_")
    plain = evaluate(frame, n_bootstrap=20, class_order=["normal", "type_porosis", "type_penia"])
    assert plain.classes == ["normal", "type_porosis", "type_penia"]
    assert "kappa_quadratic" not in plain.metrics and plain.screening is None
    ordinal = evaluate(frame, n_bootstrap=20, class_order=["normal", "type_penia", "type_porosis"], ordinal=True)
    assert "kappa_quadratic" in ordinal.metrics and ordinal.screening["negative"] == "normal"


def test_multiclass_positive_class_gives_one_vs_rest_screening(make_multiclass):
    frame = make_multiclass()
    result = evaluate(frame, n_bootstrap=50, positive="osteoporosis")
    y = frame["y_true"] == "osteoporosis"
    assert result.screening["positive"] == "osteoporosis"
    assert result.screening["metrics"]["auc"]["value"] == pytest.approx(roc_auc_score(y, frame["prob_osteoporosis"]))


def test_regression_and_user_columns(tmp_path):
    rng = np.random.default_rng(4)
    truth = rng.uniform(20, 220, 90)
    frame = pd.DataFrame({"months": truth, "predicted": truth + rng.normal(0, 8, 90)})
    result = evaluate(frame, tmp_path, truth="months", score="predicted", task="regression", n_bootstrap=100)
    assert result.task == "regression"
    assert result.value("mae") == pytest.approx(np.mean(np.abs(frame["predicted"] - frame["months"])))
    assert {"bland_altman", "scatter"} <= set(result.files)
    assert "no patient_id column" in result.data["notes"][0]


def test_small_subgroups_are_flagged(make_binary):
    frame = make_binary(n_pat=40)
    frame["site"] = np.where(np.arange(len(frame)) < 8, "tiny", "big")
    result = evaluate(frame, n_bootstrap=50)
    tiny = next(r for r in result.subgroups if r["variable"] == "site" and r["level"] == "tiny")
    assert tiny["too_small"] and tiny["n_patients"] == 4
    big = next(r for r in result.subgroups if r["variable"] == "site" and r["level"] == "big")
    sub = frame[frame["site"] == "big"]
    assert big["metrics"]["auc"]["value"] == pytest.approx(roc_auc_score(sub["y_true"] == "osteoporosis", sub["prob"]))
    assert {"auc", "ppv", "npv", "brier", "f1"} <= set(big["metrics"])
    assert any("too small" in w for w in result.warnings)


def test_named_class_columns_win_over_an_ambiguous_prob_column():
    frame = pd.DataFrame(
        {
            "y_true": ["abnormal", "normal", "abnormal", "normal", "abnormal"],
            "prob_abnormal": [0.9, 0.2, 0.7, 0.4, 0.35],
            "prob_normal": [0.1, 0.8, 0.3, 0.6, 0.65],
        }
    )
    frame["prob"] = frame["prob_normal"]  # P(second class), as some writers do
    preds = load_predictions(frame)
    assert preds.positive == "abnormal"
    np.testing.assert_allclose(preds.scores, frame["prob_abnormal"])


def test_prediction_errors_name_the_fix():
    with pytest.raises(OsteolensError, match="--truth"):
        load_predictions(pd.DataFrame({"label": [0, 1], "prob": [0.2, 0.7]}))
    with pytest.raises(OsteolensError, match="prob_"):
        load_predictions(pd.DataFrame({"y_true": ["a", "b", "c"], "prob_a": [1, 0, 0], "prob_b": [0, 1, 0]}))
    with pytest.raises(OsteolensError, match="not found"):
        load_predictions("/nonexistent/oof_predictions.csv")


def test_manifest_adds_thumbnails_and_audit_from_real_files(tmp_path):
    """Tiny PNGs whose brightness follows the label: the audit reads them and flags the shortcut."""
    from osteolens.data.manifest import Manifest
    from osteolens.io import write_png

    rng = np.random.default_rng(7)
    n = 60
    y = np.arange(n) % 2
    rows = []
    for i in range(n):
        pixels = np.clip(rng.normal(0.35 + 0.3 * y[i], 0.05, (24, 20)), 0, 1)
        write_png(pixels, tmp_path / "img" / f"{i}.png", bits=8)
        rows.append(
            {
                "image": f"img/{i}.png",
                "patient_id": f"p{i}",
                "label": ["normal", "osteoporosis"][y[i]],
                "sex": "F" if i % 3 else "M",
                "age": 50 + i % 30,
            }
        )
    manifest = Manifest(pd.DataFrame(rows), tmp_path)
    preds = pd.DataFrame(
        {
            "image": [r["image"] for r in rows],
            "patient_id": [r["patient_id"] for r in rows],
            "fold": np.arange(n) % 3,
            "y_true": [r["label"] for r in rows],
            "prob": rng.random(n),
        }
    )
    result = evaluate(preds, tmp_path / "eval", manifest=manifest, n_bootstrap=100)
    assert result.audit["flags"]["acquisition_close"]
    assert any(w.startswith("SHORTCUT WARNING") for w in result.warnings)
    assert {"sex", "age_band"} <= {r["variable"] for r in result.subgroups}
    html_text = (tmp_path / "eval" / "report.html").read_text()
    assert html_text.count('class="thumb"') == 8
    assert "SHORTCUT WARNING" in html_text
