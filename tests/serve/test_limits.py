"""Service limits and exposure: the pixel limit, docs off by default, what /healthz tells whom."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from osteolens.serve import DEFAULT_SERVE_MAX_PIXELS, create_app


def _spy(predictor):
    calls = []
    real = predictor.predict

    def predict(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    predictor.predict = predict
    return calls


def test_an_image_above_the_pixel_limit_gets_413_before_decoding(make_predictor):
    buffer = io.BytesIO()
    Image.new("L", (8000, 7000)).save(buffer, "PNG")  # 5.6 * 10^7 pixels in a few kilobytes
    assert len(buffer.getvalue()) < 200_000
    predictor = make_predictor()
    calls = _spy(predictor)
    client = TestClient(create_app(predictor))
    response = client.post("/v1/predict", files={"file": ("big.png", buffer.getvalue())})
    assert response.status_code == 413
    assert response.json()["detail"] == (
        "the upload is 8000 x 7000 = 56,000,000 pixels, more than this service's limit of 50,000,000 pixels. "
        "Fix: send a downsampled image, or ask the operator to raise --max-pixels.")
    assert calls == []  # never handed to the reader / decoder
    assert DEFAULT_SERVE_MAX_PIXELS == 50_000_000


def test_the_pixel_limit_is_inclusive(make_predictor, png_bytes):
    predictor = make_predictor()
    calls = _spy(predictor)
    exact = TestClient(create_app(predictor, max_pixels=120 * 96))  # png_bytes is 96 wide, 120 high
    assert exact.post("/v1/predict", files={"file": ("a.png", png_bytes)}).status_code == 200
    below = TestClient(create_app(predictor, max_pixels=120 * 96 - 1))
    response = below.post("/v1/predict", files={"file": ("a.png", png_bytes)})
    assert response.status_code == 413 and "96 x 120 = 11,520 pixels" in response.json()["detail"]
    assert len(calls) == 1
    with pytest.raises(ValueError, match="max_pixels"):
        create_app(predictor, max_pixels=0)


def test_docs_are_off_unless_asked_for(make_predictor):
    predictor = make_predictor()
    closed = TestClient(create_app(predictor))
    for route in ("/docs", "/redoc", "/openapi.json"):
        assert closed.get(route).status_code == 404, route
    opened = TestClient(create_app(predictor, docs=True))
    assert opened.get("/docs").status_code == 200 and opened.get("/redoc").status_code == 200
    assert "/v1/predict" in opened.get("/openapi.json").json()["paths"]


def test_healthz_shows_the_model_digest_only_to_the_token_holder(make_predictor):
    predictor = make_predictor()
    digest = predictor.bundle.model_card()["digest"]
    guarded = TestClient(create_app(predictor, token="s3cret"))
    assert guarded.get("/healthz").json() == {"status": "ok"}
    assert guarded.get("/healthz", headers={"Authorization": "Bearer wrong"}).json() == {"status": "ok"}
    allowed = guarded.get("/healthz", headers={"Authorization": "Bearer s3cret"}).json()
    assert allowed == {"status": "ok", "model": digest, "auth": True}
    assert TestClient(create_app(predictor)).get("/healthz").json() == {"status": "ok", "model": digest, "auth": False}
