"""The JSON-lines runner's optional ``dicom_destination_path``."""

from __future__ import annotations

import json
import shutil

import pydicom

from osteolens.inference import Predictor
from osteolens.serve.jsonl import handle_line


def test_jsonl_request_writes_the_dicom_results_inside_the_roots(make_bundle, phantom_dicom, radiograph_png, tmp_path):
    root = tmp_path / "root"
    (root / "in").mkdir(parents=True)
    dcm = shutil.copy(phantom_dicom, root / "in" / "scan.dcm")
    png = shutil.copy(radiograph_png, root / "in" / "knee.png")
    predictor = Predictor(make_bundle(), backend="torch")

    def ask(**fields):
        return handle_line(json.dumps({"destination_path": str(root / "out"), **fields}), predictor, [root.resolve()])

    answer = ask(img_path=str(dcm), dicom_destination_path=str(root / "dicom"))
    assert answer["result"] == "ok", answer["error"]
    sr_path, sc_path = answer["dicom_paths"]
    assert sr_path.endswith("_sr.dcm") and sc_path.endswith("_sc.dcm")
    assert pydicom.dcmread(sr_path).StudyInstanceUID == pydicom.dcmread(dcm).StudyInstanceUID
    refused = ask(img_path=str(dcm), dicom_destination_path=str(tmp_path / "elsewhere"))
    assert refused["result"] == "fail" and "dicom_destination_path is outside the allowed roots" in refused["error"]
    no_patient = ask(img_path=str(png), dicom_destination_path=str(root / "dicom"))
    assert no_patient["result"] == "fail" and "--patient-id" in no_patient["error"]
    made = ask(img_path=str(png), dicom_destination_path=str(root / "dicom"), patient={"patient_id": "P7"})
    assert made["result"] == "ok" and len(made["dicom_paths"]) == 3
    assert pydicom.dcmread(made["dicom_paths"][0]).PatientID == "P7"
