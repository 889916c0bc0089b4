"""What the image adds: the baselines' comparison in ``metrics.json``, on the report's first
screen and in the model card, for the prediction tables a training run writes.

The cohorts are tiny noise PNGs, so the image itself carries nothing; the "image model" is a
column of constructed scores. A training run writes each image as its manifest's root joined
with the relative path (``runs/x/../data/images/3.png``) and keeps a copy of the manifest in
the run directory; :func:`_run_like` rebuilds exactly that layout.
"""

from __future__ import annotations

import doctest
import importlib
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from osteolens.data.manifest import Manifest
from osteolens.evaluation import evaluate
from osteolens.evaluation.audit import acquisition_table, align_manifest, audit_shortcuts
from osteolens.evaluation.delong import delong_paired_test
from osteolens.evaluation.evaluate import image_names
from osteolens.io import write_png
from tests.evaluation.test_cli_compare import _cli

NOTHING = "The image adds nothing measurable here"
GAIN = "The image adds a measurable gain"


def _cohort(root: Path, n: int, seed: int, by_age: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` patients, one 12 x 10 noise PNG each under ``root/data/images``; the label follows
    age when ``by_age`` (else age and sex are noise). Returns the manifest frame and y."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(40, 85, n)
    y = (age + rng.normal(0, 4, n) > 62).astype(int) if by_age else rng.integers(0, 2, n)
    for i in range(n):
        write_png(rng.uniform(0.2, 0.8, (12, 10)), root / "data" / "images" / f"{i}.png", bits=8)
    frame = pd.DataFrame(
        {
            "image": [f"images/{i}.png" for i in range(n)],
            "patient_id": [f"p{i}" for i in range(n)],
            "label": np.where(y == 1, "osteoporosis", "normal"),
            "age": age,
            "sex": rng.choice(["M", "F"], n),
            "fold": (np.arange(n) + 1) % 4,  # deliberately not the predictions' folds
        }
    )
    return frame, y


def _run_like(root: Path, frame: pd.DataFrame, monkeypatch) -> Manifest:
    """The user's manifest in ``data/``, the run's copy in ``runs/x/`` (paths relative to it),
    read back relative to the working directory as ``osteolens train`` does."""
    monkeypatch.chdir(root)
    Manifest(frame, root / "data").write(root / "data" / "manifest.csv")
    Manifest.read(root / "data" / "manifest.csv").write(root / "runs" / "x" / "manifest.csv")
    return Manifest.read(Path("runs/x/manifest.csv"))


def _predictions(run_manifest: Manifest, y: np.ndarray, scores: np.ndarray, n_test: int) -> pd.DataFrame:
    """Binary predictions as a run writes them; the last ``n_test`` rows are external tests."""
    n = len(y)
    fold = np.arange(n) % 5
    fold[n - n_test :] = -1
    return pd.DataFrame(
        {
            "image": [str(run_manifest.resolve(p)) for p in run_manifest.frame["image"]],
            "patient_id": run_manifest.frame["patient_id"],
            "fold": fold,
            "y_true": np.where(y == 1, "osteoporosis", "normal"),
            "prob": scores,
            "y_pred": np.where(scores >= 0.5, "osteoporosis", "normal"),
        }
    )


def _covariate_oof(frame: pd.DataFrame, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """The covariates-only baseline written out by hand: scaled age, one-hot sex, logistic C=1."""
    out = np.full(len(y), np.nan)
    for k in np.unique(fold[fold >= 0]):
        train, test = (fold != k) & (fold >= 0), fold == k
        model = make_pipeline(
            ColumnTransformer([("num", StandardScaler(), ["age"]), ("cat", OneHotEncoder(), ["sex"])]),
            LogisticRegression(C=1.0, max_iter=2000, random_state=0),
        )
        out[test] = model.fit(frame[train], y[train]).predict_proba(frame[test])[:, 1]
    return out


class _Page(HTMLParser):
    """Tags of the body in order (h1, aside, nav, section) and the text of the first aside."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []
        self.aside_text = ""
        self._in_aside = False

    def handle_starttag(self, tag, attrs):
        if tag in ("h1", "aside", "nav", "section"):
            self.order.append(f"{tag}#{dict(attrs).get('id', '')}")
        self._in_aside |= tag == "aside"

    def handle_endtag(self, tag):
        self._in_aside &= tag != "aside"

    def handle_data(self, data):
        if self._in_aside:
            self.aside_text += data


def _page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_age_only_cohort_cli_says_the_image_adds_nothing(tmp_path, monkeypatch):
    frame, y = _cohort(tmp_path, 80, seed=0, by_age=True)
    run_manifest = _run_like(tmp_path, frame, monkeypatch)
    image = np.random.default_rng(1).uniform(size=len(y))  # the image model learnt nothing
    preds = _predictions(run_manifest, y, image, n_test=8)
    preds.to_csv("runs/x/oof_predictions.csv", index=False)
    code = _cli(
        monkeypatch, "evaluate", "runs/x/oof_predictions.csv", "--manifest", "runs/x/manifest.csv",
        "--out", "runs/x/report", "-b", "200",
    )
    assert code == 0
    saved = json.loads(Path("runs/x/report/metrics.json").read_text())
    av = saved["added_value"]
    cov = next(b for b in av["baselines"] if b["name"] == "covariates-only")
    assert cov["features"] == ["age", "sex"] and cov["method"] == "DeLong paired test"

    # The same baseline by hand, in the predictions' folds, on the cross-validation rows only.
    cv = preds["fold"].to_numpy() >= 0
    oof = _covariate_oof(frame, y, preds["fold"].to_numpy())
    assert cov["metric"]["value"] == pytest.approx(roc_auc_score(y[cv], oof[cv]), abs=1e-12)
    assert av["image_model"]["value"] == pytest.approx(roc_auc_score(y[cv], image[cv]), abs=1e-12)
    test = delong_paired_test(y[cv], image[cv], oof[cv], direction="<")
    assert cov["difference"] == pytest.approx(test.difference, abs=1e-9)
    assert [cov["ci_low"], cov["ci_high"], cov["p"]] == pytest.approx([*test.ci_diff, test.p], rel=1e-6)
    # The covariates beat the image model: image - baseline < 0 with its interval below 0.
    assert cov["metric"]["value"] - cov["image_metric"]["value"] > 0.3
    assert cov["ci_high"] < 0 and cov["verdict"] == "worse" and av["verdict"] == "nothing"
    assert any("8 external-test row(s) (fold -1) left out" in n for n in saved["audit"]["notes"])
    acq = next(b for b in av["baselines"] if b["name"] == "acquisition-only")
    assert acq["verdict"] in ("nothing", "worse")

    # The report's first screen: the title, then the box, before the navigation and sections.
    page = _page(Path("runs/x/report/report.html"))
    assert page.order[:3] == ["h1#", "aside#added-value", "nav#"]
    text = " ".join(page.aside_text.split())
    assert "What the image adds" in text and cov["sentence"] in text
    assert cov["sentence"].startswith(
        f"Age and sex alone reach AUC {cov['metric']['value']:.2f} ({cov['metric']['ci_low']:.2f}"
    )
    assert f"{NOTHING} (difference \u2212{abs(cov['difference']):.2f}, 95 % CI" in cov["sentence"]
    assert cov["sentence"] in Path("runs/x/report/model_card.md").read_text()
    # The long audit section is still there, further down.
    assert "section#audit" in page.order

    # Failure cases: named inside the data folder, never with '..' from the run directory.
    images = [c["image"] for c in saved["failure_cases"]]
    assert all(".." not in name and name.endswith(".png") and "/" not in name for name in images)
    assert Path(saved["data"]["image_folder"]) == (tmp_path / "data" / "images").resolve()
    html_text = Path("runs/x/report/report.html").read_text()
    assert html_text.count('class="thumb"') == 8  # the thumbnails find the files from those names
    assert "runs/x/.." not in html_text and "../data" not in html_text


def test_informative_image_scores_give_the_positive_sentence(tmp_path, monkeypatch):
    frame, y = _cohort(tmp_path, 80, seed=2, by_age=False)
    run_manifest = _run_like(tmp_path, frame, monkeypatch)
    rng = np.random.default_rng(3)
    image = 1 / (1 + np.exp(-(3.0 * (2 * y - 1) + rng.normal(0, 1.0, len(y)))))
    preds = _predictions(run_manifest, y, image, n_test=0)
    result = evaluate(preds, "report", manifest=Path("runs/x/manifest.csv"), n_bootstrap=200)
    av = result.added_value
    assert av["verdict"] == "adds"
    fold = preds["fold"].to_numpy()
    oof = _covariate_oof(frame, y, fold)
    test = delong_paired_test(y, image, oof, direction="<")
    cov = next(b for b in av["baselines"] if b["name"] == "covariates-only")
    assert cov["difference"] == pytest.approx(roc_auc_score(y, image) - roc_auc_score(y, oof), abs=1e-9)
    assert cov["ci_low"] == pytest.approx(test.ci_diff[0], rel=1e-6) and cov["ci_low"] > 0
    for b in av["baselines"]:
        assert b["verdict"] == "adds" and GAIN in b["sentence"] and NOTHING not in b["sentence"]
    text = " ".join(_page(Path("report/report.html")).aside_text.split())
    assert f"{GAIN}: a higher AUC (difference +{cov['difference']:.2f}" in text


def test_multiclass_and_regression_tables_of_a_run(tmp_path, monkeypatch):
    """Ordinal class probabilities (cumulative rule) and bone-age-like regression: paired bootstrap."""
    frame, _ = _cohort(tmp_path, 60, seed=4, by_age=True)
    run_manifest = _run_like(tmp_path, frame, monkeypatch)
    rng = np.random.default_rng(5)
    classes = ["normal", "osteopenia", "osteoporosis"]
    y = np.digitize(frame["age"], [55, 70])  # three classes by age
    probs = rng.dirichlet(np.ones(3), len(y))
    base = {
        "image": [str(run_manifest.resolve(p)) for p in run_manifest.frame["image"]],
        "patient_id": frame["patient_id"],
        "fold": np.arange(len(y)) % 3,
    }
    ordinal = pd.DataFrame({**base, "y_true": [classes[i] for i in y]})
    for c, name in enumerate(classes):
        ordinal[f"prob_{name}"] = probs[:, c]
    ordinal["y_pred"] = [classes[i] for i in probs.argmax(axis=1)]
    result = evaluate(
        ordinal, manifest=Path("runs/x/manifest.csv"), n_bootstrap=200, class_order=classes, ordinal=True,
        decision="cumulative",
    )
    av = result.added_value
    cov = next(b for b in av["baselines"] if b["name"] == "covariates-only")
    assert av["metric"] == "auc_macro" and cov["method"].startswith("paired patient bootstrap")
    assert cov["verdict"] == "worse" and NOTHING in cov["sentence"] and "macro AUC" in cov["sentence"]
    assert cov["image_metric"]["value"] == pytest.approx(result.value("auc_macro"))

    months = 12 * frame["age"].to_numpy() / 5  # a target the covariates predict well
    regression = pd.DataFrame({**base, "y_true": months, "y_pred": months.mean() + rng.normal(0, 5, len(y))})
    result = evaluate(regression, manifest=Path("runs/x/manifest.csv"), n_bootstrap=200)
    av = result.added_value
    cov = next(b for b in av["baselines"] if b["name"] == "covariates-only")
    fold = regression["fold"].to_numpy()
    ridge = np.empty(len(y))
    for k in range(3):
        model = make_pipeline(
            ColumnTransformer([("num", StandardScaler(), ["age"]), ("cat", OneHotEncoder(), ["sex"])]), Ridge(1.0)
        )
        ridge[fold == k] = model.fit(frame[fold != k], months[fold != k]).predict(frame[fold == k])
    mae_image = np.mean(np.abs(regression["y_pred"] - months))
    assert cov["metric"]["value"] == pytest.approx(np.mean(np.abs(ridge - months)), abs=1e-9)
    assert cov["difference"] == pytest.approx(mae_image - cov["metric"]["value"], abs=1e-9)
    assert cov["difference"] > 0 and cov["verdict"] == "worse" and "MAE" in cov["sentence"]


def test_alignment_by_file_and_unreadable_images_are_recorded(tmp_path, monkeypatch):
    frame, _ = _cohort(tmp_path, 6, seed=6, by_age=False)
    run_manifest = _run_like(tmp_path, frame, monkeypatch)
    written = [str(run_manifest.resolve(p)) for p in run_manifest.frame["image"]]
    assert written[0].startswith("runs/x/..")  # the layout of a training run
    images = [written[2], "data/images/0.png", str((tmp_path / "data/images/5.png").resolve()), "elsewhere.png"]
    aligned = align_manifest(run_manifest, images)
    assert aligned["patient_id"].tolist()[:3] == ["p2", "p0", "p5"] and pd.isna(aligned["patient_id"][3])
    user = Manifest.read(tmp_path / "data" / "manifest.csv")  # the user's manifest: same strings
    assert align_manifest(user, ["images/4.png"])["patient_id"].tolist() == ["p4"]
    (tmp_path / "data" / "images" / "1.png").write_bytes(b"not a png")
    table, failures = acquisition_table(run_manifest, written, workers=2)
    assert [f[0] for f in failures] == [written[1]] and table.loc[1].isna().all()
    assert table["width"].drop(index=1).eq(10).all() and table["height"].drop(index=1).eq(12).all()
    names, folder = image_names(written, run_manifest)
    assert names == [f"{i}.png" for i in range(6)] and folder == (tmp_path / "data" / "images").resolve()
    names, folder = image_names(["images/0.png", "images/3.png"], user)
    assert names == ["images/0.png", "images/3.png"] and folder == (tmp_path / "data").resolve()
    assert image_names(["a/b.png", "c.png"]) == (["a/b.png", "c.png"], None)


def test_test_rows_only_get_folds_by_patient(tmp_path):
    frame, y = _cohort(tmp_path, 40, seed=9, by_age=True)
    manifest = Manifest(frame, tmp_path / "data")
    preds = pd.DataFrame({"image": frame["image"], "patient_id": frame["patient_id"], "fold": -1,
                          "y_true": frame["label"], "prob": np.random.default_rng(9).uniform(size=len(y))})
    result = audit_shortcuts(manifest, preds, acquisition=False, n_bootstrap=50)
    assert result.fold_source == "fold column of the manifest"
    assert result.notes[0].startswith("Every row is an external test (fold -1)")
    cov = _covariate_oof(frame, y, frame["fold"].to_numpy())
    assert result.models[1]["metric"]["value"] == pytest.approx(roc_auc_score(y, cov), abs=1e-12)
    result = audit_shortcuts(Manifest(frame.drop(columns="fold"), tmp_path), preds, acquisition=False, n_bootstrap=50)
    assert result.fold_source.startswith("StratifiedGroupKFold(5)")
    assert result.models[0]["metric"]["value"] == pytest.approx(roc_auc_score(y, preds["prob"]))


def test_report_without_manifest_says_how_to_measure(tmp_path, make_binary):
    result = evaluate(make_binary(), tmp_path, n_bootstrap=50)
    assert result.added_value["verdict"] == "not measured" and "--manifest" in result.added_value["reason"]
    page = _page(tmp_path / "report.html")
    assert page.order[:2] == ["h1#", "aside#added-value"]
    assert "Not measured: no manifest given: pass it (evaluate --manifest)" in page.aside_text
    card = (tmp_path / "model_card.md").read_text()
    assert "## What the image adds\n\nNot measured: no manifest given" in card


def test_docstring_examples():
    for name in ("audit", "evaluate"):
        module = importlib.import_module(f"osteolens.evaluation.{name}")
        failed, attempted = doctest.testmod(module)
        assert attempted > 0 and failed == 0, module.__name__


@pytest.mark.browser
@pytest.mark.slow
def test_box_is_on_the_first_screen_in_chromium(tmp_path, monkeypatch):
    from tests.conftest import require_chromium

    chromium = require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    frame, y = _cohort(tmp_path, 60, seed=7, by_age=True)
    run_manifest = _run_like(tmp_path, frame, monkeypatch)
    preds = _predictions(run_manifest, y, np.random.default_rng(8).uniform(size=len(y)), n_test=0)
    evaluate(preds, "report", manifest=Path("runs/x/manifest.csv"), n_bootstrap=100)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=["--no-sandbox", "--headless"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto((tmp_path / "report" / "report.html").as_uri())
        boxes = [page.locator(sel).bounding_box() for sel in ("#added-value", "#added-value p.verdict >> nth=0")]
        verdict = page.inner_text("#added-value p.verdict >> nth=0")
        browser.close()
    assert boxes[1]["y"] + boxes[1]["height"] <= 800  # the first verdict is visible without scrolling
    assert boxes[0]["y"] < 150 and NOTHING in verdict
