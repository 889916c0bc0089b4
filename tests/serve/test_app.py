"""The HTTP service: predictions, auth, size limit, sniffing, covariates, logs without identifiers, concurrency."""

from __future__ import annotations

import base64
import io
import logging
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from osteolens.serve import create_app


def _decode_png(data_url: str) -> Image.Image:
    assert data_url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


@pytest.fixture
def client(make_predictor):
    return TestClient(create_app(make_predictor()))


def test_predict_png_returns_label_and_images(client, make_predictor, png_bytes, tmp_path):
    response = client.post("/v1/predict", files={"file": ("scan.png", png_bytes, "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] == "ok" and body["label"] in ("normal", "osteoporosis")
    assert body["threshold"] == 0.5 and 0 <= body["probability"] <= 1
    assert body["label"] == ("osteoporosis" if body["probability"] >= 0.5 else "normal")
    assert re.fullmatch(r"[0-9a-f]{12}", body["request_id"])
    assert response.headers["x-request-id"] == body["request_id"]
    assert _decode_png(body["heatmap_png"]).size == (96, 120)  # original resolution (width, height)
    assert _decode_png(body["overlay_png"]).size == (96, 120)
    # the same image through a Predictor directly gives the same probability
    path = tmp_path / "direct.png"
    path.write_bytes(png_bytes)
    assert body["probability"] == pytest.approx(make_predictor(name="again").predict(path).probability, abs=1e-6)


def test_max_side_shrinks_returned_images_and_cam_can_be_off(client, png_bytes):
    body = client.post("/v1/predict", files={"file": ("a.png", png_bytes)}, data={"max_side": "60"}).json()
    assert _decode_png(body["overlay_png"]).size == (48, 60)
    body = client.post("/v1/predict", files={"file": ("a.png", png_bytes)}, data={"cam": "false"}).json()
    assert body["heatmap_png"] is None and body["label"] is not None


def test_model_card_health_and_docs(client):
    card = client.get("/v1/model").json()
    assert card["labels"] == ["normal", "osteoporosis"] and card["folds"] == 2 and card["threshold"] == 0.5
    assert card["metrics"]["auroc"]["value"] == 0.81 and card["backend"] == "onnx"
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/docs").status_code == 404  # off by default: see test_limits.py


def test_bearer_token(make_predictor, png_bytes):
    client = TestClient(create_app(make_predictor(), token="s3cret-token"))
    assert client.get("/v1/model").status_code == 401
    assert client.get("/v1/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/v1/predict", files={"file": ("a.png", png_bytes)}).status_code == 401
    response = client.get("/v1/model", headers={"Authorization": "Bearer s3cret-token"})
    assert response.status_code == 200
    assert client.get("/healthz").status_code == 200  # liveness stays open
    assert client.get("/").status_code == 200


def test_upload_size_limit(make_predictor, png_bytes):
    client = TestClient(create_app(make_predictor(), max_upload_bytes=2000))
    assert len(png_bytes) > 2000
    response = client.post("/v1/predict", files={"file": ("a.png", png_bytes)})
    assert response.status_code == 413 and "larger than" in response.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
        for _ in range(10):
            yield bytes(1000)

    response = client.post("/v1/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413


def test_non_images_are_refused_by_content(client, png_bytes):
    response = client.post("/v1/predict", files={"file": ("scan.png", b"%PDF-1.7 not an image", "image/png")})
    assert response.status_code == 415
    corrupt = png_bytes[:60]  # a PNG signature followed by a truncated stream
    response = client.post("/v1/predict", files={"file": ("scan.png", corrupt, "image/png")})
    assert response.status_code == 422 and response.json()["detail"].startswith("upload ")
    assert "/tmp" not in response.json()["detail"]


def test_a_multi_view_model_takes_one_file_part_per_view(make_predictor, png_bytes, phantom_like, tmp_path):
    predictor = make_predictor(views=["AP", "LAT"], backend="torch", name="b2v")
    client = TestClient(create_app(predictor))
    assert client.get("/v1/model").json()["views"] == ["AP", "LAT"]
    response = client.post("/v1/predict", files={"file": ("a.png", png_bytes)})
    assert response.status_code == 422 and "takes 2 views ['AP', 'LAT'], got 1 file(s)" in response.json()["detail"]
    other = io.BytesIO()
    Image.fromarray((phantom_like(seed=1) * 255).astype(np.uint8).T.copy()).save(other, "PNG")  # a 96 x 120 "lateral"
    lateral = other.getvalue()
    named = client.post("/v1/predict", files=[("file", ("lat.png", lateral)), ("file", ("ap.png", png_bytes))],
                        data={"view": ["lat", "AP"]})
    assert named.status_code == 200, named.text
    body = named.json()
    assert body["views"] == ["AP", "LAT"] and set(body["view_pngs"]) == {"AP", "LAT"}
    assert _decode_png(body["view_pngs"]["LAT"]["overlay"]).size == (120, 96)
    assert _decode_png(body["view_pngs"]["AP"]["heatmap"]).size == _decode_png(body["heatmap_png"]).size
    # The same study in the model's order without view fields gives the same answer.
    ordered = client.post("/v1/predict", files=[("file", ("ap.png", png_bytes)), ("file", ("lat.png", lateral))])
    assert ordered.json()["probability"] == pytest.approx(body["probability"], abs=1e-6)
    (tmp_path / "ap.png").write_bytes(png_bytes)
    (tmp_path / "lat.png").write_bytes(lateral)
    expected = predictor.predict([tmp_path / "ap.png", tmp_path / "lat.png"])  # the Predictor on the same files
    assert body["probability"] == pytest.approx(expected.probability, abs=1e-4)
    twice = client.post("/v1/predict", files=[("file", ("a.png", png_bytes)), ("file", ("b.png", lateral))],
                        data={"view": ["AP", "ap"]})
    assert twice.status_code == 422 and "do not name the views ['AP', 'LAT'] once each" in twice.json()["detail"]
    junk = client.post("/v1/predict", files=[("file", ("a.png", png_bytes)), ("file", ("b.txt", b"not an image"))])
    assert junk.status_code == 415 and junk.json()["detail"].startswith("upload 2 is not")


def test_covariates_from_form_fields(make_predictor, png_bytes):
    client = TestClient(create_app(make_predictor(tabular=("sex", "age"))))
    missing = client.post("/v1/predict", files={"file": ("a.png", png_bytes)}, data={"sex": "F"})
    assert missing.status_code == 422 and "covariate 'age'" in missing.json()["detail"]
    ok = client.post("/v1/predict", files={"file": ("a.png", png_bytes)}, data={"sex": "F", "age": "71"})
    assert ok.status_code == 200
    via_json = client.post("/v1/predict", files={"file": ("a.png", png_bytes)},
                           data={"covariates": '{"sex": "F", "age": 71}'})
    assert via_json.json()["probability"] == pytest.approx(ok.json()["probability"], abs=1e-6)
    assert client.post("/v1/predict", files={"file": ("a.png", png_bytes)},
                       data={"covariates": "{oops"}).status_code == 422


def test_logs_hold_request_ids_but_no_patient_identifiers(make_predictor, phantom_like, tmp_path, caplog):
    from osteolens.io import Radiograph, RadiographMeta, write_dicom

    dicom = write_dicom(Radiograph(phantom_like(), meta=RadiographMeta(patient_id="PAT-4711-DOE", sex="F",
                                                                       age_years=67)), tmp_path / "x.dcm")
    client = TestClient(create_app(make_predictor()))
    with caplog.at_level(logging.DEBUG):
        response = client.post("/v1/predict", files={"file": ("JOHN_DOE_1950.dcm", dicom.read_bytes())})
    assert response.status_code == 200
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert response.json()["request_id"] in text
    assert "PAT-4711-DOE" not in text and "JOHN_DOE" not in text
    assert "PAT-4711-DOE" not in response.text and "JOHN_DOE" not in response.text


def test_concurrent_requests_share_one_model(make_predictor, png_bytes):
    client = TestClient(create_app(make_predictor(), max_concurrent=2))
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: client.post("/v1/predict", files={"file": ("a.png", png_bytes)}),
                                  range(12)))
    assert [r.status_code for r in responses] == [200] * 12
    probabilities = {round(r.json()["probability"], 9) for r in responses}
    assert len(probabilities) == 1
    heatmaps = [np.asarray(_decode_png(r.json()["heatmap_png"])) for r in responses]
    assert all(np.array_equal(heatmaps[0], h) for h in heatmaps[1:])


def test_web_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/app.js", "/static/style.css"):
        response = client.get(asset)
        assert response.status_code == 200
        assert not re.search(r"https?://", response.text), f"{asset} loads something from the network"
    assert not re.search(r"(src|href)=\"https?://", page.text)
