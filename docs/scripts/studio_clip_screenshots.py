"""Make docs/images/studio_clip_running.png (a clip being painted, frame by frame) and
docs/images/studio_clip.png (the finished clip playing in the page) with Playwright.

    python docs/scripts/studio_clip_screenshots.py [--frames 8] [--size 192]
                                                   [--chromium /usr/bin/chromium]

Runs a studio on 127.0.0.1 with a temporary data folder and the default network; the
clip is docs/scripts/video.py's (a pan over coffee.jpg with the cat's face sliding
across, made here: no video ships with the project), painted after The Starry Night
(../shared/images; the pictures themselves are not committed).  A few minutes on two
CPU cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from studio_screenshots import ARGS, IMAGES, save_small, serve

from brushwork.engine.cache import Cache
from brushwork.studio.app import create_app
from video import SHARED, STYLE, make_clip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--iterations", type=int, default=80)
    parser.add_argument("--frame-iterations", type=int, default=30)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="brushwork-clip-shots-"))
    clip = make_clip(tmp / "coffee_cat.mp4", args.frames, args.size)
    app = create_app(tmp / "data", cache=Cache())
    server, thread, url = serve(app)
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp / "profile"), executable_path=args.chromium, headless=True, args=ARGS,
                viewport={"width": 1400, "height": 900})
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(900_000)
            page.goto(url)
            page.wait_for_selector("#connection.live")
            page.wait_for_selector("body[data-clips-ready='1']")
            page.click("#mode-clip")
            page.set_input_files("#clip-input", str(clip))
            page.set_input_files("#style-input", str(SHARED / "style" / STYLE))
            page.wait_for_selector("#clip-thumbs .thumb img")
            page.wait_for_selector("#style-thumbs .thumb img")
            for name, value in (("size", args.size), ("iterations", args.iterations),
                                ("frame_iterations", args.frame_iterations), ("seed", 1)):
                page.fill(f"#{name}", str(value))
                page.dispatch_event(f"#{name}", "change")
            page.wait_for_selector("#estimate:has-text('frames of')")
            page.click("#start")
            # Selectors, not wait_for_function: the page's CSP forbids eval.
            middle = args.frames // 2 + 1
            page.wait_for_selector(f"#status-text:has-text('frame {middle} of')")
            page.wait_for_timeout(1500)
            page.evaluate("() => window.scrollTo(0, 0)")  # the upload scrolled the page
            page.screenshot(path=str(tmp / "running.png"), full_page=True)
            page.wait_for_selector("#download-clip:not([hidden])")
            page.evaluate("() => { const v = document.getElementById('clip-video');"
                          " v.muted = true; v.loop = false; return v.play(); }")
            page.wait_for_selector("#clip-video")
            page.wait_for_timeout(int(1000 * args.frames / 12 * 0.6))  # part way through
            page.evaluate("() => document.getElementById('clip-video').pause()")
            page.wait_for_timeout(300)
            page.evaluate("() => window.scrollTo(0, 0)")
            page.screenshot(path=str(tmp / "done.png"), full_page=True)
            context.close()
    finally:
        app.state.broker.close()
        server.should_exit = True
        thread.join(30)
    save_small(tmp / "running.png", IMAGES / "studio_clip_running.png", limit=300_000)
    save_small(tmp / "done.png", IMAGES / "studio_clip.png", limit=300_000)
    print(f"work folder: {tmp}", file=sys.stderr)


if __name__ == "__main__":
    main()
