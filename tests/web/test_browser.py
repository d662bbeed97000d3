"""The page in a real browser: headless Chromium (Debian's package) driven by Playwright.

Uploads a pair, fuses it with two methods, waits for the images and the metrics table, uses
the slider and zoom, then loads a bundled example, and saves screenshots.
``REFINEFUSE_WRITE_DOCS=1`` also writes the README's screenshot (docs/figures/web_app.png).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
from web_helpers import LiveServer, require, require_web

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "figures" / "web_app.png"


def _chromium() -> str | None:
    return os.environ.get("REFINEFUSE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser_page(shared_root: Path):
    require_web()
    require(importlib.util.find_spec("playwright") is not None, "playwright (pip install -e '.[web,test]')")
    exe = _chromium()
    require(exe is not None, "Chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from refinefuse.web import WebSettings, create_app

    with LiveServer(create_app(WebSettings(data_root=shared_root))) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        outside: list[str] = []
        local = (server.url, "blob:" + server.url, "data:")
        page.on("request", lambda req: outside.append(req.url) if not req.url.startswith(local) else None)
        console_errors: list[str] = []
        page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        page.console_errors = console_errors  # type: ignore[attr-defined] - checked below, trimmed by tests
        yield page
        assert outside == [], f"the page asked for outside resources: {outside}"
        assert console_errors == [], console_errors
        browser.close()


def _fuse_and_wait(page, n_methods: int) -> None:
    page.click("#fuse-btn")
    page.wait_for_function(
        f"document.querySelectorAll('#metrics tbody tr').length === {n_methods} && "
        "!document.querySelector('#fuse-btn').disabled",
        timeout=240_000,
    )
    assert page.locator("#error").is_hidden(), page.locator("#error").text_content()


def test_upload_fuse_compare_and_example(browser_page, data_dir: Path, tmp_path: Path) -> None:
    page = browser_page
    page.set_input_files("#ir-file", str(data_dir / "msrs" / "test" / "ir" / "00020N.png"))
    page.set_input_files("#vis-file", str(data_dir / "msrs" / "test" / "vi" / "00020N.png"))
    checked = page.eval_on_selector_all("#methods input:checked", "els => els.map(e => e.value)")
    assert checked == ["refinefuse", "max"]
    _fuse_and_wait(page, 2)

    cards = page.locator(".card")
    assert cards.count() == 2
    widths = page.eval_on_selector_all(".card img.fused", "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    assert widths == [[640, 480], [640, 480]]
    rows = page.eval_on_selector_all("#metrics tbody tr", "rs => rs.map(r => r.children.length)")
    assert rows == [8, 8]  # method + the seven metrics
    values = page.eval_on_selector_all("#metrics tbody td:not(:first-child)", "tds => tds.map(t => t.textContent)")
    assert all(v != "–" and float(v) == float(v) for v in values)
    assert page.locator(".card .download").first.get_attribute("download") == "fused_refinefuse.png"

    # before/after slider and zoom
    first = cards.first
    first.locator(".slider").fill("20")
    assert "inset(0px 80% 0px 0px)" in first.locator("img.source").evaluate("e => getComputedStyle(e).clipPath")
    first.locator(".zoom").select_option("4")
    assert first.locator(".stage").evaluate("e => e.style.width") == "400%"
    first.locator(".zoom").select_option("1")
    first.locator(".slider").fill("50")
    page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)
    if os.environ.get("REFINEFUSE_WRITE_DOCS") == "1":
        DOCS_SHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SHOT), full_page=True)

    # a bundled example: MRI-PET sets the medical mode and the labels
    page.click("button[data-example='mri_pet_11']")
    page.wait_for_function("document.querySelector('#status').textContent.includes('loaded')", timeout=30_000)
    assert page.locator("#mode").input_value() == "medical"
    assert page.locator("#ir-label").text_content() == "PET"
    _fuse_and_wait(page, 2)
    assert page.eval_on_selector_all(".card img.fused", "imgs => imgs.map(i => i.naturalWidth)") == [256, 256]
    page.screenshot(path=str(tmp_path / "example.png"), full_page=True)
    assert (tmp_path / "upload.png").stat().st_size > 10_000


def test_error_is_shown_on_the_page(browser_page, tmp_path: Path) -> None:
    page = browser_page
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = Path(__file__).resolve().parents[2] / "src" / "refinefuse" / "assets" / "msrs_00828N_vis.png"
    page.set_input_files("#ir-file", str(bad))
    page.set_input_files("#vis-file", str(good))
    page.click("#fuse-btn")
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert page.locator("#error").text_content() == "refinefuse: ir (broken.png): not a readable image"
    assert page.console_errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    page.console_errors.clear()  # the expected one
