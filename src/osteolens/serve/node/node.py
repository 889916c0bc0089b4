"""The DICOM node: a Verification and Storage SCP that predicts what it receives and sends back
the results (see :mod:`osteolens.serve.node` for the whole picture).

A classifier or regressor answers with its TID 1500 SR and the Grad-CAM overlay as a Secondary
Capture; a landmark detector with the morphometry SR (vertebral heights and angles, the Cobb
angles with their end vertebrae) and the overlay of the detected corners as a Secondary Capture."""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from osteolens.errors import ConfigError, OsteolensError
from osteolens.serve.node.forward import Destination, Forwarder
from osteolens.serve.node.receive import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, STORAGE_SOP_CLASSES, check_received, transfer_syntaxes
from osteolens.serve.node.spool import Spool, item_key

LOG = logging.getLogger("osteolens.node")
VERIFICATION = "1.2.840.10008.1.1"


class DicomNode:
    """A C-ECHO / C-STORE SCP whose images are predicted on worker threads.

    The C-STORE handler only checks the dataset and writes it into the spool's inbox; worker
    threads predict each spooled image, write its SR and SC into ``out/results`` and, with a
    forward destination, put them in the outbox that a forwarder thread sends.

    Args:
        predictor: the :class:`~osteolens.inference.Predictor` (single-view model) or the
            :class:`~osteolens.landmarks.predict.LandmarkDetector` that answers.
        out: the node's folder (spool and results; reused across restarts).
        ae_title: the node's AE title (called AE of incoming associations, calling AE of forwards).
        host: interface to listen on.
        port: TCP port (0: any free port, see :attr:`port`).
        forward: ``HOST:PORT:AET`` or a :class:`Destination` that receives the SR and SC; None: keep
            them in ``out/results`` only.
        allow_ae: calling AE titles accepted (None or empty: any).
        workers: prediction threads.
        retry_delay: first back-off of a failed forward, in seconds (doubled per attempt).
        max_retry_delay: the back-off's cap, in seconds.
        max_associations: associations served at once.

    Raises:
        ConfigError: a multi-view model, a bad ``forward`` or AE title.

    Example:
        >>> node = DicomNode(Predictor("bundle"), "node/", port=11112, forward="pacs:104:PACS")  # doctest: +SKIP
        >>> node.start(); ...; node.stop()  # doctest: +SKIP
    """

    def __init__(self, predictor: Any, out: str | os.PathLike[str], *, ae_title: str = "OSTEOLENS",
                 host: str = "127.0.0.1", port: int = 11112, forward: str | Destination | None = None,
                 allow_ae: Sequence[str] | None = None, workers: int = 2, retry_delay: float = 1.0,
                 max_retry_delay: float = 60.0, max_associations: int = 16) -> None:
        if getattr(predictor, "views", None):
            raise ConfigError(predictor.bundle.path,
                              f"is a multi-view model (views {predictor.views}); the node predicts single images.",
                              "serve a single-view bundle.")
        if not ae_title.strip() or len(ae_title) > 16:
            raise ConfigError("--ae-title", f"{ae_title!r} is not an AE title (1-16 characters).", "e.g. OSTEOLENS.")
        if workers < 1:
            raise ConfigError("--workers", f"is {workers}; at least one worker predicts.", "use --workers 1 or more.")
        self.predictor, self.out = predictor, Path(out)
        self.ae_title, self.host, self._port = ae_title, host, port
        self.forward = Destination.parse(forward) if isinstance(forward, str) else forward
        self.allow_ae = [name.strip() for name in allow_ae or [] if name.strip()]
        self.workers, self.max_associations = workers, max_associations
        self.retry_delay, self.max_retry_delay = retry_delay, max_retry_delay
        self.digest = predictor.model_info["digest"]
        landmarks = predictor.bundle.manifest.get("task") == "landmarks"
        self._predict = _landmark_answer if landmarks else _classifier_answer
        self.spool: Spool | None = None
        self._queue: queue.Queue[str] = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._threads: list[threading.Thread] = []
        self._forwarder: Forwarder | None = None
        self._server: Any = None

    @property
    def port(self) -> int:
        """The TCP port listened on (the one the system chose when ``port`` was 0)."""
        return self._server.server_address[1] if self._server is not None else self._port

    def start(self) -> DicomNode:
        """Re-queue the spool, start the workers, the forwarder and the server; return self.

        Raises:
            FileWriteError: ``out`` is not writable.
            ConfigError: the port is taken or the address is not this machine's.
        """
        from pynetdicom import AE, evt

        self.spool = Spool(self.out)
        resumed = self.spool.inbox()
        for key in resumed:
            self._enqueue(key)
        if self.forward is not None:
            self._forwarder = Forwarder(self.spool, self.forward, self.ae_title, self.retry_delay, self.max_retry_delay)
            self._forwarder.start()
        self._threads = [threading.Thread(target=self._work, name=f"osteolens-node-worker-{i}", daemon=True)
                         for i in range(self.workers)]
        for thread in self._threads:
            thread.start()
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(VERIFICATION)
        syntaxes = transfer_syntaxes()
        for sop_class in STORAGE_SOP_CLASSES:
            ae.add_supported_context(sop_class, syntaxes)
        ae.require_called_aet = True
        ae.require_calling_aet = self.allow_ae
        ae.maximum_associations = self.max_associations
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_ACCEPTED, _log_association),
                    (evt.EVT_REJECTED, _log_association)]
        try:
            self._server = ae.start_server((self.host, self._port), block=False, evt_handlers=handlers)
        except OSError as exc:
            self._stop_threads()
            raise ConfigError("--port", f"cannot listen on {self.host}:{self._port} ({exc.strerror or exc}).",
                              "choose a free port (or stop what listens there) and an address of this machine.") from exc
        LOG.info("listening on %s:%d as %s (%d queued from disk, %d workers%s)", self.host, self.port, self.ae_title,
                 len(resumed), self.workers,
                 f", forwarding to {self.forward.ae_title}@{self.forward.host}:{self.forward.port}" if self.forward else "")
        return self

    def stop(self) -> None:
        """Stop listening, let each worker finish its current image, stop the forwarder.

        Images not yet predicted and results not yet forwarded stay in the spool for the next start.
        """
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._stop_threads()

    def __enter__(self) -> DicomNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _stop_threads(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join()
        if self._forwarder is not None:
            self._forwarder.stop()
            self._forwarder.join()

    def _enqueue(self, key: str) -> None:
        with self._lock:
            if key not in self._pending:
                self._pending.add(key)
                self._queue.put(key)

    def _on_store(self, event: Any) -> int:
        """The C-STORE handler: check, spool, queue; never predicts."""
        request = event.request
        calling = event.assoc.requestor.ae_title
        key = item_key(request.AffectedSOPInstanceUID or "")
        try:
            data = event.encoded_dataset()
            verdict = check_received(data, request.AffectedSOPClassUID, request.AffectedSOPInstanceUID)
            status, reason = verdict.status, verdict.reason
            if verdict.queue:
                self.spool.receive(key, data)
                self._enqueue(key)
        except OsteolensError:  # the spool cannot be written (disk full, permissions)
            status, reason = OUT_OF_RESOURCES, "cannot write the spool"
        except Exception as exc:  # noqa: BLE001  (pynetdicom would log a traceback, which may quote the data)
            status, reason = CANNOT_UNDERSTAND, f"the dataset cannot be checked ({type(exc).__name__})"
        if status:
            LOG.warning("C-STORE %s from %s: status 0x%04X, %s", key, calling, status, reason)
        else:
            LOG.info("C-STORE %s from %s: status 0x0000%s", key, calling, f", {reason}" if reason else "")
        return status

    def _work(self) -> None:
        while not self._halt.is_set():
            try:
                key = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                try:
                    self._answer(key)
                except Exception as exc:  # noqa: BLE001  (the node goes on whatever one image does)
                    self._fail(key, f"internal error ({type(exc).__name__}: {exc})",
                               logged=f"internal error ({type(exc).__name__}, see results/failures.jsonl)")
            except Exception as exc:  # noqa: BLE001  (not even the failure could be written: retried at the next start)
                LOG.error("cannot record %s (%s); it stays in the inbox", key, type(exc).__name__)
                self._finish(key, None)

    def _finish(self, key: str, target: str | None) -> None:
        """Move ``key`` out of the inbox (to ``target``) and let it be queued again, as one step:
        an image re-sent meanwhile is then either moved with it or queued anew, never stranded."""
        with self._lock:
            if target is not None:
                self.spool.move(key, "inbox", target)
            self._pending.discard(key)

    def _answer(self, key: str) -> None:
        """Predict one spooled image (unless a previous run did), write and queue its results."""
        from osteolens.io._files import write_atomic

        spool = self.spool
        source = spool.path("inbox", key)
        with self._lock:
            if not source.exists():  # a re-sent image already moved on by an earlier pass
                self._pending.discard(key)
                return
        record = spool.record(key)
        if not (record and record.get("result") == "ok" and (record.get("model") or {}).get("digest") == self.digest):
            try:
                record, files, summary = self._predict(self.predictor, source, key, spool.results)
            except OsteolensError as exc:
                self._fail(key, str(exc))
                return
            record["dicom_files"] = [path.name for path in files]
            write_atomic(spool.results / f"{key}.json", json.dumps(record, indent=2) + "\n")
            LOG.info("predicted %s: %s", key, summary)
        if self._forwarder is not None and not spool.forwarded(key):
            spool.queue_forward(key, [spool.results / name for name in record.get("dicom_files", [])], self.digest)
            self._forwarder.wake()
        self._finish(key, "done")

    def _fail(self, key: str, error: str, logged: str | None = None) -> None:
        """Record a prediction failure (results/<key>.json, a line of results/failures.jsonl) and go on.

        ``logged`` replaces ``error`` in the log when ``error`` is not osteolens' own message (another
        library's message may quote a value of the dataset)."""
        from osteolens.inference.report import fail_record
        from osteolens.io._files import write_atomic

        spool = self.spool
        LOG.warning("prediction of %s failed: %s", key, logged or error)
        write_atomic(spool.results / f"{key}.json", json.dumps(fail_record(key, error), indent=2) + "\n")
        line = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "key": key, "error": error}
        with self._lock:
            with open(spool.results / "failures.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")
        self._finish(key, "failed")


def _classifier_answer(predictor: Any, source: Path, key: str, results: Path) -> tuple[dict[str, Any], list[Path], str]:
    """A classifier's record, its SR and Grad-CAM SC (named ``<key>_sr.dcm``, ``<key>_sc.dcm``), and a log summary."""
    from osteolens.dicom_out import write_prediction_dicom
    from osteolens.inference.report import ok_record

    prediction = predictor.predict(source, cam=True)
    record = ok_record(prediction, key)
    files = write_prediction_dicom(source, prediction, record, predictor.bundle, results, stem=key)
    return record, files, str(record.get("diagnosis"))


def _landmark_answer(detector: Any, source: Path, key: str, results: Path) -> tuple[dict[str, Any], list[Path], str]:
    """A landmark detector's record (:func:`osteolens.landmarks.measure.spine_record`), its morphometry SR
    and overlay SC (``<key>_morphometry_sr.dcm``, ``<key>_overlay_sc.dcm``), and a log summary (no patient data)."""
    from osteolens.dicom_out import write_detection_dicom
    from osteolens.io import read_radiograph
    from osteolens.landmarks.measure import measure_radiograph, spine_record

    found, spine, overlay = measure_radiograph(detector, read_radiograph(source), key)
    record = {"image": key, "result": "ok", "error": None, "task": "landmarks", "model": detector.model_info,
              **spine_record(found, spine)}
    files = write_detection_dicom(source, spine, overlay, detector.bundle, results)
    cobb = record["cobb"]
    parts = [f"Cobb PT {cobb['pt']['degrees']:.1f}, MT {cobb['mt']['degrees']:.1f}, TL {cobb['tl']['degrees']:.1f} deg"
             if cobb else "no Cobb angles", f"{record['low_confidence_count']} low-confidence vertebra(e)"]
    parts += [flag.replace("_", " ") for flag in ("levels_uncertain", "unreliable") if record[flag]]
    return record, files, ", ".join(parts)


def _log_association(event: Any) -> None:
    requestor = event.assoc.requestor
    LOG.info("association from %s (%s) %s", requestor.ae_title, requestor.address,
             "accepted" if event.event.name == "EVT_ACCEPTED" else "rejected")


def run_node(model: str | os.PathLike[str], out: str | os.PathLike[str], *, ae_title: str = "OSTEOLENS",
             host: str = "127.0.0.1", port: int = 11112, forward: str | None = None,
             allow_ae: Sequence[str] | None = None, workers: int = 2, threads: int | None = None,
             trusted_key: str | os.PathLike[str] | None = None, backend: str = "onnx") -> None:
    """Serve a bundle (a classifier, regressor or landmark detector) as a DICOM node until SIGTERM or
    SIGINT (``osteolens node``).

    Args:
        model: bundle folder or .zip.
        out: the node's folder.
        ae_title, host, port, forward, allow_ae, workers: as for :class:`DicomNode`.
        threads: ONNX Runtime threads per prediction (default: cores / workers).
        trusted_key: Ed25519 public key (PEM) that must have signed the bundle.
        backend: ``onnx`` or ``torch``.
    """
    import signal

    from osteolens.inference import Predictor, load_bundle
    from osteolens.inference.bundle import bundle_task
    from osteolens.inference.runtime import default_threads

    threads = threads or max(1, default_threads() // max(1, workers))
    if bundle_task(model) == "landmarks":
        from osteolens.landmarks.predict import LandmarkDetector

        predictor: Any = LandmarkDetector.from_path(model, trusted_key, backend, threads)
    else:
        bundle = load_bundle(model, trusted_key=trusted_key, lazy=True) if trusted_key is not None else model
        predictor = Predictor(bundle, backend=backend, threads=threads)
        predictor.warm_up()
    node = DicomNode(predictor, out, ae_title=ae_title, host=host, port=port, forward=forward, allow_ae=allow_ae,
                     workers=workers)
    stopping = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        LOG.info("%s: stopping (workers finish their current image)", signal.Signals(signum).name)
        stopping.set()

    previous = {signum: signal.signal(signum, _stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        node.start()
        while not stopping.wait(1.0):
            pass
    finally:
        node.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        LOG.info("stopped")
