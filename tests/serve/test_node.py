"""The DICOM node on loopback: pynetdicom sends, a second in-process pynetdicom SCP receives the results."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, evt
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from osteolens.serve.node import DicomNode, Destination, item_key
from tests.conftest import require_dataset
from tests.dicom_out.conftest import dciodvfy_errors

NODE_AE, SR, SC = "OSTEOLENS", "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7"
CT = "1.2.840.10008.5.1.4.1.1.2"
PREPROCESSING = [{"name": "percentile_normalise", "params": {}}, {"name": "crop_to_content", "params": {}},
                 {"name": "pad_to_square", "params": {}}, {"name": "resize", "params": {"size": 48}}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Store:
    """A pynetdicom Storage SCP standing in for the PACS: keeps every dataset it receives."""

    def __init__(self, port: int = 0, ae_title: str = "PACS") -> None:
        self.received: list[pydicom.Dataset] = []
        self.arrived: list[float] = []
        self._lock = threading.Lock()
        ae = AE(ae_title=ae_title)
        for sop_class in (SR, SC):
            ae.add_supported_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self.server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port, self.ae_title = self.server.server_address[1], ae_title

    def _store(self, event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        with self._lock:
            self.received.append(dataset)
            self.arrived.append(time.monotonic())
        return 0x0000

    @property
    def forward(self) -> str:
        return f"127.0.0.1:{self.port}:{self.ae_title}"

    def wait(self, count: int, timeout: float = 60.0) -> list[pydicom.Dataset]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)

    def stop(self) -> None:
        self.server.shutdown()


def send(port: int, items, calling: str = "PACS", contexts=None) -> list[int | None]:
    """C-STORE ``items`` (paths or datasets) on one association; the status of each (None: no answer)."""
    ae = AE(ae_title=calling)
    for sop_class, syntax in contexts or _contexts(items):
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    assert assoc.is_established, "the node refused the association"
    try:
        statuses = []
        for item in items:
            answer = assoc.send_c_store(item)
            statuses.append(answer.Status if answer else None)
        return statuses
    finally:
        assoc.release()


def _contexts(items) -> set[tuple[str, str]]:
    found = set()
    for item in items:
        ds = item if isinstance(item, pydicom.Dataset) else pydicom.dcmread(item, stop_before_pixels=True)
        found.add((str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
    return found


def referenced_uid(result: pydicom.Dataset) -> str:
    """The radiograph an SR (evidence) or SC (source image) refers to."""
    if result.SOPClassUID == SR:
        return result.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0] \
            .ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    return result.SourceImageSequence[0].ReferencedSOPInstanceUID


def results_by_input(received: list[pydicom.Dataset]) -> dict[str, dict[str, set[str]]]:
    """``{input SOP Instance UID: {"sr": {SR UIDs}, "sc": {SC UIDs}}}`` of what the destination got."""
    table: dict[str, dict[str, set[str]]] = {}
    for ds in received:
        kind = "sr" if ds.SOPClassUID == SR else "sc"
        table.setdefault(referenced_uid(ds), {"sr": set(), "sc": set()})[kind].add(str(ds.SOPInstanceUID))
    return table


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A tiny binary simple_cnn bundle (as tests/inference/conftest.py makes them)."""
    import torch

    from osteolens.inference import write_bundle
    from osteolens.models import create_model

    torch.manual_seed(0)
    models = [create_model("simple_cnn", "binary", 1, conv_layers=2, filters=4, dense_units=8).eval() for _ in range(2)]
    return write_bundle(tmp_path_factory.mktemp("node") / "bundle", models=models, preprocessing=PREPROCESSING,
                        input_size=(48, 48), task="binary", labels=["normal", "osteoporosis"], target="label")


@pytest.fixture(scope="module")
def predictor(bundle):
    from osteolens.inference import Predictor

    return Predictor(bundle, threads=1)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> list[Path]:
    """8 phantom DX images (64 x 64) with a patient name, for checking that logs stay clean."""
    from osteolens.phantom import generate_cohort

    folder = tmp_path_factory.mktemp("phantoms")
    generate_cohort(folder, specimens=1, seed=0, size=64, formats=("dicom",))
    paths = sorted((folder / "dicom").glob("*.dcm"))
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.AccessionNumber = "DOE^JANE", "ACC0001"
        ds.save_as(path)
    return paths


@pytest.fixture
def store():
    destination = Store()
    yield destination
    destination.stop()


@pytest.fixture
def node(predictor, tmp_path):
    """``node(**options) -> started DicomNode`` on a free port; stopped after the test."""
    started: list[DicomNode] = []

    def _start(**options) -> DicomNode:
        options.setdefault("port", 0)
        options.setdefault("workers", 2)
        instance = DicomNode(predictor, options.pop("out", tmp_path / "node"), **options).start()
        started.append(instance)
        return instance

    yield _start
    for instance in started:
        instance.stop()


@pytest.fixture(scope="module")
def round_trip(predictor, phantoms, tmp_path_factory):
    """The 4 real CR files and 2 phantoms sent to a node that forwards to a Store: (inputs, statuses, received, out)."""
    real = sorted(require_dataset("dicom_radiographs").glob("*.dcm"))
    inputs = real + phantoms[:2]
    out = tmp_path_factory.mktemp("round_trip")
    destination = Store()
    instance = DicomNode(predictor, out, port=0, forward=destination.forward, workers=2).start()
    try:
        statuses = send(instance.port, inputs)
        received = destination.wait(2 * len(inputs), timeout=120)
        time.sleep(0.3)  # anything sent twice would arrive now
        received = list(destination.received)
    finally:
        instance.stop()
        destination.stop()
    return inputs, statuses, received, out


@pytest.mark.realdata
def test_every_input_gets_one_sr_and_one_sc_back(round_trip):
    inputs, statuses, received, out = round_trip
    assert statuses == [0x0000] * len(inputs)
    table = results_by_input(received)
    uids = {str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID): path for path in inputs}
    assert set(table) == set(uids)
    for uid, kinds in table.items():
        assert len(kinds["sr"]) == 1 and len(kinds["sc"]) == 1, uids[uid].name
    assert len(received) == 2 * len(inputs)  # nothing sent twice
    # the study is the input's, and the same objects are kept in out/results
    for ds in received:
        source = pydicom.dcmread(uids[referenced_uid(ds)], stop_before_pixels=True)
        assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == source.PatientID
    for uid in uids:
        key = item_key(uid)
        record = json.loads((out / "results" / f"{key}.json").read_text())
        assert record["result"] == "ok" and record["image"] == key
        assert sorted(record["dicom_files"]) == [f"{key}_sc.dcm", f"{key}_sr.dcm"]
        assert (out / "spool" / "done" / f"{key}.dcm").exists() and (out / "spool" / "sent" / f"{key}.json").exists()
    assert not list((out / "spool" / "inbox").iterdir()) and not list((out / "spool" / "outbox").iterdir())


@pytest.mark.realdata
def test_forwarded_sr_and_sc_pass_dciodvfy(round_trip, tmp_path):
    _, _, received, _ = round_trip
    for sop_class in (SR, SC):
        ds = next(item for item in received if item.SOPClassUID == sop_class)
        path = tmp_path / f"{sop_class}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == []


def test_echo_allow_list_and_unsupported_sop_class(node, caplog):
    instance = node(allow_ae=["PACS", "CR1"])
    caplog.set_level(logging.INFO, logger="osteolens.node")
    ae = AE(ae_title="PACS")
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.add_requested_context(CT, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", instance.port, ae_title=NODE_AE)
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
        assert [cx.abstract_syntax for cx in assoc.accepted_contexts] == ["1.2.840.10008.1.1"]
        assert [cx.abstract_syntax for cx in assoc.rejected_contexts] == [CT]  # CT Image Storage refused
    finally:
        assoc.release()
    stranger = AE(ae_title="INTRUDER")
    stranger.add_requested_context("1.2.840.10008.1.1")
    assoc = stranger.associate("127.0.0.1", instance.port, ae_title=NODE_AE)
    assert assoc.is_rejected
    assert "association from INTRUDER (127.0.0.1) rejected" in caplog.text
    wrong_called = ae.associate("127.0.0.1", instance.port, ae_title="SOMEONE")
    assert wrong_called.is_rejected


def test_truncated_dataset_fails_and_the_node_goes_on(node, phantoms, tmp_path, monkeypatch, caplog):
    import pynetdicom._config

    instance = node()
    whole = phantoms[2]
    cut = tmp_path / "cut.dcm"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) - 1000])
    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)  # send the file's bytes as they are
    with caplog.at_level(logging.INFO, logger="osteolens.node"):
        statuses = send(instance.port, [cut, whole])
        key = item_key(pydicom.dcmread(whole, stop_before_pixels=True).SOPInstanceUID)
        record = instance.out / "results" / f"{key}.json"
        deadline = time.monotonic() + 30
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert statuses[0] == 0xC210 and statuses[1] == 0x0000
    assert json.loads(record.read_text())["result"] == "ok"
    assert (instance.out / "results" / f"{key}_sr.dcm").exists()
    text = caplog.text
    assert f"C-STORE {key} from PACS: status 0xC210" in text
    header = pydicom.dcmread(whole, stop_before_pixels=True)
    for secret in (header.SOPInstanceUID, header.StudyInstanceUID, str(header.PatientName), header.PatientID):
        assert secret not in text


def test_prediction_failure_is_recorded_and_the_node_goes_on(node, phantoms):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    instance = node()
    broken = pydicom.dcmread(phantoms[3])
    broken.file_meta.TransferSyntaxUID = JPEG2000Lossless
    broken.PixelData = encapsulate([b"not a JPEG 2000 stream" * 4])
    broken["PixelData"].VR = "OB"
    good = phantoms[4]
    statuses = send(instance.port, [broken, good])
    assert statuses == [0x0000, 0x0000]  # the dataset is sound; its pixels fail later, on a worker
    key, good_key = item_key(broken.SOPInstanceUID), item_key(pydicom.dcmread(good).SOPInstanceUID)
    failures = instance.out / "results" / "failures.jsonl"
    deadline = time.monotonic() + 30
    while not (failures.exists() and (instance.out / "results" / f"{good_key}_sr.dcm").exists()):
        assert time.monotonic() < deadline, "the failure or the next image was not answered"
        time.sleep(0.05)
    lines = [json.loads(line) for line in failures.read_text().splitlines()]
    assert [line["key"] for line in lines] == [key] and lines[0]["error"]
    assert (instance.out / "spool" / "failed" / f"{key}.dcm").exists()
    assert json.loads((instance.out / "results" / f"{key}.json").read_text())["result"] == "fail"


def test_forward_retried_until_the_destination_is_up(node, phantoms):
    port = free_port()
    instance = node(forward=f"127.0.0.1:{port}:PACS", retry_delay=0.05, max_retry_delay=0.2)
    sent = phantoms[5:7]
    assert send(instance.port, sent) == [0x0000, 0x0000]
    outbox = instance.out / "spool" / "outbox"
    deadline = time.monotonic() + 30
    while len(list(outbox.glob("*.json"))) < 2:  # predicted, waiting for the destination
        assert time.monotonic() < deadline, "the results never reached the outbox"
        time.sleep(0.05)
    time.sleep(0.5)  # several failed attempts
    assert len(list(outbox.glob("*.json"))) == 2
    destination = Store(port)
    try:
        received = destination.wait(4, timeout=30)
        table = results_by_input(received)
        assert set(table) == {str(pydicom.dcmread(path).SOPInstanceUID) for path in sent}
        assert all(len(kinds["sr"]) == 1 and len(kinds["sc"]) == 1 for kinds in table.values())
        deadline = time.monotonic() + 10
        while list(outbox.glob("*.json")):
            assert time.monotonic() < deadline, "the outbox was not emptied"
            time.sleep(0.05)
        # sending an answered image again does not forward its results again
        assert send(instance.port, sent[:1]) == [0x0000]
        time.sleep(1.0)
        assert len(destination.received) == 4
    finally:
        destination.stop()


def test_restart_answers_what_the_spool_holds(predictor, phantoms, tmp_path, store):
    """Images left in the inbox (a node stopped mid-queue) are answered by the next start."""
    from osteolens.serve.node import Spool

    spool = Spool(tmp_path / "node")
    for path in phantoms[:3]:
        spool.receive(item_key(pydicom.dcmread(path).SOPInstanceUID), path.read_bytes())
    with DicomNode(predictor, tmp_path / "node", port=0, forward=store.forward, workers=1):
        received = store.wait(6, timeout=60)
    assert len(results_by_input(received)) == 3 and len(received) == 6


def test_destination_parse_and_bad_options(predictor, tmp_path):
    from osteolens.errors import ConfigError

    assert Destination.parse("[::1]:11112:PACS") == Destination("::1", 11112, "PACS")
    for bad in ("pacs:104", "pacs:port:PACS", ":104:PACS", "pacs:104:" + "A" * 17):
        with pytest.raises(ConfigError, match="--forward"):
            Destination.parse(bad)
    with pytest.raises(ConfigError, match="--workers"):
        DicomNode(predictor, tmp_path, workers=0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match="cannot listen"):
            DicomNode(predictor, tmp_path, port=taken.getsockname()[1]).start()


def test_a_landmark_detector_answers_with_the_morphometry_sr_and_the_overlay_sc(phantoms, tmp_path):
    """A spine detector behind the node: each radiograph gets the morphometry SR (Cobb angles of the
    detected corners) and the overlay SC, in its own study, conformant."""
    import numpy as np
    from highdicom.sr import srread

    from osteolens.io import read_radiograph
    from osteolens.landmarks.predict import LandmarkDetector
    from osteolens.morphometry import cobb_angles
    from tests.dicom_out.test_morphometry_sr import _groups
    from tests.serve.test_landmark_service import T1_L5, _bundle

    detector = LandmarkDetector.from_path(_bundle(tmp_path / "spine", T1_L5), threads=1)
    destination = Store()
    instance = DicomNode(detector, tmp_path / "node", port=0, forward=destination.forward, workers=1).start()
    try:
        statuses = send(instance.port, phantoms[:2])
        received = destination.wait(4, timeout=120)
    finally:
        instance.stop()
        destination.stop()
    assert statuses == [0x0000, 0x0000] and len(received) == 4
    table = results_by_input(received)
    for path in phantoms[:2]:
        source = pydicom.dcmread(path, stop_before_pixels=True)
        key, uid = item_key(source.SOPInstanceUID), str(source.SOPInstanceUID)
        assert len(table[uid]["sr"]) == 1 and len(table[uid]["sc"]) == 1
        record = json.loads((tmp_path / "node" / "results" / f"{key}.json").read_text())
        assert record["task"] == "landmarks" and record["result"] == "ok" and len(record["vertebrae"]) == 17
        assert sorted(record["dicom_files"]) == [f"{key}_morphometry_sr.dcm", f"{key}_overlay_sc.dcm"]
        # the record's corners and the SR's Cobb angles are those of the detection (recomputed here, in mm
        # with the DICOM's pixel spacing as morphometry measures them)
        detected = detector.predict_file(path).detection.corners
        assert np.abs(np.array([v["corners"] for v in record["vertebrae"]]) - detected).max() <= 0.005
        row, col = read_radiograph(path).spacing_mm
        expected = cobb_angles(detected * [col, row], record["image_shape"][0] * row)
        sr = srread(tmp_path / "node" / "results" / f"{key}_morphometry_sr.dcm")
        _, numbers = _groups(sr)["Cobb angles"]
        value, unit = numbers["Cobb angle, main thoracic (MT)"]
        assert unit == "deg" and float(value) == pytest.approx(expected.mt, abs=0.05)
        assert float(value) == pytest.approx(record["cobb"]["mt"]["degrees"], abs=1e-6)
    for ds in received:
        assert ds.StudyInstanceUID == pydicom.dcmread(
            next(p for p in phantoms[:2] if str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                 == referenced_uid(ds)), stop_before_pixels=True).StudyInstanceUID
        written = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(written, enforce_file_format=True)
        assert dciodvfy_errors(written) == []


def test_run_node_answers_a_landmark_bundle_with_its_detector(tmp_path, monkeypatch):
    import signal

    from osteolens.landmarks.predict import LandmarkDetector
    from osteolens.serve.node import node as node_module
    from tests.serve.test_landmark_service import T1_L5, _bundle

    class Started(Exception):
        pass

    seen = {}

    class Recorder:
        def __init__(self, predictor, out, **options):
            seen["predictor"] = predictor

        def start(self):
            raise Started

        def stop(self):
            seen["stopped"] = True

    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(node_module, "DicomNode", Recorder)
    with pytest.raises(Started):
        node_module.run_node(_bundle(tmp_path / "spine", T1_L5), tmp_path / "node", backend="torch", threads=1)
    assert isinstance(seen["predictor"], LandmarkDetector) and seen["predictor"].backend == "torch"
    assert seen["stopped"] and signal.getsignal(signal.SIGINT) is handler  # a failed start leaves no handler behind
