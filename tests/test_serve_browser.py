"""The page in a real browser: headless Chromium (Debian's package, /usr/bin/chromium; `.ci/run` installs it)
driven by Playwright loads http://127.0.0.1:<port>/ from a live server on loopback, uploads an image, waits for
the result, moves the slider, switches members and the alpha knob, overlays the uncertainty map, and checks what
the canvases hold against the API's own images. Skipped, with the reason, only where there is no Chromium."""
from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image

from mgsrgan.serve.app import create_app
from tests.serve_helpers import image_bytes, tiny_bank

CHROMIUM = os.environ.get("MGSRGAN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a sandboxed machine with no network and no display (also what the CI image needs as root)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (Debian: apt-get install "
                                "chromium; .ci/run installs it)")


@contextmanager
def serving(app):
    """`app` on a free loopback port, served by uvicorn in a thread, as `mgsrgan serve` serves it: its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the server did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def live_server(tmp_path):
    with serving(create_app([tiny_bank(tmp_path / "run", tile=16)])) as url:
        yield url


def canvas_pixels(page, canvas_id: str) -> np.ndarray:
    """(H, W, 4) uint8 of a canvas, read in the page."""
    width, height, data = page.evaluate(f"""() => {{
        const c = document.getElementById('{canvas_id}');
        return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)];
    }}""")
    return np.asarray(data, dtype=np.uint8).reshape(height, width, 4)


def wait_ready(page) -> None:
    page.wait_for_function("document.body.dataset.state === 'ready' || document.body.dataset.state === 'error'",
                           timeout=60_000)
    assert page.evaluate("document.body.dataset.state") == "ready", page.inner_text("#error")


def test_page_upscales_compares_and_overlays(live_server, tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    source = tmp_path / "photo.png"
    source.write_bytes(image_bytes((60, 44), seed=3))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(live_server + "/")
            page.wait_for_function("document.getElementById('scale').options.length > 0")
            assert page.inner_text("#model-info").startswith("x2 · 3 pixel-loss + 3 GAN members")
            assert page.is_hidden("#real-row")  # no real-photo ensemble loaded: no switch

            page.set_input_files("#file", str(source))
            wait_ready(page)
            assert page.inner_text("#progress-text") == "done"
            after = canvas_pixels(page, "after")
            assert after.shape == (88, 120, 4)  # the x2 output at its own pixel size
            assert after[..., :3].std() > 10 and (after[..., 3] == 255).all()  # drawn, not blank
            job_id = page.evaluate("state.job.id")
            api = np.asarray(Image.open(io.BytesIO(page.request.get(
                f"{live_server}/v1/jobs/{job_id}/image?kind=output&checkpoint=pretrain&strategy=mean&alpha=0").body())))
            assert np.abs(after[..., :3].astype(int) - api.astype(int)).max() <= 1  # the canvas shows the API's image
            before = canvas_pixels(page, "before")
            assert before.shape == after.shape and np.abs(before.astype(int) - after.astype(int)).mean() > 1

            page.fill("#split", "30")  # the before/after slider
            assert page.evaluate("document.getElementById('after').style.clipPath") == "inset(0px 0px 0px 30%)"
            box = page.locator("#wrap").bounding_box()
            divider = page.locator("#divider").bounding_box()
            assert abs(divider["x"] - (box["x"] + 0.3 * box["width"])) <= 2

            page.click("#members button[data-value='gan:1']")  # one member's own output
            wait_ready(page)
            assert page.inner_text("#after-tag") == "GAN member 1"
            member = canvas_pixels(page, "after")
            assert np.abs(member.astype(int) - after.astype(int)).mean() > 1

            page.click("#members button[data-value='ensemble']")
            page.fill("#alpha", "1")  # the perception-distortion knob re-renders from the cache
            page.wait_for_timeout(300)
            wait_ready(page)
            blended = canvas_pixels(page, "after")
            assert np.abs(blended.astype(int) - after.astype(int)).mean() > 0.5

            page.fill("#adaptive", "1")  # adaptive fusion: these tiny GAN members' texture parts ways: toward P
            page.wait_for_timeout(300)
            wait_ready(page)
            adaptive = canvas_pixels(page, "after")
            assert np.abs(adaptive.astype(int) - blended.astype(int)).mean() > 0.5
            page.fill("#guided", "0.5")  # one per-pixel fusion at a time: this one turns adaptive off
            page.wait_for_timeout(300)
            wait_ready(page)
            assert page.input_value("#adaptive") == "0" and page.inner_text("#guided-value") == "0.5 levels"
            guided = canvas_pixels(page, "after")  # the pixel members disagree everywhere too: mostly G, as alpha 1
            assert np.abs(guided.astype(int) - adaptive.astype(int)).mean() > 0.5
            assert np.abs(guided.astype(int) - blended.astype(int)).mean() < 0.1

            page.check("#uncertainty")
            page.wait_for_function("document.getElementById('overlay').width === 120")
            overlay = canvas_pixels(page, "overlay")
            assert overlay.shape == (88, 120, 4) and overlay[..., :3].std() > 0 and overlay[..., 3].max() > 0
            assert page.is_visible("#overlay")

            page.click(".zoom button[data-zoom='4']")  # 400 %: four device pixels per image pixel
            ratio = page.evaluate("window.devicePixelRatio")
            assert abs(page.locator("#wrap").bounding_box()["width"] - 120 * 4 / ratio) <= 1
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot))
            assert Image.open(shot).size == (1280, 800)
            assert page.get_attribute("#download", "download") == "photo_x2.png"
            assert errors == []
        finally:
            browser.close()


def test_page_shows_upload_errors(live_server, tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not a picture")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(live_server + "/")
            page.wait_for_function("document.getElementById('scale').options.length > 0")
            page.set_input_files("#file", str(bad))
            page.wait_for_function("document.body.dataset.state === 'error'")
            assert "notes.png: not an image" in page.inner_text("#error")
        finally:
            browser.close()


def test_real_photo_switch_uploads_to_the_real_bank(tmp_path):
    """With a real-photo ensemble loaded the page shows its switch; checked, the upload runs on that bank."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    from tests.serve_helpers import save_serve_run
    from mgsrgan.serve.members import load_bank
    real = replace(load_bank(scale=2, run=save_serve_run(tmp_path / "real", seed_offset=40), device="cpu",
                             precision="fp32", tile=16), real=True, source="shipped weights/x2-real")
    source = tmp_path / "photo.png"
    source.write_bytes(image_bytes((30, 22), seed=3))
    with serving(create_app([tiny_bank(tmp_path / "run", tile=16), real])) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('scale').options.length > 0")
            assert page.evaluate("document.getElementById('scale').options.length") == 1  # one scale, two models
            assert page.is_visible("#real-row") and page.inner_text("#real-row").strip() == "real photo (JPEG, noise)"
            page.check("#real")
            assert "shipped weights/x2-real" in page.inner_text("#model-info")
            page.set_input_files("#file", str(source))
            wait_ready(page)
            assert page.evaluate("state.job.real") is True
        finally:
            browser.close()
