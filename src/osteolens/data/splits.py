"""Patient-grouped folds, an inner validation split, and an external test set kept whole.

Grouping: every image of a patient goes to one fold. Duplicate clusters found by
``data check`` (the same radiograph filed under two patients) merge those patients into
one group, so a copy can never sit in training while its twin is tested.

Stratification: by class for classification; by quantile bins of the target for
regression (so each fold sees the whole BMD / bone-age range). Both through
scikit-learn's ``StratifiedGroupKFold``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from osteolens.data.manifest import Manifest
from osteolens.errors import ManifestError

TEST_FOLD = -1


def patient_groups(frame: pd.DataFrame, clusters: Mapping[str, str] | None = None) -> pd.Series:
    """The grouping key per row: the patient id, with patients that share a duplicate cluster merged.

    Args:
        frame: manifest rows (``image``, ``patient_id``).
        clusters: image -> duplicate-cluster id (``DataCheckReport.cluster_of``).
    """
    patients = frame["patient_id"].astype(str).tolist()
    parent = {p: p for p in patients}

    def find(p: str) -> str:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    if clusters:
        first_patient: dict[str, str] = {}
        for image, patient in zip(frame["image"], patients):
            cluster = clusters.get(image)
            if cluster is None:
                continue
            if cluster in first_patient:
                a, b = find(first_patient[cluster]), find(patient)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                first_patient[cluster] = patient
    return pd.Series([find(p) for p in patients], index=frame.index, name="group")


def strata(frame: pd.DataFrame, stratify: str | None, bins: int = 5) -> np.ndarray:
    """Stratum per row: the class, quantile bins of a numeric target, or one stratum."""
    if stratify is None:
        return np.zeros(len(frame), dtype=int)
    if stratify not in frame.columns:
        raise ManifestError(None, f"stratify column {stratify!r} is not in the manifest ({list(frame.columns)}).", "pass --stratify with an existing column, or none.")
    values = frame[stratify]
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > bins * 2:
        return pd.qcut(values.rank(method="first"), q=bins, labels=False).to_numpy()
    return pd.factorize(values.astype(str))[0]


def _first_split(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ManifestError(None, f"only {n_groups} patient group(s): cannot split.", "add images from more patients.")
    splitter = StratifiedGroupKFold(n_splits=min(n_splits, n_groups), shuffle=True, random_state=seed)
    train, held = next(splitter.split(np.zeros(len(y)), y, groups))
    return train, held


def assign_folds(
    manifest: Manifest,
    n_folds: int = 5,
    *,
    seed: int = 0,
    stratify: str | None = "label",
    test_fraction: float = 0.0,
    clusters: Mapping[str, str] | None = None,
) -> Manifest:
    """Add ``group`` and ``fold`` columns: folds ``0..n_folds-1``, ``-1`` for the external test set.

    Args:
        manifest: images with ``patient_id`` (and the ``stratify`` column).
        n_folds: number of cross-validation folds (at least 2).
        seed: shuffling seed; same seed, same folds.
        stratify: column to balance across folds (class or numeric target), or None.
        test_fraction: share of patient groups set aside whole as an external test set.
        clusters: image -> duplicate-cluster id, from ``check_manifest``.
    """
    if n_folds < 2:
        raise ManifestError(None, f"n_folds={n_folds}", "use at least 2 folds.")
    if not 0.0 <= test_fraction < 1.0:
        raise ManifestError(None, f"test_fraction={test_fraction} is outside [0, 1).", "use e.g. 0.2 for a 20 % external test set.")
    frame = manifest.frame.copy()
    frame["group"] = patient_groups(frame, clusters)
    y = strata(frame, stratify)
    groups = frame["group"].to_numpy()
    fold = np.full(len(frame), TEST_FOLD, dtype=int)

    pool = np.arange(len(frame))
    if test_fraction > 0:
        rest, _test = _first_split(y, groups, max(2, round(1 / test_fraction)), seed)
        pool = rest
    n_groups = len(np.unique(groups[pool]))
    if n_groups < n_folds:
        raise ManifestError(manifest.source, f"{n_groups} patient groups cannot fill {n_folds} folds.", "use fewer folds or add patients.")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(pool)), y[pool], groups[pool])):
        fold[pool[held]] = k
    frame["fold"] = fold
    return Manifest(frame, manifest.root, manifest.source)


def inner_validation_split(
    frame: pd.DataFrame, fraction: float = 0.15, seed: int = 0, stratify: str | None = "label"
) -> tuple[np.ndarray, np.ndarray]:
    """Split training rows into (train, validation) positions, grouped like the folds.

    Validation data for early stopping and threshold choice comes from here, never from the
    test fold.
    """
    if not 0.0 < fraction < 1.0:
        raise ManifestError(None, f"validation fraction {fraction} is outside (0, 1).", "use e.g. 0.15.")
    key = frame["group"] if "group" in frame.columns else frame["patient_id"]
    y = strata(frame, stratify if stratify in frame.columns else None)
    return _first_split(y, key.astype(str).to_numpy(), max(2, round(1 / fraction)), seed)


def iter_folds(manifest: Manifest) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (fold, train positions, test positions) over the CV folds (the external test set is never yielded)."""
    if "fold" not in manifest.frame.columns:
        raise ManifestError(manifest.source, "the manifest has no 'fold' column.", "run 'osteolens data folds' first.")
    fold = manifest.frame["fold"].to_numpy()
    for k in sorted(set(fold) - {TEST_FOLD}):
        yield int(k), np.nonzero((fold != k) & (fold != TEST_FOLD))[0], np.nonzero(fold == k)[0]


def leaks(manifest: Manifest) -> list[str]:
    """Groups (patients / duplicate clusters) that appear in more than one fold; empty when clean."""
    frame = manifest.frame
    key = frame["group"] if "group" in frame.columns else frame["patient_id"]
    spread = frame.groupby(key)["fold"].nunique()
    return sorted(spread[spread > 1].index.astype(str))
