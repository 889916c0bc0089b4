"""``osteolens predict --dicom-out`` end to end, and on the real CR files."""

from __future__ import annotations

import json

import pydicom
import pytest
from highdicom.sr import srread
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.errors import ConfigError
from tests.conftest import require_dataset
from tests.dicom_out.conftest import dciodvfy_errors


def test_predict_dicom_out_writes_the_sr_and_the_sc(make_bundle, phantom_dicom, tmp_path):
    out, dicom = tmp_path / "json", tmp_path / "dicom"
    result = CliRunner().invoke(app, ["predict", str(phantom_dicom), "--model", str(make_bundle(threshold=0.5)),
                                      "--out", str(out), "--dicom-out", str(dicom), "--backend", "torch"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in dicom.iterdir()) == ["S0001_L1_AP_sc.dcm", "S0001_L1_AP_sr.dcm"]
    record = json.loads((out / "S0001_L1_AP.json").read_text())
    sr = srread(dicom / "S0001_L1_AP_sr.dcm")
    values = {m.name.meaning: m.value for m in sr.content.get_image_measurement_groups()[0].get_measurements()}
    assert values["Probability of osteoporosis"] == pytest.approx(record["probability"])
    study = pydicom.dcmread(phantom_dicom).StudyInstanceUID
    assert pydicom.dcmread(dicom / "S0001_L1_AP_sc.dcm").StudyInstanceUID == study


def test_predict_dicom_out_refuses_a_png_without_patient_and_takes_one_with(make_bundle, radiograph_png, tmp_path):
    bundle, dicom = make_bundle(), tmp_path / "dicom"
    args = ["predict", str(radiograph_png), "--model", str(bundle), "--out", str(tmp_path / "o"),
            "--dicom-out", str(dicom), "--backend", "torch"]
    with pytest.raises(ConfigError, match=r"knee\.png: is not a DICOM file.*--patient-id"):
        CliRunner().invoke(app, args, catch_exceptions=False)
    assert not dicom.exists()  # refused before any work
    result = CliRunner().invoke(app, [*args, "--patient-id", "P7", "--patient-name", "DOE^JOHN",
                                      "--patient-sex", "m", "--accession-number", "A42"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in dicom.iterdir()) == ["knee_image.dcm", "knee_sc.dcm", "knee_sr.dcm"]
    assert {pydicom.dcmread(p).PatientSex for p in dicom.iterdir()} == {"M"}


@pytest.mark.slow
@pytest.mark.realdata
def test_real_cr_files_get_conformant_results_in_their_study(make_bundle, tmp_path):
    folder = require_dataset("dicom_radiographs")
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == 4
    dicom = tmp_path / "dicom"
    result = CliRunner().invoke(app, ["predict", *map(str, files), "--model", str(make_bundle("multiclass")),
                                      "--out", str(tmp_path / "o"), "--dicom-out", str(dicom), "--backend", "torch"])
    assert result.exit_code == 0, result.output
    for path in files:
        source = pydicom.dcmread(path, stop_before_pixels=True)
        record = json.loads((tmp_path / "o" / f"{path.stem}.json").read_text())
        sr_path, sc_path = dicom / f"{path.stem}_sr.dcm", dicom / f"{path.stem}_sc.dcm"
        sr = srread(sr_path)
        group = sr.content.get_image_measurement_groups()[0]
        assert group.source_images[0].referenced_sop_instance_uid == source.SOPInstanceUID
        values = {m.name.meaning: m.value for m in group.get_measurements()}
        assert values == pytest.approx({f"Probability of {k}": v for k, v in record["probabilities"].items()})
        sc = pydicom.dcmread(sc_path)
        assert (sc.Rows, sc.Columns) == (source.Rows, source.Columns)
        for obj in (sr, sc):
            assert (obj.StudyInstanceUID, obj.PatientID, obj.AccessionNumber) == (
                source.StudyInstanceUID, source.PatientID, source.AccessionNumber)
        assert dciodvfy_errors(sr_path) == [] and dciodvfy_errors(sc_path) == []
