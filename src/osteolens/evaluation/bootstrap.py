"""Patient-level, class-stratified bootstrap, vectorised as weight matrices.

Images of one patient are correlated, so the unit of resampling is the patient: each
replicate draws, within each stratum (the patient's class), as many patients as the
stratum holds, with replacement. A replicate is represented by how many times each image
is counted, so a metric written for a weight matrix (:mod:`osteolens.evaluation.metrics`)
evaluates all replicates in one pass. Intervals are percentile intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

MetricFn = Callable[[np.ndarray], dict[str, np.ndarray]]


def patient_strata(patient: np.ndarray, label: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Index of each row's patient and each patient's stratum (its most frequent label).

    Returns:
        ``(row_patient, patient_stratum)``: ``row_patient[i]`` indexes the patients,
        ``patient_stratum[j]`` is an int stratum (all zero when ``label`` is None).
    """
    names, row_patient = np.unique(patient, return_inverse=True)
    if label is None:
        return row_patient, np.zeros(names.size, dtype=int)
    _, lab = np.unique(label, return_inverse=True)
    counts = np.zeros((names.size, lab.max() + 1), dtype=int)
    np.add.at(counts, (row_patient, lab), 1)
    return row_patient, counts.argmax(axis=1)


def bootstrap_weights(
    row_patient: np.ndarray,
    patient_stratum: np.ndarray,
    n_resamples: int,
    seed: int | np.random.Generator = 0,
    chunk: int = 250,
) -> Iterator[np.ndarray]:
    """Yield ``(b, N)`` image weight matrices, ``b <= chunk``, ``n_resamples`` rows in all."""
    rng = np.random.default_rng(seed)
    n_patients = patient_stratum.size
    members = [np.flatnonzero(patient_stratum == s) for s in np.unique(patient_stratum)]
    done = 0
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        counts = np.zeros((b, n_patients))
        offsets = (np.arange(b) * n_patients)[:, None]
        for group in members:
            drawn = group[rng.integers(0, group.size, size=(b, group.size))]
            counts += np.bincount((drawn + offsets).ravel(), minlength=b * n_patients).reshape(b, n_patients)
        yield counts[:, row_patient]
        done += b


def bootstrap(
    metric_fn: MetricFn,
    n_rows: int,
    row_patient: np.ndarray,
    patient_stratum: np.ndarray,
    n_resamples: int = 2000,
    seed: int | np.random.Generator = 0,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Point estimates and bootstrap replicates of every metric ``metric_fn`` returns."""
    point = {k: float(v[0]) for k, v in metric_fn(np.ones((1, n_rows))).items()}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in point}
    for W in bootstrap_weights(row_patient, patient_stratum, n_resamples, seed):
        for key, values in metric_fn(W).items():
            parts[key].append(values)
    reps = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
    return point, reps


def percentile_interval(replicates: np.ndarray, conf_level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile interval, ignoring replicates where the metric is undefined (NaN)."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size < 10:
        return None, None
    alpha = (1.0 - conf_level) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
