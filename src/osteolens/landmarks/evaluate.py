"""Evaluate predicted corners against hand-drawn ones: radial error, Cobb angles, outliers.

Per image, the corners are matched by vertebra name and corner. Reported:

* mean radial error (MRE): the mean Euclidean distance between predicted and true points,
  in pixels of the images the tables refer to (and in mm where the pixel spacing is known);
* the share of points within 5, 10 and 20 px;
* Cobb angles (AASCE 2019 rule, :func:`osteolens.morphometry.cobb_angles`) of the predicted
  corners against those of the true corners: SMAPE as the challenge scored it
  (:func:`osteolens.morphometry.smape`) and CMAE, the mean absolute difference of the three
  angles in degrees (circular: a difference ``d`` counts as ``min(|d|, 180 - |d|)``);
* 95 % bootstrap intervals that resample patients (the ``patient_key`` of a labels table;
  each image its own patient otherwise);
* per-image outliers: MRE above the upper Tukey fence (Q3 + 1.5 IQR) of the images;
* per image, the level shift (:func:`level_shift`): by how many whole vertebrae the predicted
  set sits off its names (0 when counted right), the error that dominates a high MRE; and, when
  the prediction table says so, whether the detector flagged its levels as uncertain, so the
  flag's hits and misses can be counted.

Images whose true annotation breaks the geometry (:func:`osteolens.morphometry.check_annotations`,
or a non-empty ``qc_flags`` in the labels table) are summarised apart, not mixed into the
headline figures.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from osteolens.errors import AnnotationError, EvaluationError
from osteolens.morphometry import check_annotations, cobb_angles, smape
from osteolens.morphometry.vertebra import BL, BR, TL, TR

THRESHOLDS_PX = (5, 10, 20)

MAX_LEVEL_SHIFT = 2
"""Largest whole-vertebra offset :func:`level_shift` looks for."""


@dataclass
class LandmarkEvaluation:
    """Evaluation of one prediction table.

    Attributes:
        summary: headline metrics over images with sound true annotations (with intervals).
        flagged: the same metrics over images whose true annotation is flagged (may be empty).
        per_image: one row per evaluated image (errors, angles, outlier flag, problems).
        missing: images with true corners but no prediction.
    """

    summary: dict[str, Any]
    flagged: dict[str, Any]
    per_image: pd.DataFrame
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (per-image rows included)."""
        return {"summary": self.summary, "flagged": self.flagged, "missing": self.missing,
                "per_image": self.per_image.replace({np.nan: None}).to_dict(orient="records")}


def _cmae(computed: np.ndarray, reference: np.ndarray) -> float:
    diff = np.abs(np.asarray(computed) - np.asarray(reference)) % 180.0
    return float(np.minimum(diff, 180.0 - diff).mean())


def _metrics(errors: Sequence[np.ndarray], pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Point metrics over every image; angle metrics over the images with both sets of angles."""
    points = np.concatenate(errors) if len(errors) else np.empty(0)
    out = {"mre_px": float(points.mean()) if len(points) else float("nan")}
    for t in THRESHOLDS_PX:
        out[f"within_{t}px"] = float((points <= t).mean()) if len(points) else float("nan")
    both = np.isfinite(pred).all(axis=1) & np.isfinite(true).all(axis=1) if len(pred) else np.zeros(0, bool)
    out["cobb_smape"] = smape(pred[both], true[both]) if both.any() else float("nan")
    out["cobb_cmae_deg"] = _cmae(pred[both], true[both]) if both.any() else float("nan")
    return out


def level_shift(found: np.ndarray, true: np.ndarray, max_shift: int = MAX_LEVEL_SHIFT) -> int:
    """The whole-vertebra offset ``s`` at which the predicted centres best match the true ones:
    predicted vertebra ``k`` lies on true vertebra ``k + s`` (``s = 1``: the set sits one level
    caudal, its "T1" is the true T2). The mean centre distance decides; ties go to the smaller
    ``|s|``; NaN corners are left out.

    >>> true = np.array([[[0, y], [1, y], [0, y + 1], [1, y + 1]] for y in range(0, 50, 10)], float)
    >>> level_shift(true[1:], true[:-1]), level_shift(true, true)
    (1, 0)
    """
    centre_found, centre_true = np.asarray(found, float).mean(axis=1), np.asarray(true, float).mean(axis=1)
    n, best, best_error = len(centre_true), 0, np.inf
    for s in sorted(range(-max_shift, max_shift + 1), key=abs):
        lo, hi = max(0, -s), min(n, n - s)
        if hi - lo < 2:
            continue
        distance = np.linalg.norm(centre_found[lo:hi] - centre_true[lo + s:hi + s], axis=1)
        if np.isfinite(distance).any() and np.nanmean(distance) < best_error:
            best, best_error = s, float(np.nanmean(distance))
    return best


def summarise(errors: Sequence[np.ndarray], pred_angles: np.ndarray, true_angles: np.ndarray,
              groups: Sequence[str], n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Metrics of a set of images with 95 % intervals from a bootstrap over ``groups`` (patients).

    Args:
        errors: per image, the radial errors of its points (px).
        pred_angles, true_angles: ``(m, 3)`` Cobb angles of the predicted and true corners (NaN
            where not computable: those images count in the point metrics only).
        groups: the patient of each image.
        n_bootstrap: resamples (0: no intervals).
        seed: the bootstrap's random seed.
    """
    pred_angles, true_angles = np.asarray(pred_angles, float).reshape(-1, 3), np.asarray(true_angles, float).reshape(-1, 3)
    summary: dict[str, Any] = {"n_images": len(errors), "n_patients": len(set(groups)),
                               "n_images_cobb": int((np.isfinite(pred_angles).all(axis=1)
                                                     & np.isfinite(true_angles).all(axis=1)).sum()),
                               **_metrics(errors, pred_angles, true_angles)}
    if n_bootstrap and len(errors) > 1:
        members = pd.Series(range(len(groups))).groupby(np.asarray(groups)).apply(list).tolist()
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(n_bootstrap):
            picked = [i for g in rng.integers(0, len(members), len(members)) for i in members[g]]
            draws.append(_metrics([errors[i] for i in picked], pred_angles[picked], true_angles[picked]))
        for key in ("mre_px", "cobb_smape", "cobb_cmae_deg", *(f"within_{t}px" for t in THRESHOLDS_PX)):
            values = np.array([d[key] for d in draws])
            summary[f"{key}_ci95"] = [float(np.nanpercentile(values, 2.5)), float(np.nanpercentile(values, 97.5))]
    return summary


def evaluate_spines(
    pred: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    heights: Mapping[str, float | None] | None = None,
    groups: Mapping[str, str] | None = None,
    flagged: Mapping[str, str] | None = None,
    spacing_mm: Mapping[str, float] | None = None,
    n_bootstrap: int = 1000,
    levels_uncertain: Mapping[str, bool] | None = None,
) -> LandmarkEvaluation:
    """Compare predicted with true ``(n, 4, 2)`` corners, image by image.

    Args:
        pred: predicted corners by image.
        truth: true corners by image (same vertebrae, same order; NaN where missing).
        heights: image height in pixels by image, for the Cobb rule (None: the spine's extent).
        groups: patient by image (default: each image its own patient).
        flagged: images whose true annotation is known to be broken, with the reason
            (added to what :func:`~osteolens.morphometry.check_annotations` finds).
        spacing_mm: pixel spacing by image, for the MRE in mm.
        n_bootstrap: bootstrap resamples for the intervals.
        levels_uncertain: the detector's level flag by image, where known.

    Raises:
        EvaluationError: no image has both a prediction and true corners.
    """
    heights, groups, flagged, spacing_mm = heights or {}, groups or {}, flagged or {}, spacing_mm or {}
    levels_uncertain = levels_uncertain or {}
    rows, missing = [], [image for image in truth if image not in pred]
    for image, true in truth.items():
        if image not in pred:
            continue
        true, found = np.asarray(true, float), np.asarray(pred[image], float)
        problems = [p.code for p in check_annotations(true)]
        if flagged.get(image):
            problems.append(str(flagged[image]))
        error = np.linalg.norm(found - true, axis=2).ravel()
        error = error[np.isfinite(error)]
        try:
            true_cobb = cobb_angles(true, heights.get(image)).as_array()
            pred_cobb = cobb_angles(found, heights.get(image)).as_array()
        except AnnotationError:
            true_cobb = pred_cobb = np.full(3, np.nan)
        spacing = spacing_mm.get(image)
        mre = float(error.mean()) if len(error) else np.nan  # no vertebra in common: no point error
        rows.append({"image": image, "patient": groups.get(image, image), "mre_px": mre,
                     "max_px": float(error.max()) if len(error) else np.nan,
                     "mre_mm": mre * spacing if spacing else np.nan,
                     "points": error, "true_pt": true_cobb[0], "true_mt": true_cobb[1], "true_tl": true_cobb[2],
                     "pred_pt": pred_cobb[0], "pred_mt": pred_cobb[1], "pred_tl": pred_cobb[2],
                     "smape": smape(pred_cobb, true_cobb) if np.isfinite(true_cobb).all() else np.nan,
                     "level_shift": level_shift(found, true), "levels_uncertain": levels_uncertain.get(image),
                     "truth_problems": ";".join(sorted(set(problems)))})
    if not rows:
        raise EvaluationError(None, "no image has both predicted and true corners.",
                              "check that both tables name the images the same way (same 'image' values).")
    table = pd.DataFrame(rows)
    q1, q3 = np.nanpercentile(table["mre_px"], [25, 75])
    table["outlier"] = table["mre_px"] > q3 + 1.5 * (q3 - q1)
    table = table.sort_values("mre_px", ascending=False, kind="stable").reset_index(drop=True)

    def part(select: pd.Series) -> dict[str, Any]:
        chosen = table[select & table["points"].map(len).gt(0)]
        if chosen.empty:
            return {"n_images": 0}
        angles = ["pt", "mt", "tl"]
        out = summarise(list(chosen["points"]), chosen[[f"pred_{a}" for a in angles]].to_numpy(float),
                        chosen[[f"true_{a}" for a in angles]].to_numpy(float), list(chosen["patient"]), n_bootstrap)
        if chosen["mre_mm"].notna().any():
            out["mre_mm"] = float(chosen["mre_mm"].mean())
        out["outliers"] = int(chosen["outlier"].sum())
        shifted = chosen["level_shift"] != 0
        out["level_shifted"] = int(shifted.sum())
        known = chosen["levels_uncertain"].notna()
        if known.any():
            flag = chosen["levels_uncertain"].where(known, False).astype(bool)
            out["levels_uncertain"] = int(flag.sum())
            out["level_shifted_and_flagged"] = int((flag & shifted).sum())
        return out

    sound = table["truth_problems"] == ""
    return LandmarkEvaluation(part(sound), part(~sound), table.drop(columns="points"), missing)


def mean_shape(truth: Sequence[np.ndarray], shapes: Sequence[tuple[int, int]]) -> np.ndarray:
    """The mean of ``(n, 4, 2)`` corners with each image's width and height scaled to 1 (a baseline)."""
    scaled = [np.asarray(t, float) / np.array([w, h]) for t, (h, w) in zip(truth, shapes, strict=True)]
    return np.nanmean(np.stack(scaled), axis=0)


def place_mean_shape(shape_mean: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """A :func:`mean_shape` drawn on an image of ``(rows, columns)``."""
    h, w = image_shape
    return np.asarray(shape_mean) * np.array([w, h])


def draw_comparison(image: np.ndarray | None, true: np.ndarray, found: np.ndarray,
                    confidence: np.ndarray | None = None, caption: str = "") -> np.ndarray:
    """BGR overlay: true corners green, predicted red (low-confidence vertebrae orange, ``?``),
    each predicted point joined to its true point by a thin line."""
    from osteolens.landmarks.decode import LOW_CONFIDENCE

    if image is None:
        extent = np.nanmax(np.vstack([true.reshape(-1, 2), found.reshape(-1, 2)]), axis=0) + 20
        canvas = np.zeros((int(extent[1]), int(extent[0]), 3), np.uint8)
    else:
        canvas = cv2.cvtColor((np.clip(image, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    thick = max(1, round(min(canvas.shape[:2]) / 300))
    for k, (t, f) in enumerate(zip(true, found, strict=True)):
        low = confidence is not None and confidence[k] < LOW_CONFIDENCE
        if np.isfinite(t).all():
            cv2.polylines(canvas, [np.round(t[[TL, TR, BR, BL]]).astype(np.int32)], True, (80, 200, 80), thick)
        colour = (0, 140, 255) if low else (0, 0, 255)
        cv2.polylines(canvas, [np.round(f[[TL, TR, BR, BL]]).astype(np.int32)], True, colour, thick)
        for a, b in zip(t, f, strict=True):
            if np.isfinite(a).all():
                cv2.line(canvas, tuple(int(v) for v in np.round(a)), tuple(int(v) for v in np.round(b)), (255, 255, 0), 1)
        if low:
            cv2.putText(canvas, "?", tuple(int(v) for v in np.round(f[TR] + [4, 8])), cv2.FONT_HERSHEY_SIMPLEX,
                        0.6, colour, thick)
    if caption:
        cv2.putText(canvas, caption, (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 0, 255), 1)
    return canvas


def _format(summary: Mapping[str, Any]) -> str:
    cells = []
    for key, value in summary.items():
        if key.endswith("_ci95"):
            continue
        ci = summary.get(f"{key}_ci95")
        text = f"{value:.3g}" if isinstance(value, float) else html.escape(str(value))
        if ci:
            text += f" ({ci[0]:.3g} to {ci[1]:.3g})"
        cells.append(f"<tr><th>{html.escape(key)}</th><td>{text}</td></tr>")
    return "<table>" + "".join(cells) + "</table>"


def write_report(evaluation: LandmarkEvaluation, out_dir: str | Path, pred: Mapping[str, np.ndarray],
                 truth: Mapping[str, np.ndarray], images: Mapping[str, Path | None],
                 confidence: Mapping[str, np.ndarray] | None = None, worst: int = 5) -> Path:
    """``report.html`` with the summaries, the per-image table and overlays of the ``worst`` images
    with sound true annotations (then flagged ones, if fewer), as PNG files in ``overlays/`` beside
    it, also embedded."""
    from osteolens.io import read_radiograph
    from osteolens.morphometry.overlay import write_overlay

    out = Path(out_dir)
    figures = []
    table = evaluation.per_image
    ranked = pd.concat([table[table["truth_problems"] == ""], table[table["truth_problems"] != ""]])  # sound truth first
    for row in ranked.head(worst).itertuples():
        path = images.get(row.image)
        pixels = read_radiograph(path).pixels if path is not None and Path(path).is_file() else None
        caption = (f"MRE {row.mre_px:.1f}px  true {row.true_pt:.0f}/{row.true_mt:.0f}/{row.true_tl:.0f}"
                   f"  pred {row.pred_pt:.0f}/{row.pred_mt:.0f}/{row.pred_tl:.0f}")
        canvas = draw_comparison(pixels, truth[row.image], pred[row.image], (confidence or {}).get(row.image), caption)
        png = write_overlay(out / "overlays" / f"{len(figures):02d}_{Path(row.image).stem}.png", canvas)
        data = base64.b64encode(png.read_bytes()).decode()
        figures.append(f"<figure><img src='data:image/png;base64,{data}' style='max-height:600px'>"
                       f"<figcaption>{html.escape(row.image)}: {html.escape(caption)}</figcaption></figure>")
    columns = ["image", "patient", "mre_px", "max_px", "smape", "true_pt", "pred_pt", "true_mt", "pred_mt",
               "true_tl", "pred_tl", "level_shift", "levels_uncertain", "outlier", "truth_problems"]
    body = (
        "<h1>Landmark evaluation</h1><p>Green: true corners; red: predicted (orange, ?: low confidence); "
        "cyan: each point's error. Angles PT/MT/TL in degrees, AASCE 2019 rule.</p>"
        f"<h2>Images with sound annotations</h2>{_format(evaluation.summary)}"
        f"<h2>Images with flagged annotations</h2>{_format(evaluation.flagged)}"
        + (f"<p>No prediction for: {html.escape(', '.join(evaluation.missing))}</p>" if evaluation.missing else "")
        + f"<h2>Worst {len(figures)}</h2>{''.join(figures)}"
        + "<h2>Per image</h2>" + evaluation.per_image[columns].to_html(index=False, float_format=lambda v: f"{v:.2f}")
    )
    page = out / "report.html"
    page.write_text(f"<!doctype html><meta charset='utf-8'><title>Landmark evaluation</title>"
                    f"<style>body{{font-family:sans-serif}} td,th{{padding:2px 6px}}</style>{body}\n")
    return page


@dataclass
class LandmarkTables:
    """A prediction table and its truth, read and aligned by image and vertebra.

    Attributes:
        pred: predicted corners by image, in the truth's vertebra order (NaN where not predicted).
        truth: true corners by image.
        confidence: per-vertebra confidence by image (NaN where the table has none).
        levels_uncertain: the detector's level flag by image (when the table has the column).
        heights, groups, flagged, spacing_mm: per-image facts for :func:`evaluate_spines`.
        images: the radiograph of each image, when found.
    """

    pred: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]
    confidence: dict[str, np.ndarray]
    heights: dict[str, float | None]
    groups: dict[str, str]
    flagged: dict[str, str]
    spacing_mm: dict[str, float]
    images: dict[str, Path | None]
    levels_uncertain: dict[str, bool] = field(default_factory=dict)


def patient_of(key: Any, image: str) -> str:
    """The patient of an image: its ``patient_key`` as text (``162.0`` -> ``"162"``), the image itself when empty.

    >>> patient_of(0, "a.png"), patient_of(162.0, "a.png"), patient_of(float("nan"), "a.png"), patient_of(None, "a.png")
    ('0', '162', 'a.png', 'a.png')
    """
    if key is None or (isinstance(key, float) and not np.isfinite(key)) or str(key).strip() == "":
        return image
    if isinstance(key, (int, float, np.integer, np.floating)) and float(key).is_integer():
        return str(int(key))
    return str(key)


def _lookup(table: Mapping[str, Any], image: str) -> Any:
    return table.get(image, table.get(Path(image).name))


def read_tables(pred_csv: str | Path, truth_csv: str | Path, labels_csv: str | Path | None = None,
                images_dir: str | Path | None = None) -> LandmarkTables:
    """Read a prediction table, the true landmark table and optionally a labels table.

    The labels table (the shared data's ``labels.csv``) gives per image ``patient_key``,
    ``qc_flags``, the height (``image_height`` or ``out_height``) and ``pixel_spacing_mm``;
    images are matched by the ``image`` value or its file name. Without a height the image's
    header is read (when the radiograph is found), else the Cobb rule uses the spine's extent.

    Raises:
        ManifestError: a table cannot be read or lacks columns.
    """
    from osteolens.errors import ManifestError
    from osteolens.morphometry import read_landmarks
    from osteolens.morphometry.inputs import read_image_header

    truth_spines = read_landmarks(truth_csv, images_dir)
    predicted = {Path(s.key).name: s for s in read_landmarks(pred_csv, images_dir)}
    raw = pd.read_csv(pred_csv)
    conf_table = raw.groupby(["image", "vertebra"])["confidence"].first() if "confidence" in raw.columns else None
    uncertain = raw.groupby("image")["levels_uncertain"].first() if "levels_uncertain" in raw.columns else None
    facts: dict[str, dict[str, Any]] = {}
    if labels_csv is not None:
        try:
            labels = pd.read_csv(labels_csv)
        except (OSError, ValueError) as exc:
            raise ManifestError(labels_csv, f"cannot read the labels table ({exc}).", "give a CSV file.") from exc
        if "image" not in labels.columns:
            raise ManifestError(labels_csv, "no 'image' column.", "give the shared data's labels.csv or a table with image.")
        for record in labels.to_dict(orient="records"):
            facts[str(record["image"])] = facts[Path(str(record["image"])).name] = record
    out = LandmarkTables({}, {}, {}, {}, {}, {}, {}, {})
    for spine in truth_spines:
        image = spine.key
        found = predicted.get(Path(image).name)
        fact = _lookup(facts, image) or {}
        out.truth[image] = spine.corners
        out.images[image] = spine.image_path
        height = fact.get("image_height", fact.get("out_height"))
        if height is None or not np.isfinite(float(height)):
            height = spine.image_height
        if height is None and spine.image_path is not None:
            height = read_image_header(spine.image_path)[0][0]
        out.heights[image] = None if height is None else float(height)
        out.groups[image] = patient_of(fact.get("patient_key"), image)
        if isinstance(fact.get("qc_flags"), str) and fact["qc_flags"].strip():
            out.flagged[image] = fact["qc_flags"].strip()
        spacing = fact.get("pixel_spacing_mm", spine.pixel_mm)
        if spacing is not None and np.isfinite(float(spacing)):
            out.spacing_mm[image] = float(spacing)
        if found is None:
            continue
        position = {name: k for k, name in enumerate(found.names)}
        corners = np.full_like(spine.corners, np.nan)
        confidence = np.full(len(spine.names), np.nan)
        for k, name in enumerate(spine.names):
            if name in position:
                corners[k] = found.corners[position[name]]
                if conf_table is not None:
                    confidence[k] = conf_table.get((found.key, name), np.nan)
        out.pred[image] = corners
        out.confidence[image] = confidence
        if uncertain is not None and found.key in uncertain.index:
            out.levels_uncertain[image] = _as_bool(uncertain[found.key])
    return out


def _as_bool(value: Any) -> bool:
    """A flag as pandas read it: a bool, or the text ``True`` / ``true`` / ``1`` after a hand edit."""
    return bool(value) if isinstance(value, (bool, np.bool_)) else str(value).strip().lower() in {"true", "1", "yes"}


def evaluate_tables(tables: LandmarkTables, n_bootstrap: int = 1000) -> LandmarkEvaluation:
    """:func:`evaluate_spines` on tables read by :func:`read_tables`; a predicted vertebra the
    truth has no name for is ignored, a true vertebra without a prediction counts as missing
    points (excluded from the errors, and the image's Cobb angles are then not compared)."""
    return evaluate_spines(tables.pred, tables.truth, tables.heights, tables.groups, tables.flagged,
                           tables.spacing_mm, n_bootstrap, tables.levels_uncertain)
