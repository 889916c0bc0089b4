"""``osteolens morphometry --dicom-out``: a TID 1500 SR per spine whose radiograph is DICOM."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from highdicom.sr import srread
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.io import Radiograph, RadiographMeta, write_dicom
from tests.dicom_out.conftest import dciodvfy_errors
from tests.morphometry.conftest import make_quad

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
HEIGHTS = {"Anterior vertebral height": "anterior_height", "Middle vertebral height": "middle_height",
           "Posterior vertebral height": "posterior_height", "Left vertebral height (image left)": "left_height",
           "Right vertebral height (image right)": "right_height"}
ANGLES = {"Superior endplate angle": "superior_angle_deg", "Inferior endplate angle": "inferior_angle_deg",
          "Wedge angle": "wedge_angle_deg", "Vertebral tilt": "tilt_deg"}


def _table(path, image, quads, names, view):
    rows = [{"image": image, "vertebra": name, "corner": corner, "x": x, "y": y, "view": view}
            for name, quad in zip(names, quads, strict=True)
            for corner, (x, y) in zip(CORNERS, quad.corners, strict=True)]
    return pd.DataFrame(rows).to_csv(path, index=False) or path


def _run(tmp_path, table, *extra):
    result = CliRunner().invoke(app, ["morphometry", "--landmarks", str(table), "--out", str(tmp_path / "m.csv"),
                                      "--dicom-out", str(tmp_path / "dicom"), *extra])
    assert result.exit_code == 0, result.output
    return result.output, pd.read_csv(tmp_path / "m.csv")


def _groups(sr):
    """{tracking identifier: (group, {name: (value, unit)})} of the SR's measurement groups."""
    out = {}
    for group in sr.content.get_image_measurement_groups():
        numbers = {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}
        out[group.tracking_identifier] = (group, numbers)
    return out


@pytest.fixture
def lateral_dicom(tmp_path):
    """A 160 x 120 DX at 0.25 mm with patient data, and a landmark table of L1-L3 (L2 wedged: grade 3)."""
    meta = RadiographMeta(patient_id="P-MORPHO", sex="F", age_years=71)
    path = write_dicom(Radiograph(np.zeros((160, 120), np.float32), spacing_mm=(0.25, 0.25), meta=meta),
                       tmp_path / "spine.dcm")
    quads = [make_quad(40, 24, 25, 2.0, 0.0, (60, 30)), make_quad(40, 12, 25, 5.0, 3.0, (60, 70)),
             make_quad(40, 25, 26, 0.0, -2.0, (60, 110))]
    return path, _table(tmp_path / "landmarks.csv", "spine.dcm", quads, ("L1", "L2", "L3"), "lateral")


def test_lateral_sr_holds_the_csv_values_and_joins_the_source_study(lateral_dicom, tmp_path):
    source_path, table = lateral_dicom
    output, rows = _run(tmp_path, table)
    assert "1 DICOM SR(s)" in output
    sr_path = tmp_path / "dicom" / "spine_morphometry_sr.dcm"
    sr, source = srread(sr_path), pydicom.dcmread(source_path)
    assert (sr.StudyInstanceUID, sr.PatientID, sr.PatientSex) == (source.StudyInstanceUID, "P-MORPHO", "F")
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID and sr.SeriesNumber == 992
    groups = _groups(sr)
    assert list(groups) == ["L1", "L2", "L3"]
    sites = {"L1": "66794005", "L2": "14293000", "L3": "36470004"}
    for row in rows.itertuples():
        group, numbers = groups[row.vertebra]
        assert group.source_images[0].referenced_sop_instance_uid == source.SOPInstanceUID
        site = group.finding_sites[0].value
        assert (site.value, site.scheme_designator) == (sites[row.vertebra], "SCT")
        expected = {name: (getattr(row, f"{column}_mm"), "mm") for name, column in HEIGHTS.items()
                    if column.split("_")[0] in ("anterior", "middle", "posterior")}
        expected |= {name: (getattr(row, column), "deg") for name, column in ANGLES.items()}
        expected["Genant grade"] = (row.genant_grade, "1")
        assert numbers == {k: (pytest.approx(v), unit) for k, (v, unit) in expected.items()}
    assert rows.set_index("vertebra").loc["L2", "genant_grade"] == 3  # a deformity: its type is coded too
    evaluations = {e.name.meaning: e.value.meaning for e in groups["L2"][0].get_qualitative_evaluations()}
    assert evaluations == {"Vertebral deformity type": "Wedge deformity"}
    assert dciodvfy_errors(sr_path) == []

    uids = (sr.SOPInstanceUID, sr.SeriesInstanceUID, [g.tracking_uid for g, _ in groups.values()])
    _run(tmp_path, table)
    again = srread(sr_path)
    assert (again.SOPInstanceUID, again.SeriesInstanceUID,
            [g.tracking_uid for g, _ in _groups(again).values()]) == uids
    assert len(set(uids[2])) == 3


def test_ap_spine_without_spacing_reports_pixels_and_cobb_angles(tmp_path):
    write_dicom(Radiograph(np.zeros((260, 160), np.float32)), tmp_path / "ap.dcm")
    tilts = (0.0, 12.0, -4.0, 6.0, -8.0)
    quads = [make_quad(40, 20, 20, 0.0, tilt, (80, 30 + 45 * k)) for k, tilt in enumerate(tilts)]
    names = ("T11", "T12", "L1", "L2", "L6")
    table = _table(tmp_path / "landmarks.csv", "ap.dcm", quads, names, "AP")
    _, rows = _run(tmp_path, table)
    cobb = pd.read_csv(tmp_path / "cobb.csv").iloc[0]
    sr_path = tmp_path / "dicom" / "ap_morphometry_sr.dcm"
    groups = _groups(srread(sr_path))
    assert list(groups) == [*names, "Cobb angles"]
    for row in rows.itertuples():
        numbers = groups[row.vertebra][1]
        assert numbers["Middle vertebral height"] == (pytest.approx(row.middle_height_px), "{pixels}")
        assert numbers["Left vertebral height (image left)"] == (pytest.approx(row.left_height_px), "{pixels}")
        assert numbers["Wedge angle"] == (pytest.approx(row.wedge_angle_deg), "deg")
        assert "Genant grade" not in numbers  # AP views have no anterior / posterior heights
    assert groups["L6"][0].finding_sites[0].value.scheme_designator == "99OSTEOLENS"
    group, numbers = groups["Cobb angles"]
    assert group.finding_sites[0].value.value == "421060004"
    assert numbers == {"Cobb angle, proximal thoracic (PT)": (pytest.approx(cobb.pt), "deg"),
                       "Cobb angle, main thoracic (MT)": (pytest.approx(cobb.mt), "deg"),
                       "Cobb angle, thoracolumbar (TL)": (pytest.approx(cobb.tl), "deg")}
    ends = {e.name.meaning: e.value.meaning for e in group.get_qualitative_evaluations()}
    assert ends["Proximal thoracic curve upper end vertebra"] == f"{cobb.pt_upper} vertebra"
    assert ends["Proximal thoracic curve lower end vertebra"] == f"{cobb.pt_lower} vertebra"
    assert len(ends) == 6
    assert dciodvfy_errors(sr_path) == []


def test_spines_without_a_dicom_source_are_skipped_and_said_so(lateral_dicom, tmp_path):
    source_path, table = lateral_dicom
    cv2.imwrite(str(tmp_path / "plain.png"), np.zeros((160, 120), np.uint8))
    frame = pd.read_csv(table)
    others = [frame.assign(image=name) for name in ("plain.png", "missing.dcm")]
    pd.concat([frame, *others]).to_csv(table, index=False)
    output, rows = _run(tmp_path, table)
    output = " ".join(output.split())  # the console wraps long lines
    assert set(rows["spine"]) == {"spine.dcm", "plain.png", "missing.dcm"}  # all three measured
    assert [p.name for p in (tmp_path / "dicom").iterdir()] == ["spine_morphometry_sr.dcm"]
    assert "no DICOM SR for plain.png" in output and "is not a DICOM file" in output
    assert "no DICOM SR for missing.dcm" in output


def test_a_detections_cautions_are_a_group_of_their_own(tmp_path):
    from osteolens.dicom_out.morphometry_sr import write_morphometry_sr
    from osteolens.morphometry import measure_spine

    source = write_dicom(Radiograph(np.zeros((260, 160), np.float32)), tmp_path / "ap.dcm")
    quads = np.stack([make_quad(40, 20, 20, 0.0, tilt, (80, 30 + 45 * k)).corners
                      for k, tilt in enumerate((0.0, 12.0, -4.0, 6.0, -8.0))])
    names = ["T11", "T12", "L1", "L2", "L3"]
    plain = measure_spine(quads, names, view="AP", image_shape=(260, 160))
    assert "Detection checks" not in _groups(srread(write_morphometry_sr(plain, source, tmp_path / "plain")))
    cautious = measure_spine(quads, names, view="AP", image_shape=(260, 160), warning="unreliable detection: test",
                             extra_problems={4: ["levels_uncertain: a vertebra-like shape below L3"]})
    sr_path = write_morphometry_sr(cautious, source, tmp_path / "cautious")
    groups = _groups(srread(sr_path))
    assert list(groups)[-2:] == ["Cobb angles", "Detection checks"]
    group, numbers = groups["Detection checks"]
    assert numbers == {}
    assert {e.name.meaning: e.value.meaning for e in group.get_qualitative_evaluations()} == {
        "Landmark detection reliability": "Unreliable: many vertebrae hardly seen",
        "Vertebral level identification": "Uncertain: may be off by one level"}
    assert dciodvfy_errors(sr_path) == []
