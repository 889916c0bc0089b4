"""The service's answer for a landmark bundle: vertebral corners, their measurements, Cobb angles, overlay.

:func:`osteolens.serve.create_app` calls :func:`add_predict_route` instead of the classifier
route when it is given a :class:`~osteolens.landmarks.predict.LandmarkDetector`. The upload
checks (format, header, pixel limit), the middleware and the DICOM file naming are the
classifier's (:mod:`osteolens.serve.app`); detection and measurement are
:func:`osteolens.landmarks.measure.measure_prediction`, the path of ``osteolens landmarks predict``
and ``osteolens morphometry``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile

from osteolens.errors import OsteolensError
from osteolens.landmarks.measure import measure_prediction
from osteolens.landmarks.predict import LandmarkDetector
from osteolens.morphometry.vertebra import CORNERS, VertebraMeasurement
from osteolens.serve.app import (NO_STUDY_NOTE, _checked_uploads, _client_message, _data_url, _dicom_results,
                                 _dicom_stem, _view_names)


def landmark_card(detector: LandmarkDetector) -> dict[str, Any]:
    """The model card of a landmark bundle: task, levels (``labels``), view, input size, metrics, digest."""
    bundle = detector.bundle
    keys = ("format_version", "created", "osteolens_version", "task", "labels", "input_size", "training_summary",
            "metrics")
    card = {key: bundle.manifest.get(key) for key in keys}
    card.update(name=bundle.path.name, digest=bundle.digest[:16], view=bundle.view,
                architecture=bundle.manifest["architecture"].get("backbone"), backend=detector.backend)
    return card


#: Keys of ``VertebraMeasurement.to_dict()`` that the answer gives elsewhere (name, corners, problems).
_NOT_MEASURED = {"vertebra", "view", "anterior_side", "problems", *(f"{c}_{axis}" for c in CORNERS for axis in "xy")}


def _measurements(vertebra: VertebraMeasurement) -> dict[str, Any]:
    """Heights (px, and mm with a pixel spacing), angles, ratios and grade of a vertebra; None where not finite."""
    return {key: None if isinstance(value, float) and not np.isfinite(value) else value
            for key, value in vertebra.to_dict().items() if key not in _NOT_MEASURED}


def _cobb(row: dict[str, Any]) -> dict[str, Any] | None:
    """``{pt, mt, tl: {degrees, upper, lower}, s_shaped}`` from a spine's ``cobb_row()``; None without angles."""
    if row["pt"] is None:
        return None
    angles: dict[str, Any] = {key: {"degrees": row[key], "upper": row[f"{key}_upper"], "lower": row[f"{key}_lower"]}
                              for key in ("pt", "mt", "tl")}
    angles["s_shaped"] = row["s_shaped"]
    return angles


def _shrunk_png(bgr: Any, max_side: int | None) -> bytes:
    """PNG bytes of a BGR overlay, shrunk (area averaging) so its longer side is at most ``max_side``."""
    import cv2

    from osteolens.explain import encode_png
    from osteolens.explain.grid import thumbnail

    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return encode_png(thumbnail(rgb, max_side) if max_side else rgb, huffman_only=True)


def add_predict_route(app: FastAPI, detector: LandmarkDetector, *, authorise: Any, max_pixels: int,
                      dicom_out: Path | None) -> None:
    """Add ``POST /v1/predict`` answering with the detector's corners, the measurements and the overlay."""
    from osteolens.io import read_radiograph

    bundle = detector.bundle
    digest = bundle.digest
    model = {"name": bundle.path.name, "digest": digest[:16],
             "architecture": bundle.manifest["architecture"].get("backbone"), "backend": "torch"}

    @app.post("/v1/predict", tags=["model"], dependencies=[Depends(authorise)])
    def predict(
        request: Request,
        file: list[UploadFile] = File(..., description="A spine radiograph: DICOM, PNG, JPEG, TIFF or BMP."),
        pixel_mm: float | None = Form(None, gt=0, description="Pixel spacing in mm (default: the DICOM's, else "
                                      "heights in pixels)."),
        max_side: int | None = Form(None, ge=16, description="Shrink the returned overlay to this longest side."),
    ) -> dict[str, Any]:
        """Find the vertebral corners of one radiograph, measure them and draw the overlay."""
        start = time.perf_counter()
        uploads, formats = _checked_uploads(file, max_pixels)
        _view_names([], len(uploads), None)  # one radiograph
        with tempfile.TemporaryDirectory(prefix="upload-") as folder:
            path = Path(folder) / "upload"
            path.write_bytes(uploads[0])
            try:
                radiograph = read_radiograph(path)
            except OsteolensError as exc:
                raise HTTPException(status_code=422, detail=_client_message(exc, folder)) from exc
            found = detector.predict_radiograph(radiograph, "upload", start)
            spine, overlay = measure_prediction(found, bundle.view, radiograph.pixels,
                                                pixel_mm if pixel_mm is not None else radiograph.spacing_mm)
            answer: dict[str, Any] = {"task": "landmarks", "request_id": request.state.request_id, "model": model,
                                      "view": spine.view, "image_shape": list(found.image_shape)}
            if dicom_out is not None and formats[0] == "DICOM":
                from osteolens.dicom_out.morphometry_sr import write_morphometry_sr

                named = path.rename(path.with_name(_dicom_stem(path, digest)))  # the SR is named after its source
                answer.update(_dicom_results(named, answer["request_id"],
                                             lambda: [write_morphometry_sr(spine, named, dicom_out, f"detected by {bundle.description}")]))
            elif dicom_out is not None:
                answer.update(dicom_files=[], dicom_uids=[], dicom_note=NO_STUDY_NOTE)
        confidence, low = found.detection.confidence, found.detection.low_confidence
        answer["vertebrae"] = [{"name": v.name, "confidence": round(float(confidence[k]), 4),
                                "low_confidence": bool(low[k]),
                                "corners": np.round(found.detection.corners[k], 2).tolist(),
                                "problems": list(v.problems), "measurements": _measurements(v)}
                               for k, v in enumerate(spine.vertebrae)]
        answer.update(cobb=_cobb(spine.cobb_row()), cobb_note=spine.cobb_note, low_confidence_count=int(low.sum()),
                      overlay_png=_data_url(_shrunk_png(overlay, max_side)), seconds=time.perf_counter() - start)
        return answer
