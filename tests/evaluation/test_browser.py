"""report.html renders in headless Debian chromium (Playwright) without console errors."""

from __future__ import annotations

import pytest

from osteolens.evaluation import evaluate
from tests.conftest import require_chromium

ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.mark.browser
@pytest.mark.slow
def test_report_renders_without_console_errors(tmp_path, make_multiclass):
    chromium = require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    evaluate(make_multiclass(), tmp_path, n_bootstrap=50)
    report = tmp_path / "report.html"
    problems: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=ARGS)
        page = browser.new_page()
        page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("request", lambda req: requests.append(req.url))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        sections = page.eval_on_selector_all("section", "els => els.map(e => e.id)")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        heading = page.inner_text("h1")
        browser.close()
    assert problems == []
    assert all(url.startswith(("file:", "data:")) for url in requests)  # nothing from the network
    assert "summary" in sections and "audit" in sections and "intended-use" in sections
    assert images and all(done and width > 0 for done, width in images)  # every embedded PNG decoded
    assert "osteolens evaluation" in heading
