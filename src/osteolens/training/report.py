"""The run's own numbers: metrics per fold and pooled over out-of-fold predictions, and plots.

The metric code is :mod:`osteolens.evaluation.metrics` (with one weight row of ones, i.e.
the plain metric); this module only arranges it per fold. Binary decisions use the
threshold chosen (Youden's J) on each fold's inner validation split, never on the test
fold. The full report with intervals is :func:`osteolens.evaluation.evaluate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osteolens.classes import BONE_DENSITY_ORDER
from osteolens.evaluation import metrics as M
from osteolens.evaluation.plots import _figure, _save, confusion_plot, roc_plot, scatter_plot, weighted_roc


def _probs(frame: pd.DataFrame, labels: list[str]) -> np.ndarray:
    return frame[[f"prob_{c}" for c in labels]].to_numpy(dtype=float)


def prediction_metrics(task: str, labels: list[str], frame: pd.DataFrame) -> dict[str, float]:
    """Metrics of one set of predictions (columns as in ``oof_predictions.csv``).

    Binary rows carry their decision threshold in ``threshold``.
    """
    n = len(frame)
    ones = np.ones((1, n))
    if task == "regression":
        out = M.regression_metrics(ones, frame["y_true"].to_numpy(float), frame["y_pred"].to_numpy(float))
    elif task == "binary":
        y = (frame["y_true"].astype(str) == labels[1]).to_numpy(float)
        scores = frame["prob"].to_numpy(float)
        predicted = (scores >= frame["threshold"].to_numpy(float)).astype(float)
        out = M.binary_metrics(ones, y, scores, predicted)
    else:
        index = {c: i for i, c in enumerate(labels)}
        y = frame["y_true"].astype(str).map(index).to_numpy(int)
        ordered = task == "ordinal" or list(labels) == [c for c in BONE_DENSITY_ORDER if c in labels]
        probs = _probs(frame, labels)
        decided = M.predicted_classes(probs, cumulative=task == "ordinal")
        out = M.multiclass_metrics(ones, y, probs, labels, ordered, decided)
    values = {k: float(v[0]) for k, v in out.items()}
    values["n"] = float(n)
    return values


def run_metrics(task: str, labels: list[str], oof: pd.DataFrame) -> dict[str, Any]:
    """``{"per_fold": {k: metrics}, "pooled": metrics, "fold_mean": ..., "fold_std": ...}``."""
    per_fold = {
        str(int(k)): prediction_metrics(task, labels, part) for k, part in oof.groupby("fold", sort=True)
    }
    table = pd.DataFrame(per_fold).T
    return {
        "task": task,
        "labels": labels,
        "per_fold": per_fold,
        "pooled": prediction_metrics(task, labels, oof),
        "fold_mean": {k: float(v) for k, v in table.mean().items()},
        "fold_std": {k: float(v) for k, v in table.std(ddof=1).items()} if len(table) > 1 else {},
    }


def learning_curves(path: Path, histories: dict[int, pd.DataFrame]) -> Path:
    """Training and validation loss per epoch, one colour per fold; the best epoch marked."""
    fig = _figure(9.0, 3.8)
    loss_ax, metric_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    metric_name = None
    for k, hist in sorted(histories.items()):
        line = loss_ax.plot(hist["epoch"], hist["train_loss"], lw=1.2, label=f"fold {k} train")[0]
        loss_ax.plot(hist["epoch"], hist["val_loss"], lw=1.2, ls="--", color=line.get_color(), label=f"fold {k} val")
        best = hist[hist["best"].astype(bool)]
        if len(best):
            loss_ax.scatter(best["epoch"].iloc[-1:], best["val_loss"].iloc[-1:], color=line.get_color(), s=25, zorder=3)
        metric_cols = [c for c in hist.columns if c.startswith("val_") and c != "val_loss"]
        if metric_cols:
            metric_name = metric_cols[0]
            metric_ax.plot(hist["epoch"], hist[metric_name], lw=1.2, color=line.get_color(), label=f"fold {k}")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss (dashed: inner validation; dot: best epoch)")
    loss_ax.legend(fontsize=6, ncol=2)
    metric_ax.set(xlabel="epoch", ylabel=metric_name or "", title=f"Inner validation {metric_name or ''}")
    if metric_name:
        metric_ax.legend(fontsize=6)
    return _save(fig, path)


def _roc_curves(y: np.ndarray, scores: np.ndarray, folds: np.ndarray, grid: np.ndarray):
    curves, tprs, aucs = {}, [], []
    for k in np.unique(folds):
        mask = folds == k
        if y[mask].min() == y[mask].max():
            continue
        fpr, tpr = weighted_roc(np.ones(mask.sum()), y[mask], scores[mask])
        auc = float(M.weighted_auc(np.ones((1, mask.sum())), y[mask], scores[mask])[0])
        curves[f"fold {int(k)}"] = (fpr, tpr, auc)
        tprs.append(np.interp(grid, fpr, tpr))
        aucs.append(auc)
    if tprs:
        curves["mean of folds"] = (grid, np.mean(tprs, axis=0), float(np.mean(aucs)))
    return curves


def write_plots(run_dir: Path, task: str, labels: list[str], oof: pd.DataFrame, histories: dict[int, pd.DataFrame]) -> list[Path]:
    """Learning curves, per-fold confusion matrices, ROC per fold and mean, predicted vs true."""
    plots = run_dir / "plots"
    written = [learning_curves(plots / "learning_curves.png", histories)]
    folds = oof["fold"].to_numpy(int)
    grid = np.linspace(0, 1, 101)
    if task == "regression":
        written.append(scatter_plot(plots / "predicted_vs_true.png", oof["y_true"].to_numpy(float), oof["y_pred"].to_numpy(float)))
        return written
    index = {c: i for i, c in enumerate(labels)}
    y_index = oof["y_true"].astype(str).map(index).to_numpy(int)
    predicted = oof["y_pred"].astype(str).map(index).to_numpy(int)
    for k in np.unique(folds):
        mask = folds == k
        cm = M.weighted_confusion(np.ones((1, mask.sum())), y_index[mask], predicted[mask], len(labels))[0]
        written.append(confusion_plot(plots / f"confusion_fold{int(k)}.png", cm, labels, title=f"Fold {int(k)} (test fold)"))
    if task == "binary":
        curves = _roc_curves(y_index.astype(float), oof["prob"].to_numpy(float), folds, grid)
        written.append(roc_plot(plots / "roc.png", curves, {}, grid, title=f"ROC: {labels[1]}, per fold and mean"))
    else:
        probs = _probs(oof, labels)
        for c, name in enumerate(labels):
            curves = _roc_curves((y_index == c).astype(float), probs[:, c], folds, grid)
            written.append(roc_plot(plots / f"roc_{name}.png", curves, {}, grid, title=f"ROC: {name} vs rest, per fold and mean"))
    return written
