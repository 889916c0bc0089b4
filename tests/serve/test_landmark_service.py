"""The service around a landmark bundle: corners, Cobb angles, overlay, model card, refusals, DICOM SR, web page."""

from __future__ import annotations

import base64
import io
import json
import shutil
import threading
import time

import numpy as np
import pydicom
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from osteolens.inference.signing import generate_keypair
from osteolens.io import write_png
from osteolens.landmarks.bundle import write_landmark_bundle
from osteolens.landmarks.model import LandmarkNet
from osteolens.landmarks.predict import LandmarkDetector
from osteolens.morphometry import cobb_angles
from osteolens.morphometry.spine import LEVELS
from osteolens.serve import create_app
from tests.dicom_out.conftest import phantom_dicom  # noqa: F401 (fixture)
from tests.landmarks.conftest import synthetic_spine

T1_L5 = list(LEVELS[LEVELS.index("T1") : LEVELS.index("L5") + 1])
SHAPE = (256, 128)


def _bundle(path, levels, view="AP"):
    """An untrained detector (random heads, seed 0) at input 128 x 64: its corners are arbitrary but fixed."""
    torch.manual_seed(0)
    net = LandmarkNet("tf_efficientnet_lite0", (1, 2), head_channels=8).eval()
    return write_landmark_bundle(path, net, (128, 64), levels, view=view, metrics={"mre_px": 3.25},
                                 training_summary={"epochs": 1})


@pytest.fixture(scope="module")
def spine(tmp_path_factory):
    """``(detector, png path)``: a 17-level (T1-L5) AP detector and a 256 x 128 synthetic spine PNG."""
    folder = tmp_path_factory.mktemp("landmark-service")
    image, _ = synthetic_spine(np.random.default_rng(1), SHAPE, 17)
    return LandmarkDetector.from_path(_bundle(folder / "spine", T1_L5)), write_png(image, folder / "spine.png", bits=8)


def _png(data_url: str) -> Image.Image:
    assert data_url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_predict_answers_the_detectors_corners_cobb_angles_and_overlay(spine):
    detector, png = spine
    client = TestClient(create_app(detector))
    response = client.post("/v1/predict", files={"file": ("spine.png", png.read_bytes(), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task"] == "landmarks" and body["view"] == "AP" and body["image_shape"] == list(SHAPE)
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["model"]["digest"] == client.get("/v1/model").json()["digest"]
    # Exactly what the detector finds on the same file, in the radiograph's own pixels.
    direct = detector.predict_file(png)
    assert [v["name"] for v in body["vertebrae"]] == T1_L5
    corners = np.array([v["corners"] for v in body["vertebrae"]])
    assert corners.shape == (17, 4, 2) and np.allclose(corners, direct.detection.corners, atol=0.006)
    assert [v["confidence"] for v in body["vertebrae"]] == pytest.approx(direct.detection.confidence, abs=1e-4)
    flagged = [v["low_confidence"] for v in body["vertebrae"]]
    assert flagged == direct.detection.low_confidence.tolist() and body["low_confidence_count"] == sum(flagged)
    for v in body["vertebrae"]:  # flagged in the problems too, never dropped
        assert v["low_confidence"] == any(p.startswith("low_confidence") for p in v["problems"])
    assert body["levels_uncertain"] == direct.detection.levels_uncertain
    assert body["level_rival"] == {"confidence": pytest.approx(direct.detection.rival, abs=1e-4),
                                   "side": direct.detection.rival_side}
    assert sum(any(p.startswith("levels_uncertain") for p in v["problems"]) for v in body["vertebrae"]) == \
        int(body["levels_uncertain"])
    # The Cobb angles are morphometry's AASCE angles of these corners, end vertebrae named.
    expected = cobb_angles(direct.detection.corners, image_height=SHAPE[0])
    for key in ("pt", "mt", "tl"):
        upper, lower = getattr(expected, f"{key}_vertebrae")
        assert body["cobb"][key] == {"degrees": pytest.approx(getattr(expected, key)), "upper": T1_L5[upper],
                                     "lower": T1_L5[lower]}
    assert body["cobb"]["s_shaped"] == expected.s_shaped
    assert _png(body["overlay_png"]).size == (SHAPE[1], SHAPE[0])
    assert body["seconds"] > 0


def test_max_side_and_pixel_spacing(spine):
    detector, png = spine
    client = TestClient(create_app(detector))
    plain = client.post("/v1/predict", files={"file": ("a.png", png.read_bytes())}).json()
    body = client.post("/v1/predict", files={"file": ("a.png", png.read_bytes())},
                       data={"max_side": "64", "pixel_mm": "0.5"}).json()
    assert _png(body["overlay_png"]).size == (32, 64)
    for v, same in zip(body["vertebrae"], plain["vertebrae"], strict=True):
        assert v["corners"] == same["corners"]  # corners stay in original pixels
        px, mm = same["measurements"]["middle_height_px"], v["measurements"]["middle_height_mm"]
        assert same["measurements"]["middle_height_mm"] is None and mm == pytest.approx(0.5 * px)
    assert client.post("/v1/predict", files={"file": ("a.png", png.read_bytes())},
                       data={"pixel_mm": "-1"}).status_code == 422


def test_a_lateral_bundle_has_no_cobb_angles_and_its_card(tmp_path, spine):
    _, png = spine
    detector = LandmarkDetector.from_path(_bundle(tmp_path / "lateral", [f"V{k}" for k in range(1, 6)], "lateral"))
    client = TestClient(create_app(detector))
    card = client.get("/v1/model").json()
    assert card["task"] == "landmarks" and card["labels"] == ["V1", "V2", "V3", "V4", "V5"]
    assert card["view"] == "lateral" and card["input_size"] == [128, 64]
    assert card["metrics"] == {"mre_px": 3.25} and card["training_summary"] == {"epochs": 1}
    assert len(card["digest"]) == 16 and client.get("/healthz").json()["model"] == card["digest"]
    body = client.post("/v1/predict", files={"file": ("a.png", png.read_bytes())}).json()
    assert len(body["vertebrae"]) == 5 and body["view"] == "lateral"
    assert body["cobb"] is None and "AP" in body["cobb_note"]


def test_refusals_match_the_classifier_service(spine):
    detector, png = spine
    client = TestClient(create_app(detector, token="s3cret-token"))
    data = png.read_bytes()
    assert client.get("/v1/model").status_code == 401
    assert client.post("/v1/predict", files={"file": ("a.png", data)}).status_code == 401
    auth = {"Authorization": "Bearer s3cret-token"}
    assert client.get("/v1/model", headers=auth).json()["task"] == "landmarks"
    response = client.post("/v1/predict", files={"file": ("a.png", b"just some text")}, headers=auth)
    assert response.status_code == 415
    response = client.post("/v1/predict", files={"file": ("a.png", data[:60])}, headers=auth)
    assert response.status_code == 422 and "/tmp" not in response.json()["detail"]
    response = client.post("/v1/predict", files=[("file", ("a.png", data)), ("file", ("b.png", data))], headers=auth)
    assert response.status_code == 422 and "one image per request" in response.json()["detail"]
    small = TestClient(create_app(detector, max_pixels=1000))
    assert small.post("/v1/predict", files={"file": ("a.png", data)}).status_code == 413


def test_dicom_out_writes_the_morphometry_sr_and_overlay_sc_in_the_uploads_study(tmp_path, spine, phantom_dicom):  # noqa: F811
    from highdicom.sr import srread

    from tests.dicom_out.conftest import dciodvfy_errors

    detector, png = spine
    out = tmp_path / "dicom"
    client = TestClient(create_app(detector, dicom_out=out))
    data = phantom_dicom.read_bytes()
    body = client.post("/v1/predict", files={"file": ("scan.dcm", data)}).json()
    assert body["dicom_note"] is None and len(body["dicom_files"]) == 2 and str(tmp_path) not in str(body)
    sr_name, sc_name = body["dicom_files"]
    assert sr_name.endswith("_morphometry_sr.dcm") and sc_name.endswith("_overlay_sc.dcm")
    sr, sc = srread(out / sr_name), pydicom.dcmread(out / sc_name)
    source = pydicom.dcmread(phantom_dicom)
    assert sr.StudyInstanceUID == sc.StudyInstanceUID == source.StudyInstanceUID
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert "vertebral landmarks" in sc.SeriesDescription and sc.BurnedInAnnotation == "YES"
    assert body["dicom_uids"] == [sr.SOPInstanceUID, sc.SOPInstanceUID]
    assert dciodvfy_errors(out / sc_name) == []
    again = client.post("/v1/predict", files={"file": ("other.dcm", data)}).json()
    assert again["dicom_files"] == body["dicom_files"] and len(list(out.iterdir())) == 2
    note = client.post("/v1/predict", files={"file": ("a.png", png.read_bytes())}).json()
    assert note["dicom_files"] == [] and "not a DICOM file" in note["dicom_note"]


def test_serve_command_serves_a_landmark_bundle(tmp_path, spine, make_predictor, monkeypatch):
    import uvicorn

    from osteolens.cli.main import app
    from osteolens.inference.bundle import bundle_task

    detector, _ = spine
    assert bundle_task(detector.bundle.path) == "landmarks"
    assert bundle_task(make_predictor().bundle.path) == "binary"
    assert bundle_task(tmp_path / "missing") is None
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda application, **kwargs: served.append(application))
    command = ["serve", "--model", str(detector.bundle.path)]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert TestClient(served[0]).get("/v1/model").json()["labels"] == T1_L5
    private, public = generate_keypair(tmp_path / "keys")
    signed = shutil.copytree(detector.bundle.path, tmp_path / "signed")
    result = CliRunner().invoke(app, ["serve", "--model", str(signed), "--trusted-key", str(public)])
    assert "not signed" in str(result.exception) and len(served) == 1  # refused before serving
    assert CliRunner().invoke(app, ["bundle", "sign", str(signed), "--key", str(private)]).exit_code == 0
    assert CliRunner().invoke(app, ["bundle", "verify", str(signed), "--trusted-key", str(public)]).exit_code == 0
    result = CliRunner().invoke(app, ["serve", "--model", str(signed), "--trusted-key", str(public)])
    assert result.exit_code == 0, result.output
    assert len(served) == 2
    manifest = json.loads((signed / "bundle.json").read_text())
    (signed / "bundle.json").write_text(json.dumps({**manifest, "view": "lateral"}))  # altered after signing
    result = CliRunner().invoke(app, ["serve", "--model", str(signed), "--trusted-key", str(public)])
    assert "altered after signing" in str(result.exception) and len(served) == 2


@pytest.mark.browser
@pytest.mark.slow
def test_web_page_shows_the_overlay_cobb_table_and_flagged_vertebrae(spine):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    import uvicorn

    from tests.serve.test_browser import ARTIFACTS, _browser, _free_port, _open

    detector, png = spine
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(detector), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    errors: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = _browser(sync_api, p)
            try:
                page = _open(browser, f"http://127.0.0.1:{port}", errors)
                assert "vertebral landmarks" in page.text_content("#model-name")
                assert not page.is_visible("#cam-method-field") and not page.is_visible("#covariates")
                page.set_input_files("#file-input", str(png))
                page.wait_for_function("document.querySelectorAll('#vertebra-table tbody tr').length === 17",
                                       timeout=60_000)
                page.wait_for_function("[...document.querySelectorAll('#images img')].every(i => i.naturalWidth > 0)")
                assert page.eval_on_selector_all("#images img", "imgs => imgs.map(i => i.naturalWidth)") == [SHAPE[1]]
                cobb = page.inner_text("#cobb-table")
                assert "Degrees" in cobb and "PT" in cobb and "MT" in cobb and "TL" in cobb
                flagged = page.eval_on_selector_all("#vertebra-table tr.low-confidence", "rows => rows.length")
                expected = int(detector.predict_file(png).detection.low_confidence.sum())
                assert flagged == expected and flagged > 0  # an untrained detector is unsure: flagged, not hidden
                assert "low confidence" in page.inner_text("#vertebra-table")
                # the detection's flags, as the detector gives them (this one is unreliable, its levels not flagged)
                found = detector.predict_file(png).detection
                header, note = page.text_content("#file-name"), page.text_content("#cobb-note")
                assert found.unreliable and "unreliable detection" in header and note.startswith("unreliable detection")
                assert ("levels uncertain" in header) == found.levels_uncertain
                assert page.eval_on_selector_all("#vertebra-table tr.levels-uncertain", "rows => rows.length") == \
                    int(found.levels_uncertain)
                assert not page.is_visible("#probability-box") and "Done in" in page.text_content("#status")
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "web_page_landmarks.png"), full_page=True)
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert errors == []

