"""The node as a process: SIGKILL mid-queue, restart on the same folder, every image answered exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE

from tests.serve.test_node import NODE_AE, Store, bundle, free_port, phantoms, results_by_input, send  # noqa: F401


def start_node(bundle_path: Path, out: Path, port: int, forward: str, log: Path) -> subprocess.Popen:
    """``python -m osteolens.cli.main node`` with one worker; returns once it answers C-ECHO."""
    command = [sys.executable, "-m", "osteolens.cli.main", "node", "--model", str(bundle_path), "--out", str(out),
               "--port", str(port), "--ae-title", NODE_AE, "--forward", forward, "--workers", "1", "--threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("ab"))
    ae = AE(ae_title="PACS")
    ae.add_requested_context("1.2.840.10008.1.1")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the node exited: {log.read_text()[-2000:]}"
        assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
        if assoc.is_established:
            status = assoc.send_c_echo()
            assoc.release()
            assert status.Status == 0x0000
            return process
        time.sleep(0.5)
    process.kill()
    pytest.fail("the node did not answer C-ECHO within 120 s")


@pytest.mark.slow
def test_killed_node_answers_every_image_once_after_restart(bundle, phantoms, tmp_path):
    out, log, port = tmp_path / "node", tmp_path / "node.log", free_port()
    destination = Store()
    process = start_node(bundle, out, port, destination.forward, log)
    try:
        assert send(port, phantoms) == [0x0000] * len(phantoms)
        waiting = list((out / "spool" / "inbox").glob("*.dcm"))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert waiting, "the queue was already empty when the node was killed (nothing tested)"
        answered_before = len(destination.received)
        process = start_node(bundle, out, port, destination.forward, log)
        received = destination.wait(2 * len(phantoms), timeout=120)
        time.sleep(1.0)  # anything answered twice would arrive now
        received = list(destination.received)
        process.send_signal(signal.SIGTERM)  # clean shutdown
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        destination.stop()
    table = results_by_input(received)
    uids = {str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in phantoms}
    assert set(table) == uids, "an image was not answered"
    assert all(len(kinds["sr"]) == 1 and len(kinds["sc"]) == 1 for kinds in table.values())
    assert answered_before < 2 * len(phantoms)
    assert not list((out / "spool" / "inbox").iterdir()) and not list((out / "spool" / "outbox").iterdir())
    text = log.read_text()
    assert "stopped" in text
    header = pydicom.dcmread(phantoms[0], stop_before_pixels=True)
    for secret in (*uids, header.StudyInstanceUID, str(header.PatientName), header.PatientID):
        assert secret not in text, "a UID or patient data in the node's log"
