"""The README's picture of the page: `mgsrgan serve` with the shipped x2 ensemble, one image uploaded, the GAN side,
the slider at 42 %, the disagreement overlay on, zoom 200 %, captured by headless Chromium.

    python -m tools.serve_screenshot                       # examples/chelsea.png -> tools/results/serve_page.png
    python -m tools.serve_screenshot --image my.png --out /tmp/page.png

Needs Debian's `chromium` (apt-get install chromium) and Playwright's Python package (requirements.txt).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

VIEWPORT = {"width": 1440, "height": 900}  # a common laptop screen
# headless in a container: no sandbox (root), no GPU, no background traffic
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WAIT_MS = 600_000  # CPU inference of a large image takes a while; the page counts tiles meanwhile


def start_server() -> tuple[subprocess.Popen, int]:
    """`mgsrgan serve --port 0` as a child process; returns it and the port it printed."""
    server = subprocess.Popen([sys.executable, "-m", "mgsrgan.cli.main", "serve", "--port", "0", "--scale", "2"],
                              stderr=subprocess.PIPE, text=True)
    for line in server.stderr:
        found = re.search(r":(\d+)  \(page", line)
        if found:
            return server, int(found.group(1))
    server.kill()
    raise SystemExit("mgsrgan serve stopped before printing its address")


def capture(port: int, image: Path, out: Path, chromium: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("document.getElementById('scale').options.length > 0")
        page.set_input_files("#file", str(image))
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=WAIT_MS)
        page.click("#checkpoint button[data-value='gan']")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=WAIT_MS)
        page.fill("#split", "42")
        page.check("#uncertainty")
        page.fill("#overlay-opacity", "0.35")
        page.click("button[data-zoom='2']")
        page.wait_for_timeout(3000)  # the views load from the server's cache; let the canvases settle
        page.screenshot(path=str(out))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=Path("examples/chelsea.png"))
    parser.add_argument("--out", type=Path, default=Path("tools/results/serve_page.png"))
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium on PATH: apt-get install chromium")
    if not args.image.is_file():
        raise SystemExit(f"no image at {args.image}")
    server, port = start_server()
    try:
        capture(port, args.image, args.out, chromium)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
