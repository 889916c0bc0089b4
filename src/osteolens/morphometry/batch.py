"""Measure many spines (from :mod:`osteolens.morphometry.inputs`), write the tables and overlays.

Pixel spacing, first found wins: the caller's ``pixel_mm`` (``--pixel-mm``), the input's
column (``pixel_spacing_mm``), a manifest's ``pixel_spacing_mm`` for the image
(``--manifest``), the DICOM header of the spine's radiograph; otherwise lengths stay in
pixels. The image height of the AASCE Cobb rule, likewise: the caller's ``image_height``
(``--image-height``), the input's ``image_height`` column or image shape, the manifest's
``image_height``, the radiograph's header; otherwise the spine's own extent, noted in the
Cobb table. Headers are read without decoding pixels; only overlays decode the radiograph.
A radiograph that cannot be read is recorded as a failure and the spine is measured
without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from osteolens.errors import OsteolensError
from osteolens.io import read_radiograph
from osteolens.morphometry.inputs import SpineInput, read_image_header
from osteolens.morphometry.overlay import draw_overlay, write_overlay
from osteolens.morphometry.spine import SpineMeasurement, measure_spine


@dataclass
class BatchResult:
    """Every measured spine, the overlays written and the files that failed.

    Attributes:
        spines: one measurement per spine.
        overlays: PNG paths written.
        failures: ``(path, reason)`` for inputs that could not be used.
    """

    spines: list[SpineMeasurement] = field(default_factory=list)
    overlays: list[Path] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def vertebra_table(self) -> pd.DataFrame:
        """One row per vertebra (``genant_grade`` as a nullable integer)."""
        table = pd.DataFrame([row for spine in self.spines for row in spine.rows()])
        if "genant_grade" in table.columns:
            table["genant_grade"] = table["genant_grade"].astype("Int64")
        return table

    def cobb_table(self) -> pd.DataFrame:
        """One row per AP spine of 3 or more vertebrae: PT, MT, TL and their end vertebrae."""
        return pd.DataFrame([s.cobb_row() for s in self.spines if s.view == "AP" and len(s.vertebrae) >= 3])


def _lookup(by_image: Mapping[str, float] | None, key: str) -> float | None:
    """A manifest value by the spine's image key, else by its file name."""
    if not by_image:
        return None
    return by_image.get(key, by_image.get(Path(key).name))


def _safe_name(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key).strip("._") or "spine"


def measure_inputs(
    inputs: Iterable[SpineInput],
    *,
    pixel_mm: float | None = None,
    view: str = "lateral",
    anterior: str = "left",
    plot_dir: str | Path | None = None,
    spacing_by_image: Mapping[str, float] | None = None,
    image_height: float | None = None,
    height_by_image: Mapping[str, float] | None = None,
) -> BatchResult:
    """Measure each spine; draw an overlay per spine when ``plot_dir`` is given.

    Args:
        inputs: spines read by ``read_landmarks`` or ``read_masks``.
        pixel_mm: spacing for every spine (overrides the inputs and DICOM headers).
        view: the view of spines whose input does not name one.
        anterior: the anterior image side of lateral views.
        plot_dir: folder for ``<spine>.png`` overlays, or None.
        spacing_by_image: pixel spacing (mm) by image key or file name, from a manifest
            (:func:`osteolens.morphometry.inputs.read_image_table`).
        image_height: image height in pixels for every spine's Cobb rule (overrides the rest).
        height_by_image: image height (pixels) by image key or file name, from a manifest.
    """
    result = BatchResult()
    for spine_input in inputs:
        image = None
        spacing: float | tuple[float, float] | None = pixel_mm if pixel_mm is not None else spine_input.pixel_mm
        if spacing is None:
            spacing = _lookup(spacing_by_image, spine_input.key)
        shape = spine_input.image_shape
        heights = (
            image_height,
            spine_input.image_height,
            shape[0] if shape else None,
            _lookup(height_by_image, spine_input.key),
        )
        height = next((h for h in heights if h is not None), None)
        radiograph, found_shape, found_spacing = spine_input.radiograph, None, None  # a radiograph read once
        if radiograph is None and spine_input.image_path is not None and (
                plot_dir is not None or spacing is None or shape is None):
            try:
                if plot_dir is not None:
                    radiograph = read_radiograph(spine_input.image_path)
                else:
                    found_shape, found_spacing = read_image_header(spine_input.image_path)
            except OsteolensError as exc:
                result.failures.append((str(spine_input.image_path), str(exc)))
        if radiograph is not None:
            image, found_shape, found_spacing = radiograph.pixels, radiograph.shape, radiograph.spacing_mm
        if found_shape is not None:
            shape = shape or found_shape
            spacing = spacing if spacing is not None else found_spacing
            height = height if height is not None else shape[0]
        try:
            spine = measure_spine(
                spine_input.corners,
                spine_input.names,
                pixel_mm=spacing,
                view=spine_input.view or view,
                anterior=anterior,
                image_shape=shape,
                image_height=height,
                midpoints=spine_input.midpoints,
                key=spine_input.key,
                extra_problems=spine_input.problems,
                warning=spine_input.warning,
            )
        except OsteolensError as exc:
            result.failures.append((spine_input.key, str(exc)))
            continue
        result.spines.append(spine)
        if plot_dir is not None:
            canvas = draw_overlay(spine, image, spine_input.outlines, spine_input.midpoints)
            name = _safe_name(str(Path(spine_input.key).with_suffix("")))
            result.overlays.append(write_overlay(Path(plot_dir) / f"{name}.png", canvas))
    return result


def problem_count(result: BatchResult) -> int:
    """Number of vertebrae with at least one problem."""
    return int(sum(bool(v.problems) for spine in result.spines for v in spine.vertebrae))


def grade_counts(result: BatchResult) -> dict[int, int]:
    """How many graded vertebrae have each Genant grade."""
    grades = [v.genant.grade for spine in result.spines for v in spine.vertebrae if v.genant is not None]
    values, counts = np.unique(np.array(grades, dtype=int), return_counts=True)
    return {int(g): int(c) for g, c in zip(values, counts, strict=True)}
