"""The HTTP service: FastAPI over one shared :class:`~osteolens.inference.Predictor`.

Routes:

* ``POST /v1/predict``: multipart upload ``file`` (DICOM, PNG, JPEG, TIFF, BMP; a multi-view
  model takes one ``file`` part per view, each with a ``view`` field or in the model's order), optional
  covariate fields (``sex``, ``age``, or ``covariates`` as a JSON object), ``cam``
  (default true), ``cam_method``, ``cam_class`` (explain another class than the predicted
  one), ``max_side`` (shrink the returned PNGs); answers the
  prediction record (see ``osteolens.inference.report``) with the heat map and overlay as
  PNG data URLs (``heatmap_png``, ``overlay_png``; multi-view: the first view's, and every
  view's in ``view_pngs``) and the request id. With ``dicom_out``, an uploaded DICOM also gets its
  TID 1500 SR and Grad-CAM Secondary Capture written there (:mod:`osteolens.dicom_out`), named in
  ``dicom_files`` (relative to that folder) with their ``dicom_uids``; other uploads get a ``dicom_note``.
  A landmark bundle answers the vertebral corners, their problems, the Cobb angles and the
  overlay instead (:mod:`osteolens.serve.landmark_route`).
* ``GET /v1/model``: the model card. ``GET /healthz``: liveness (the model digest too when no
  token is configured or the caller sends it). ``/docs``, ``/redoc``, ``/openapi.json``: only
  with ``docs=True`` (Swagger UI loads its scripts from a CDN, which fails air-gapped).
* ``GET /``: the web page (``serve/static``), no external resources.

Safety: ``/v1/*`` need ``Authorization: Bearer <token>`` when a token is configured (401
otherwise, compared in constant time); bodies above ``max_upload_bytes`` are refused with
413 before they are read in full; images whose header claims more than ``max_pixels``
pixels get 413 before they are decoded; uploads whose first bytes are no known image format
get 415; unreadable images and missing covariates get 422. Logs carry a random request id,
the route, the status and the duration, never a file name, a patient tag or a pixel.
The predictor is built once; at most ``max_concurrent`` predict requests are served at a
time and the rest wait *before their bodies are read* (:mod:`osteolens.serve.admission`),
at most ``max_queue`` of them (503 with ``Retry-After`` beyond), so a burst of uploads
neither oversubscribes the CPU nor piles up in memory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from osteolens.errors import ConfigError, FileWriteError, OsteolensError
from osteolens.inference.predictor import Predictor
from osteolens.serve.admission import UNAUTHORISED, Admission, Slots, bearer_ok

if TYPE_CHECKING:
    from osteolens.landmarks.predict import LandmarkDetector

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 50 * 2**20
#: Largest image the service decodes by default: 5 * 10^7 pixels (200 MB as float32).
DEFAULT_SERVE_MAX_PIXELS = 50_000_000
log = logging.getLogger("osteolens.serve")


class BodyLimit:
    """ASGI middleware: 413 for bodies above ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": self._message()}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises HTTPException from body parsing; the app answers 413.
                    raise HTTPException(status_code=413, detail=self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"the upload is larger than {self.max_bytes / 2**20:g} MiB. Fix: send a smaller file."


def _client_message(exc: OsteolensError, temporary: str) -> str:
    """The error for the client, naming the upload rather than the server's temporary file."""
    reason = getattr(exc, "reason", None)
    if reason is None:
        return str(exc).replace(temporary, "upload")
    fix = getattr(exc, "fix", None)
    return f"upload {reason}" + (f" Fix: {fix}" if fix else "")


def _view_names(model_views: list[str], uploads: int, given: list[str] | None) -> list[str]:
    """The view of each upload (``[]`` for a single-view model), or 422 saying what is expected."""
    if not model_views:
        if uploads != 1 or given:
            raise HTTPException(status_code=422, detail=f"this model takes one image per request, got {uploads} "
                                "file(s). Fix: send a single 'file' part.")
        return []
    expected = f"one 'file' part per view {model_views} (with a 'view' field each, or in that order)"
    if uploads != len(model_views):
        raise HTTPException(status_code=422, detail=f"this model takes {len(model_views)} views {model_views}, "
                            f"got {uploads} file(s). Fix: send {expected}.")
    if not given:
        return list(model_views)
    lookup = {name.lower(): name for name in model_views}
    names = [lookup.get(str(name).strip().lower()) for name in given]
    if len(given) != uploads or None in names or len(set(names)) != len(names):
        raise HTTPException(status_code=422, detail=f"the 'view' fields {given} do not name the views {model_views} "
                            f"once each. Fix: send {expected}.")
    return [name for name in names if name is not None]


def _checked_uploads(parts: list[UploadFile], max_pixels: int) -> tuple[list[bytes], list[str]]:
    """The uploads' bytes and formats (from their content): 415 for no known image format, 422 for an
    unreadable header, 413 for more than ``max_pixels`` pixels, all before a pixel is decoded."""
    from osteolens.io.header import read_header
    from osteolens.io.sniff import SNIFF_BYTES, sniff_format

    uploads = [part.file.read() for part in parts]
    formats = [sniff_format(data[:SNIFF_BYTES]) for data in uploads]
    for k, data in enumerate(uploads):
        which = "the upload" if len(uploads) == 1 else f"upload {k + 1}"
        if formats[k] is None:
            raise HTTPException(status_code=415, detail=f"{which} is not a DICOM, PNG, JPEG, TIFF or BMP image "
                                "(checked from its content, not its name).")
        try:
            header = read_header(data)
        except OsteolensError as exc:
            raise HTTPException(status_code=422, detail=_client_message(exc, "upload")) from exc
        if header.pixels > max_pixels:
            raise HTTPException(status_code=413, detail=f"{which} is {header.cols} x {header.rows} = "
                                f"{header.pixels:,} pixels, more than this service's limit of {max_pixels:,} "
                                "pixels. Fix: send a downsampled image, or ask the operator to raise --max-pixels.")
    return uploads, [str(f) for f in formats]


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


#: The ``dicom_note`` of a non-DICOM upload.
NO_STUDY_NOTE = ("no DICOM results: the upload is not a DICOM file, and the service has no patient data to make "
                 "a study from. Fix: upload the DICOM original, or use 'osteolens predict --dicom-out' with "
                 "--patient-id.")


def _dicom_stem(source: Path, digest: str) -> str:
    """The name of an uploaded DICOM's results: a hash of its SOP Instance UID and the bundle ``digest``,
    the sources of their UIDs, so sending the same radiograph again replaces them."""
    from osteolens.dicom_out import read_header

    header = read_header(source)
    uid = str(header.get("SOPInstanceUID", "")) if header is not None else ""
    return hashlib.sha256(f"{uid}\0{digest}".encode()).hexdigest()[:32]


def _dicom_results(source: Path, request_id: str, write: Callable[[], list[Path]]) -> dict[str, Any]:
    """Write the DICOM results of the uploaded DICOM ``source`` with ``write()``: ``dicom_files`` (names),
    ``dicom_uids``. A DICOM that cannot join its study gets ``dicom_note`` instead."""
    import pydicom

    try:
        written = write()
    except FileWriteError:
        log.exception("request %s: the DICOM results could not be written", request_id)
        return {"dicom_files": [], "dicom_uids": [], "dicom_note": "no DICOM results: the service could not write "
                "them. Fix: ask the operator to check the --dicom-out folder."}
    except ConfigError as exc:
        note = f"no DICOM results: {_client_message(exc, str(source))}"
        return {"dicom_files": [], "dicom_uids": [], "dicom_note": note}
    uids = [str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
            for path in written]
    return {"dicom_files": [path.name for path in written], "dicom_uids": uids, "dicom_note": None}


def _add_classifier_route(app: FastAPI, predictor: Predictor, *, authorise: Callable[[Request], None], max_pixels: int,
                          dicom_out: Path | None) -> None:
    """Add ``POST /v1/predict`` answering with the classifier's prediction record, heat map and overlay."""

    @app.post("/v1/predict", tags=["model"], dependencies=[Depends(authorise)])
    def predict(
        request: Request,
        file: list[UploadFile] = File(..., description="A radiograph: DICOM, PNG, JPEG, TIFF or BMP. A multi-view "
                                      "model takes one 'file' part per view."),
        view: list[str] | None = Form(None, description="Multi-view models: the view of each 'file' part, in the "
                                      "same order (default: the model's view order)."),
        sex: str | None = Form(None, description="Patient sex M/F (else the DICOM PatientSex tag)."),
        age: float | None = Form(None, description="Age in years (else the DICOM PatientAge tag)."),
        covariates: str | None = Form(None, description='Other covariates as a JSON object, e.g. {"bmi": 24}.'),
        cam: bool = Form(True, description="Compute the Grad-CAM heat map and overlay."),
        cam_method: str = Form(predictor.cam_method, description="gradcam or gradcam++."),
        cam_class: str | None = Form(None, description="Explain this class instead of the predicted one."),
        max_side: int | None = Form(None, ge=16, description="Shrink the returned PNGs to this longest side."),
    ) -> dict[str, Any]:
        """Predict one radiograph (or one study of a multi-view model) and explain it."""
        from osteolens.dicom_out import write_prediction_dicom
        from osteolens.inference.report import ok_record, render_pngs

        request_id = request.state.request_id
        uploads, formats = _checked_uploads(file, max_pixels)
        names = _view_names(predictor.views, len(uploads), view)
        to_dicom = dicom_out is not None and formats[0] == "DICOM"  # single-view: one upload
        given: dict[str, Any] = {}
        if covariates:
            try:
                extra = json.loads(covariates)
            except json.JSONDecodeError as exc:
                raise HTTPException(status_code=422, detail=f"'covariates' is not JSON ({exc.msg}).") from exc
            if not isinstance(extra, dict):
                raise HTTPException(status_code=422, detail="'covariates' must be a JSON object.")
            given.update(extra)
        given.update({k: v for k, v in (("sex", sex), ("age", age)) if v is not None})
        # The files keep no trace of the uploads' names; they are removed as soon as they are read.
        with tempfile.TemporaryDirectory(prefix="upload-") as folder:
            paths = []
            for k, data in enumerate(uploads):
                paths.append(Path(folder) / f"{k}.bin")
                paths[-1].write_bytes(data)
            sample = dict(zip(names, paths, strict=True)) if names else paths[0]
            try:
                prediction = predictor.predict(sample, covariates=given, cam=cam or to_dicom,
                                               cam_method=cam_method, cam_class=cam_class)
            except OsteolensError as exc:
                raise HTTPException(status_code=422, detail=_client_message(exc, folder)) from exc
            images = render_pngs(prediction, max_side=max_side) if cam else {}
            record = ok_record(prediction, image=None)
            record["request_id"] = request_id
            if to_dicom:
                stem = _dicom_stem(paths[0], predictor.bundle.digest)
                record.update(_dicom_results(paths[0], request_id, lambda: write_prediction_dicom(
                    paths[0], prediction, record, predictor.bundle, dicom_out, stem=stem)))
            elif dicom_out is not None:
                record.update(dicom_files=[], dicom_uids=[], dicom_note=NO_STUDY_NOTE)
        first = f"{predictor.views[0]}_" if names else ""  # the model's first view, whatever the upload order
        record["heatmap_png"] = _data_url(images[first + "heatmap"]) if first + "heatmap" in images else None
        record["overlay_png"] = _data_url(images[first + "overlay"]) if first + "overlay" in images else None
        record["view_pngs"] = {name: {kind: _data_url(images[f"{name}_{kind}"]) if f"{name}_{kind}" in images
                                      else None for kind in ("heatmap", "overlay")}
                               for name in predictor.views} or None
        return record


def create_app(
    predictor: Predictor | LandmarkDetector,
    *,
    token: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_concurrent: int = 2,
    max_queue: int | None = None,
    max_pixels: int = DEFAULT_SERVE_MAX_PIXELS,
    docs: bool = False,
    dicom_out: Path | None = None,
) -> FastAPI:
    """Build the service around a loaded predictor.

    Args:
        predictor: the model, loaded once and shared by every request: a classifier / regressor
            ``Predictor``, or a vertebral ``LandmarkDetector`` (``POST /v1/predict`` then answers
            corners, measurements and Cobb angles, :mod:`osteolens.serve.landmark_route`).
        token: bearer token required on ``/v1/*``; None disables authentication (loopback use).
        max_upload_bytes: request bodies above this get 413 (default 50 MiB).
        max_concurrent: predict requests served at once; more wait their turn without their
            bodies being read.
        max_queue: predict requests allowed to wait; beyond that 503 with ``Retry-After``
            (None: no bound).
        max_pixels: images whose header claims more pixels (rows x columns) get 413 before
            decoding (default 5 * 10^7).
        docs: serve ``/docs``, ``/redoc`` and ``/openapi.json`` (off by default: Swagger UI
            and ReDoc load their scripts from a CDN).
        dicom_out: write the DICOM SR and Grad-CAM Secondary Capture of every uploaded DICOM
            here (created; Grad-CAM is then computed for DICOM uploads whatever ``cam`` says);
            a landmark detector writes the morphometry SR. Single-view models only.

    Raises:
        ConfigError: ``dicom_out`` with a multi-view model.
        FileWriteError: ``dicom_out`` cannot be created.
    """
    from osteolens import __version__

    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    landmarks = predictor.bundle.manifest.get("task") == "landmarks"  # the landmark code is imported only then
    if dicom_out is not None:
        if not landmarks and predictor.views:
            raise ConfigError("--dicom-out", f"is not available for multi-view models yet ({predictor.bundle.name} "
                              f"takes the views {predictor.views}).",
                              "drop --dicom-out, or serve a single-view bundle.")
        dicom_out = Path(dicom_out)
        try:
            dicom_out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FileWriteError(dicom_out, f"cannot create the --dicom-out folder ({exc.strerror or exc}).",
                                 "choose a writable folder.") from exc
    app = FastAPI(
        title="osteolens",
        version=__version__,
        description="Bone-health predictions with Grad-CAM explanations from a trained osteolens bundle.",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.slots = Slots(max_concurrent, max_queue)
    # Added first, so it runs inside BodyLimit (a declared oversize body is refused without queueing).
    app.add_middleware(Admission, slots=app.state.slots, path="/v1/predict", token=token)
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    if landmarks:
        from osteolens.serve.landmark_route import add_predict_route, landmark_card

        card, add_route = landmark_card(predictor), add_predict_route
    else:
        card, add_route = predictor.bundle.model_card(), _add_classifier_route
        card["backend"] = predictor.backend_name

    @app.middleware("http")
    async def request_log(request: Request, call_next: Any) -> Any:
        request_id = uuid.uuid4().hex[:12]
        request.state.request_id = request_id
        start = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Request-ID"] = request_id
        # Only the id, route, status and time: never file names, tags or images.
        log.info("request %s %s %s -> %d in %.0f ms", request_id, request.method, request.url.path,
                 response.status_code, (time.perf_counter() - start) * 1000)
        return response

    def authorise(request: Request) -> None:
        if token is None:
            return
        if not bearer_ok(request.headers.get("authorization", ""), token):
            raise HTTPException(status_code=401, detail=UNAUTHORISED, headers={"WWW-Authenticate": "Bearer"})

    @app.get("/healthz", tags=["service"])
    def healthz(request: Request) -> dict[str, Any]:
        """Liveness: the model is loaded. The model digest only without a token or with the right one."""
        if token is not None and not bearer_ok(request.headers.get("authorization", ""), token):
            return {"status": "ok"}
        return {"status": "ok", "model": card["digest"], "auth": token is not None}

    @app.get("/v1/model", tags=["model"], dependencies=[Depends(authorise)])
    def model_card() -> dict[str, Any]:
        """The model card: task, labels, threshold, covariates, training summary, metrics."""
        return card

    add_route(app, predictor, authorise=authorise, max_pixels=max_pixels, dicom_out=dicom_out)  # type: ignore[arg-type]

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
