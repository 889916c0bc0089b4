"""The service's answer for a landmark bundle: vertebral corners, their measurements, Cobb angles, overlay.

:func:`osteolens.serve.create_app` calls :func:`add_predict_route` instead of the classifier
route when it is given a :class:`~osteolens.landmarks.predict.LandmarkDetector`. The upload
checks (format, header, pixel limit), the middleware and the DICOM file naming are the
classifier's (:mod:`osteolens.serve.app`); detection and measurement are
:func:`osteolens.landmarks.measure.measure_radiograph`, the path of ``osteolens landmarks predict``
and ``osteolens morphometry``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile

from osteolens.errors import OsteolensError
from osteolens.landmarks.measure import measure_radiograph, spine_record
from osteolens.landmarks.predict import LandmarkDetector
from osteolens.serve.app import (NO_STUDY_NOTE, _checked_uploads, _client_message, _data_url, _dicom_results,
                                 _dicom_stem, _view_names)


def landmark_card(detector: LandmarkDetector) -> dict[str, Any]:
    """The model card of a landmark bundle: task, levels (``labels``), view, input size, metrics, digest."""
    bundle = detector.bundle
    keys = ("format_version", "created", "osteolens_version", "task", "labels", "input_size", "training_summary",
            "metrics")
    card = {key: bundle.manifest.get(key) for key in keys}
    card.update(detector.model_info, view=bundle.view)
    return card


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
            found, spine, overlay = measure_radiograph(detector, radiograph, "upload", pixel_mm, start)
            answer: dict[str, Any] = {"task": "landmarks", "request_id": request.state.request_id,
                                      "model": detector.model_info, **spine_record(found, spine)}
            if dicom_out is not None and formats[0] == "DICOM":
                from osteolens.dicom_out import write_detection_dicom

                named = path.rename(path.with_name(_dicom_stem(path, digest)))  # the results are named after their source
                answer.update(_dicom_results(named, answer["request_id"],
                                             lambda: write_detection_dicom(named, spine, overlay, bundle, dicom_out)))
            elif dicom_out is not None:
                answer.update(dicom_files=[], dicom_uids=[], dicom_note=NO_STUDY_NOTE)
        answer.update(overlay_png=_data_url(_shrunk_png(overlay, max_side)), seconds=time.perf_counter() - start)
        return answer
