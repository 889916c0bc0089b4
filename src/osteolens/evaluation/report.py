"""Write an evaluation to disk: ``metrics.json``, ``plots/*.png``, ``operating_point.json``,
one self-contained ``report.html`` (images embedded as base64, no network) and
``model_card.md`` (TRIPOD+AI / CLAIM items).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from osteolens.evaluation import plots
from osteolens.evaluation.audit import baseline_features, format_metric, format_number, format_p
from osteolens.evaluation.bootstrap import bootstrap_weights, patient_strata
from osteolens.evaluation.calibration import cross_fitted_calibration, reliability_curve
from osteolens.evaluation.predictions import Predictions
from osteolens.evaluation.subgroups import HEADLINE
from osteolens.io._files import write_atomic

BAND_RESAMPLES = 200  # bootstrap curves behind the ROC / PR bands (the metrics use n_bootstrap)
INTENDED_USE = (
    "Flags radiographs of patients who may have low bone density, so that they can be referred for "
    "DXA. It is a screening aid, not a diagnosis: a negative result does not rule out osteoporosis, "
    "and it must not replace DXA or clinical judgement. Not validated outside the population, "
    "devices and views described in the data summary."
)
SECTIONS = (
    ("summary", "Summary"),
    ("data", "Data"),
    ("metrics", "Metrics with 95 % intervals"),
    ("threshold", "Operating threshold"),
    ("curves", "ROC and precision-recall"),
    ("confusion", "Confusion matrix"),
    ("calibration", "Calibration"),
    ("screening", "Screening analysis"),
    ("subgroups", "Subgroups"),
    ("audit", "Baselines and shortcut audit"),
    ("failures", "Failure cases"),
    ("intended-use", "Intended use"),
    ("methods", "Methods"),
)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _interval(entry: dict[str, Any]) -> str:
    text = _fmt(entry.get("value"))
    if entry.get("ci_low") is not None:
        text += f" ({_fmt(entry['ci_low'])} to {_fmt(entry['ci_high'])})"
    return text


def _band_curves(preds: Predictions, y: np.ndarray, s: np.ndarray, seed: int, conf_level: float):
    grid = np.linspace(0, 1, 101)
    row_patient, stratum = patient_strata(preds.patient, y)
    rocs, prs = [], []
    for W in bootstrap_weights(row_patient, stratum, BAND_RESAMPLES, seed):
        for w in W:
            if (w * y).sum() > 0 and (w * (1 - y)).sum() > 0:
                rocs.append(plots.weighted_roc(w, y, s))
                prs.append(plots.weighted_pr(w, y, s))
    return grid, plots._band(rocs, grid, conf_level), plots._band(prs, grid, conf_level, pr=True)


def make_plots(result: Any, preds: Predictions, folder: Path) -> dict[str, str]:
    """Draw every plot the task calls for; returns name -> path relative to ``folder.parent``."""
    folder.mkdir(parents=True, exist_ok=True)
    seed, conf = result.settings["seed"], result.settings["conf_level"]
    files: dict[str, Path] = {}
    binaries: list[tuple[str, Predictions]] = []
    if preds.task == "binary":
        binaries.append(("", preds))
    elif preds.task == "multiclass":
        if preds.has_screening:
            binaries.append(("screening_", preds.screening()))
        rocs, bands = {}, {}
        grid = np.linspace(0, 1, 101)
        for c, name in enumerate(preds.classes):
            y = (preds.y == c).astype(float)
            fpr, tpr = plots.weighted_roc(np.ones(len(preds)), y, preds.scores[:, c])
            rocs[name] = (fpr, tpr, result.metrics[f"auc_{name}"]["value"])
            grid, bands[name], _ = _band_curves(preds, y, preds.scores[:, c], seed, conf)
        files["roc"] = plots.roc_plot(folder / "roc.png", rocs, bands, grid, "One-vs-rest ROC")
        files["confusion"] = plots.confusion_plot(
            folder / "confusion.png", np.asarray(result.confusion_matrix), preds.classes
        )
        files["calibration"] = plots.reliability_plot(
            folder / "calibration.png",
            {name: reliability_curve(preds.y == c, preds.scores[:, c]) for c, name in enumerate(preds.classes)},
            "Calibration (one-vs-rest)",
        )
    else:
        m = result.metrics
        files["bland_altman"] = plots.bland_altman_plot(
            folder / "bland_altman.png",
            preds.y,
            preds.scores,
            m["bias"]["value"],
            m["loa_lower"]["value"],
            m["loa_upper"]["value"],
        )
        files["scatter"] = plots.scatter_plot(folder / "scatter.png", preds.y, preds.scores)
    for prefix, bp in binaries:
        section = (
            result.screening if prefix else {"metrics": result.metrics, "confusion_matrix": result.confusion_matrix}
        )
        y = bp.y.astype(float)
        grid, roc_band, pr_band = _band_curves(bp, y, bp.scores, seed, conf)
        fpr, tpr = plots.weighted_roc(np.ones(len(bp)), y, bp.scores)
        rec, prec = plots.weighted_pr(np.ones(len(bp)), y, bp.scores)
        name = bp.classes[1]
        files[f"{prefix}roc"] = plots.roc_plot(
            folder / f"{prefix}roc.png",
            {name: (fpr, tpr, section["metrics"]["auc"]["value"])},
            {name: roc_band},
            grid,
            f"ROC: {name} vs {bp.classes[0]}",
        )
        files[f"{prefix}pr"] = plots.pr_plot(
            folder / f"{prefix}pr.png",
            {name: (np.r_[0.0, rec], np.r_[1.0, prec], section["metrics"]["average_precision"]["value"])},
            {name: pr_band},
            grid,
            {name: float(y.mean())},
        )
        files[f"{prefix}confusion"] = plots.confusion_plot(
            folder / f"{prefix}confusion.png",
            np.asarray(section["confusion_matrix"]),
            bp.classes,
            "Confusion matrix at the threshold",
        )
        curves = {"raw": reliability_curve(bp.y, bp.scores)}
        for method in ("platt", "isotonic"):
            recal = cross_fitted_calibration(bp.scores, bp.y, bp.fold, method)
            if recal is not None:
                curves[f"{method} (out of fold)"] = reliability_curve(bp.y, recal)
        files[f"{prefix}calibration"] = plots.reliability_plot(folder / f"{prefix}calibration.png", curves)
    if result.subgroups:
        key = result.primary_metric
        overall = result.metrics[key]["value"]
        files["subgroups"] = plots.forest_plot(folder / "subgroups.png", result.subgroups, key, overall)
    return {k: str(v.relative_to(folder.parent)) for k, v in files.items()}


def make_thumbnails(result: Any, manifest: Any, folder: Path) -> dict[str, str]:
    """Thumbnails of the failure cases whose images can be read (failures are noted, not fatal).

    A case's ``image`` is relative to ``result.data["image_folder"]`` when that is set (see
    :func:`osteolens.evaluation.evaluate.image_names`), else resolved against the manifest;
    without either only absolute paths are tried.
    """
    if not result.failure_cases:
        return {}
    from osteolens.io import read_radiograph

    folder_of_images = result.data.get("image_folder")
    out: dict[str, str] = {}
    for i, case in enumerate(result.failure_cases):
        if case["image"] is None:
            continue
        if folder_of_images is not None:
            path = Path(folder_of_images) / case["image"]
        elif manifest is not None:
            path = manifest.resolve(case["image"])
        elif Path(case["image"]).is_absolute():
            path = Path(case["image"])
        else:
            continue
        try:
            pixels = read_radiograph(path).pixels
        except Exception as exc:  # one unreadable file must not stop the report
            case["thumbnail_error"] = str(exc)
            continue
        step = max(1, int(np.ceil(max(pixels.shape) / 256)))
        caption = f"truth {case['truth']}, predicted {_fmt(case['prediction'], 2)}"
        path = plots.thumbnail_png(folder / f"failure_{i}.png", pixels[::step, ::step], caption)
        case["thumbnail"] = str(path.relative_to(folder.parent))
        out[f"failure_{i}"] = case["thumbnail"]
    return out


def _img(out_dir: Path, rel: str | None, alt: str, css: str = "plot") -> str:
    if rel is None:
        return ""
    data = base64.b64encode((out_dir / rel).read_bytes()).decode("ascii")
    return (
        f'<figure class="{css}"><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(alt)}</figcaption></figure>"
    )


def _pairs(data: dict[str, Any]) -> str:
    """A two-column table of a summary dict (nested dicts written inline)."""
    rows = []
    for key, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {_fmt(v, 2)}" for k, v in value.items())
        elif isinstance(value, list):
            value = "; ".join(str(v) for v in value) or "none"
        rows.append([key.replace("_", " "), _fmt(value, 2)])
    return _table(["item", "value"], rows)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metric_rows(metrics: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = []
    for name, entry in metrics.items():
        delong = entry.get("delong_ci")
        rows.append([name, _interval(entry), "" if not delong else f"{_fmt(delong[0])} to {_fmt(delong[1])}"])
    return rows


def added_value_rows(av: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the "What the image adds" table: model, metric [CI], difference [CI], p."""
    key, pct = av["metric"], f"{av['conf_level'] * 100:g} %"

    def metric(m: dict[str, Any]) -> str:
        return format_metric(m, key, "[]")

    header = ["model", f"{av['metric_label']} [{pct} CI]", f"image model minus baseline [{pct} CI]", "p"]
    rows = [["image model", metric(av["image_model"]), "", ""]]
    for b in av["baselines"]:
        diff = (
            f"{format_number(b['difference'], key, True)} [{format_number(b['ci_low'], key, True)} to "
            f"{format_number(b['ci_high'], key, True)}]"
        )
        p = format_p(b["p"]).removeprefix("p = ").removeprefix("p ")
        rows.append([f"{b['name']} ({baseline_features(b['name'], b['features'])})", metric(b["metric"]), diff, p])
    return header, rows


def _added_value_box(result: Any) -> str:
    """The first-screen box: each baseline against the image model, in a table and plain sentences."""
    av = result.added_value
    head = '<aside id="added-value" class="added-value"><h2>What the image adds</h2>'
    if not av or not av["baselines"]:
        return head + f"<p>{html.escape(_not_measured(av))}</p></aside>"
    sentences = "".join(
        f'<p class="verdict {html.escape(b["verdict"])}">{html.escape(b["sentence"])}</p>' for b in av["baselines"]
    )
    header, rows = added_value_rows(av)
    methods = sorted({b["method"] for b in av["baselines"]})
    lower = "" if av["higher_is_better"] else " (negative: the image model errs less)"
    fine = (
        f"Baselines fitted in the same folds as the image model ({av['folds']}); "
        f"difference = image model minus baseline{lower}, by {'; '.join(methods)}. "
        "Details in the baselines and shortcut audit below."
    )
    return head + sentences + _table(header, rows) + f'<p class="fine">{html.escape(fine)}</p></aside>'


def _section_bodies(result: Any, out_dir: Path) -> dict[str, str]:
    f = result.files
    body: dict[str, str] = {}
    primary = result.metrics[result.primary_metric]
    warn = "".join(f'<p class="warning">{html.escape(w)}</p>' for w in result.warnings)
    body["summary"] = (
        f"<p>Task: <b>{html.escape(result.task)}</b>; {result.n_images} images from {result.n_patients} patients. "
        f"Primary metric {html.escape(result.primary_metric)} = <b>{html.escape(_interval(primary))}</b>.</p>" + warn
    )
    body["data"] = _pairs(result.data)
    body["metrics"] = _table(["metric", "value (95 % bootstrap CI)", "DeLong 95 % CI"], _metric_rows(result.metrics))
    if result.threshold:
        t = result.threshold
        body["threshold"] = (
            f"<p>Rule: {html.escape(t['method'])}; stored threshold {_fmt(t['threshold'], 4)} on the raw score"
            + (
                f" ({_fmt(t['threshold_calibrated'], 4)} on the Platt-calibrated probability)"
                if t.get("threshold_calibrated") is not None
                else ""
            )
            + ". "
            f"Selection: {html.escape(t['selection'])}.</p>"
            + (
                _table(["fold", "threshold"], [[k, _fmt(v, 4)] for k, v in t["per_fold"].items()])
                if t["per_fold"]
                else ""
            )
        )
    elif result.task == "multiclass":
        body["threshold"] = (
            "<p>The predicted class is the most probable one; the screening analysis below has its own threshold.</p>"
        )
    else:
        body["threshold"] = "<p>Not applicable to regression.</p>"
    body["curves"] = "".join(
        _img(out_dir, f.get(k), t)
        for k, t in (
            ("roc", "ROC curve with 95 % band"),
            ("pr", "Precision-recall curve with 95 % band"),
            ("scatter", "Prediction vs truth"),
            ("bland_altman", "Bland-Altman plot"),
        )
    )
    body["confusion"] = _img(out_dir, f.get("confusion"), "Confusion matrix") + (
        _table(
            ["truth \\ predicted", *result.classes],
            [[c, *row] for c, row in zip(result.classes, result.confusion_matrix, strict=True)],
        )
        if result.confusion_matrix
        else "<p>Not applicable to regression.</p>"
    )
    if result.calibration:
        cal_rows = [
            [name, _fmt(c.get("brier")), _fmt(c.get("ece")), _fmt(c.get("intercept")), _fmt(c.get("slope"))]
            for name, c in result.calibration.items()
        ]
        body["calibration"] = _img(out_dir, f.get("calibration"), "Reliability diagram") + _table(
            ["scores", "Brier", "ECE", "intercept", "slope"], cal_rows
        )
    else:
        body["calibration"] = "<p>Not applicable to regression.</p>"
    if result.screening:
        s = result.screening
        body["screening"] = (
            f"<p>{html.escape(s['positive'])} vs {html.escape(s['negative'])}, score {html.escape(s['score'])}; "
            f"threshold {_fmt(s['threshold']['threshold'], 4)} ({html.escape(s['threshold']['selection'])}).</p>"
            + _table(["metric", "value (95 % bootstrap CI)", "DeLong 95 % CI"], _metric_rows(s["metrics"]))
            + "".join(
                _img(out_dir, f.get(k), t)
                for k, t in (
                    ("screening_roc", "Screening ROC"),
                    ("screening_pr", "Screening precision-recall"),
                    ("screening_confusion", "Screening confusion matrix"),
                    ("screening_calibration", "Screening calibration"),
                )
            )
        )
    else:
        body["screening"] = (
            "<p>Only for ordered classes (normal &lt; osteopenia &lt; osteoporosis) or a chosen "
            "positive class (--positive).</p>"
        )
    if result.subgroups:
        rows = []
        for r in result.subgroups:
            rows.append(
                [
                    r["variable"],
                    r["level"],
                    r["n_images"],
                    r["n_patients"],
                    "yes" if r["too_small"] else "",
                    "; ".join(f"{k} {_interval(r['metrics'][k])}" for k in HEADLINE[result.task] if k in r["metrics"]),
                ]
            )
        body["subgroups"] = _img(out_dir, f.get("subgroups"), "Subgroup forest plot") + _table(
            ["variable", "level", "images", "patients", "too small", "metrics (95 % CI)"], rows
        )
    else:
        body["subgroups"] = "<p>No sex, age, view or site column was available.</p>"
    if result.audit:
        a = result.audit
        rows = [[m["name"], ", ".join(m["features"]), _interval(m["metric"])] for m in a["models"]]
        comps = [
            [
                c["versus"],
                _fmt(c["difference"]),
                f"{_fmt(c['ci_low'])} to {_fmt(c['ci_high'])}",
                _fmt(c["p"], 4),
                c["method"],
            ]
            for c in a["comparisons"]
        ]
        body["audit"] = (
            "".join(f'<p class="warning">{html.escape(w)}</p>' for w in a["warnings"])
            + _table(["model", "features", f"{a['metric']} (95 % CI)"], rows)
            + _table(["image model minus", "difference", "95 % CI", "p", "method"], comps)
        )
    else:
        body["audit"] = (
            "<p>Not run: pass the manifest (evaluate --manifest) to fit the covariates-only and acquisition-only baselines in the same folds.</p>"
        )
    frows = [
        [c["image"], c["patient_id"], c["truth"], _fmt(c["prediction"]), _fmt(c["error"])] for c in result.failure_cases
    ]
    image_folder = result.data.get("image_folder")
    where = (
        f'<p class="fine">Image paths are relative to {html.escape(image_folder)}.</p>' if image_folder else ""
    )
    thumbs = "".join(
        _img(out_dir, c.get("thumbnail"), f"patient {c['patient_id']}", "thumb") for c in result.failure_cases
    )
    body["failures"] = where + (
        _table(["image", "patient", "truth", "prediction", "error"], frows) + f'<div class="thumbs">{thumbs}</div>'
    )

    body["intended-use"] = f"<p>{html.escape(INTENDED_USE)}</p>"
    body["methods"] = _pairs(result.settings) + (_pairs(result.model_info) if result.model_info else "")
    return body


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}figure{display:inline-block;margin:.5em}img{max-width:480px;height:auto}
figcaption{font-size:.8em;color:#555}figure.thumb{width:200px}figure.thumb img{width:200px}.warning{background:#fff3cd;border-left:4px solid #e0a800;padding:.4em .8em}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.8em}nav a{margin-right:.8em}
.added-value{border:2px solid #4a6fa5;border-radius:6px;background:#f5f8fc;padding:.2em 1em .6em;margin:1em 0}
.added-value h2{border:none;margin:.4em 0 .2em;font-size:1.25em}.added-value table{background:#fff}
.verdict{font-size:1.05em;margin:.4em 0;padding:.3em .6em;border-left:4px solid #999}
.verdict.adds{border-color:#2e7d32;background:#e8f5e9}
.verdict.nothing,.verdict.worse{border-color:#c62828;background:#fdecea}
.fine{font-size:.8em;color:#555}
"""


def render_html(result: Any, out_dir: Path, title: str | None = None) -> str:
    """The self-contained report: inline CSS, base64 PNGs, no script, no external link."""
    title = title or f"osteolens evaluation ({result.task})"
    bodies = _section_bodies(result, out_dir)
    nav = "".join(f'<a href="#{sid}">{html.escape(name)}</a>' for sid, name in SECTIONS)
    sections = "".join(
        f'<section id="{sid}"><h2>{html.escape(name)}</h2>{bodies[sid]}</section>' for sid, name in SECTIONS
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{_added_value_box(result)}"
        f"<nav>{nav}</nav>{sections}</body></html>\n"
    )


def render_model_card(result: Any, title: str | None = None) -> str:
    """``model_card.md``: the TRIPOD+AI / CLAIM items a reviewer asks for."""
    d = result.data
    lines = [
        f"# Model card: {title or 'osteolens model'}",
        "",
        *_added_value_markdown(result.added_value),
        "## Intended use",
        INTENDED_USE,
        "",
        "## Data",
        f"- Images: {result.n_images}; patients: {result.n_patients}; rows dropped: {d.get('rows_dropped', 0)}",
    ]
    if "images_per_class" in d:
        lines.append(f"- Classes (images): {d['images_per_class']}; (patients): {d['patients_per_class']}")
    if "target" in d:
        lines.append(f"- Target: {d['target']}")
    for key in ("sex_counts", "age", "view_counts", "site_counts"):
        if key in d:
            lines.append(f"- {key.replace('_', ' ')}: {d[key]}")
    if "duplicate_clusters" in d:
        lines.append(
            f"- Duplicate clusters (osteolens data check): {d['duplicate_clusters']} covering "
            f"{d['duplicate_images_in_clusters']} images, {d.get('duplicate_clusters_with_conflicting_labels', 0)} with conflicting labels"
        )
    dup = d.get("exact_duplicate_images")
    lines.append(
        f"- Exact duplicate images found: {dup if dup is not None else 'not checked (no sha256 in the manifest)'}"
        + (
            f"; duplicate groups with conflicting labels: {d['duplicate_groups_with_conflicting_labels']}"
            if "duplicate_groups_with_conflicting_labels" in d
            else ""
        )
    )
    lines += [
        "",
        "## Split method",
        f"- {d.get('split')}",
        f"- Rows per fold: {d.get('folds', 'n/a')}",
        "",
        "## Preprocessing and model",
        *(
            [f"- {k}: {json.dumps(v)}" for k, v in result.model_info.items()]
            if result.model_info
            else ["- not given: see the run's config.json / model bundle (preprocessing and model stored by name)."]
        ),
        "",
        "## Metrics (95 % intervals: bootstrap over patients; DeLong for AUC)",
        "",
        "| metric | value (95 % CI) | DeLong 95 % CI |",
        "|---|---|---|",
    ]
    for name, value, delong in _metric_rows(result.metrics):
        lines.append(f"| {name} | {value} | {delong} |")
    if result.threshold:
        t = result.threshold
        lines += [
            "",
            "## Operating threshold",
            f"- {t['method']}: {t['threshold']:.4f} on the raw score ({t['selection']})",
        ]
        if t.get("threshold_calibrated") is not None:
            lines.append(f"- the same operating point on the calibrated probability: {t['threshold_calibrated']:.4f}")
    if result.screening:
        s = result.screening
        lines += [
            "",
            f"## Screening: {s['positive']} vs {s['negative']}",
            "",
            "| metric | value (95 % CI) | DeLong 95 % CI |",
            "|---|---|---|",
        ]
        lines += [f"| {n} | {v} | {dl} |" for n, v, dl in _metric_rows(s["metrics"])]
        lines.append(f"- Threshold {s['threshold']['threshold']:.4f} ({s['threshold']['selection']})")
    lines += ["", "## Calibration"]
    if result.calibration:
        for name, c in result.calibration.items():
            lines.append(
                f"- {name}: Brier {_fmt(c['brier'])}, ECE {_fmt(c['ece'])}, intercept {_fmt(c['intercept'])}, slope {_fmt(c['slope'])}"
            )
    else:
        lines.append("- not applicable (regression)")
    lines += ["", "## Baselines and shortcut audit"]
    if result.audit:
        for m in result.audit["models"]:
            lines.append(
                f"- {m['name']} ({', '.join(m['features'])}): {result.audit['metric']} {_interval(m['metric'])}"
            )
        for c in result.audit["comparisons"]:
            lines.append(
                f"- image model minus {c['versus']}: {_fmt(c['difference'])} ({_fmt(c['ci_low'])} to {_fmt(c['ci_high'])}), p = {_fmt(c['p'], 4)} [{c['method']}]"
            )
        lines += [f"- WARNING: {w}" for w in result.audit["warnings"]]
    else:
        lines.append("- not run (no manifest given)")
    lines += ["", "## Subgroups"]
    for r in result.subgroups:
        flag = " (too small to conclude)" if r["too_small"] else ""
        lines.append(
            f"- {r['variable']}={r['level']}, {r['n_patients']} patients{flag}: "
            + "; ".join(f"{k} {_interval(r['metrics'][k])}" for k in HEADLINE[result.task] if k in r["metrics"])
        )
    if not result.subgroups:
        lines.append("- no sex, age, view or site column available")
    lines += [
        "",
        "## Failure cases (largest errors)",
        "",
        *([f"Image paths are relative to {d['image_folder']}.", ""] if d.get("image_folder") else []),
        "| image | truth | prediction | thumbnail |",
        "|---|---|---|---|",
    ]
    for c in result.failure_cases:
        thumb = f"![{c['image']}]({c['thumbnail']})" if c.get("thumbnail") else ""
        lines.append(f"| {c['image']} | {c['truth']} | {_fmt(c['prediction'])} | {thumb} |")
    lines += ["", "## Warnings"] + ([f"- {w}" for w in result.warnings] or ["- none"]) + [""]
    return "\n".join(lines)


def _not_measured(av: dict[str, Any] | None) -> str:
    reason = (av or {}).get("reason") or "no manifest given (evaluate --manifest)."
    return f"Not measured: {reason}"


def _added_value_markdown(av: dict[str, Any] | None) -> list[str]:
    """The model card's "What the image adds" section (lines, ending with a blank one)."""
    lines = ["## What the image adds", ""]
    if not av or not av["baselines"]:
        return [*lines, _not_measured(av), ""]
    lines += [f"- {b['sentence']}" for b in av["baselines"]]
    header, rows = added_value_rows(av)
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    methods = "; ".join(sorted({b["method"] for b in av["baselines"]}))
    return [*lines, "", f"Same folds as the image model ({av['folds']}); {methods}.", ""]


def write_outputs(
    result: Any, preds: Predictions, out_dir: Path, *, manifest: Any = None, title: str | None = None
) -> None:
    """Write plots, thumbnails, ``metrics.json``, ``operating_point.json``, ``report.html``, ``model_card.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result.files.update(make_plots(result, preds, out_dir / "plots"))
    result.files.update(make_thumbnails(result, manifest, out_dir / "failures"))
    point = result.operating_point()
    if point is not None:
        write_atomic(out_dir / "operating_point.json", json.dumps(point, indent=2) + "\n")
        result.files["operating_point"] = "operating_point.json"
    result.files.update({"metrics": "metrics.json", "report": "report.html", "model_card": "model_card.md"})
    write_atomic(out_dir / "report.html", render_html(result, out_dir, title))
    write_atomic(out_dir / "model_card.md", render_model_card(result, title))
    result.to_json(out_dir / "metrics.json")
