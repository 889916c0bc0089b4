"""The web page in a real browser: Debian's chromium driven by Playwright against a live uvicorn."""

from __future__ import annotations

import shutil
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
    """Serve the app on 127.0.0.1 in a background thread; yields its base URL."""
    import uvicorn

    from osteolens.serve import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(make_predictor()), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_upload_shows_label_probability_and_heat_maps(live_server, phantom_like, tmp_path):
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from osteolens.io import write_png

    image = write_png(phantom_like((640, 520), seed=3), tmp_path / "phantom_spine.png", bits=16)
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 950})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(live_server + "/")
            page.wait_for_function("document.getElementById('card').children.length > 0")
            assert "normal / osteoporosis" in page.text_content("#model-name")
            page.set_input_files("#file-input", str(image))
            page.wait_for_function("document.getElementById('label').textContent.length > 0", timeout=60_000)
            page.wait_for_function(
                "['overlay-img', 'heatmap-img'].every(id => document.getElementById(id).naturalWidth > 0)")
            label = page.text_content("#label")
            assert label in ("normal", "osteoporosis")
            assert "P(osteoporosis) =" in page.text_content("#probability-text")
            assert "decision threshold 50.0 %" in page.text_content("#threshold-text")
            assert page.eval_on_selector("#overlay-img", "img => img.naturalWidth") == 520
            assert "Done in" in page.text_content("#status")
            assert f"Heat map for “{label}”" in page.text_content("#heatmap-caption")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "web_page.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
