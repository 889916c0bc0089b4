"""The web page in a real browser: Debian's chromium driven by Playwright against a live uvicorn."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server(make_predictor):
    """``live_server(**make_predictor_kwargs)``: serve the app on 127.0.0.1 in a background
    thread and return its base URL; stopped at the end of the test."""
    import uvicorn

    from osteolens.serve import create_app

    servers = []

    def _start(**kwargs) -> str:
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(make_predictor(**kwargs)), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        return f"http://127.0.0.1:{port}"

    yield _start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def _browser(sync_api, p):
    from tests.conftest import require_chromium

    require_chromium()
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"])


def _open(browser, url: str, errors: list[str]):
    page = browser.new_page(viewport={"width": 1400, "height": 950})
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "/")
    page.wait_for_function("document.getElementById('card').children.length > 0")
    return page


_IMAGES_LOADED = "n => { const imgs = [...document.querySelectorAll('#images img')]; " \
                 "return imgs.length === n && imgs.every(img => img.naturalWidth > 0); }"


def test_upload_shows_label_probability_and_heat_maps(live_server, phantom_like, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from osteolens.io import write_png

    image = write_png(phantom_like((640, 520), seed=3), tmp_path / "phantom_spine.png", bits=16)
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = _browser(sync_api, p)
        try:
            page = _open(browser, live_server(), errors)
            assert "normal / osteoporosis" in page.text_content("#model-name")
            assert page.is_visible("#drop-zone") and not page.is_visible("#view-panel")
            page.set_input_files("#file-input", str(image))
            page.wait_for_function("document.getElementById('label').textContent.length > 0", timeout=60_000)
            page.wait_for_function(_IMAGES_LOADED, arg=2)
            label = page.text_content("#label")
            assert label in ("normal", "osteoporosis")
            assert "P(osteoporosis) =" in page.text_content("#probability-text")
            assert "decision threshold 50.0 %" in page.text_content("#threshold-text")
            assert page.eval_on_selector_all("#images img", "imgs => imgs.map(i => i.naturalWidth)") == [520, 520]
            assert "Done in" in page.text_content("#status")
            assert f"Heat map for “{label}”" in page.text_content("#images")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "web_page.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []


def test_a_two_view_study_is_uploaded_view_by_view(live_server, phantom_like, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from osteolens.io import write_png

    ap = write_png(phantom_like((400, 300), seed=4), tmp_path / "ap.png", bits=16)
    lateral = write_png(phantom_like((300, 420), seed=5), tmp_path / "lat.png", bits=16)
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = _browser(sync_api, p)
        try:
            page = _open(browser, live_server(views=["AP", "LAT"], backend="torch", name="b2v"), errors)
            assert not page.is_visible("#drop-zone") and page.is_visible("#view-panel")
            assert page.is_disabled("#analyse")
            page.set_input_files("input[data-view='AP']", str(ap))
            assert page.is_disabled("#analyse")  # the lateral view is still missing
            page.set_input_files("input[data-view='LAT']", str(lateral))
            page.click("#analyse")
            page.wait_for_function(_IMAGES_LOADED, arg=4, timeout=60_000)
            widths = page.eval_on_selector_all("#images img", "imgs => imgs.map(i => i.naturalWidth)")
            assert widths == [300, 300, 420, 420]  # each view's overlay and heat map on its own grid
            captions = page.text_content("#images")
            assert "AP: Overlay" in captions and "LAT: Heat map" in captions
            assert "AP: ap.png, LAT: lat.png" in page.text_content("#file-name")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "web_page_two_views.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
