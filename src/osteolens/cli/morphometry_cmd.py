"""``osteolens morphometry``: vertebral heights, angles, Genant grades and Cobb angles."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from osteolens.cli.common import console, report_failures
from osteolens.cli.landmarks_cmd import POSITION_PRIOR_HELP


class Side(str, Enum):
    """The anterior image side of a lateral view."""

    left = "left"
    right = "right"


class View(str, Enum):
    """The default view of spines whose input does not name one."""

    lateral = "lateral"
    AP = "AP"


def morphometry(
    landmarks: Path | None = typer.Option(
        None, "--landmarks", help="Corner table (CSV: image, vertebra, corner, x, y).", dir_okay=False
    ),
    masks: Path | None = typer.Option(
        None, "--masks", help="Folder of masks (<prefix>_<level>.png, label images) or a mask table (CSV with 'mask')."
    ),
    out: Path = typer.Option(..., "--out", help="Per-vertebra results (CSV).", dir_okay=False),
    pixel_mm: float | None = typer.Option(
        None, "--pixel-mm", min=0.0, help="Pixel spacing in mm (overrides table columns and DICOM headers)."
    ),
    anterior: Side = typer.Option(Side.left, "--anterior", help="Image side that is anterior on lateral views."),
    view: View | None = typer.Option(
        None, "--view", help="View of spines whose input does not name one (default: lateral; with --model, the bundle's)."
    ),
    manifest: Path | None = typer.Option(
        None,
        "--manifest",
        help="Table (CSV/Parquet) with image and pixel_spacing_mm and/or image_height columns.",
        dir_okay=False,
    ),
    image_height: float | None = typer.Option(
        None,
        "--image-height",
        min=1.0,
        help="Image height in pixels for the AASCE Cobb rule (overrides table columns and image headers).",
    ),
    images: Path | None = typer.Option(
        None, "--images", help="Folder of the radiographs (default: beside the table); with --model, the radiographs "
        "to measure (a folder or one file)."
    ),
    model: Path | None = typer.Option(
        None, "--model", help="Landmark bundle folder or .zip (osteolens landmarks train): detect the corners on "
        "--images first.",
    ),
    trusted_key: Path | None = typer.Option(
        None, "--trusted-key", help="With --model: refuse the bundle unless signed by this Ed25519 public key (PEM)."
    ),
    backend: str = typer.Option("onnx", help="With --model: onnx (ONNX Runtime, the bundle's model.onnx) or torch."),
    position_prior: bool = typer.Option(True, "--position-prior/--no-position-prior",
                                        help=f"With --model: {POSITION_PRIOR_HELP}"),
    plot: Path | None = typer.Option(None, "--plot", help="Folder for overlay PNGs (one per spine).", file_okay=False),
    cobb: Path | None = typer.Option(None, "--cobb", help="Cobb angle table (CSV); default cobb.csv beside --out.", dir_okay=False),
    dicom_out: Path | None = typer.Option(
        None, "--dicom-out", help="Folder for a TID 1500 SR per spine whose radiograph is DICOM.", file_okay=False
    ),
) -> None:
    """Measure vertebrae from corner landmarks, body masks, or raw radiographs with a landmark detector.

    Writes one row per vertebra (heights, endplate and wedge angles, ratios, Genant grade and
    type, annotation problems) and, for AP spines, the AASCE Cobb angles (cobb.csv). Bad or
    incomplete annotations are reported per vertebra, never fatal. The Cobb rule needs the
    image height: --image-height, an image_height column, or the image's header; without
    it, S-shaped spines are noted in cobb.csv.

    With --model, the detector finds the corners of every radiograph in --images first; they
    are written to detected_landmarks.csv beside --out (correct it by hand and measure again
    with --landmarks), vertebrae the detector hardly saw carry a low_confidence problem, and
    when a vertebra-like shape beyond T1 or L5 is nearly as clear as the weakest vertebra found,
    that end vertebra carries a levels_uncertain problem (the names may be off by one level).

    Example: osteolens morphometry --landmarks landmarks.csv --view AP --out results.csv --plot overlays/

    Example: osteolens morphometry --images spines/ --model runs/aasce_landmarks/bundle --out results.csv --plot overlays/
    """
    from osteolens.errors import ConfigError
    from osteolens.morphometry import measure_inputs, read_landmarks, read_masks
    from osteolens.morphometry.batch import grade_counts, problem_count
    from osteolens.morphometry.inputs import read_image_table

    if sum(source is not None for source in (landmarks, masks, model)) != 1:
        raise ConfigError("--landmarks/--masks/--model", "give exactly one input.",
                          "pass --landmarks CSV, --masks DIR, or --model BUNDLE with --images.")
    if model is not None and images is None:
        raise ConfigError("--model", "needs the radiographs to measure.", "add --images FOLDER (or one image file).")
    spacing, heights = read_image_table(manifest) if manifest is not None else (None, None)
    options = dict(pixel_mm=pixel_mm, anterior=anterior.value, plot_dir=plot, spacing_by_image=spacing,
                   image_height=image_height, height_by_image=heights)
    out.parent.mkdir(parents=True, exist_ok=True)
    if model is not None:
        from osteolens.cli.common import image_files
        from osteolens.cli.landmarks_cmd import landmark_detector, report_detections
        from osteolens.landmarks.measure import detect_and_measure
        from osteolens.landmarks.predict import predictions_table

        detector = landmark_detector(model, trusted_key, backend, position_prior)
        root = images if images.is_dir() else images.parent  # type: ignore[union-attr]
        detected, result = detect_and_measure(detector, image_files([images]), root=root,  # type: ignore[list-item]
                                              view=view.value if view else None, **options)
        table = out.with_name("detected_landmarks.csv")
        predictions_table(detected).to_csv(table, index=False)
        report_detections(detected, table)
        sources = {p.image: root / p.image for p in detected}
        landmark_source = f"detected by {detector.bundle.description}"
    else:
        failures: list[tuple[str, str]] = []
        if landmarks is not None:
            inputs = read_landmarks(landmarks, images)
        else:
            inputs, failures = read_masks(masks, images)  # type: ignore[arg-type]
        result = measure_inputs(inputs, view=view.value if view else "lateral", **options)  # type: ignore[arg-type]
        result.failures[:0] = failures
        sources = {i.key: i.image_path for i in inputs}
        landmark_source = None
    result.vertebra_table().to_csv(out, index=False)
    cobb_path = cobb or out.with_name("cobb.csv")
    cobb_table = result.cobb_table()
    if len(cobb_table):
        cobb_table.to_csv(cobb_path, index=False)
    vertebrae = sum(len(s.vertebrae) for s in result.spines)
    console.print(f"{len(result.spines)} spine(s), {vertebrae} vertebrae -> {out}")
    if len(cobb_table):
        console.print(f"Cobb angles of {len(cobb_table)} AP spine(s) -> {cobb_path}")
    grades = grade_counts(result)
    if grades:
        console.print("Genant grades: " + ", ".join(f"grade {g}: {n}" for g, n in grades.items()))
    flagged = problem_count(result)
    if flagged:
        console.print(f"[yellow]{flagged} vertebra(e) with annotation problems[/] (see the 'problems' column):")
        shown = [(s.key, v.name, p) for s in result.spines for v in s.vertebrae for p in v.problems][:10]
        for key, name, problem in shown:
            console.print(f"  {key} {name}: {problem}", highlight=False, markup=False)
    if result.overlays:
        console.print(f"{len(result.overlays)} overlay(s) -> {plot}")
    if dicom_out is not None:
        from osteolens.dicom_out.morphometry_sr import write_morphometry_results

        written, skipped = write_morphometry_results(result.spines, sources, dicom_out, landmark_source)
        console.print(f"{len(written)} DICOM SR(s) -> {dicom_out}")
        for key, reason in skipped:
            console.print(f"no DICOM SR for {key}: {reason}", highlight=False, markup=False)
    report_failures(result.failures, out.with_name(f"{out.stem}_failures.csv") if result.failures else None)


def register(app: typer.Typer) -> None:
    """Add the ``morphometry`` command."""
    app.command("morphometry")(morphometry)
