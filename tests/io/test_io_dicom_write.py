"""write_dicom: valid DX / Secondary Capture files that read back identically."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from osteolens.errors import RadiographWriteError
from osteolens.io import Radiograph, RadiographMeta, read_radiograph, write_dicom

_META = RadiographMeta(
    patient_id="PH-0007",
    sex="F",
    age_years=67.0,
    view="AP",
    body_part="LSPINE",
    laterality="L",
    manufacturer="osteolens phantom",
)
_FIELDS = ("patient_id", "sex", "age_years", "view", "body_part", "laterality", "manufacturer")


def _image(shape=(48, 40), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("bits", [16, 12, 8])
def test_round_trip_pixels_and_metadata(tmp_path, photometric, bits):
    pixels = _image()
    rg = Radiograph(pixels, (0.143, 0.15), _META)
    path = write_dicom(rg, tmp_path / "x.dcm", photometric=photometric, bits_stored=bits)
    back = read_radiograph(path)
    assert np.abs(back.pixels - pixels).max() <= 0.5 / (2**bits - 1) + 1e-7
    assert back.spacing_mm == (0.143, 0.15)
    for name in _FIELDS:
        assert getattr(back.meta, name) == getattr(_META, name), name
    assert (back.meta.modality, back.meta.photometric, back.meta.bits_stored) == ("DX", photometric, bits)
    assert back.meta.original_shape == (48, 40)


def test_monochrome1_stores_inverted_values(tmp_path):
    pixels = np.array([[0.0, 0.25], [0.5, 1.0]])
    path = write_dicom(Radiograph(pixels), tmp_path / "m1.dcm", photometric="MONOCHROME1", bits_stored=8)
    ds = pydicom.dcmread(path)
    # 255 - round(p * 255); round(127.5) = 128 (half to even)
    np.testing.assert_array_equal(ds.pixel_array, [[255, 191], [127, 0]])
    assert ds.PresentationLUTShape == "INVERSE"
    np.testing.assert_allclose(read_radiograph(path).pixels, [[0, 64 / 255], [128 / 255, 1]], atol=1e-7)


def test_dx_attributes(tmp_path):
    path = write_dicom(Radiograph(_image(), (0.2, 0.2), _META), tmp_path / "dx.dcm")
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == pydicom.uid.DigitalXRayImageStorageForPresentation
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.PresentationIntentType == "FOR PRESENTATION"
    assert (ds.PatientAge, ds.PatientSex, ds.ImageLaterality) == ("067Y", "F", "L")
    assert "Laterality" not in ds  # the series attribute is not allowed beside ImageLaterality in DX
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.2, 0.2]
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 16, 15, 0)
    assert (ds.RescaleSlope, ds.RescaleIntercept, ds.VOILUTFunction) == (1, 0, "LINEAR_EXACT")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert pydicom.uid.UID(ds[keyword].value).is_valid


def test_secondary_capture(tmp_path):
    path = write_dicom(Radiograph(_image()), tmp_path / "sc.dcm", secondary_capture=True, modality="OT")
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert ds.Modality == "OT" and ds.ConversionType == "WSD"
    assert "PresentationIntentType" not in ds and "PixelSpacing" not in ds
    back = read_radiograph(path)
    assert back.spacing_mm is None and back.meta.modality == "OT"


def test_uid_seed_gives_the_same_bytes_and_pairs_views(tmp_path):
    rg = Radiograph(_image(), (0.2, 0.2), _META)
    a = write_dicom(rg, tmp_path / "a.dcm", uid_seed="cohort-1").read_bytes()
    b = write_dicom(rg, tmp_path / "b.dcm", uid_seed="cohort-1").read_bytes()
    assert a == b
    assert b"20000101" in a
    other_seed = write_dicom(rg, tmp_path / "c.dcm", uid_seed="cohort-2").read_bytes()
    assert other_seed != a
    random_1 = pydicom.dcmread(write_dicom(rg, tmp_path / "r1.dcm"))
    random_2 = pydicom.dcmread(write_dicom(rg, tmp_path / "r2.dcm"))
    assert random_1.SOPInstanceUID != random_2.SOPInstanceUID
    # A second view of the same patient under the same seed: same study, new instance.
    lateral = Radiograph(_image(seed=1), (0.2, 0.2), RadiographMeta(**{**_META.to_dict(), "view": "LL"}))
    ap_ds = pydicom.dcmread(tmp_path / "a.dcm")
    ll_ds = pydicom.dcmread(write_dicom(lateral, tmp_path / "ll.dcm", uid_seed="cohort-1"))
    assert ll_ds.StudyInstanceUID == ap_ds.StudyInstanceUID
    assert ll_ds.SOPInstanceUID != ap_ds.SOPInstanceUID


def test_orientation_row_zero_on_top(tmp_path):
    pixels = np.zeros((6, 9), dtype=np.float32)
    pixels[0, 0] = 1.0
    pixels[5, 8] = 0.5
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        back = read_radiograph(write_dicom(Radiograph(pixels), tmp_path / f"o_{photometric}.dcm", photometric=photometric))
        assert back.shape == (6, 9)
        assert np.unravel_index(np.argmax(back.pixels), back.shape) == (0, 0)
        assert back.pixels[5, 8] == pytest.approx(0.5, abs=1e-4)


def test_odd_number_of_8_bit_pixels(tmp_path):
    pixels = np.linspace(0, 1, 15).reshape(3, 5)
    back = read_radiograph(write_dicom(Radiograph(pixels), tmp_path / "odd.dcm", bits_stored=8))
    assert np.abs(back.pixels - pixels).max() <= 0.5 / 255 + 1e-7


def test_unknown_metadata_round_trips_as_none(tmp_path):
    back = read_radiograph(write_dicom(Radiograph(_image()), tmp_path / "bare.dcm"))
    for name in _FIELDS:
        assert getattr(back.meta, name) is None, name


@pytest.mark.parametrize(
    ("kwargs", "meta", "match"),
    [
        ({"photometric": "RGB"}, _META, "grey-scale"),
        ({"bits_stored": 20}, _META, "outside 8..16"),
        ({"modality": "CR"}, _META, "requires Modality DX"),
        ({}, RadiographMeta(body_part="left knee"), "BodyPartExamined 'left knee'"),
        ({}, RadiographMeta(sex="female"), "PatientSex"),
        ({}, RadiographMeta(age_years=-3), "age"),
    ],
)
def test_bad_requests_raise_write_errors(tmp_path, kwargs, meta, match):
    with pytest.raises(RadiographWriteError, match=match):
        write_dicom(Radiograph(_image(), None, meta), tmp_path / "bad.dcm", **kwargs)
    assert not (tmp_path / "bad.dcm").exists()


def test_nan_pixels_are_refused(tmp_path):
    pixels = _image()
    pixels[1, 1] = np.nan
    with pytest.raises(RadiographWriteError, match="NaN"):
        write_dicom(Radiograph(pixels), tmp_path / "nan.dcm")


def test_patient_orientation_and_anatomic_region(tmp_path):
    path = write_dicom(Radiograph(_image(), (0.2, 0.2), _META), tmp_path / "o.dcm", patient_orientation=("L", "F"))
    ds = pydicom.dcmread(path)
    assert list(ds.PatientOrientation) == ["L", "F"]
    region = ds.AnatomicRegionSequence[0]
    assert (region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning) == ("122496007", "SCT", "Lumbar spine")
    back = read_radiograph(path)
    assert back.meta.extra["patient_orientation"] == ["L", "F"]
    # Kept when the radiograph is written again.
    assert list(pydicom.dcmread(write_dicom(back, tmp_path / "again.dcm")).PatientOrientation) == ["L", "F"]
    with pytest.raises(RadiographWriteError, match="patient_orientation"):
        write_dicom(Radiograph(_image()), tmp_path / "bad.dcm", patient_orientation=("left", "F"))


@pytest.mark.parametrize("secondary_capture", [False, True])
def test_dciodvfy_finds_no_errors(tmp_path, secondary_capture):
    """dicom3tools' IOD validator (Debian package dicom3tools), when installed."""
    import subprocess

    from tests.conftest import require_dciodvfy

    dciodvfy = require_dciodvfy()
    meta = RadiographMeta(**{**_META.to_dict(), "body_part": "KNEE"})
    path = write_dicom(
        Radiograph(_image(), (0.2, 0.2), meta),
        tmp_path / "v.dcm",
        photometric="MONOCHROME1",
        secondary_capture=secondary_capture,
        modality="OT" if secondary_capture else "DX",
        patient_orientation=("L", "F"),
    )
    report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    output = report.stdout + report.stderr
    assert ("SCImage" if secondary_capture else "DXImageForPresentation") in output
    assert "Error" not in output, output
