"""Make docs/images/studio_resumed.png: a job going on after the studio was stopped
mid-job and started again on the same data folder (its checkpoint, brushwork.io.checkpoint).

    python docs/scripts/studio_resume_screenshot.py [--chromium /usr/bin/chromium]

Paints Grace Hopper (docs/images) in the demo painting at 256 px with the default
network; stops the server (as Ctrl-C does) once the job has painted ``--stop-at`` steps
and saved a checkpoint, starts a new server on the same folder, and takes the picture
while the resumed job runs: the chart holds the steps before the stop and after it.
A few minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from studio_screenshots import ARGS, IMAGES, save_small, serve

from brushwork.engine.cache import Cache
from brushwork.studio.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--stop-at", type=int, default=40, help="steps painted before the stop")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="brushwork-resume-"))
    data = tmp / "data"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp / "profile"), executable_path=args.chromium, headless=True, args=ARGS,
            viewport={"width": 1400, "height": 900})
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(1_800_000)
        # checkpoint_every=5: the stop below finds a checkpoint a few steps old at most
        # (the studio saves one every minute, and once more when it stops).
        app = create_app(data, cache=Cache(), checkpoint_every=5.0)
        server, thread, url = serve(app)
        try:
            page.goto(url)
            page.wait_for_selector("#connection.live")
            page.set_input_files("#content-input", str(IMAGES / "grace_hopper.jpg"))
            page.set_input_files("#style-input", str(IMAGES / "demo_style.png"))
            page.wait_for_selector("#style-thumbs .thumb img")
            for name, value in (("size", 256), ("iterations", 150)):
                page.fill(f"#{name}", str(value))
                page.dispatch_event(f"#{name}", "change")
            page.click("#start")
            chart = page.locator("#loss-chart")
            while int(chart.get_attribute("data-points") or 0) < args.stop_at:
                time.sleep(0.5)
        finally:
            app.state.broker.close()
            server.should_exit = True
            thread.join(120)
        page.wait_for_selector("#connection:not(.live)")
        again = create_app(data, cache=Cache(), checkpoint_every=5.0)
        server, thread, url = serve(again)
        try:
            page.goto(url)
            page.wait_for_selector("#connection.live")
            page.click("#queue li[data-state='running']")
            stopped = int(chart.get_attribute("data-points") or 0)
            while int(chart.get_attribute("data-points") or 0) < stopped + 25:
                time.sleep(0.5)
            page.wait_for_timeout(500)
            page.screenshot(path=str(tmp / "resumed.png"))
            context.close()
        finally:
            again.state.broker.close()
            server.should_exit = True
            thread.join(120)
    save_small(tmp / "resumed.png", IMAGES / "studio_resumed.png")


if __name__ == "__main__":
    main()
