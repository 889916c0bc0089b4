"""From a manifest to training samples and tensors.

A *sample* is what the network sees once: one image (``views == 1``) or the images of one
study in a fixed view order (``views > 1``, rows paired by the manifest's ``study`` and
``view`` columns). Images are read with :func:`osteolens.io.read_radiograph`, run through
the preprocessing :class:`~osteolens.transforms.Pipeline` (ending with a resize to the
input size) once, and kept in the on-disk :class:`~osteolens.transforms.PreprocessCache`
keyed by the file's sha256; augmentation (training folds only) is applied on the fly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from osteolens.classes import BONE_DENSITY_ORDER
from osteolens.data.manifest import Manifest, file_sha256
from osteolens.errors import ConfigError, OsteolensError
from osteolens.transforms import Pipeline, PreprocessCache


def effective_pipeline(preprocessing: list[dict[str, Any]], input_size: Sequence[int]) -> Pipeline:
    """The preprocessing config followed by a resize to ``input_size`` (unless it already ends so).

    This whole pipeline is what the bundle stores, so inference replays it exactly.
    """
    size = [int(input_size[0]), int(input_size[1])]
    config = [dict(step) for step in preprocessing]
    last = config[-1] if config else None
    if not (last and last.get("name") == "resize" and _size_of(last) == size):
        config.append({"name": "resize", "params": {"size": size}})
    return Pipeline.from_config(config)


def _size_of(step: dict[str, Any]) -> list[int] | None:
    size = (step.get("params") or {}).get("size")
    if size is None:
        return None
    return [int(size), int(size)] if np.isscalar(size) else [int(s) for s in size]


def class_order(values: Sequence[str], explicit: Sequence[str] | None = None) -> list[str]:
    """Class names in output order: ``explicit``, else the WHO bone-density order when the
    labels are those names, else sorted."""
    present = sorted({str(v) for v in values})
    if explicit:
        missing = sorted(set(present) - set(explicit))
        if missing:
            raise ConfigError(None, f"labels {missing} are not in 'classes' {list(explicit)}.", "list every class.")
        return list(explicit)
    if set(present) <= set(BONE_DENSITY_ORDER):
        return [c for c in BONE_DENSITY_ORDER if c in present]
    return present


@dataclass
class Samples:
    """The samples of a run, one row each.

    Attributes:
        frame: ``image`` (absolute path of the first view; the key of predictions), ``images`` (list of paths, one
            per view), ``patient_id``, ``group``, ``fold``, ``target`` (the raw label or value),
            ``y`` (class index or float target) and the covariate / subgroup columns.
        labels: class names in output order ([] for regression).
        views: view names in order (``[None]`` for single-view runs).
    """

    frame: pd.DataFrame
    labels: list[str]
    views: list[str | None]


def build_samples(
    manifest: Manifest,
    target: str,
    task: str,
    *,
    views: int = 1,
    view_order: Sequence[str] | None = None,
    positive: str | None = None,
    classes: Sequence[str] | None = None,
    covariates: Sequence[str] = (),
) -> Samples:
    """Turn manifest rows into samples with encoded targets.

    Binary targets: a two-class label column, or ``positive`` versus every other class
    (``osteoporosis`` vs rest), labelled ``[not_<positive>, <positive>]``.

    Raises:
        ConfigError: missing target / covariate columns, views that do not pair.
    """
    frame = manifest.frame.copy()
    for column in [target, *covariates]:
        if column not in frame.columns:
            raise ConfigError(manifest.source, f"column {column!r} is not in the manifest.", f"columns are {list(frame.columns)}.")
    frame = frame[frame[target].notna()].reset_index(drop=True)
    frame["images"] = [[str(manifest.resolve(p))] for p in frame["image"]]
    view_names: list[str | None] = [None]
    if views > 1:
        frame, view_names = _pair_views(frame, views, view_order, manifest.source)
    frame["image"] = [views[0] for views in frame["images"]]  # absolute: predictions name readable files
    if "group" not in frame.columns:
        frame["group"] = frame["patient_id"].astype(str)
    frame["target"] = frame[target]
    labels: list[str] = []
    if task == "regression":
        values = pd.to_numeric(frame[target], errors="coerce")
        if values.isna().any():
            raise ConfigError(manifest.source, f"target {target!r} is not numeric.", "use a numeric column for regression.")
        frame["y"] = values.astype(float)
    else:
        raw = frame[target].astype(str)
        if task == "binary" and positive is not None:
            if positive not in set(raw):
                raise ConfigError(manifest.source, f"positive class {positive!r} not among {sorted(set(raw))}.", "check 'positive'.")
            labels = [f"not_{positive}", positive]
            raw = raw.where(raw == positive, labels[0])
            frame["target"] = raw
        else:
            labels = class_order(raw, classes)
        index = {name: i for i, name in enumerate(labels)}
        frame["y"] = raw.map(index).astype(int)
    return Samples(frame.reset_index(drop=True), labels, view_names)


def _pair_views(
    frame: pd.DataFrame, views: int, view_order: Sequence[str] | None, source: Any
) -> tuple[pd.DataFrame, list[str | None]]:
    for column in ("study", "view"):
        if column not in frame.columns:
            raise ConfigError(source, f"two-view training needs a {column!r} column.", "add 'study' (pairs the views) and 'view' (AP / LAT).")
    order = list(view_order) if view_order else sorted(frame["view"].astype(str).unique())
    if len(order) != views:
        raise ConfigError(source, f"model.views is {views} but the views are {order}.", "set view_order to the views to use.")
    frame = frame[frame["view"].astype(str).isin(order)]
    rows = []
    incomplete = 0
    for _, study in frame.groupby("study", sort=True):
        by_view = {str(v): r for v, r in zip(study["view"], study.to_dict("records"))}
        if any(v not in by_view for v in order):
            incomplete += 1
            continue
        first = dict(by_view[order[0]])
        first["images"] = [by_view[v]["images"][0] for v in order]
        rows.append(first)
    if not rows:
        raise ConfigError(source, f"no study has all views {order}.", "check the 'study' and 'view' columns.")
    return pd.DataFrame(rows), list(order)


def image_key(path: str, known: str | None = None) -> str:
    """The cache key of an image: the manifest's sha256 when present, else the file's."""
    if isinstance(known, str) and len(known) == 64:
        return known
    return file_sha256(Path(path))


class ImageStore:
    """Preprocessed arrays (input size) of every image, through the on-disk cache.

    Args:
        pipeline: effective preprocessing (ends with the resize to the input size).
        cache_dir: folder of the :class:`PreprocessCache`.
    """

    def __init__(self, pipeline: Pipeline, cache_dir: str | Path) -> None:
        self.pipeline = pipeline
        self.cache = PreprocessCache(cache_dir)
        self.keys: dict[str, str] = {}

    def _compute(self, path: str) -> Callable[[], np.ndarray]:
        def compute() -> np.ndarray:
            from osteolens.io import read_radiograph

            return self.pipeline(read_radiograph(path).pixels).astype(np.float32)

        return compute

    def load(self, path: str) -> np.ndarray:
        """The preprocessed ``float32 (H, W)`` array of ``path`` (computed once, then cached)."""
        key = self.keys.get(path) or image_key(path)
        self.keys[path] = key
        return self.cache.get_or_compute(key, self.pipeline, self._compute(path))

    def prepare(self, paths: Sequence[str], hashes: Sequence[str | None] | None = None,
                progress: Callable[[int], None] | None = None) -> list[tuple[str, str]]:
        """Fill the cache for ``paths``; return the (path, reason) of files that failed."""
        failures = []
        for i, path in enumerate(paths):
            try:
                self.keys[path] = image_key(path, hashes[i] if hashes is not None else None)
                self.load(path)
            except (OsteolensError, OSError, ValueError) as exc:
                failures.append((path, str(exc)))
            if progress is not None:
                progress(i + 1)
        return failures


class RadiographDataset(Dataset):
    """Samples as tensors: ``(image, tabular, y)``.

    ``image`` is ``[1, H, W]`` (one view) or ``[V, 1, H, W]``; ``tabular`` is ``[n_covariates]``
    (empty when none); ``y`` is the class index (long) or the standardised target (float).

    Args:
        frame: the sample rows (from :class:`Samples`).
        store: the preprocessed-image store.
        tabular: encoded covariates ``[N, n]`` (float32).
        y: encoded targets ``[N]``.
        augment: a torchvision v2 transform for training, or None (evaluation).
    """

    def __init__(self, frame: pd.DataFrame, store: ImageStore, tabular: np.ndarray, y: np.ndarray,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.paths = [list(p) for p in frame["images"]]
        self.store = store
        self.tabular = torch.as_tensor(np.array(tabular, dtype=np.float32))
        self.y = torch.as_tensor(np.array(y))
        self.augment = augment

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        views = []
        for path in self.paths[index]:
            image = torch.from_numpy(np.ascontiguousarray(self.store.load(path)))[None]
            if self.augment is not None:
                image = self.augment(image)
            views.append(image)
        image = views[0] if len(views) == 1 else torch.stack(views)
        return image, self.tabular[index], self.y[index]
