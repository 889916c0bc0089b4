"""The dental seed's JSON-lines runner, made safe for a hospital network.

Protocol (one request per stdin line, one answer per stdout line, in order)::

    -> {"img_path": "/data/in/pano.dcm", "destination_path": "/data/out"[, "sex": "F", "age": 71]}
    <- {"result": "ok", "diagnosis": "...", "saliency_img_path": "...", "overlay_img_path": "...",
        "error": null, "label": ..., "probability": ..., ...}

For a multi-view model, ``img_path`` is an object naming one file per view,
``{"AP": "/data/in/ap.dcm", "LAT": "/data/in/lat.dcm"}``. An optional
``"dicom_destination_path"`` (inside the roots too) also writes the DICOM SR and Grad-CAM
Secondary Capture there (:mod:`osteolens.dicom_out`; ``"patient": {"patient_id": ...}`` for a
non-DICOM image), listed in the answer's ``"dicom_paths"``.

Differences from the seed: a failure says why (``"error"``), both paths must lie inside one
of the allowed roots (after resolving symbolic links and ``..``), a bad line (not JSON,
missing fields, unreadable image, unexpected exception) gets a ``"fail"`` answer and the
loop goes on, and every answer is flushed at once. The files read and written are the
resolved paths that were checked, never the names as given, so a symbolic link swapped
after the check cannot redirect them. Output files get a timestamp, as in the
seed, so repeated requests never overwrite each other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from osteolens.errors import OsteolensError
from osteolens.inference.predictor import Predictor
from osteolens.inference.report import fail_record, write_prediction


def _within(resolved: Path, roots: Sequence[Path]) -> bool:
    return any(resolved == root or resolved.is_relative_to(root) for root in roots)


def handle_line(line: str, predictor: Predictor, roots: Sequence[Path], cam: bool = True) -> dict[str, Any]:
    """Answer one request line; never raises."""
    image: str | None = None
    try:
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            return fail_record(None, f"the line is not JSON ({exc.msg} at column {exc.colno}).")
        if not isinstance(request, dict):
            return fail_record(None, 'the line must be a JSON object {"img_path": ..., "destination_path": ...}.')
        requested, destination = request.get("img_path"), request.get("destination_path")
        views = requested if isinstance(requested, dict) and requested else {None: requested}
        fields = {("img_path" if view is None else f"img_path.{view}"): value for view, value in views.items()}
        fields["destination_path"] = destination
        if "dicom_destination_path" in request:  # optional: also the DICOM SR and SC (docs/dicom.md)
            fields["dicom_destination_path"] = request["dicom_destination_path"]
        missing = [name for name, value in fields.items() if not isinstance(value, str) or not value]
        if missing:
            return fail_record(requested if isinstance(requested, str) else None,
                               f"missing or empty field(s) {', '.join(missing)} (strings expected).")
        image = " ".join(value if view is None else f"{view}={value}" for view, value in views.items())
        resolved = {name: Path(value).resolve() for name, value in fields.items()}
        for name, path in resolved.items():
            if not _within(path, roots):
                return fail_record(image, f"{name} is outside the allowed roots; refused. "
                                          "Fix: use a path under one of the --allowed-root folders.")
        # Read and write the checked (resolved) paths, not the names as given.
        paths = {view: resolved["img_path" if view is None else f"img_path.{view}"] for view in views}
        covariates = request.get("covariates") if isinstance(request.get("covariates"), dict) else {}
        covariates.update({key: request[key] for key in predictor.covariates if key in request})
        sample = paths.get(None, paths)  # one file, or {view: file}
        prediction = predictor.predict(sample, covariates=covariates, cam=cam)
        stem = f"{Path(next(iter(views.values()))).stem}_{datetime.now():%Y%m%d%H%M%S%f}"  # the name as given
        record = write_prediction(prediction, resolved["destination_path"], stem, image)
        if "dicom_destination_path" in resolved:
            record["dicom_paths"] = _write_dicom(predictor, prediction, paths, record, request.get("patient"),
                                                 resolved["dicom_destination_path"], stem)
        return record
    except OsteolensError as exc:
        return fail_record(image, str(exc))
    except Exception as exc:  # the loop must survive anything one request does
        return fail_record(image, f"internal error ({type(exc).__name__}: {exc}).")


def _write_dicom(predictor: Predictor, prediction: Any, paths: dict, record: dict[str, Any], patient: Any,
                 out_dir: Path, stem: str) -> list[str]:
    """The SR and SC of a request with ``dicom_destination_path`` (``patient``: an object of
    :class:`~osteolens.dicom_out.Patient` fields, for a non-DICOM image)."""
    from osteolens.dicom_out import Patient, write_prediction_dicom
    from osteolens.errors import ConfigError

    if None not in paths:
        raise ConfigError("dicom_destination_path", "is not available for multi-view models yet.", "drop it.")
    try:
        given = None if patient is None else Patient(**patient)
    except TypeError as exc:
        raise ConfigError("patient", f"is not an object of patient_id, name, birth_date, sex, accession_number "
                                     f"({exc}).", 'send e.g. {"patient_id": "P7", "name": "DOE^JOHN"}.') from exc
    return [str(path) for path in write_prediction_dicom(paths[None], prediction, record, predictor.bundle, out_dir,
                                                         patient=given, stem=stem)]


def run_jsonl(
    predictor: Predictor, roots: Iterable[str | Path], stdin: IO[str], stdout: IO[str], cam: bool = True
) -> tuple[int, int]:
    """Serve requests from ``stdin`` until it closes.

    Returns:
        (requests answered, failures).
    """
    resolved = [Path(root).resolve() for root in roots]
    answered = failed = 0
    for line in stdin:
        if not line.strip():
            continue
        record = handle_line(line, predictor, resolved, cam=cam)
        stdout.write(json.dumps(record) + "\n")
        stdout.flush()
        answered += 1
        failed += record["result"] != "ok"
    return answered, failed
