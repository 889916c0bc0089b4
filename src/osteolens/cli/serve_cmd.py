"""``osteolens serve``: the HTTP service and web page."""

from __future__ import annotations

from pathlib import Path

import typer

from osteolens.cli.common import console


def serve(
    model: Path = typer.Option(..., "--model", "-m", help="Model bundle folder or .zip (a classifier, regressor or landmark detector)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 exposes the service to the network)."),
    port: int = typer.Option(8000, help="TCP port."),
    token_file: Path = typer.Option(None, help="File holding the bearer token required on /v1/* (recommended off loopback)."),
    max_upload_mb: float = typer.Option(50.0, help="Largest accepted upload in MiB (413 above)."),
    backend: str = typer.Option("onnx", help="onnx (ONNX Runtime) or torch."),
    threads: int = typer.Option(None, help="Threads of ONNX Runtime and torch per prediction (default: cores / --max-concurrent)."),
    max_concurrent: int = typer.Option(2, help="Predictions running at once; further requests queue (bodies unread)."),
    max_queue: int = typer.Option(None, min=0, help="Requests allowed to queue; beyond that 503 with Retry-After (default: no bound)."),
    max_pixels: int = typer.Option(50_000_000, min=1, help="Largest accepted image in pixels, from its header (413 above)."),
    docs: bool = typer.Option(False, "--docs", help="Serve /docs, /redoc and /openapi.json (Swagger UI loads from a CDN)."),
    trusted_key: Path = typer.Option(None, "--trusted-key", help="Ed25519 public key (PEM): refuse the bundle unless signed by it ('osteolens bundle sign')."),
    dicom_out: Path = typer.Option(None, "--dicom-out", help="Also write a DICOM SR and a Grad-CAM Secondary Capture (landmark bundles: the morphometry SR) here for every uploaded DICOM, in its study (single-view models; docs/dicom.md)."),
) -> None:
    """Serve a bundle over HTTP: POST /v1/predict, GET /v1/model, GET /healthz, and a web page at /.

    A landmark bundle ('osteolens landmarks train') answers each radiograph's vertebral corners,
    their measurements, the Cobb angles (AP) and the overlay.

    Example: osteolens serve --model runs/knee/bundle --port 8000 --token-file ~/.osteolens-token
    """
    import logging

    from osteolens.cli.predict_cmd import inference_process

    inference_process(None)  # before torch is imported
    import torch
    import uvicorn

    from osteolens.inference.runtime import default_threads

    # Predictions run side by side: share the cores between them.
    threads = threads or max(1, default_threads() // max(1, max_concurrent))
    torch.set_num_threads(threads)

    from osteolens.errors import ConfigError
    from osteolens.inference import Predictor
    from osteolens.inference.bundle import bundle_task
    from osteolens.serve import create_app

    token = None
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(token_file, f"cannot read the token file ({exc.strerror or exc}).", "check the path.") from exc
        if not token:
            raise ConfigError(token_file, "the token file is empty.", "write a long random token into it.")
    elif host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] serving on {host} without --token-file: anyone who can reach it may use it.")
    if bundle_task(model) == "landmarks":
        from osteolens.landmarks.predict import LandmarkDetector

        predictor: Predictor | LandmarkDetector = LandmarkDetector.from_path(model, trusted_key, backend, threads)
        name = predictor.bundle.name
    else:
        if trusted_key is not None:
            from osteolens.inference import load_bundle

            model = load_bundle(model, trusted_key=trusted_key, lazy=True)  # the Predictor builds torch only if needed
        predictor = Predictor(model, backend=backend, threads=threads)
        predictor.warm_up()
        name = predictor.bundle.name
    app = create_app(predictor, token=token, max_upload_bytes=int(max_upload_mb * 2**20), max_concurrent=max_concurrent,
                     max_queue=max_queue, max_pixels=max_pixels, docs=docs, dicom_out=dicom_out)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    console.print(f"serving {name} on http://{host}:{port}/" + (" (docs at /docs)" if docs else ""))
    uvicorn.run(app, host=host, port=port, log_level="info")


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the main app."""
    app.command("serve")(serve)
