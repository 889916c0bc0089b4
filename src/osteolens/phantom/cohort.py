"""Specimens and cohorts: simulate every vertebra and view, write DICOM / PNG / masks and labels.csv."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osteolens.data.manifest import Manifest
from osteolens.errors import ConfigError
from osteolens.phantom.population import LEVELS, draw_specimen, draw_vertebra
from osteolens.phantom.projection import VIEWS, acquire, body_mask, draw_acquisition, project
from osteolens.phantom.volume import simulate_vertebra

FORMATS = ("dicom", "png")
DEFAULT_SIZE = 160
DEFAULT_FOV_MM = 64.0
COLUMNS = (
    "image", "image_png", "mask", "patient_id", "study", "view", "vertebra", "label", "bmd", "t_score",
    "bone_fraction", "fracture_grade", "fracture_type", "height_loss", "sex", "age", "anterior_height_mm",
    "middle_height_mm", "posterior_height_mm", "reference_height_mm", "width_mm", "depth_mm",
    "superior_endplate_deg", "inferior_endplate_deg", "wedge_angle_deg", "pixel_spacing_mm",
    "photometric", "exposure", "gain", "soft_tissue_mm", "blur_px", "gamma",
)


@dataclass
class PhantomImage:
    """One simulated view of one vertebra.

    Attributes:
        name: file stem, ``S0001_L1_AP``.
        pixels: displayed radiograph, ``float32 (size, size)`` in [0, 1], bone bright.
        mask: vertebral-body projection, bool ``(size, size)``.
        bone_line: the bone's line integral before soft tissue, noise and display (``float32``).
        photometric: how the DICOM is stored, ``MONOCHROME1`` or ``MONOCHROME2``.
        row: the labels.csv values except the file paths.
    """

    name: str
    pixels: np.ndarray
    mask: np.ndarray
    bone_line: np.ndarray
    photometric: str
    row: dict[str, Any]


# DICOM PatientOrientation (directions of increasing column, then increasing row): AP shown
# as usual, the patient's left on the image's right; lateral with anterior on the left.
PATIENT_ORIENTATION = {"AP": ("L", "F"), "LAT": ("P", "F")}

def specimen_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of specimen ``index`` in cohort ``seed``: independent of the other specimens and of ``jobs``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def simulate_specimen(
    seed: int, index: int, size: int = DEFAULT_SIZE, *, grid: int | None = None, fov_mm: float = DEFAULT_FOV_MM
) -> list[PhantomImage]:
    """Simulate the AP and lateral views of L1-L4 of one specimen.

    Args:
        seed: cohort seed.
        index: 0-based specimen index (the id is ``S{index + 1:04d}``).
        size: image side in pixels (pixel spacing ``fov_mm / size``).
        grid: voxels per side of each vertebral volume (default ``size // 2``, at least 32).
        fov_mm: field of view per side, mm.

    Returns:
        Eight images, ordered L1 AP, L1 LAT, L2 AP, ...
    """
    rng = specimen_rng(seed, index)
    grid = grid or max(32, size // 2)
    spacing = fov_mm / size
    specimen = draw_specimen(rng, index)
    images = []
    for level in LEVELS:
        traits = draw_vertebra(rng, specimen, level)
        centre = tuple(rng.uniform(-2.0, 2.0, 3))
        volume = simulate_vertebra(
            rng,
            traits.bmd,
            (traits.anterior_height_mm, traits.middle_height_mm, traits.posterior_height_mm),
            width_mm=traits.width_mm,
            depth_mm=traits.depth_mm,
            level=level,
            grid=grid,
            fov_mm=fov_mm,
            centre_mm=centre,
        )
        geometry = volume.geometry
        for view in VIEWS:
            bone_line = project(volume, view, size=size)
            acquisition = draw_acquisition(rng)
            pixels = acquire(rng, bone_line, acquisition)
            photometric = "MONOCHROME1" if rng.random() < 1.0 / 3.0 else "MONOCHROME2"
            row = {
                "patient_id": specimen.specimen_id,
                "study": specimen.specimen_id,
                "view": view,
                "vertebra": level,
                "label": traits.who_class,
                "bmd": round(traits.bmd, 2),
                "t_score": round(traits.t_score, 3),
                "bone_fraction": round(volume.bone_fraction, 4),
                "fracture_grade": traits.fracture_grade,
                "fracture_type": traits.fracture_type,
                "height_loss": round(traits.height_loss, 4),
                "sex": specimen.sex,
                "age": specimen.age,
                "anterior_height_mm": round(geometry.anterior_height_mm, 3),
                "middle_height_mm": round(geometry.middle_height_mm, 3),
                "posterior_height_mm": round(geometry.posterior_height_mm, 3),
                "reference_height_mm": round(traits.reference_height_mm, 3),
                "width_mm": round(geometry.width_mm, 3),
                "depth_mm": round(geometry.depth_mm, 3),
                "superior_endplate_deg": round(geometry.superior_endplate_deg, 3),
                "inferior_endplate_deg": round(geometry.inferior_endplate_deg, 3),
                "wedge_angle_deg": round(geometry.wedge_angle_deg, 3),
                "pixel_spacing_mm": spacing,
                "photometric": photometric,
                "exposure": round(acquisition.exposure, 4),
                "gain": round(acquisition.gain, 4),
                "soft_tissue_mm": round(acquisition.soft_tissue_mm, 2),
                "blur_px": round(acquisition.blur_px, 3),
                "gamma": round(acquisition.gamma, 4),
            }
            mask = body_mask(geometry, view, size, fov_mm)
            images.append(PhantomImage(f"{specimen.specimen_id}_{level}_{view}", pixels, mask, bone_line, photometric, row))
    return images


def _write_specimen(task: tuple[Path, int, int, int, int | None, float, tuple[str, ...]]) -> list[dict[str, Any]]:
    """Simulate one specimen and write its files; return its labels.csv rows (paths relative to ``out_dir``)."""
    from osteolens.io import Radiograph, RadiographMeta, write_dicom, write_png

    out_dir, seed, index, size, grid, fov_mm, formats = task
    rows = []
    for image in simulate_specimen(seed, index, size, grid=grid, fov_mm=fov_mm):
        row = dict(image.row)
        spacing = row["pixel_spacing_mm"]
        mask_rel = f"masks/{image.name}.png"
        write_png(image.mask.astype(np.float32), out_dir / mask_rel, bits=8)
        png_rel = dicom_rel = None
        if "png" in formats:
            png_rel = f"png/{image.name}.png"
            write_png(image.pixels, out_dir / png_rel, bits=16)
        if "dicom" in formats:
            dicom_rel = f"dicom/{image.name}.dcm"
            meta = RadiographMeta(
                patient_id=row["patient_id"], sex=row["sex"], age_years=row["age"], view=row["view"],
                body_part="LSPINE", modality="DX", manufacturer="osteolens phantom",
            )
            write_dicom(
                Radiograph(image.pixels, spacing_mm=(spacing, spacing), meta=meta),
                out_dir / dicom_rel,
                photometric=image.photometric,
                modality="DX",
                uid_seed=f"osteolens-phantom-{seed}-{image.name}",
                patient_orientation=PATIENT_ORIENTATION[row["view"]],
            )
        rows.append({"image": dicom_rel or png_rel, "image_png": png_rel, "mask": mask_rel, **row})
    return rows


def generate_cohort(
    out_dir: str | Path,
    specimens: int = 100,
    seed: int = 0,
    size: int = DEFAULT_SIZE,
    formats: str | Iterable[str] = FORMATS,
    *,
    jobs: int = 1,
    grid: int | None = None,
    fov_mm: float = DEFAULT_FOV_MM,
    progress: Callable[[int], None] | None = None,
) -> Manifest:
    """Simulate ``specimens`` specimens (8 images each) and write them under ``out_dir``.

    Layout: ``dicom/S0001_L1_AP.dcm``, ``png/S0001_L1_AP.png`` (16-bit), ``masks/S0001_L1_AP.png``
    (8-bit, 255 = vertebral body), ``labels.csv`` (one row per image; columns in
    ``docs/phantom.md``) and ``phantom.json`` (the generation parameters). The same
    arguments give the same bytes in every file, whatever ``jobs`` is.

    Args:
        out_dir: output folder (created).
        specimens: number of specimens.
        seed: cohort seed; specimen ``i`` draws from ``SeedSequence([seed, i])``.
        size: image side in pixels.
        formats: any of ``"dicom"`` and ``"png"`` (or a comma-separated string); ``image`` is the
            DICOM path when written.
        jobs: worker processes.
        grid: voxels per side of each vertebral volume (default ``size // 2``).
        fov_mm: field of view per side, mm (pixel spacing ``fov_mm / size``).
        progress: called with the number of specimens finished so far.

    Returns:
        The manifest, also written to ``out_dir/labels.csv``.

    Raises:
        ConfigError: an unknown format, no format, or a non-positive count / size / jobs.
    """
    out_dir = Path(out_dir)
    if isinstance(formats, str):
        formats = formats.split(",")
    formats = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError("formats", f"unknown or empty output format(s) {unknown or list(formats)}.", "use dicom, png or both.")
    for name, value in (("specimens", specimens), ("size", size), ("jobs", jobs)):
        if value < 1:
            raise ConfigError(name, f"must be at least 1, got {value}.", f"pass a positive --{name}.")
    if size < 32:
        raise ConfigError("size", f"{size} px is too small to draw a vertebra.", "use --size 64 or more.")
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = [(out_dir, int(seed), i, int(size), grid, float(fov_mm), formats) for i in range(specimens)]
    results: list[list[dict[str, Any]]] = []
    if jobs == 1:
        for done, task in enumerate(tasks, start=1):
            results.append(_write_specimen(task))
            if progress is not None:
                progress(done)
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, specimens)) as pool:
            for done, rows in enumerate(pool.map(_write_specimen, tasks), start=1):
                results.append(rows)
                if progress is not None:
                    progress(done)
    frame = pd.DataFrame([row for rows in results for row in rows], columns=list(COLUMNS))
    manifest = Manifest(frame, out_dir, source=out_dir / "labels.csv")
    manifest.write(out_dir / "labels.csv")
    _write_parameters(out_dir, specimens=specimens, seed=seed, size=size, formats=formats, grid=grid, fov_mm=fov_mm)
    return manifest


def _write_parameters(out_dir: Path, **params: Any) -> None:
    """``phantom.json``: what generated this folder (enough to regenerate it byte for byte)."""
    import json

    from osteolens import __version__

    params = {key: list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value for key, value in params.items()}
    params["grid"] = params["grid"] or max(32, params["size"] // 2)
    text = json.dumps({"generator": "osteolens.phantom", "version": __version__, **params}, indent=2, sort_keys=True)
    (out_dir / "phantom.json").write_text(text + "\n")
