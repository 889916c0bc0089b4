"""The HTTP service: FastAPI over one shared :class:`~osteolens.inference.Predictor`.

Routes:

* ``POST /v1/predict``: multipart upload ``file`` (DICOM, PNG, JPEG, TIFF, BMP), optional
  covariate fields (``sex``, ``age``, or ``covariates`` as a JSON object), ``cam``
  (default true), ``cam_method``, ``cam_class`` (explain another class than the predicted
  one), ``max_side`` (shrink the returned PNGs); answers the
  prediction record (see ``osteolens.inference.report``) with the heat map and overlay as
  PNG data URLs (``heatmap_png``, ``overlay_png``) and the request id.
* ``GET /v1/model``: the model card. ``GET /healthz``: liveness. ``/docs``: OpenAPI.
* ``GET /``: the web page (``serve/static``), no external resources.

Safety: ``/v1/*`` need ``Authorization: Bearer <token>`` when a token is configured (401
otherwise, compared in constant time); bodies above ``max_upload_bytes`` are refused with
413 before they are read in full; uploads whose first bytes are no known image format get
415; unreadable images and missing covariates get 422. Logs carry a random request id,
the route, the status and the duration, never a file name, a patient tag or a pixel.
The predictor is built once; at most ``max_concurrent`` predictions run at a time (the
rest queue), so concurrent uploads cannot oversubscribe the CPU.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from osteolens.errors import OsteolensError
from osteolens.inference.predictor import Predictor

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 50 * 2**20
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


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def create_app(
    predictor: Predictor,
    *,
    token: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_concurrent: int = 2,
) -> FastAPI:
    """Build the service around a loaded predictor.

    Args:
        predictor: the model, loaded once and shared by every request.
        token: bearer token required on ``/v1/*``; None disables authentication (loopback use).
        max_upload_bytes: request bodies above this get 413 (default 50 MiB).
        max_concurrent: predictions running at once; more requests wait their turn.
    """
    from osteolens import __version__
    from osteolens.io.sniff import SNIFF_BYTES, sniff_format

    app = FastAPI(
        title="osteolens",
        version=__version__,
        description="Bone-health predictions with Grad-CAM explanations from a trained osteolens bundle.",
    )
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    slots = threading.BoundedSemaphore(max_concurrent)
    card = predictor.bundle.model_card()
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
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token. Fix: send "
                                "'Authorization: Bearer <token>'.", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        """Liveness: the model is loaded."""
        return {"status": "ok", "model": card["digest"], "auth": token is not None}

    @app.get("/v1/model", tags=["model"], dependencies=[Depends(authorise)])
    def model_card() -> dict[str, Any]:
        """The model card: task, labels, threshold, covariates, training summary, metrics."""
        return card

    @app.post("/v1/predict", tags=["model"], dependencies=[Depends(authorise)])
    def predict(
        request: Request,
        file: UploadFile = File(..., description="A radiograph: DICOM, PNG, JPEG, TIFF or BMP."),
        sex: str | None = Form(None, description="Patient sex M/F (else the DICOM PatientSex tag)."),
        age: float | None = Form(None, description="Age in years (else the DICOM PatientAge tag)."),
        covariates: str | None = Form(None, description='Other covariates as a JSON object, e.g. {"bmi": 24}.'),
        cam: bool = Form(True, description="Compute the Grad-CAM heat map and overlay."),
        cam_method: str = Form(predictor.cam_method, description="gradcam or gradcam++."),
        cam_class: str | None = Form(None, description="Explain this class instead of the predicted one."),
        max_side: int | None = Form(None, ge=16, description="Shrink the returned PNGs to this longest side."),
    ) -> dict[str, Any]:
        """Predict one radiograph and explain it."""
        from osteolens.inference.report import ok_record, render_pngs

        request_id = request.state.request_id
        data = file.file.read()
        if sniff_format(data[:SNIFF_BYTES]) is None:
            raise HTTPException(status_code=415, detail="the upload is not a DICOM, PNG, JPEG, TIFF or BMP image "
                                "(checked from its content, not its name).")
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
        # The file keeps no trace of the upload's name; it is removed as soon as it is read.
        with tempfile.NamedTemporaryFile(prefix="upload-", suffix=".bin") as handle:
            handle.write(data)
            handle.flush()
            with slots:
                try:
                    prediction = predictor.predict(handle.name, covariates=given, cam=cam, cam_method=cam_method,
                                                   cam_class=cam_class)
                except OsteolensError as exc:
                    raise HTTPException(status_code=422, detail=_client_message(exc, handle.name)) from exc
                images = render_pngs(prediction, max_side=max_side)
        record = ok_record(prediction, image=None)
        record["request_id"] = request_id
        record["heatmap_png"] = _data_url(images["heatmap"]) if "heatmap" in images else None
        record["overlay_png"] = _data_url(images["overlay"]) if "overlay" in images else None
        return record

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
