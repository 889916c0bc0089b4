"""Figure grids of explained predictions from a finished cross-validation run.

Two selections, after the seeds:

* ``per_class``: ``n`` random images of each true class (the dental seed showed 20 per class);
* ``best_worst``: the ``n`` best and ``n`` worst out-of-fold predictions (the bone-age seed
  showed 5 and 5): smallest / largest absolute error for regression, highest / lowest
  probability given to the true class for classification.

Honest explanations: an image in fold ``k`` is explained by fold ``k``'s model, the one
that never saw it in training, and shown with its out-of-fold prediction; images of the
external test set (fold -1) are explained by the whole ensemble.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osteolens.errors import ConfigError


@dataclass
class Panel:
    """One explained image of a grid."""

    image: np.ndarray
    heatmap: np.ndarray
    title: str


def select_per_class(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """Up to ``n`` random rows of each true class (``y_true``), classes in sorted order."""
    rng = np.random.default_rng(seed)
    picked = []
    for _, rows in sorted(frame.groupby(frame["y_true"].astype(str)), key=lambda item: item[0]):
        take = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
        picked.append(rows.iloc[np.sort(take)])
    return pd.concat(picked) if picked else frame.iloc[:0]


def true_class_probability(frame: pd.DataFrame, task: str, labels: Sequence[str]) -> np.ndarray:
    """Probability the out-of-fold prediction gave to each row's true class."""
    truth = frame["y_true"].astype(str).to_numpy()
    if task == "binary":
        prob = frame["prob"].to_numpy(float)
        return np.where(truth == str(labels[1]), prob, 1.0 - prob)
    return np.array([frame[f"prob_{t}"].iloc[i] for i, t in enumerate(truth)], dtype=float)


def select_best_worst(frame: pd.DataFrame, n: int, task: str, labels: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``n`` best and the ``n`` worst predictions (see the module docstring)."""
    if task == "regression":
        score = -np.abs(frame["y_pred"].to_numpy(float) - frame["y_true"].to_numpy(float))
    else:
        score = true_class_probability(frame, task, labels)
    order = np.argsort(-score, kind="stable")
    return frame.iloc[order[:n]], frame.iloc[order[::-1][:n]]


def panel_title(row: pd.Series, task: str, labels: Sequence[str]) -> str:
    """``true / predicted`` with the probability or the error."""
    if task == "regression":
        error = float(row["y_pred"]) - float(row["y_true"])
        return f"true {float(row['y_true']):.4g} | pred {float(row['y_pred']):.4g} ({error:+.3g})"
    if task == "binary":
        return f"true {row['y_true']} | pred {row['y_pred']} (p={float(row['prob']):.2f})"
    column = f"prob_{row['y_pred']}"
    return f"true {row['y_true']} | pred {row['y_pred']} (p={float(row[column]):.2f})"


def figure_grid(panels: Sequence[Panel], path: str | Path, title: str, columns: int = 5, alpha: float = 0.4) -> Path:
    """Draw panels (overlay, jet, ``alpha``) in a grid with matplotlib and save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from osteolens.explain.render import overlay

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = max(1, min(columns, len(panels)))
    rows = max(1, -(-len(panels) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, panel in zip(axes.ravel(), panels):
        ax.imshow(overlay(panel.image, panel.heatmap, alpha=alpha))
        ax.set_title(panel.title, fontsize=8)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def thumbnail(array: np.ndarray, max_side: int) -> np.ndarray:
    """``array`` shrunk (area averaging) so its longer side is at most ``max_side``; unchanged when it fits."""
    import cv2

    if max(array.shape) <= max_side:
        return array
    factor = max_side / max(array.shape)
    size = (max(1, round(array.shape[1] * factor)), max(1, round(array.shape[0] * factor)))
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA)


def explain_rows(
    predictor: Any, rows: pd.DataFrame, resolve: Any, method: str = "gradcam", max_side: int = 384
) -> tuple[list[Panel], list[tuple[str, str]]]:
    """Grad-CAM panels of out-of-fold rows, each by the model that did not train on it.

    Args:
        predictor: an ``osteolens.inference.Predictor`` over the run's bundle.
        rows: rows of ``oof_predictions.csv`` (``image``, ``fold``, ``y_true``, ``y_pred``, ...).
        resolve: ``image column value -> Path``.
        method: ``gradcam`` or ``gradcam++``.
        max_side: panels are shrunk to this longest side.

    Returns:
        (panels, failures as (image, reason)).
    """
    from osteolens.errors import OsteolensError

    bundle = predictor.bundle
    labels, task = bundle.labels, bundle.task
    panels, failures = [], []
    for _, row in rows.iterrows():
        try:
            radiographs = predictor.read_sample(resolve(row, predictor.views))
            covariates = {name: row[name] for name in predictor.covariates if name in row.index}
            image, tabular, geometries = predictor.prepare(radiographs, covariates)
            fold = int(row.get("fold", -1))
            models = [predictor.models[fold]] if 0 <= fold < len(predictor.models) else None
            class_index = None if task == "regression" else labels.index(str(row["y_pred"]))
            heats, _ = predictor.explain(image, tabular, geometries, [r.shape for r in radiographs], class_index,
                                         method=method, models=models)
            title = panel_title(row, task, labels)
            for view, radiograph, heat in zip(predictor.views or [None], radiographs, heats, strict=True):
                panels.append(Panel(thumbnail(radiograph.pixels, max_side), thumbnail(heat, max_side),
                                    title if view is None else f"{view} | {title}"))
        except (OsteolensError, ValueError, KeyError) as exc:
            failures.append((str(row["image"]), str(exc)))
    return panels, failures


def run_paths(run_dir: str | Path) -> tuple[Path, Path, Any]:
    """The bundle, the out-of-fold predictions and a resolver of a run directory.

    The resolver maps a predictions row to its image file, or, given the model's views, to
    ``{view: file}`` for the row's ``study`` from the run's ``manifest.csv`` (the rows of a
    multi-view run are keyed by their first view).

    Raises:
        ConfigError: not a finished run (no bundle or no ``oof_predictions.csv``).
    """
    run_dir = Path(run_dir)
    bundle = next((p for p in (run_dir / "bundle", run_dir / "bundle.zip") if p.exists()), None)
    predictions = run_dir / "oof_predictions.csv"
    if bundle is None or not predictions.is_file():
        raise ConfigError(run_dir, "is not a finished training run (needs bundle/ and oof_predictions.csv).",
                          "give the folder 'osteolens train' wrote, after all folds were merged.")
    manifest_root, studies = run_dir, None
    if (run_dir / "manifest.csv").is_file():
        from osteolens.data.manifest import Manifest

        manifest = Manifest.read(run_dir / "manifest.csv")
        manifest_root = manifest.root
        if {"study", "view"} <= set(manifest.frame.columns):
            studies = manifest.frame.assign(study=manifest.frame["study"].astype(str),
                                            view=manifest.frame["view"].astype(str).str.lower())

    def path(image: str) -> Path:
        file = Path(str(image))
        return file if file.is_absolute() else manifest_root / file

    def resolve(row: pd.Series, views: Sequence[str] = ()) -> Path | dict[str, Path]:
        if not views:
            return path(row["image"])
        if studies is None or "study" not in row.index:
            raise ConfigError(run_dir, "a multi-view run needs 'study' in its predictions and 'study' / 'view' in "
                              "manifest.csv.", "explain a run written by 'osteolens train'.")
        study = studies[studies["study"] == str(row["study"])]
        by_view = dict(zip(study["view"], study["image"], strict=True))
        return {view: path(by_view[view.lower()]) for view in views if view.lower() in by_view}

    return bundle, predictions, resolve
