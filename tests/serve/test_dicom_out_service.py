"""``create_app(..., dicom_out=DIR)`` / ``osteolens serve --dicom-out``: the SR and SC of every uploaded DICOM."""

from __future__ import annotations

import io
import json

import pydicom
import pytest
from fastapi.testclient import TestClient
from highdicom.sr import srread

from osteolens.errors import ConfigError
from osteolens.serve import create_app
from tests.dicom_out.conftest import phantom_dicom  # noqa: F401 (fixture)


def _strings(value):
    """Every string inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_dicom_upload_gets_its_sr_and_sc_in_the_folder(make_predictor, phantom_dicom, tmp_path):  # noqa: F811
    out = tmp_path / "dicom"
    client = TestClient(create_app(make_predictor(), dicom_out=out))
    data = phantom_dicom.read_bytes()
    response = client.post("/v1/predict", files={"file": ("scan.dcm", data, "application/dicom")},
                           data={"cam": "false"})  # the SC needs the Grad-CAM all the same
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] == "ok" and body["dicom_note"] is None and body["heatmap_png"] is None
    sr_name, sc_name = body["dicom_files"]
    assert sr_name.endswith("_sr.dcm") and sc_name.endswith("_sc.dcm")
    assert sorted(path.name for path in out.iterdir()) == sorted(body["dicom_files"])
    # Names relative to the folder: no absolute server path anywhere in the answer.
    assert not any(text.startswith("/") or str(tmp_path) in text for text in _strings(body))
    assert str(tmp_path) not in response.text
    source = pydicom.dcmread(io.BytesIO(data))
    sr = srread(out / sr_name)
    sc = pydicom.dcmread(out / sc_name)
    assert body["dicom_uids"] == [sr.SOPInstanceUID, sc.SOPInstanceUID]
    assert sr.StudyInstanceUID == sc.StudyInstanceUID == source.StudyInstanceUID
    group = sr.content.get_image_measurement_groups()[0]
    assert group.source_images[0].referenced_sop_instance_uid == source.SOPInstanceUID
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    numbers = {m.name.meaning: m.value for m in group.get_measurements()}
    assert set(body["probabilities"]) == {"normal", "osteoporosis"}
    for label, probability in body["probabilities"].items():
        assert numbers[f"Probability of {label}"] == pytest.approx(probability, abs=1e-6)
    assert numbers["Decision threshold"] == pytest.approx(body["threshold"])
    # The same radiograph again: the same files and UIDs, replaced rather than added.
    again = client.post("/v1/predict", files={"file": ("other-name.dcm", data)}).json()
    assert (again["dicom_files"], again["dicom_uids"]) == (body["dicom_files"], body["dicom_uids"])
    assert again["heatmap_png"] is not None and len(list(out.iterdir())) == 2


def test_png_upload_gets_a_note_and_writes_nothing(make_predictor, png_bytes, tmp_path):
    out = tmp_path / "dicom"
    client = TestClient(create_app(make_predictor(), dicom_out=out))
    body = client.post("/v1/predict", files={"file": ("scan.png", png_bytes, "image/png")}).json()
    assert body["result"] == "ok" and body["label"] in ("normal", "osteoporosis")
    assert body["dicom_files"] == [] and body["dicom_uids"] == []
    assert "not a DICOM file" in body["dicom_note"] and "patient data" in body["dicom_note"]
    assert list(out.iterdir()) == []
    # Without --dicom-out the answer has no DICOM fields at all.
    plain = TestClient(create_app(make_predictor(name="plain")))
    assert "dicom_files" not in plain.post("/v1/predict", files={"file": ("a.png", png_bytes)}).json()


def test_dicom_without_its_uids_gets_a_note_naming_the_upload(make_predictor, phantom_dicom, tmp_path):  # noqa: F811
    ds = pydicom.dcmread(phantom_dicom)
    del ds.StudyInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer)
    out = tmp_path / "dicom"
    body = TestClient(create_app(make_predictor(), dicom_out=out)).post(
        "/v1/predict", files={"file": ("x.dcm", buffer.getvalue())}).json()
    assert body["result"] == "ok" and body["dicom_files"] == []
    assert body["dicom_note"].startswith("no DICOM results: upload: the DICOM file lacks StudyInstanceUID")
    assert str(tmp_path) not in json.dumps(body) and list(out.iterdir()) == []


def test_multi_view_bundle_is_refused_at_start(make_predictor, tmp_path):
    with pytest.raises(ConfigError, match="--dicom-out: is not available for multi-view models"):
        create_app(make_predictor(views=["AP", "LAT"]), dicom_out=tmp_path / "dicom")
    assert not (tmp_path / "dicom").exists()
