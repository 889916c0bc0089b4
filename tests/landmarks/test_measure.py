"""Radiograph in, measurements out: ``osteolens morphometry --images --model`` and ``landmarks.measure``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from highdicom.sr import srread
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.io import Radiograph, RadiographMeta, read_radiograph, write_dicom
from osteolens.landmarks.decode import LOW_CONFIDENCE, Detection
from osteolens.landmarks.measure import measure_prediction, spine_record
from osteolens.landmarks.names import VERTEBRAE
from osteolens.landmarks.predict import SpinePrediction
from osteolens.morphometry import cobb_angles
from tests.dicom_out.test_morphometry_sr import _groups
from tests.landmarks.conftest import synthetic_spine

runner = CliRunner()
NUMBERS = ["left_height_px", "middle_height_px", "right_height_px", "superior_angle_deg", "inferior_angle_deg"]


def test_detect_then_measure_equals_measuring_the_detected_table(spine_tables, untrained_bundle, tmp_path):
    landmarks, _ = spine_tables
    images = landmarks.parent / "images"
    (images / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "auto" / "vertebrae.csv"
    result = runner.invoke(app, ["morphometry", "--images", str(images), "--model", str(untrained_bundle),
                                 "--out", str(out), "--plot", str(tmp_path / "overlays")])
    assert result.exit_code == 0, result.output
    detected = pd.read_csv(out.with_name("detected_landmarks.csv"))
    auto = pd.read_csv(out)
    assert detected["image"].nunique() == 8 and len(auto) == 8 * 5
    assert detected["image"].iloc[0] == "spine00.png"  # named below the folder searched, as a table beside it would
    assert "broken.png" in pd.read_csv(out.with_name("vertebrae_failures.csv")).to_csv()  # recorded, the batch went on
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 8
    # the bundle's view (AP) was used: Cobb angles for every spine
    assert len(pd.read_csv(out.with_name("cobb.csv"))) == 8
    # a vertebra the detector hardly saw is measured and flagged, never hidden
    confidence = detected.groupby(["image", "vertebra"], sort=False)["confidence"].first().to_numpy()
    flagged = auto["problems"].fillna("").str.contains("low_confidence").to_numpy()
    assert flagged.any() and np.array_equal(flagged, confidence < LOW_CONFIDENCE)
    # the hand-annotation path on the written table gives the same measurements
    hand = tmp_path / "hand" / "vertebrae.csv"
    result = runner.invoke(app, ["morphometry", "--landmarks", str(out.with_name("detected_landmarks.csv")),
                                 "--images", str(images), "--view", "AP", "--out", str(hand), "--plot", str(tmp_path / "o2")])
    assert result.exit_code == 0, result.output
    assert np.allclose(pd.read_csv(hand)[NUMBERS], auto[NUMBERS], atol=0.02, equal_nan=True)  # table rounds to 0.01 px
    assert sorted(p.name for p in (tmp_path / "o2").glob("*.png")) == sorted(p.name for p in (tmp_path / "overlays").glob("*.png"))


def test_each_radiograph_is_read_once_when_detected_measured_and_drawn(spine_tables, untrained_bundle, tmp_path,
                                                                        monkeypatch):
    import osteolens.io
    import osteolens.morphometry.batch
    from osteolens.landmarks.measure import detect_and_measure
    from osteolens.landmarks.predict import LandmarkDetector

    reads = []

    def counting(path, *args, **kwargs):
        reads.append(Path(path).name)
        return read_radiograph(path, *args, **kwargs)

    monkeypatch.setattr(osteolens.io, "read_radiograph", counting)
    monkeypatch.setattr(osteolens.morphometry.batch, "read_radiograph", counting)
    images = sorted((spine_tables[0].parent / "images").glob("*.png"))
    predictions, result = detect_and_measure(LandmarkDetector.from_path(untrained_bundle), images, view="AP",
                                             plot_dir=tmp_path / "overlays")
    assert len(predictions) == len(result.spines) == len(result.overlays) == len(images)
    assert sorted(reads) == sorted(p.name for p in images)  # once each: the detector's reading draws the overlay


def test_model_needs_images_and_one_input(untrained_bundle, tmp_path):
    result = runner.invoke(app, ["morphometry", "--model", str(untrained_bundle), "--out", str(tmp_path / "v.csv")])
    assert result.exit_code != 0 and "--images" in str(result.exception)
    result = runner.invoke(app, ["morphometry", "--model", str(untrained_bundle), "--landmarks", str(tmp_path / "x.csv"),
                                 "--images", str(tmp_path), "--out", str(tmp_path / "v.csv")])
    assert "exactly one input" in str(result.exception)


def test_measure_prediction_measures_the_detected_corners_and_flags_weak_vertebrae():
    image, corners = synthetic_spine(np.random.default_rng(7), (512, 256), 17)
    confidence = np.full(17, 0.9)
    confidence[[3, 12]] = 0.1
    found = SpinePrediction("spine.png", list(VERTEBRAE), Detection(corners, confidence), image.shape, 0.0)
    spine, overlay = measure_prediction(found, "AP", image)
    expected = cobb_angles(corners, 512)
    assert spine.cobb == expected
    assert spine.cobb.pt > 1.0  # a curved spine, so the comparison means something
    weak = [v.name for v in spine.vertebrae if any(p.startswith("low_confidence") for p in v.problems)]
    assert weak == ["T4", "L1"]
    assert overlay.shape == (512, 256, 3) and overlay.dtype == np.uint8
    assert not spine_record(found, spine)["levels_uncertain"]


@pytest.mark.parametrize(("side", "flagged"), [("cranial", "T1"), ("caudal", "L5")])
def test_uncertain_levels_flag_the_end_vertebra_next_to_the_rival(side, flagged):
    image, corners = synthetic_spine(np.random.default_rng(8), (512, 256), 17)
    found = SpinePrediction("spine.png", list(VERTEBRAE), Detection(corners, np.full(17, 0.7), 0.65, side), image.shape, 0.0)
    spine, _ = measure_prediction(found, "AP", image)
    marked = [v.name for v in spine.vertebrae if any(p.startswith("levels_uncertain") for p in v.problems)]
    assert marked == [flagged]
    record = spine_record(found, spine)
    assert record["levels_uncertain"] and record["level_rival"] == {"confidence": 0.65, "side": side}
    assert found.rows()[0]["levels_uncertain"] and found.rows()[-1]["levels_uncertain"]


def test_dicom_radiographs_get_an_sr_with_the_angles(spine_tables, untrained_bundle, tmp_path):
    landmarks, _ = spine_tables
    png = sorted((landmarks.parent / "images").glob("*.png"))[0]
    meta = RadiographMeta(patient_id="P1", view="AP", body_part="SPINE")
    dicom = write_dicom(Radiograph(pixels=read_radiograph(png).pixels, spacing_mm=(0.5, 0.5), meta=meta),
                        tmp_path / "in" / "spine.dcm")
    out = tmp_path / "out" / "vertebrae.csv"
    result = runner.invoke(app, ["morphometry", "--images", str(dicom), "--model", str(untrained_bundle),
                                 "--out", str(out), "--dicom-out", str(tmp_path / "sr")])
    assert result.exit_code == 0, result.output
    auto = pd.read_csv(out)
    assert np.allclose(auto["middle_height_mm"], auto["middle_height_px"] * 0.5, atol=0.02)  # spacing from the DICOM header
    (sr_path,) = (tmp_path / "sr").glob("*.dcm")
    assert pydicom.dcmread(sr_path).StudyInstanceUID == pydicom.dcmread(dicom).StudyInstanceUID
    groups = _groups(srread(sr_path))
    cobb = pd.read_csv(out.with_name("cobb.csv")).iloc[0]
    group, numbers = groups["Cobb angles"]
    assert numbers["Cobb angle, main thoracic (MT)"] == (pytest.approx(cobb.mt), "deg")
    assert list(groups)[:5] == ["V1", "V2", "V3", "V4", "V5"]
    assert b"landmarks: detected by bundle (sha256 " in sr_path.read_bytes()  # detected corners, not drawn ones


def test_an_unreliable_detection_warns_on_the_note_the_overlay_and_the_record():
    image, corners = synthetic_spine(np.random.default_rng(9), (512, 256), 17)
    confidence = np.full(17, 0.9)
    confidence[[0, 1]] = 0.1  # two vertebrae hardly seen: still a usable detection
    found = SpinePrediction("spine.png", list(VERTEBRAE), Detection(corners, confidence), image.shape, 0.0)
    spine, plain = measure_prediction(found, "AP", image)
    assert not found.detection.unreliable and spine.warning is None and spine_record(found, spine)["warning"] is None
    confidence[[5, 9]] = 0.1  # four: probably not the view the detector knows
    spine, warned = measure_prediction(found, "AP", image)
    assert found.detection.unreliable
    assert spine.warning.startswith("unreliable detection: the detector hardly saw 4 of 17 vertebrae")
    assert spine.cobb_note.startswith(spine.warning) and spine.cobb == cobb_angles(corners, 512)  # measured, not hidden
    record = spine_record(found, spine)
    assert record["unreliable"] and record["warning"] == spine.warning
    foot = slice(512 - 40, 512)  # the warning is written in red at the foot of the overlay
    red = lambda canvas: ((canvas[foot, :, 2] > 200) & (canvas[foot, :, 0] < 80)).sum()  # noqa: E731
    assert red(warned) > red(plain) + 20
