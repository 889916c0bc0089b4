"""Feature extraction over a manifest: ROI, preprocessing, families, in parallel, to a tidy table.

One row per image that could be processed: the manifest's columns (image, patient_id, label,
targets, sex, age, view, vertebra, ...) followed by the feature columns. Images that fail
are listed with the reason, never crash the batch.

Per image (in worker processes when ``jobs > 1``, a Dask ``LocalCluster``, or on the workers of
a Dask cluster given by ``scheduler``; one task per image): read, crop the ROI, downscale,
equalise (for the families that take it), compute every per-image family and *prepare* every batched family (e.g. resize
to the network input). Batched families (``cnn``) then run in the extracting process,
``batch_size`` prepared images per call, with torch's own threads; a batch that fails is
retried image by image so only the bad image is lost. Rows keep the manifest's order.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osteolens.data.manifest import Manifest
from osteolens.errors import ConfigError, TransformError
from osteolens.features.base import FeatureFamily, build_feature_family

ROI_MODES = ("auto", "mask", "rectangle", "box", "none")
BOX_COLUMNS = ("box_x", "box_y", "box_width", "box_height")
SEED_FAMILIES = ("radiomics", "wavelet", "fourier", "variogram")
_VERSION_PACKAGES = ("osteolens", "numpy", "scipy", "pandas", "scikit-image", "PyWavelets", "pyradiomics-bhklab", "SimpleITK", "torch", "timm")


@dataclass
class ExtractionConfig:
    """Everything that decides the numbers: families with parameters and the preprocessing.

    Attributes:
        families: ``{"name", "params"}`` of each family, in column order.
        roi: ``"mask"`` (the mask's bounding box, features inside the mask), ``"rectangle"``
            (the largest axis-aligned rectangle inside the mask, the biplanar seed's ROI),
            ``"box"`` (the manifest's ``box_x, box_y, box_width, box_height`` columns, pixels,
            COCO order), ``"none"`` (the whole image) or ``"auto"`` (rectangle when the
            manifest has a ``mask`` column, else box when it has box columns, else none).
        equalise: global histogram equalisation of the ROI (inside the mask) before the
            families, as the seed (``skimage.exposure.equalize_hist``, 256 bins); families
            that opt out (``equalised = False``: ``cnn``) get the ROI without it.
        max_size: downscale the ROI (area averaging, ``cv2.INTER_AREA``) so its longer side
            is at most this.
    """

    families: list[dict[str, Any]] = field(default_factory=lambda: [{"name": n, "params": {}} for n in SEED_FAMILIES])
    roi: str = "auto"
    equalise: bool = True
    max_size: int | None = None

    def __post_init__(self) -> None:
        if self.roi not in ROI_MODES:
            raise ConfigError("roi", f"unknown ROI mode {self.roi!r}.", f"use one of {', '.join(ROI_MODES)}.")
        if self.max_size is not None and self.max_size < 8:
            raise ConfigError("max_size", f"max_size={self.max_size} is too small.", "use at least 8 pixels, or none.")
        # Normalise every family to its full, explicit parameter set.
        self.families = [build_feature_family(spec).to_config() for spec in self.families]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"families": self.families, "roi": self.roi, "equalise": self.equalise, "max_size": self.max_size}

    def build_families(self) -> list[FeatureFamily]:
        """The family objects."""
        return [build_feature_family(spec) for spec in self.families]


@dataclass
class ExtractionResult:
    """The feature table and what went with it.

    Attributes:
        table: one row per processed image, manifest columns then feature columns.
        feature_columns: the feature column names, in order.
        meta_columns: the manifest columns carried over.
        failures: ``(image path, reason)`` per image that could not be processed.
        config: the extraction settings.
        roi: the ROI mode actually used (``auto`` resolved).
        provenance: per family name, what decided its numbers beyond its parameters (e.g.
            the ``cnn`` family's weight file and sha256); families without any are absent.
    """

    table: pd.DataFrame
    feature_columns: list[str]
    meta_columns: list[str]
    failures: list[tuple[str, str]]
    config: ExtractionConfig
    roi: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def sidecar(self, manifest_source: str | None = None) -> dict[str, Any]:
        """The JSON sidecar: parameters, versions, columns and failures."""
        return {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "manifest": manifest_source,
            "config": self.config.to_dict(),
            "roi_used": self.roi,
            "provenance": self.provenance,
            "n_images": int(len(self.table) + len(self.failures)),
            "n_extracted": int(len(self.table)),
            "n_failed": len(self.failures),
            "failures": [{"path": p, "reason": r} for p, r in self.failures],
            "meta_columns": self.meta_columns,
            "feature_columns": self.feature_columns,
            "versions": package_versions(),
        }

    def write(self, out: str | Path, csv: bool = False, excel: bool = False, manifest_source: str | None = None) -> list[Path]:
        """Write the table (Parquet or CSV by ``out``'s suffix, plus CSV / Excel copies on request),
        the sidecar ``<stem>.json`` and, when some images failed, ``<stem>.failures.csv``.

        Returns:
            the paths written.
        """
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        if out.suffix == ".csv":
            self.table.to_csv(out, index=False)
            written.append(out)
        elif out.suffix in (".xlsx", ".xls"):
            self.table.to_excel(out.with_suffix(".xlsx"), index=False)
            written.append(out.with_suffix(".xlsx"))
        else:
            self.table.to_parquet(out, index=False)
            written.append(out)
            if csv:
                self.table.to_csv(out.with_suffix(".csv"), index=False)
                written.append(out.with_suffix(".csv"))
        if excel and out.suffix not in (".xlsx", ".xls"):
            self.table.to_excel(out.with_suffix(".xlsx"), index=False)
            written.append(out.with_suffix(".xlsx"))
        sidecar = sidecar_path(out)
        sidecar.write_text(json.dumps(self.sidecar(manifest_source), indent=2))
        written.append(sidecar)
        if self.failures:
            failures = out.with_name(out.stem + ".failures.csv")
            pd.DataFrame(self.failures, columns=["path", "reason"]).to_csv(failures, index=False)
            written.append(failures)
        return written


def sidecar_path(table_path: str | Path) -> Path:
    """``features.parquet`` -> ``features.json``."""
    return Path(table_path).with_suffix(".json")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that compute features."""
    out = {"python": platform.python_version()}
    for name in _VERSION_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def read_mask(path: str | Path) -> np.ndarray:
    """A mask file as a boolean array: pixels at or above half the file's maximum are inside."""
    from osteolens.io import read_radiograph

    pixels = read_radiograph(path).pixels
    peak = float(pixels.max())
    if peak <= 0:
        raise TransformError(f"{path}: the mask is empty (all zero). Fix: check the mask file or use --roi none.")
    return pixels >= 0.5 * peak


def prepare_roi(
    pixels: np.ndarray,
    mask: np.ndarray | None,
    roi: str,
    equalise: bool = True,
    max_size: int | None = None,
    box: tuple[float, float, float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop, downscale and equalise one image; return ``(roi image in [0, 1], roi mask or None)``.

    A None mask means "the whole ROI": each family then uses its default (the ROI minus a
    1-pixel border).
    """
    from osteolens.transforms.roi import largest_rectangle_in_mask

    image = np.asarray(pixels, dtype=np.float64)
    if roi in ("mask", "rectangle"):
        if mask is None:
            raise TransformError(f"--roi {roi} needs a mask for every image. Fix: fill the manifest's 'mask' column or use --roi none.")
        if mask.shape != image.shape:
            raise TransformError(f"mask shape {mask.shape} differs from image shape {image.shape}. Fix: use the mask drawn on this image.")
    if roi == "mask":
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        image, mask = image[box], mask[box]
    elif roi == "box":
        if box is None or not all(np.isfinite(box)):
            raise TransformError(f"--roi box needs {', '.join(BOX_COLUMNS)} for every image. Fix: fill them or use --roi none.")
        x, y, w, h = box
        top, left = max(0, int(round(y))), max(0, int(round(x)))
        bottom, right = min(image.shape[0], int(round(y + h))), min(image.shape[1], int(round(x + w)))
        if bottom - top < 4 or right - left < 4:
            raise TransformError(f"the box {box} leaves only {bottom - top} x {right - left} px inside the {image.shape} image. Fix: check the box columns (pixels, x y width height).")
        image, mask = image[top:bottom, left:right], None
    elif roi == "rectangle":
        top, left, bottom, right = largest_rectangle_in_mask(mask)
        if bottom - top < 4 or right - left < 4:
            raise TransformError(f"the largest rectangle inside the mask is only {bottom - top} x {right - left} px. Fix: check the mask, or use --roi mask.")
        image, mask = image[top:bottom, left:right], None
    else:
        mask = None
    if max_size is not None and max(image.shape) > max_size:
        import cv2

        factor = max_size / max(image.shape)
        size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))  # cv2: (width, height)
        # Area averaging: the anti-aliased downscale, ~10x faster than skimage's Gaussian + resize.
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        if mask is not None:
            mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    if equalise:
        return equalise_roi(image, mask), mask
    return np.clip(image, 0.0, 1.0), mask


def equalise_roi(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Global histogram equalisation (256 bins) computed inside ``mask`` (everywhere when None), in [0, 1]."""
    from skimage.exposure import equalize_hist

    return np.clip(equalize_hist(image, nbins=256, mask=mask), 0.0, 1.0)


def compute_families(image: np.ndarray, mask: np.ndarray | None, families: Sequence[FeatureFamily]) -> dict[str, float]:
    """Every family's features of one prepared ROI, in family order."""
    out: dict[str, float] = {}
    for family in families:
        out.update(_guarded(family, lambda f=family: f.compute(image, mask)))
    return out


def _guarded(family: FeatureFamily, work: Callable[[], Any]) -> Any:
    """``work()``, its error re-raised as a :class:`TransformError` naming the family."""
    try:
        return work()
    except Exception as exc:
        raise TransformError(f"feature family '{family.name}' failed: {type(exc).__name__}: {exc}") from exc


@lru_cache(maxsize=8)
def _families_from_json(text: str) -> tuple[FeatureFamily, ...]:
    return tuple(build_feature_family(spec) for spec in json.loads(text))


# A worker's answer: (index, {family position: features} of per-image families,
# {family position: prepared (image, mask)} of batched ones, error or None).
_Item = tuple[int, dict[int, dict[str, float]] | None, dict[int, tuple[np.ndarray, np.ndarray | None]] | None, str | None]


def _extract_one(
    index: int, image_path: str, mask_path: str | None, box: tuple[float, ...] | None, roi: str, equalise: bool, max_size: int | None, families_json: str
) -> _Item:
    """Worker: one image up to the batched families; any error becomes its reason string (the batch goes on)."""
    from osteolens.io import read_radiograph

    try:
        pixels = read_radiograph(image_path).pixels
        mask = read_mask(mask_path) if mask_path else None
        families = _families_from_json(families_json)
        plain, roi_mask = prepare_roi(pixels, mask, roi, False, max_size, box)
        equalised = plain
        if equalise and any(f.equalised for f in families):
            equalised = equalise_roi(plain, roi_mask)
        values: dict[int, dict[str, float]] = {}
        prepared: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        for position, family in enumerate(families):
            image = equalised if family.equalised else plain
            if family.batched:
                prepared[position] = _guarded(family, lambda f=family, i=image: f.prepare(i, roi_mask))
            else:
                values[position] = _guarded(family, lambda f=family, i=image: f.compute(i, roi_mask))
        return index, values, prepared, None
    except Exception as exc:  # batch contract: record and continue
        return index, None, None, f"{type(exc).__name__}: {exc}"


class _Batcher:
    """Collects prepared images per batched family and computes them ``batch_size`` at a time.

    Batches are cut in manifest order whatever order the workers answer in, so ``--jobs``
    never changes a batch's composition (nor, hence, the last float32 digits). A failing
    batch is retried one image at a time, so one bad image fails alone.
    """

    def __init__(self, families: Sequence[FeatureFamily], results: dict[int, dict[int, dict[str, float]]], failures: dict[int, str]) -> None:
        self.families = {position: f for position, f in enumerate(families) if f.batched}
        self.queues: dict[int, list[int]] = {p: [] for p in self.families}
        self.arrived: dict[int, dict[int, tuple[np.ndarray, np.ndarray | None]] | None] = {}
        self.cursor = 0  # every image before it has been queued (or failed)
        self.results, self.failures = results, failures
        self.waiting: dict[int, int] = {}  # image index -> batched families still to compute

    def add(self, index: int, prepared: dict[int, tuple[np.ndarray, np.ndarray | None]] | None) -> list[int]:
        """Record one image (None: it failed before batching); returns the images finished by the batches this filled."""
        self.arrived[index] = prepared
        if prepared:
            self.waiting[index] = len(prepared)
        finished = []
        while self.cursor in self.arrived:
            ready = self.arrived[self.cursor]
            for position in ready or {}:
                self.queues[position].append(self.cursor)
            self.cursor += 1
        for position, family in self.families.items():
            while len(self.queues[position]) >= max(1, int(family.batch_size)):
                finished += self._run(position, int(family.batch_size))
        return finished

    def flush(self) -> list[int]:
        """Compute everything still queued; returns the images finished."""
        finished = []
        for position in self.families:
            while self.queues[position]:
                finished += self._run(position, len(self.queues[position]))
        return finished

    def _run(self, position: int, count: int) -> list[int]:
        family = self.families[position]
        indices, self.queues[position] = self.queues[position][:count], self.queues[position][count:]
        items = [self.arrived[i][position] for i in indices]  # type: ignore[index]
        images, masks = [item[0] for item in items], [item[1] for item in items]
        try:
            rows = _guarded(family, lambda: family.compute_batch(images, masks))
            if len(rows) != len(indices):
                raise TransformError(f"feature family '{family.name}' returned {len(rows)} rows for {len(indices)} images")
            outcomes: list[tuple[dict[str, float] | None, str | None]] = [(row, None) for row in rows]
        except Exception:
            outcomes = []
            for image, mask in zip(images, masks, strict=True):
                try:
                    outcomes.append((_guarded(family, lambda i=image, m=mask: family.compute_batch([i], [m])[0]), None))
                except Exception as exc:  # batch contract: this image fails, the others go on
                    outcomes.append((None, f"{type(exc).__name__}: {exc}"))
        finished = []
        for index, (row, error) in zip(indices, outcomes, strict=True):
            if error is not None:
                self.failures.setdefault(index, error)
            elif index not in self.failures:
                self.results[index][position] = row
            self.waiting[index] -= 1
            if self.waiting[index] == 0:
                finished.append(index)
                self.arrived[index] = None  # free the prepared images
        return finished


def extract_features(
    manifest: Manifest,
    config: ExtractionConfig | None = None,
    jobs: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    scheduler: str | None = None,
) -> ExtractionResult:
    """Extract features for every image of ``manifest``.

    Args:
        manifest: images (and ``mask`` paths for ROI modes that need them).
        config: families and preprocessing; the seed's set by default.
        jobs: worker processes for reading, ROI, per-image families and the preparation
            of batched families, as a Dask ``LocalCluster`` started for this call (1 runs all
            in this process). Batched families (``cnn``) always run in this process, on
            torch's intra-op threads.
        on_progress: called with ``(done, total)`` after each image.
        scheduler: address of a Dask scheduler (``tcp://HOST:8786``): the per-image work runs
            on its workers (which need osteolens and read access to the images at their
            absolute paths); wins over ``jobs``. The table is the same as in one process.

    Returns:
        the table, its columns and the failure list.
    """
    config = config or ExtractionConfig()
    frame = manifest.frame
    has_masks = "mask" in frame.columns
    has_boxes = all(c in frame.columns for c in BOX_COLUMNS)
    roi = config.roi
    if roi == "auto":
        roi = "rectangle" if has_masks else "box" if has_boxes else "none"
    if roi in ("mask", "rectangle") and not has_masks:
        raise ConfigError(manifest.source, f"--roi {roi} needs a 'mask' column in the manifest.", "add mask paths, or use --roi none.")
    if roi == "box" and not has_boxes:
        raise ConfigError(manifest.source, f"--roi box needs the columns {', '.join(BOX_COLUMNS)}.", "add them (pixels), or use --roi none.")
    families_json = json.dumps(config.families, sort_keys=True)
    families = _families_from_json(families_json)
    tasks = []
    for index, row in enumerate(frame.itertuples(index=False)):
        mask_value = getattr(row, "mask", None) if has_masks and roi != "none" else None
        mask_path = str(manifest.resolve(mask_value)) if isinstance(mask_value, str) and mask_value.strip() else None
        box = tuple(float(getattr(row, c)) for c in BOX_COLUMNS) if roi == "box" else None
        tasks.append((index, str(manifest.resolve(row.image)), mask_path, box, roi, config.equalise, config.max_size, families_json))

    results: dict[int, dict[int, dict[str, float]]] = {}
    failures: dict[int, str] = {}
    batcher = _Batcher(families, results, failures)
    finished: set[int] = set()

    def finish(indices: Sequence[int]) -> None:
        finished.update(indices)
        if on_progress is not None and indices:
            on_progress(len(finished), len(tasks))

    def collect(item: _Item) -> None:
        index, values, prepared, error = item
        if values is None or prepared is None:
            failures[index] = error or "unknown error"
            finish([index, *batcher.add(index, None)])
            return
        results[index] = values
        done = batcher.add(index, prepared)
        finish(done if prepared else [index, *done])

    if scheduler is None and (jobs <= 1 or len(tasks) <= 1):
        for task in tasks:
            collect(_extract_one(*task))
    else:
        from osteolens.scale.dask_jobs import cluster_client, run_tasks

        # Workers may run elsewhere (or in another folder): they get absolute paths. Dask's worker
        # processes are spawned clean; as with any spawning code, a calling script needs the
        # ``if __name__ == "__main__":`` guard.
        remote = [(i, os.path.abspath(image), os.path.abspath(mask) if mask else None, *rest) for i, image, mask, *rest in tasks]
        with cluster_client(scheduler, jobs) as client:
            for position, item, error in run_tasks(client, _extract_one, remote, "osteolens-features"):
                # A task that kept killing workers (crash in a C extension, out of memory) fails its image, not the batch.
                collect(item if error is None else (position, None, None, f"worker failed: {type(error).__name__}: {error}"))
    finish(batcher.flush())

    order = sorted(i for i in results if i not in failures)
    rows = [{k: v for position in sorted(results[i]) for k, v in results[i][position].items()} for i in order]
    columns: dict[str, None] = {}
    for values in rows:
        columns.update(dict.fromkeys(values))
    feature_columns = list(columns)
    meta = frame.iloc[order].reset_index(drop=True)
    clash = [c for c in feature_columns if c in meta.columns]
    if clash:
        raise ConfigError(manifest.source, f"manifest column(s) {clash} clash with feature names.", "rename those manifest columns.")
    values = pd.DataFrame(rows, columns=feature_columns, dtype=np.float64)
    table = pd.concat([meta, values], axis=1)
    failure_rows = [(tasks[i][1], failures[i]) for i in sorted(failures)]
    facts = {f.name: f.provenance() for f in families} if order else {}
    provenance = {name: value for name, value in facts.items() if value}
    return ExtractionResult(table, feature_columns, list(meta.columns), failure_rows, config, roi, provenance)


def load_feature_table(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """Read a table written by :meth:`ExtractionResult.write` and its sidecar (None if absent)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "feature table not found.", "run 'osteolens features extract' first.")
    if path.suffix == ".csv":
        table = pd.read_csv(path, dtype={"patient_id": str})
    elif path.suffix == ".xlsx":
        table = pd.read_excel(path, dtype={"patient_id": str})
    else:
        table = pd.read_parquet(path)
    sidecar = sidecar_path(path)
    meta: Mapping[str, Any] | None = json.loads(sidecar.read_text()) if sidecar.is_file() else None
    return table, dict(meta) if meta is not None else None
