"""``osteolens.dicom_out``: the TID 1500 SR and the Grad-CAM Secondary Capture of a prediction."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from highdicom.sr import srread

from osteolens.dicom_out import Patient, write_dicom_results
from osteolens.dicom_out.sc import NOT_FOR_DIAGNOSIS, burn_in
from osteolens.errors import ConfigError
from osteolens.explain import overlay
from osteolens.inference import Predictor
from osteolens.inference.report import ok_record
from tests.dicom_out.conftest import dciodvfy_errors

PLATT = {"method": "platt", "params": {"a": 1.5, "b": -0.2}}


def _predict(bundle, path):
    predictor = Predictor(bundle, backend="torch")
    prediction = predictor.predict(path, cam=True)
    return predictor.bundle, ok_record(prediction, str(path)), overlay(prediction.image, prediction.heatmap)


def _group(sr):
    """The one measurement group, {name: (value, unit)} of its numbers, {name: code} of its coded
    items (highdicom's reader leaves (DCM, 121071, "Finding") out of its qualitative evaluations)
    and {name: [texts]}."""
    from highdicom.sr import CodedConcept
    from highdicom.sr.utils import find_content_items

    group = sr.content.get_image_measurement_groups()[0]
    numbers = {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}
    codes = {item.ConceptNameCodeSequence[0].CodeMeaning: CodedConcept.from_dataset(item.ConceptCodeSequence[0])
             for item in find_content_items(group[0], value_type="CODE")}
    texts: dict[str, list[str]] = {}
    for item in find_content_items(group[0], value_type="TEXT"):
        texts.setdefault(item.ConceptNameCodeSequence[0].CodeMeaning, []).append(item.TextValue)
    return group, numbers, codes, texts


def test_binary_sr_holds_the_record_and_joins_the_input_study(make_bundle, phantom_dicom, tmp_path):
    bundle, record, rgb = _predict(make_bundle(threshold=0.4, calibration=PLATT), phantom_dicom)
    sr_path, sc_path = write_dicom_results(phantom_dicom, record, bundle, tmp_path / "dcm", overlay_rgb=rgb)
    assert (sr_path.name, sc_path.name) == ("S0001_L1_AP_sr.dcm", "S0001_L1_AP_sc.dcm")
    source = pydicom.dcmread(phantom_dicom)
    sr = srread(sr_path)
    group, numbers, codes, texts = _group(sr)
    for k, label in enumerate(["normal", "osteoporosis"]):
        assert numbers[f"Probability of {label}"] == (pytest.approx(record["probabilities"][label]), "{probability}")
    assert numbers["Decision threshold"] == (pytest.approx(0.4), "{probability}")
    finding = codes["Finding"]
    expected = {"normal": "17621005", "osteoporosis": "64859006"}[record["label"]]
    assert (finding.value, finding.scheme_designator) == (expected, "SCT")
    assert codes["Calibration method"].meaning == "Platt scaling"
    assert texts["Algorithm Name"] == ["bundle"] and texts["Algorithm Version"] == [bundle.manifest["created"]]
    assert f"bundle sha256 {bundle.digest}" in texts["Algorithm Parameters"]
    # The radiograph is the evidence and the source image; study and patient are carried over.
    assert group.source_images[0].referenced_sop_instance_uid == source.SOPInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert evidence.ReferencedSOPInstanceUID == source.SOPInstanceUID
    for obj in (sr, pydicom.dcmread(sc_path)):
        for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber", "ReferringPhysicianName"):
            assert obj[keyword].value == source[keyword].value, keyword
        assert obj.SeriesInstanceUID != source.SeriesInstanceUID
    assert sr.SeriesInstanceUID != pydicom.dcmread(sc_path).SeriesInstanceUID


def test_secondary_capture_is_the_overlay_with_the_warning_burned_in(make_bundle, phantom_dicom, tmp_path):
    bundle, record, rgb = _predict(make_bundle(), phantom_dicom)
    _, sc_path = write_dicom_results(phantom_dicom, record, bundle, tmp_path, overlay_rgb=rgb)
    sc = pydicom.dcmread(sc_path)
    assert (sc.SOPClassUID, sc.PhotometricInterpretation, sc.SamplesPerPixel) == ("1.2.840.10008.5.1.4.1.1.7", "RGB", 3)
    assert NOT_FOR_DIAGNOSIS in sc.ImageComments and sc.BurnedInAnnotation == "YES"
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == pydicom.dcmread(phantom_dicom).SOPInstanceUID
    assert np.array_equal(sc.pixel_array, burn_in(rgb))


def test_burn_in_writes_white_text_on_a_black_band_and_keeps_the_rest():
    image = np.full((120, 300, 3), 100, np.uint8)
    burned = burn_in(image)
    band = np.flatnonzero((burned != 100).any(axis=(1, 2)))
    assert band[0] == 0 and 10 < len(band) < 60  # a band at the top
    top = burned[: band[-1] + 1]
    assert set(np.unique(top[top != 100])) >= {0, 255}  # black background, white text
    assert np.array_equal(burned[band[-1] + 1 :], image[band[-1] + 1 :])


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_multiclass_and_regression_values(make_bundle, phantom_dicom, tmp_path, task):
    bundle, record, _ = _predict(make_bundle(task), phantom_dicom)
    (sr_path,) = write_dicom_results(phantom_dicom, record, bundle, tmp_path)
    _, numbers, codes, _ = _group(srread(sr_path))
    if task == "regression":  # the test bundle's target is "bmd"
        assert numbers == {"Predicted bone mineral density": (pytest.approx(record["value"]), "mg/cm3")}
        assert codes == {}
        return
    assert {name: value for name, (value, _) in numbers.items()} == pytest.approx(
        {f"Probability of {label}": p for label, p in record["probabilities"].items()})
    assert codes["Finding"].meaning == record["label"].capitalize()
    assert codes["Calibration method"].meaning == "Not calibrated"


def test_writing_again_gives_the_same_uids(make_bundle, phantom_dicom, tmp_path):
    bundle, record, rgb = _predict(make_bundle(), phantom_dicom)
    first, again = ([pydicom.dcmread(p) for p in write_dicom_results(phantom_dicom, record, bundle, tmp_path / name,
                                                                     overlay_rgb=rgb)] for name in "ab")
    for one, two in zip(first, again, strict=True):
        assert (one.SOPInstanceUID, one.SeriesInstanceUID) == (two.SOPInstanceUID, two.SeriesInstanceUID)
    other = make_bundle(name="other", folds=1)
    moved = pydicom.dcmread(write_dicom_results(phantom_dicom, record, Predictor(other).bundle, tmp_path / "c")[0])
    assert moved.SOPInstanceUID != first[0].SOPInstanceUID  # another model: another result


def test_dciodvfy_finds_no_errors_in_the_sr_and_sc(make_bundle, phantom_dicom, tmp_path):
    bundle, record, rgb = _predict(make_bundle(threshold=0.5, calibration=PLATT), phantom_dicom)
    for path in write_dicom_results(phantom_dicom, record, bundle, tmp_path, overlay_rgb=rgb):
        assert dciodvfy_errors(path) == [], path


def test_png_without_patient_is_refused(make_bundle, radiograph_png, tmp_path):
    bundle, record, rgb = _predict(make_bundle(), radiograph_png)
    with pytest.raises(ConfigError, match=r"knee\.png.*not a DICOM file.*--patient-id"):
        write_dicom_results(radiograph_png, record, bundle, tmp_path, overlay_rgb=rgb)
    with pytest.raises(ConfigError, match="--patient-birth-date"):
        write_dicom_results(radiograph_png, record, bundle, tmp_path, patient=Patient("P7", birth_date="31/01/1950"))


def test_png_with_patient_opens_a_new_study(make_bundle, radiograph_png, tmp_path):
    bundle, record, rgb = _predict(make_bundle(), radiograph_png)
    patient = Patient("P7", name="DOE^JOHN", birth_date="19500131", sex="M", accession_number="A42")
    paths = write_dicom_results(radiograph_png, record, bundle, tmp_path, overlay_rgb=rgb, patient=patient)
    assert [p.name for p in paths] == ["knee_image.dcm", "knee_sr.dcm", "knee_sc.dcm"]
    image, sr, sc = (pydicom.dcmread(p) for p in paths)
    assert (image.Rows, image.Columns) == (90, 70)
    for obj in (image, sr, sc):
        assert (obj.StudyInstanceUID, obj.PatientID, str(obj.PatientName), obj.PatientBirthDate, obj.PatientSex,
                obj.AccessionNumber) == (image.StudyInstanceUID, "P7", "DOE^JOHN", "19500131", "M", "A42")
    assert srread(paths[1]).content.get_image_measurement_groups()[0].source_images[0].referenced_sop_instance_uid == (
        image.SOPInstanceUID)
    again = write_dicom_results(radiograph_png, record, bundle, tmp_path / "again", overlay_rgb=rgb, patient=patient)
    assert [pydicom.dcmread(p).SOPInstanceUID for p in again] == [obj.SOPInstanceUID for obj in (image, sr, sc)]
    for path in paths:
        assert dciodvfy_errors(path) == [], path
