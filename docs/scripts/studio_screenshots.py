"""Make docs/images/studio.png (mid-job), studio_done.png (finished),
studio_compare.png (the finished picture compared with its photo) and studio_texture.png
(a tileable texture painted with no photo) with Playwright.

    python docs/scripts/studio_screenshots.py [--chromium /usr/bin/chromium] [--only texture]

Runs a studio on 127.0.0.1 with a temporary data folder and the default network, paints
Grace Hopper (docs/images) in the demo painting: about a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from PIL import Image

from brushwork.engine.cache import Cache
from brushwork.studio.app import create_app

HERE = Path(__file__).resolve().parent.parent  # docs/
IMAGES = HERE / "images"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def save_small(src: Path, dest: Path, limit: int = 500_000) -> None:
    im = Image.open(src).convert("RGB")
    im.save(dest, optimize=True)
    if dest.stat().st_size > limit:  # a palette keeps the UI crisp and the file small
        im.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            dest, optimize=True)
    print(f"{dest}: {dest.stat().st_size // 1024} KB", file=sys.stderr)


def texture(page: Any, shot: Path) -> None:
    """A 320x224 tileable texture of the demo painting, finished (minutes on two CPU
    cores)."""
    page.click("#mode-texture")
    page.set_input_files("#style-input", str(IMAGES / "demo_style.png"))
    page.wait_for_selector("#style-thumbs .thumb img")
    for name, value in (("texture-width", 320), ("texture-height", 224), ("iterations", 60)):
        page.fill(f"#{name}", str(value))
        page.dispatch_event(f"#{name}", "change")
    page.click("#start")
    page.wait_for_selector("#download:not([hidden])", timeout=1_800_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(shot))
    page.click("#mode-picture")
    page.click("#style-thumbs .thumb .remove")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--only", choices=("pictures", "texture"),
                        help="make only these screenshots")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="brushwork-shots-"))
    app = create_app(tmp / "data", cache=Cache())
    server, thread, url = serve(app)
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp / "profile"), executable_path=args.chromium, headless=True, args=ARGS,
                viewport={"width": 1400, "height": 900})
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(180_000)
            page.goto(url)
            page.wait_for_selector("#connection.live")
            if args.only != "pictures":
                texture(page, tmp / "texture.png")
            if args.only == "texture":
                context.close()
                return
            page.set_input_files("#content-input", str(IMAGES / "grace_hopper.jpg"))
            page.set_input_files("#style-input", str(IMAGES / "demo_style.png"))
            page.wait_for_selector("#style-thumbs .thumb img")

            def options(size: int, iterations: int, colours: str = "none") -> None:
                for name, value in (("size", size), ("iterations", iterations)):
                    page.fill(f"#{name}", str(value))
                    page.dispatch_event(f"#{name}", "change")
                page.select_option("#preserve_colors", colours)

            options(160, 30, "luminance")  # a first picture for the gallery
            page.click("#start")
            page.wait_for_selector("#download:not([hidden])")
            options(256, 80)
            page.click("#start")
            # Selectors, not wait_for_function: the page's CSP forbids eval.
            page.wait_for_selector("#status-text:has-text('step 3')")
            main_job = page.locator("#preview").get_attribute("data-job")
            page.click("#start")  # a second tab's job, waiting its turn
            page.wait_for_selector("#queue li[data-state='queued']")
            page.click(f"#queue li[data-job='{main_job}']")
            page.wait_for_selector("#status-text:text-matches('step (4[5-9]|5\\d)/')")
            page.screenshot(path=str(tmp / "mid.png"))
            page.click("#queue li[data-state='queued'] .x")
            page.wait_for_selector("#download:not([hidden])")
            page.wait_for_timeout(500)
            page.screenshot(path=str(tmp / "done.png"))
            page.click("#compare-toggle")  # the photo over the painting, cut at 45%
            page.wait_for_selector("#compare:not([hidden])")
            page.fill("#compare-slider", "45")
            page.wait_for_timeout(500)
            page.screenshot(path=str(tmp / "compare.png"))
            context.close()
    finally:
        app.state.broker.close()
        server.should_exit = True
        thread.join(30)
        if (tmp / "texture.png").is_file():
            save_small(tmp / "texture.png", IMAGES / "studio_texture.png")
    save_small(tmp / "mid.png", IMAGES / "studio.png")
    save_small(tmp / "done.png", IMAGES / "studio_done.png")
    save_small(tmp / "compare.png", IMAGES / "studio_compare.png")


if __name__ == "__main__":
    main()
