"""Benchmark the evaluation statistics against the straightforward implementations.

1. DeLong variance: Sun & Xu's mid-rank placements (osteolens) vs DeLong's original
   pairwise kernel (an m x n comparison matrix), both giving the same numbers.
2. Patient bootstrap of the AUC, 2000 resamples: osteolens's weight-matrix evaluation vs a
   loop calling ``sklearn.metrics.roc_auc_score`` on each resample.

Run: ``.venv/bin/python benchmarks/evaluation.py``; writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_description, median_seconds, write_section  # noqa: E402

from osteolens.evaluation.bootstrap import bootstrap, patient_strata  # noqa: E402
from osteolens.evaluation.delong import delong_auc  # noqa: E402
from osteolens.evaluation.metrics import weighted_auc  # noqa: E402


def pairwise_delong_variance(y: np.ndarray, s: np.ndarray) -> float:
    """DeLong et al. (1988) as usually written: the full case x control kernel matrix."""
    cases, controls = s[y == 1], s[y == 0]
    psi = (cases[:, None] > controls[None, :]) + 0.5 * (cases[:, None] == controls[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size)


def sklearn_loop_bootstrap(y: np.ndarray, s: np.ndarray, patient: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Resample patients (stratified), gather their images, call roc_auc_score per resample."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    row_patient, stratum = patient_strata(patient, y)
    rows_of = [np.flatnonzero(row_patient == p) for p in range(stratum.size)]
    groups = [np.flatnonzero(stratum == k) for k in np.unique(stratum)]
    out = np.empty(n)
    for b in range(n):
        chosen = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        idx = np.concatenate([rows_of[p] for p in chosen])
        out[b] = roc_auc_score(y[idx], s[idx])
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for n in (1_000, 4_000, 10_000):
        y = rng.integers(0, 2, n)
        s = np.round(rng.normal(size=n) + 0.8 * y, 3)
        fast = delong_auc(y, s, "<").variance
        slow = pairwise_delong_variance(y, s)
        assert abs(fast - slow) <= 1e-12 * max(1.0, slow)
        t_fast = median_seconds(lambda y=y, s=s: delong_auc(y, s, "<"), repeats=5)
        t_slow = median_seconds(lambda y=y, s=s: pairwise_delong_variance(y, s), repeats=3)
        rows.append(
            f"| DeLong variance, {n:,} scores | {t_fast * 1e3:.1f} ms | {t_slow * 1e3:.1f} ms (pairwise m x n kernel) | {t_slow / t_fast:.0f}x |"
        )
    n_pat, n_boot = 500, 2000
    patient = np.repeat(np.arange(n_pat), 2).astype(str)
    y = np.repeat(rng.integers(0, 2, n_pat), 2)
    s = rng.normal(size=2 * n_pat) + y
    row_patient, stratum = patient_strata(patient, y)

    def vectorised() -> None:
        bootstrap(lambda W: {"auc": weighted_auc(W, y.astype(float), s)}, y.size, row_patient, stratum, n_boot, 0)

    t_vec = median_seconds(vectorised, repeats=3)
    t_loop = median_seconds(lambda: sklearn_loop_bootstrap(y, s, patient, n_boot, 0), repeats=3)
    rows.append(
        f"| AUC bootstrap, {n_boot} resamples, {n_pat} patients x 2 images | {t_vec * 1e3:.0f} ms | {t_loop * 1e3:.0f} ms (loop of sklearn roc_auc_score) | {t_loop / t_vec:.0f}x |"
    )
    markdown = "\n".join(
        [
            "## Evaluation statistics (`benchmarks/evaluation.py`)",
            "",
            f"Machine: {machine_description()}. Median of 3-5 runs after a warm-up, on a machine shared with other jobs.",
            "",
            "| task | osteolens | baseline | speed-up |",
            "|---|---|---|---|",
            *rows,
            "",
            "DeLong uses Sun & Xu's mid-rank placements (O(N log N)); the baseline builds DeLong's case x control",
            "kernel (O(m n) time and memory); the script checks both give the same variance. The bootstrap",
            "evaluates all resamples as one weight matrix; the loop runs the same stratified patient resampling.",
        ]
    )
    write_section("evaluation", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
