"""The DICOM node under load: 200 phantom radiographs over 8 concurrent associations, results forwarded.

``osteolens node`` runs as a child process on 127.0.0.1 (a free port, ``--workers 2``) with a tiny
random-init ``simple_cnn`` bundle with its model.onnx and cam.onnx, as training writes them (2 conv
layers, 48 x 48 input: the figures measure the node,
its spool, Grad-CAM, the SR / SC writing and the forward, not a large network), and forwards to a
pynetdicom Storage SCP in this process. 200 phantom DX images (``generate_cohort``, 25 specimens,
160 x 160, uncompressed) are sent by 8 pynetdicom SCUs at once, 25 images each on one association.

Reported (median of 3 runs, a fresh node and ``--out`` each run):

* failures: C-STOREs not answered 0x0000, plus images whose SR never reached the destination;
* images per second: 200 / (last SR arrived - first C-STORE sent);
* p50 / p95 of the time from an image's C-STORE request to its forwarded SR arriving;
* the longest association (associate to release) and the sum of its C-STORE times: the goal is
  that an association lasts as long as its transfers, i.e. never waits for prediction.

Run: ``.venv/bin/python benchmarks/dicom_node.py [--images 200] [--associations 8] [--runs 3] [--no-write]``
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import free_port, machine_description, write_section  # noqa: E402

NODE_AE, SR, SC = "OSTEOLENS", "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7"
PREPROCESSING = [{"name": "percentile_normalise", "params": {}}, {"name": "crop_to_content", "params": {}},
                 {"name": "pad_to_square", "params": {}}, {"name": "resize", "params": {"size": 48}}]


def _bundle(path: Path) -> Path:
    import torch

    from osteolens.inference import add_cam_onnx, export_onnx, write_bundle
    from osteolens.inference.cam_graph import export_cam_onnx
    from osteolens.models import create_model

    torch.manual_seed(0)
    models = [create_model("simple_cnn", "binary", 1, conv_layers=2, filters=4, dense_units=8).eval() for _ in range(2)]
    write_bundle(path, models=models, preprocessing=PREPROCESSING, input_size=(48, 48), task="binary",
                 labels=["normal", "osteoporosis"], target="label", onnx_model=export_onnx(models, (48, 48)))
    return add_cam_onnx(path, export_cam_onnx(models, (48, 48)))  # both graphs, as training stores them


class _Destination:
    """The PACS: records when each SR arrives, by the SOP Instance UID of the radiograph it reports on."""

    def __init__(self) -> None:
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
        from pynetdicom import AE, evt

        self.sr_arrival: dict[str, float] = {}
        self.objects = 0
        ae = AE(ae_title="PACS")
        ae.maximum_associations = 4
        for sop_class in (SR, SC):
            ae.add_supported_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self.server.server_address[1]

    def _store(self, event) -> int:
        dataset = event.dataset
        self.objects += 1
        if dataset.SOPClassUID == SR:
            evidence = dataset.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
            self.sr_arrival.setdefault(str(evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID),
                                       time.monotonic())
        return 0x0000


def _wait_ready(port: int, process: subprocess.Popen, timeout: float = 180.0) -> None:
    from pynetdicom import AE

    ae = AE(ae_title="BENCH")
    ae.add_requested_context("1.2.840.10008.1.1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("the node exited before answering C-ECHO")
        assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
        if assoc.is_established:
            assoc.release()
            return
        time.sleep(0.5)
    sys.exit(f"the node did not answer C-ECHO within {timeout:.0f} s")


def _send(port: int, paths: list[Path], sent: dict[str, float], timings: list[dict], failures: list[str]) -> None:
    """One association: C-STORE ``paths`` in turn; record each request's start and the association's times."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE

    datasets = [pydicom.dcmread(path) for path in paths]  # read before timing: the transfer is measured
    ae = AE(ae_title="BENCH")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1.1", ExplicitVRLittleEndian)
    opened = time.monotonic()
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    if not assoc.is_established:
        failures.extend(["association refused"] * len(paths))
        return
    transfer = 0.0
    for dataset in datasets:
        start = time.monotonic()
        sent[str(dataset.SOPInstanceUID)] = start
        status = assoc.send_c_store(dataset)
        transfer += time.monotonic() - start
        if not status or status.Status != 0x0000:
            failures.append(f"status {getattr(status, 'Status', None)}")
    assoc.release()
    timings.append({"association": time.monotonic() - opened, "transfers": transfer})


def _run(bundle: Path, images: list[Path], associations: int, workers: int, timeout: float) -> dict[str, float]:
    destination = _Destination()
    port = free_port()
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "osteolens.cli.main", "node", "--model", str(bundle), "--out", out,
                   "--port", str(port), "--ae-title", NODE_AE, "--workers", str(workers),
                   "--forward", f"127.0.0.1:{destination.port}:PACS"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_ready(port, process)
            sent: dict[str, float] = {}
            timings: list[dict] = []
            failures: list[str] = []
            threads = [threading.Thread(target=_send, args=(port, images[i::associations], sent, timings, failures))
                       for i in range(associations)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            deadline = time.monotonic() + timeout
            while len(destination.sr_arrival) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
            destination.server.shutdown()
    latencies = [destination.sr_arrival[uid] - start for uid, start in sent.items() if uid in destination.sr_arrival]
    missing = len(images) - len(latencies)
    longest = max(timings, key=lambda item: item["association"])
    wall = max(destination.sr_arrival.values()) - min(sent.values())
    return {
        "failures": len(failures) + missing,
        "images_per_s": len(latencies) / wall,
        "p50": statistics.median(latencies),
        "p95": statistics.quantiles(latencies, n=20)[18],
        "longest_association": longest["association"],
        "its_transfers": longest["transfers"],
        "max_overhead": max(item["association"] - item["transfers"] for item in timings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="phantom images (8 per specimen)")
    parser.add_argument("--associations", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="the node's --workers")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the last SR")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave docs/benchmarks.md alone")
    args = parser.parse_args()

    from osteolens.phantom import generate_cohort

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        bundle = _bundle(tmp_path / "bundle")
        generate_cohort(tmp_path / "cohort", specimens=-(-args.images // 8), seed=0, formats=("dicom",))
        images = sorted((tmp_path / "cohort" / "dicom").glob("*.dcm"))[: args.images]
        runs = [_run(bundle, images, args.associations, args.workers, args.timeout) for _ in range(args.runs)]
    load_after = os.getloadavg()[0]
    med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    lines = [
        "## DICOM node under load (`benchmarks/dicom_node.py`)",
        "",
        f"Machine: {machine_description()}. Load average {load_before:.1f} before, {load_after:.1f} after"
        + (" (shared machine: other jobs were running)." if load_before > 1.5 else "."),
        "",
        f"`osteolens node --workers {args.workers}` (a tiny random-init simple_cnn bundle, 48 x 48 input, ONNX "
        f"Runtime, Grad-CAM, SR + SC written and forwarded by C-STORE to a pynetdicom SCP on loopback); "
        f"{len(images)} phantom DX images (160 x 160, Explicit VR Little Endian) sent by {args.associations} "
        f"concurrent associations; median of {args.runs} runs, each on a fresh node and `--out`.",
        "",
        "| images | failures | images/s | p50 C-STORE -> forwarded SR (s) | p95 (s) | longest association (s) "
        "| its C-STORE transfers (s) | largest association - transfers (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(images)} | {med['failures']:.0f} | {med['images_per_s']:.1f} | {med['p50']:.2f} | {med['p95']:.2f} "
        f"| {med['longest_association']:.2f} | {med['its_transfers']:.2f} | {med['max_overhead']:.3f} |",
        "",
        "Per run: " + "; ".join(f"{run['failures']} failures, {run['images_per_s']:.1f} images/s, p95 "
                                f"{run['p95']:.2f} s" for run in runs) + ".",
        "",
        "The C-STORE handler only checks and spools the dataset, so an association lasts as long as its transfers "
        "(the last column is association set-up and release) while prediction runs behind it on the workers. The "
        "burst is received in seconds and answered in order, so p50 and p95 are about the time to answer the whole "
        "burst; the rate is bound by the Python work per image (reading, Grad-CAM, building the SR and SC with "
        "highdicom, two forwarding C-STOREs), which the workers share in one interpreter. Run: "
        f"`.venv/bin/python benchmarks/dicom_node.py --images {args.images} --associations {args.associations}`.",
    ]
    if not args.no_write:
        write_section("dicom_node", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
