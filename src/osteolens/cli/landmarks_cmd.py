"""``osteolens landmarks``: train a vertebral corner detector, predict corners, evaluate them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from osteolens.cli.common import console, image_files, report_failures

landmarks_app = typer.Typer(help="Automatic vertebral landmarks (AP spine): train, predict, evaluate.",
                            no_args_is_help=True)


@landmarks_app.command("train")
def train_cmd(
    config: Path = typer.Argument(..., help="Landmark training config (YAML), e.g. recipes/aasce_landmarks.yaml.",
                                  exists=True, dir_okay=False),
    out: Path | None = typer.Option(None, "--out", help="Run directory (overrides the config's 'out')."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override the config's epochs."),
    resume: bool = typer.Option(False, "--resume", help="Continue a started run from its last complete epoch."),
) -> None:
    """Train the detector on a patient-grouped split; writes the run directory and its bundle.

    Example: osteolens landmarks train recipes/aasce_landmarks.yaml --out runs/landmarks
    """
    from osteolens.landmarks.train import LandmarkConfig, train

    settings = LandmarkConfig.from_yaml(config, {"epochs": epochs})
    if out is not None:
        settings.out = str(out.resolve())
    run = train(settings, resume=resume, progress=lambda text: console.print(text, highlight=False, markup=False))
    console.print(f"run directory {run}; bundle {run / 'bundle'}")


#: ``--position-prior/--no-position-prior`` of the commands that detect corners.
POSITION_PRIOR_HELP = ("Count the vertebrae with the bundle's position prior (where the training radiographs had T1 and "
                       "L5); --no-position-prior keeps the strongest peaks, for radiographs framed unlike the training "
                       "images (a full-length spine, say).")


def landmark_detector(model: Path, trusted_key: Path | None, backend: str, position_prior: bool = True) -> Any:
    """Load a :class:`~osteolens.landmarks.predict.LandmarkDetector`, saying when its ONNX graph had to be exported."""
    from osteolens.landmarks.predict import LandmarkDetector

    detector = LandmarkDetector.from_path(model, trusted_key, backend, position_prior=position_prior)
    if detector.exported_at_load:
        console.print(f"note: {model} has no model.onnx, so it was exported at load (seconds); "
                      f"'osteolens export-onnx {model}' stores it once.", highlight=False)
    return detector


@landmarks_app.command("predict")
def predict_cmd(
    images: list[Path] = typer.Argument(..., help="Radiographs (DICOM, PNG, JPEG, TIFF) or folders of them."),
    model: Path = typer.Option(..., "--model", help="Landmark bundle folder or .zip (run/bundle)."),
    out: Path = typer.Option(..., "--out", help="Output folder: landmarks.csv (and failures.csv).", file_okay=False),
    trusted_key: Path | None = typer.Option(
        None, "--trusted-key", help="Ed25519 public key (PEM): refuse the bundle unless signed by it ('osteolens bundle sign')."
    ),
    backend: str = typer.Option("onnx", help="onnx (ONNX Runtime, the bundle's model.onnx) or torch."),
    position_prior: bool = typer.Option(True, "--position-prior/--no-position-prior", help=POSITION_PRIOR_HELP),
) -> None:
    """Find the 68 corners (17 vertebrae x TL, TR, BL, BR) of each radiograph, in its own pixels.

    landmarks.csv has the shared data's columns (image, vertebra, corner, point_index, x, y)
    plus confidence and low_confidence per vertebra and levels_uncertain per image (a
    vertebra-like shape beyond T1 or L5 nearly as clear as the weakest vertebra found: the
    names may be off by one level); it feeds `osteolens morphometry --landmarks` and can be
    corrected by hand.

    Example: osteolens landmarks predict spine1.png spine2.png --model runs/landmarks/bundle --out detected/
    """
    from osteolens.landmarks.predict import predict_files, predictions_table

    detector = landmark_detector(model, trusted_key, backend, position_prior)
    predictions, failures = predict_files(detector, image_files(images))
    out.mkdir(parents=True, exist_ok=True)
    predictions_table(predictions).to_csv(out / "landmarks.csv", index=False)
    report_detections(predictions, out / "landmarks.csv")
    if report_failures(failures, out / "failures.csv"):
        raise typer.Exit(1)


def report_detections(predictions: list[Any], table: Path) -> None:
    """Print how many vertebrae were hardly seen, how many images have uncertain level names, and
    each unreliable detection (too many vertebrae hardly seen) by name."""
    from osteolens.landmarks.decode import UNRELIABLE_LOW

    low = sum(int(p.detection.low_confidence.sum()) for p in predictions)
    uncertain = sum(p.detection.levels_uncertain for p in predictions)
    console.print(f"corners of {len(predictions)} radiograph(s), {low} low-confidence vertebra(e), {uncertain} with "
                  f"uncertain levels -> {table}")
    for p in predictions:
        if p.detection.unreliable:
            console.print(f"unreliable detection: {p.image}: {int(p.detection.low_confidence.sum())} vertebrae hardly seen "
                          f"({UNRELIABLE_LOW} or more): probably not the view the detector was trained on",
                          style="red", highlight=False, markup=False)


@landmarks_app.command("evaluate")
def evaluate_cmd(
    pred: Path = typer.Argument(..., help="Predicted landmarks (CSV from `landmarks predict`).", exists=True, dir_okay=False),
    truth: Path = typer.Option(..., "--truth", help="True landmarks (CSV, same format).", exists=True, dir_okay=False),
    labels: Path | None = typer.Option(None, "--labels", help="Per-image table: patient_key, qc_flags, out_height / "
                                       "image_height, pixel_spacing_mm.", exists=True, dir_okay=False),
    images: Path | None = typer.Option(None, "--images", help="Folder of the radiographs (default: beside --truth).",
                                       file_okay=False),
    out: Path | None = typer.Option(None, "--out", help="Folder for evaluation.json, per_image.csv, report.html "
                                    "(default: beside PRED).", file_okay=False),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples over patients (0: none)."),
) -> None:
    """Mean radial error, share within 5/10/20 px, Cobb SMAPE and CMAE, outliers, level shifts, worst-five overlays.

    A level shift is a predicted set off its names by whole vertebrae (its "T1" on the true T2,
    say); when PRED has the detector's levels_uncertain column, the summary counts how many
    shifted sets the detector had flagged.

    Example: osteolens landmarks evaluate detected/landmarks.csv --truth landmarks.csv --labels labels.csv
    """
    from osteolens.landmarks.evaluate import evaluate_tables, read_tables, write_report
    from osteolens.training.rundir import write_json

    tables = read_tables(pred, truth, labels, images)
    evaluation = evaluate_tables(tables, bootstrap)
    folder = out if out is not None else pred.parent / "evaluation"
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "evaluation.json", evaluation.to_dict())
    evaluation.per_image.to_csv(folder / "per_image.csv", index=False)
    page = write_report(evaluation, folder, tables.pred, tables.truth, tables.images, tables.confidence)
    console.print_json(json.dumps({"summary": evaluation.summary, "flagged": evaluation.flagged,
                                   "missing": len(evaluation.missing)}, default=float))
    console.print(f"report {page}")


@landmarks_app.command("relabel")
def relabel_cmd(
    table: Path = typer.Argument(..., help="Landmark table (CSV), e.g. landmarks.csv from `landmarks predict`.",
                                 exists=True, dir_okay=False),
    image: str = typer.Option(..., "--image", help="The image whose levels to rename, as in the table's image column."),
    shift: int = typer.Option(..., "--shift", help="Levels to move the names: +1 renames T1 -> T2 ... L5 -> S1; "
                              "-1 renames T1 -> C7 ... L5 -> L4."),
    out: Path | None = typer.Option(None, "--out", help="Output CSV (default: TABLE with .relabelled.csv)."),
) -> None:
    """Rename one image's vertebrae by whole levels, keeping every corner: the fix for a detection
    counted off by one (flagged levels_uncertain), after checking its overlay.

    Example: osteolens landmarks relabel detected/landmarks.csv --image spine7.png --shift -1
    """
    import pandas as pd

    from osteolens.errors import ManifestError
    from osteolens.landmarks.relabel import shift_levels

    try:
        frame = pd.read_csv(table)
    except (OSError, ValueError) as exc:
        raise ManifestError(table, f"cannot read the landmark table ({exc}).", "give a CSV file.") from exc
    target = out if out is not None else table.with_suffix(".relabelled.csv")
    shift_levels(frame, image, shift, table).to_csv(target, index=False)
    console.print(f"{image}: levels moved {shift:+d} -> {target}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``landmarks`` command group."""
    app.add_typer(landmarks_app, name="landmarks")
