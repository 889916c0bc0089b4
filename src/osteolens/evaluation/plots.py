"""PNG plots: ROC and precision-recall with bootstrap bands, confusion matrix, reliability
diagram, Bland-Altman, predicted vs true, subgroup forest plot.

Figures are drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``),
so no global backend is set and nothing happens at import time.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from osteolens.io._files import write_atomic


def _figure(width: float = 5.0, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return write_atomic(path, buffer.getvalue())


def weighted_roc(w: np.ndarray, y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FPR and TPR at every distinct threshold (descending scores), starting at (0, 0)."""
    order = np.argsort(-s, kind="mergesort")
    ss = s[order]
    ends = np.r_[np.flatnonzero(ss[1:] != ss[:-1]), ss.size - 1]
    tp = np.r_[0.0, np.cumsum(w[order] * y[order])[ends]]
    fp = np.r_[0.0, np.cumsum(w[order] * (1 - y[order]))[ends]]
    return fp / max(fp[-1], 1e-12), tp / max(tp[-1], 1e-12)


def weighted_pr(w: np.ndarray, y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at every distinct threshold (descending scores)."""
    order = np.argsort(-s, kind="mergesort")
    ss = s[order]
    ends = np.r_[np.flatnonzero(ss[1:] != ss[:-1]), ss.size - 1]
    tp = np.cumsum(w[order] * y[order])[ends]
    fp = np.cumsum(w[order] * (1 - y[order]))[ends]
    return tp / max(tp[-1], 1e-12), tp / np.maximum(tp + fp, 1e-12)


def _band(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray, conf_level: float, pr: bool = False):
    rows = []
    for x, v in curves:
        if pr:  # precision at recall >= r: interpolate on the upper envelope
            env = np.maximum.accumulate(v[::-1])[::-1]
            rows.append(np.interp(grid, x, env))
        else:
            rows.append(np.interp(grid, x, v))
    arr = np.asarray(rows)
    alpha = (1 - conf_level) / 2
    return np.quantile(arr, alpha, axis=0), np.quantile(arr, 1 - alpha, axis=0)


def roc_plot(
    path: Path,
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]],
    bands: dict[str, tuple[np.ndarray, np.ndarray]],
    grid: np.ndarray,
    title: str = "ROC",
) -> Path:
    """ROC curves (name -> (fpr, tpr, auc)) with optional bootstrap bands on ``grid``."""
    fig = _figure()
    ax = fig.add_subplot()
    for name, (fpr, tpr, auc) in curves.items():
        line = ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUC {auc:.3f})")[0]
        if name in bands:
            lo, hi = bands[name]
            ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.18, lw=0)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(
        xlabel="1 - specificity (false positive rate)", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01), title=title
    )
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def pr_plot(
    path: Path,
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]],
    bands: dict[str, tuple[np.ndarray, np.ndarray]],
    grid: np.ndarray,
    prevalence: dict[str, float],
    title: str = "Precision-recall",
) -> Path:
    """Precision-recall curves (name -> (recall, precision, AP)) with bootstrap bands."""
    fig = _figure()
    ax = fig.add_subplot()
    for name, (rec, prec, ap) in curves.items():
        line = ax.step(rec, prec, where="post", lw=1.8, label=f"{name} (AP {ap:.3f})")[0]
        if name in bands:
            lo, hi = bands[name]
            ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.18, lw=0)
        ax.axhline(prevalence[name], color=line.get_color(), ls=":", lw=1)
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def confusion_plot(path: Path, matrix: np.ndarray, classes: list[str], title: str = "Confusion matrix") -> Path:
    """Counts with row-normalised shading (rows = truth)."""
    matrix = np.asarray(matrix, dtype=float)
    fig = _figure(1.6 + 1.1 * len(classes), 1.3 + 1.0 * len(classes))
    ax = fig.add_subplot()
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{matrix[i, j]:g}\n{share[i, j]:.0%}",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.6 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def reliability_plot(path: Path, curves: dict[str, dict[str, list[float]]], title: str = "Calibration") -> Path:
    """Observed frequency vs mean predicted probability per bin (marker area ~ bin size)."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    for name, rel in curves.items():
        sizes = 12 + 120 * np.asarray(rel["count"]) / max(1, max(rel["count"]))
        ax.plot(rel["mean_predicted"], rel["observed"], lw=1.4, label=name)
        ax.scatter(rel["mean_predicted"], rel["observed"], s=sizes, alpha=0.6)
    ax.set(xlabel="mean predicted probability", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def bland_altman_plot(
    path: Path, y: np.ndarray, pred: np.ndarray, bias: float, lower: float, upper: float, unit: str = ""
) -> Path:
    """Difference (prediction - truth) against the mean of both, with bias and 95 % limits."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.scatter((y + pred) / 2, pred - y, s=10, alpha=0.6)
    for value, style, name in ((bias, "-", "bias"), (lower, "--", "-1.96 sd"), (upper, "--", "+1.96 sd")):
        ax.axhline(value, ls=style, color="firebrick", lw=1)
        ax.annotate(
            f"{name} {value:.2f}",
            xy=(1.0, value),
            xycoords=("axes fraction", "data"),
            ha="right",
            va="bottom",
            fontsize=8,
        )
    ax.set(
        xlabel=f"mean of prediction and truth {unit}".strip(),
        ylabel=f"prediction - truth {unit}".strip(),
        title="Bland-Altman",
    )
    return _save(fig, path)


def scatter_plot(path: Path, y: np.ndarray, pred: np.ndarray) -> Path:
    """Prediction against truth with the identity line."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.scatter(y, pred, s=10, alpha=0.6)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], ls="--", color="grey")
    ax.set(xlabel="truth", ylabel="prediction", title="Prediction vs truth")
    return _save(fig, path)


def forest_plot(path: Path, rows: list[dict[str, Any]], metric: str, overall: float | None) -> Path:
    """One line per subgroup: the metric and its interval; small groups drawn hollow."""
    usable = [r for r in rows if r["metrics"].get(metric, {}).get("value") is not None]
    fig = _figure(6.0, 1.2 + 0.35 * max(1, len(usable)))
    ax = fig.add_subplot()
    for i, r in enumerate(usable):
        m = r["metrics"][metric]
        lo = m["ci_low"] if m["ci_low"] is not None else m["value"]
        hi = m["ci_high"] if m["ci_high"] is not None else m["value"]
        ax.plot([lo, hi], [i, i], color="black", lw=1.2)
        ax.plot(m["value"], i, "s", color="black", mfc="white" if r["too_small"] else "black")
    ax.set_yticks(
        range(len(usable)),
        [f"{r['variable']}={r['level']} (n={r['n_patients']})" + (" *" if r["too_small"] else "") for r in usable],
        fontsize=8,
    )
    if overall is not None:
        ax.axvline(overall, color="grey", ls="--", lw=1)
    ax.invert_yaxis()
    ax.set(xlabel=metric, title=f"{metric} by subgroup (* = too small)")
    return _save(fig, path)


def thumbnail_png(path: Path, pixels: np.ndarray, caption: str) -> Path:
    """A small grey-scale thumbnail with a caption."""
    fig = _figure(2.4, 2.7)
    ax = fig.add_subplot()
    ax.imshow(pixels, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(caption, fontsize=7)
    return _save(fig, path)
