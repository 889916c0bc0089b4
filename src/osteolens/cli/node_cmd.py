"""``osteolens node``: the DICOM node (C-ECHO / C-STORE SCP that answers with SR + SC)."""

from __future__ import annotations

from pathlib import Path

import typer


def node(
    model: Path = typer.Option(..., "--model", "-m", help="Model bundle folder or .zip: a single-view classifier or "
                               "regressor, or a landmark detector (answers with the morphometry SR and Cobb angles)."),
    out: Path = typer.Option(..., "--out", "-o", help="The node's folder: spool/ (the queue) and results/ (SR, SC, JSON); reuse it across restarts."),
    port: int = typer.Option(11112, help="TCP port to listen on."),
    ae_title: str = typer.Option("OSTEOLENS", "--ae-title", help="The node's AE title (called AE; calling AE of forwards)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: every interface)."),
    forward: str = typer.Option(None, "--forward", help="HOST:PORT:AET that receives every SR and SC by C-STORE (retried with back-off until accepted)."),
    allow_ae: str = typer.Option(None, "--allow-ae", help="Comma-separated calling AE titles allowed to associate (default: any)."),
    workers: int = typer.Option(2, min=1, help="Prediction threads."),
    threads: int = typer.Option(None, help="ONNX Runtime threads per prediction (default: cores / --workers)."),
    backend: str = typer.Option("onnx", help="onnx (ONNX Runtime) or torch."),
    trusted_key: Path = typer.Option(None, "--trusted-key", help="Ed25519 public key (PEM): refuse the bundle unless signed by it ('osteolens bundle sign')."),
) -> None:
    """Receive radiographs by DICOM C-STORE, predict them, write and forward a TID 1500 SR and a Grad-CAM SC
    (a landmark bundle: the morphometry SR with the Cobb angles, and the overlay of the detected corners as SC).

    Example: osteolens node --model runs/knee/bundle --port 11112 --ae-title OSTEOLENS --out /srv/osteolens
    --forward pacs.example.org:104:PACS --allow-ae PACS,CR1
    """
    import logging
    import warnings

    from osteolens.cli.predict_cmd import inference_process

    inference_process(None)  # before torch is imported
    from osteolens.serve.node import run_node

    # The log must name no patient: osteolens' own lines name images by a hash, while highdicom's
    # and pynetdicom's INFO lines and pydicom's / highdicom's value warnings quote UIDs and names.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("osteolens").setLevel(logging.INFO)
    logging.getLogger("highdicom").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(pydicom|highdicom)(\.|$)")
    run_node(model, out, ae_title=ae_title, host=host, port=port, forward=forward, allow_ae=(allow_ae or "").split(","),
             workers=workers, threads=threads, trusted_key=trusted_key, backend=backend)


def register(app: typer.Typer) -> None:
    """Add ``node`` to the main app."""
    app.command("node")(node)
