"""``osteolens predict`` (files, folders or the JSON-lines runner) and ``osteolens export-onnx``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from osteolens.cli.common import console, image_files, report_failures

if TYPE_CHECKING:
    import pandas as pd

    from osteolens.data.manifest import Manifest

def _pairs(items: list[str], option: str, example: str) -> dict[str, str]:
    """``NAME=VALUE`` options as a dict."""
    from osteolens.errors import ConfigError

    values = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(option, f"{item!r} is not NAME=VALUE.", f"write e.g. {option} {example}.")
        values[name.strip()] = value.strip()
    return values


def inference_process(threads: int | None) -> None:
    """Tune the process for inference, before torch is imported (the command owns its process).

    OpenMP threads that busy-wait between parallel regions (libgomp's default) steal the
    cores from ONNX Runtime, the PNG encoders and any other work on the machine: Grad-CAM
    measured 4-15x slower on a busy 2-core machine. ``OMP_WAIT_POLICY=PASSIVE`` makes them
    sleep (an explicit setting in the environment wins). ``threads`` sizes torch's pool.
    """
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads:
        import torch

        torch.set_num_threads(threads)


def _attempt(predictor, sample, covariates: dict, cam: bool, saliency: bool, cam_class: str | None):
    """``predictor.predict`` or the exception it raised (the batch loop reports it)."""
    try:
        return predictor.predict(sample, covariates=covariates, cam=cam, saliency=saliency, cam_class=cam_class)
    except Exception as exc:  # noqa: BLE001  (reported per file by the caller)
        return exc


def _study(views: list[str], images: list[Path], given: dict[str, str]) -> tuple[list[Path], list[dict[str, str]]]:
    """The one study of a multi-view model, from ``--view NAME=FILE`` options: ([first view's
    file] for naming the output, [{view: file}])."""
    from osteolens.errors import ConfigError

    example = " ".join(f"--view {name}=FILE" for name in views) or "the image paths as arguments"
    if not views:
        raise ConfigError("--view", "this model takes one image per prediction, not views.", f"pass {example}.")
    if images or not given:
        raise ConfigError("IMAGES", f"this model takes a study of {len(views)} views {views}, given with --view.",
                          f"pass {example}.")
    return [Path(next(iter(given.values())))], [given]


def _stems(files: list[Path]) -> list[str]:
    """Output names: the file stem, made unique with a counter when two inputs share it."""
    seen: dict[str, int] = {}
    stems = []
    for path in files:
        stem = path.stem or path.name
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def _dicom_patient(dicom_out: Path | None, files: list[Path], views: list[str], patient_id: str | None,
                   name: str, birth_date: str, sex: str, accession: str):
    """The checked ``--patient-*`` data (or None); refuses ``--dicom-out`` before any work when it cannot be done."""
    from osteolens.dicom_out import Patient, read_header
    from osteolens.errors import ConfigError

    if dicom_out is None:
        return None
    if views:
        raise ConfigError("--dicom-out", "is not available for multi-view models yet.", "drop --dicom-out.")
    if patient_id is not None:
        return Patient(patient_id, name, birth_date, sex.upper(), accession).check()
    for path in files:
        if path.is_file() and read_header(path) is None:
            raise ConfigError(path, "is not a DICOM file, so --dicom-out has no study to put its results in.",
                              "give --patient-id (and --patient-name, --patient-birth-date, --patient-sex, "
                              "--accession-number) to make a new study, or predict the DICOM original.")
    return None


def _manifest_rows(path: Path, images: list[Path] | None, view: list[str] | None, views: list[str]) -> Manifest:
    """The manifest of ``--manifest`` (single-view models; no image arguments beside it)."""
    from osteolens.data.manifest import Manifest
    from osteolens.errors import ConfigError

    if images or view:
        raise ConfigError("--manifest", "takes the images from the manifest, not as arguments or --view.",
                          "drop the image paths, or drop --manifest.")
    if views:
        raise ConfigError("--manifest", f"this model takes a study of {len(views)} views {views}; a manifest "
                          "is predicted one image per row.", "predict each study with --view NAME=FILE.")
    return Manifest.read(path)


def _row_covariates(frame: pd.DataFrame, names: list[str], given: dict[str, str]) -> list[dict]:
    """Per manifest row, the model's covariates found in its columns; ``--covariate`` values win."""
    import pandas as pd

    present = [name for name in names if name in frame.columns]
    return [{**{name: row[name] for name in present if not pd.isna(row[name])}, **given}
            for row in frame[present].to_dict("records")] if present else [dict(given) for _ in range(len(frame))]


def predict(
    images: list[Path] = typer.Argument(None, help="Image files or folders (searched recursively)."),
    model: Path = typer.Option(..., "--model", "-m", help="Model bundle folder or .zip."),
    out: Path = typer.Option(Path("predictions"), "--out", "-o", help="Folder for one JSON (and PNGs) per image, or predictions.csv with --manifest."),
    manifest: Path = typer.Option(None, "--manifest", help="Predict every row of this manifest (CSV / Parquet): writes OUT/predictions.csv, the table 'osteolens evaluate' reads."),
    json_files: bool = typer.Option(False, "--json", help="With --manifest: also write one JSON per image (file arguments always do)."),
    scheduler: str = typer.Option(None, "--scheduler", help="Dask scheduler address (tcp://HOST:8786): predict on its workers (docs/scaling.md); no --cam / --saliency."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Without --scheduler: predict on a local Dask cluster of N worker processes (N > 1)."),
    cam: bool = typer.Option(False, "--cam", help="Write the Grad-CAM heat map and overlay PNGs."),
    cam_method: str = typer.Option("gradcam", help="gradcam or gradcam++."),
    cam_class: str = typer.Option(None, help="Explain this class instead of the predicted one."),
    saliency: bool = typer.Option(False, "--saliency", help="Also write plain gradient saliency (the dental seed's map)."),
    covariate: list[str] = typer.Option(None, "--covariate", "-c", help="NAME=VALUE for a model covariate (sex, age); overrides DICOM tags."),
    view: list[str] = typer.Option(None, "--view", help="NAME=FILE: one view of the study for a multi-view model (repeat per view, e.g. --view AP=ap.dcm --view LAT=lat.dcm)."),
    backend: str = typer.Option("onnx", help="onnx (ONNX Runtime) or torch."),
    threads: int = typer.Option(None, help="Threads of ONNX Runtime and torch (default: all cores; 1 is faster on a busy machine)."),
    batch_size: int = typer.Option(8, help="Images per model call without --cam / --saliency."),
    jsonl: bool = typer.Option(False, "--jsonl", help="Serve the JSON-lines protocol on stdin/stdout instead."),
    allowed_root: list[Path] = typer.Option(None, "--allowed-root", help="With --jsonl: a folder requests may read from and write to (repeatable)."),
    trusted_key: Path = typer.Option(None, "--trusted-key", help="Ed25519 public key (PEM): refuse the bundle unless signed by it ('osteolens bundle sign')."),
    dicom_out: Path = typer.Option(None, "--dicom-out", help="Also write a DICOM SR and a Grad-CAM Secondary Capture per image here, in the input's study (computes the Grad-CAM as --cam does; docs/dicom.md)."),
    patient_id: str = typer.Option(None, "--patient-id", help="With --dicom-out: Patient ID of a new study for PNG / JPEG / TIFF inputs (DICOM inputs keep their own)."),
    patient_name: str = typer.Option("", "--patient-name", help="With --patient-id: Patient's Name, e.g. DOE^JANE."),
    patient_birth_date: str = typer.Option("", "--patient-birth-date", help="With --patient-id: birth date YYYYMMDD."),
    patient_sex: str = typer.Option("", "--patient-sex", help="With --patient-id: M, F or O."),
    accession_number: str = typer.Option("", "--accession-number", help="With --patient-id: the new study's Accession Number."),
) -> None:
    """Predict radiographs with a trained bundle: one JSON per image, PNG heat maps with --cam.

    A batch goes on after a bad file; failures get a JSON with "result": "fail" and the
    reason, and are listed at the end (exit code 1 when any failed).

    Example: osteolens predict scans/ --model runs/knee/bundle --out preds/ --cam

    Example (runner): osteolens predict --jsonl --model bundle.zip --allowed-root /data <requests.jsonl

    Example (two views): osteolens predict --model spine2v/bundle --view AP=ap.dcm --view LAT=lat.dcm --cam

    Example (DICOM SR + Secondary Capture in the input's study): osteolens predict knee.dcm --model B --dicom-out dicom/

    Example (a manifest on a Dask cluster): osteolens predict --manifest /shared/test.csv --model /shared/bundle --out preds/ --scheduler tcp://head:8786
    """
    import json
    import sys

    from osteolens.errors import ConfigError, OsteolensError
    from osteolens.inference import Predictor, load_bundle
    from osteolens.inference.report import fail_record, ok_record, write_prediction

    inference_process(threads)
    if trusted_key is not None:
        model = load_bundle(model, trusted_key=trusted_key, lazy=True)  # the Predictor builds torch only if needed
    if jsonl:
        if images:
            raise ConfigError("--jsonl", "takes requests on stdin, not image arguments.", "drop the image paths.")
        if not allowed_root:
            raise ConfigError("--jsonl", "needs at least one --allowed-root.",
                              "name the folders requests may read from and write to.")
        from osteolens.serve.jsonl import run_jsonl

        predictor = Predictor(model, backend=backend, threads=threads, cam_method=cam_method)
        console.print(f"ready: {predictor.bundle.name} ({predictor.bundle.task}, {predictor.model_info['folds']} folds)")
        answered, failed = run_jsonl(predictor, allowed_root, sys.stdin, sys.stdout, cam=True)
        console.print(f"{answered} request(s), {failed} failed")
        return
    given = _pairs(covariate or [], "--covariate", "age=71")
    predictor = Predictor(model, backend=backend, threads=threads, cam_method=cam_method)
    if backend == "onnx" and predictor.bundle.onnx_model is None:
        console.print(f"note: {predictor.bundle.path} has no model.onnx, so it was exported at load (seconds); "
                      f"'osteolens export-onnx {predictor.bundle.path}' stores it once.", highlight=False)
    table = None
    if manifest is not None:
        table = _manifest_rows(manifest, images, view, predictor.views)
        files = samples = table.image_paths()
        names = [str(path) for path in files]
    elif predictor.views or view:
        files, samples = _study(predictor.views, images or [], _pairs(view or [], "--view", "AP=ap.dcm"))
        names = [" ".join(f"{k}={v}" for k, v in sample.items()) for sample in samples]
    else:
        files = samples = image_files(images or [])
        names = [str(path) for path in files]
    if not files:
        raise ConfigError("IMAGES", "no image given or found.", "pass image files or folders holding them.")
    patient = _dicom_patient(dicom_out, files, predictor.views, patient_id, patient_name, patient_birth_date,
                             patient_sex, accession_number)
    cam = cam or dicom_out is not None
    failures: list[tuple[int, str, str]] = []
    ok = 0
    stems = _stems(files)
    per_row = _row_covariates(table.frame, predictor.covariates, given) if table is not None else [given] * len(samples)
    write_json = table is None or json_files
    rows: dict[int, object] = {}
    if scheduler is not None or jobs > 1:
        if cam or saliency or predictor.views:
            raise ConfigError("--scheduler / --jobs", "a cluster runs batched single-view predictions, without explanations.",
                              "drop --cam, --saliency and --dicom-out, or run without --scheduler and --jobs.")
        from osteolens.scale import predict_on_cluster

        results = predict_on_cluster(str(predictor.bundle.path.resolve()), predictor.bundle.digest,
                                     [str(Path(path).resolve()) for path in samples], per_row, batch_size=batch_size,
                                     backend=backend, threads=threads, scheduler=scheduler, jobs=jobs)
    elif cam or saliency or predictor.views:  # one sample at a time: each needs its own Grad-CAM pass
        results = ((i, _attempt(predictor, sample, per_row[i], cam, saliency, cam_class)) for i, sample in enumerate(samples))
    else:  # batched, reading the next batch while the model runs
        results = predictor.predict_many(samples, per_row, batch_size=batch_size)
    for i, result in results:
        name, stem = names[i], stems[i]
        try:
            if isinstance(result, Exception):
                raise result
            record = write_prediction(result, out, stem, name) if write_json else ok_record(result, name)
            if dicom_out is not None:
                from osteolens.dicom_out import write_prediction_dicom

                write_prediction_dicom(files[i], result, record, predictor.bundle, dicom_out, patient=patient, stem=stem)
            ok += 1
            rows[i] = result
            if table is None:  # a manifest's rows go to predictions.csv, not the console
                shown = f"{record['probability']:.3f}" if record["probability"] is not None else f"{record['value']:.4g}"
                console.print(f"{name}: {record['diagnosis']} ({shown})", markup=False, highlight=False)
        except Exception as exc:  # a batch never dies on one file; bugs are reported with their type
            reason = str(exc) if isinstance(exc, OsteolensError) else f"internal error ({type(exc).__name__}: {exc})"
            failures.append((i, name, reason))
            rows[i] = reason
            if write_json:
                out.mkdir(parents=True, exist_ok=True)
                (out / f"{stem}.json").write_text(json.dumps(fail_record(name, reason), indent=2) + "\n")
    if table is not None:
        from osteolens.io._files import write_atomic
        from osteolens.scale import predictions_frame

        bundle = predictor.bundle
        frame = predictions_frame(table.frame, rows, bundle.task, bundle.labels, bundle.target)
        write_atomic(out / "predictions.csv", frame.to_csv(index=False))
        console.print(f"{ok} of {len(files)} image(s) predicted; table in {out / 'predictions.csv'}"
                      + (f", JSON in {out}" if write_json else ""), highlight=False)
    else:
        console.print(f"{ok} of {len(files)} image(s) predicted; JSON in {out}")
    failures.sort()  # a cluster answers in completion order; report in input order
    if report_failures([(name, reason) for _, name, reason in failures], out / "failures.csv" if failures else None):
        raise typer.Exit(1)


def export_onnx(
    bundle: Path = typer.Argument(..., help="Model bundle folder or .zip (model.onnx is added to it)."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the ONNX file here."),
    tolerance: float | None = typer.Option(None, help="Largest max-abs difference against torch that is accepted "
                                    "(default 1e-4 for classifier outputs, 1e-3 for a landmark detector's maps)."),
) -> None:
    """Export a bundle's fold ensemble to ONNX (and, single-view, its Grad-CAM graph), check both
    against torch, store them in the bundle.

    A landmark bundle gets its detector's graph (heatmap, offsets and corners), checked the same way.

    Example: osteolens export-onnx runs/knee/bundle
    """
    from osteolens.inference.bundle import bundle_task

    if bundle_task(bundle) == "landmarks":
        _export_landmark_onnx(bundle, out, tolerance)
        return
    from osteolens.inference.bundle import add_onnx, load_bundle
    from osteolens.inference.runtime import PARITY_TOLERANCE, export_checked

    loaded = load_bundle(bundle)
    in_chans = int(loaded.architecture.get("in_chans", 1))
    tolerance = PARITY_TOLERANCE if tolerance is None else tolerance
    model, difference = export_checked(loaded.models, loaded.input_size, in_chans, len(loaded.tabular), tolerance,
                                       views=max(1, len(loaded.views)))
    add_onnx(bundle, model, tolerance)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(model)
    console.print(f"model.onnx added to {bundle} ({len(model) / 2**20:.1f} MiB); "
                  f"max abs difference vs torch {difference:.2e} (tolerance {tolerance:.0e})")
    if not loaded.views:
        from osteolens.inference.bundle import add_cam_onnx
        from osteolens.inference.cam_graph import export_cam_onnx

        add_cam_onnx(bundle, export_cam_onnx(loaded.models, loaded.input_size, in_chans, len(loaded.tabular)))
        console.print(f"cam.onnx added to {bundle}: Grad-CAM without torch (docs/inference.md)")


def _export_landmark_onnx(bundle: Path, out: Path | None, tolerance: float | None) -> None:
    """``export-onnx`` of a landmark bundle: export, check against torch, store as its model.onnx."""
    from osteolens.landmarks.bundle import add_landmark_onnx

    graph, parity = add_landmark_onnx(bundle, tolerance=tolerance)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(graph)
    console.print(f"model.onnx added to landmark bundle {bundle} ({len(graph) / 2**20:.1f} MiB); max abs difference "
                  f"vs torch {parity['max_abs_difference']:.2e} (tolerance {parity['tolerance']:.0e})", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``predict`` and ``export-onnx`` to the main app."""
    app.command("predict")(predict)
    app.command("export-onnx")(export_onnx)
