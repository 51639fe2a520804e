"""Make docs/images/studio_plan.png: a 2x2 plan in the studio's page, finished, opened
from the gallery, after "Rerun missing" repainted the one picture that was removed.

    python docs/scripts/studio_plan_screenshot.py --photos CAT.jpg COFFEE.jpg \
        --paintings STARRY.jpg WAVE.jpg [--size 128] [--iterations 30]

Runs a studio on 127.0.0.1 with a temporary data folder and the default network; the
figure in docs/studio.md used chelsea_cat.jpg and coffee.jpg with starry_night.jpg and
great_wave.jpg (a few minutes on two CPU cores).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx
from studio_screenshots import ARGS, IMAGES, save_small, serve

from brushwork.engine.cache import Cache
from brushwork.studio.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", nargs=2, required=True, type=Path)
    parser.add_argument("--paintings", nargs=2, required=True, type=Path)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per step")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="brushwork-plan-shot-"))
    app = create_app(tmp / "data", cache=Cache())
    server, thread, url = serve(app)
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp / "profile"), executable_path=args.chromium, headless=True, args=ARGS,
                viewport={"width": 1400, "height": 900})
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(args.timeout * 1000)
            page.goto(url)
            page.wait_for_selector("#connection.live")
            page.click("#mode-plan")
            page.set_input_files("#plan-input", [str(f) for f in args.photos + args.paintings])
            page.wait_for_selector(f"#plan-library .pick >> nth={len(args.photos) * 2 - 1}")
            for f in args.photos:
                page.check(f'#plan-library input[aria-label="{f.name} as a photo"]')
            for f in args.paintings:
                page.check(f'#plan-library input[aria-label="{f.name} as a painting"]')
            for name, value in (("size", args.size), ("iterations", args.iterations)):
                page.fill(f"#{name}", str(value))
                page.dispatch_event(f"#{name}", "change")
            page.wait_for_selector("#plan-estimate:has-text('pictures')")
            page.click("#plan-start")
            page.wait_for_selector("#job-state:text-is('done')")
            job = page.locator("#preview").get_attribute("data-job")
            rows = httpx.get(f"{url}/api/jobs/{job}").json()["detail"]["rows"]
            (app.state.store.job_dir(job) / rows[1]["output"]).unlink()
            page.click("#plan-rerun")
            page.wait_for_selector("#plan-summary:has-text('1 painted, 3 skipped')")
            page.wait_for_selector("#job-state:text-is('done')")
            page.click("#gallery button.group")  # the plan, opened from the gallery
            page.wait_for_selector("#plan-rows li[data-state='done']")
            page.evaluate("() => window.scrollTo(0, 0)")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(tmp / "plan.png"))
            context.close()
    finally:
        app.state.broker.close()
        server.should_exit = True
        thread.join(30)
    save_small(tmp / "plan.png", IMAGES / "studio_plan.png", limit=290_000)
    print(f"data folder: {tmp}", file=sys.stderr)


if __name__ == "__main__":
    main()
