"""brushwork studio in a real browser (Debian's chromium, driven by Playwright).

Skipped only where chromium is missing and $CI is unset; with $CI set, a missing
chromium (or playwright) fails.  Never runs `playwright install`: the system's
/usr/bin/chromium is launched with a fresh profile and no network features.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from studio_support import make_app, running_server

from brushwork.io.images import read_metadata
from brushwork.maths.strength import knobs
from brushwork.studio import worker as worker_module
from conftest import painting_array, photo_array

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000

# Records every picture the preview shows: a hash of its pixels, on each load.
RECORD_PREVIEWS = """() => {
  window.__previews = [];
  const img = document.getElementById('preview');
  img.addEventListener('load', () => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let h = 0;
    for (let i = 0; i < d.length; i++) h = (h * 31 + d[i]) >>> 0;
    window.__previews.push(h);
  });
}"""


def _need_browser():
    why = None
    if not os.path.exists(CHROMIUM):
        why = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = "the playwright package is missing"
    if why:
        if "CI" in os.environ:
            pytest.fail(f"CI must run the browser test: {why}")
        pytest.skip(why)


@pytest.fixture
def browser_page(tmp_path):
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            accept_downloads=True, viewport={"width": 1400, "height": 900})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # Console errors include CSP violations (an inline script, a CDN, an eval).
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.errors = errors
            yield page
        finally:
            context.close()


@pytest.fixture
def pictures(tmp_path):
    photo, painting = tmp_path / "photo.png", tmp_path / "painting.png"
    Image.fromarray(photo_array(64, 48)).save(photo)
    Image.fromarray(painting_array(48, 48)).save(painting)
    return photo, painting


def _poll(page, predicate: str, timeout: float = 30.0) -> None:
    """Wait until ``predicate`` (a JS function) is true.  Polled from here with evaluate:
    page.wait_for_function polls with eval inside the page, which the studio's CSP
    forbids, so it fails whenever the first check is false."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        assert time.monotonic() < deadline, f"never true: {predicate}"
        time.sleep(0.05)


def _open(page, url):
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector("#connection.live")


def _choose(page, photo: Path, painting: Path, size: int, iterations: int):
    page.set_input_files("#content-input", str(photo))
    page.set_input_files("#style-input", str(painting))
    page.wait_for_selector("#content-thumbs .thumb img")
    page.wait_for_selector("#style-thumbs .thumb img")
    for name, value in (("size", size), ("iterations", iterations)):
        page.fill(f"#{name}", str(value))
        page.dispatch_event(f"#{name}", "change")


@pytest.fixture
def paced(monkeypatch):
    """Each step of a job takes at least 0.1 s: the tiny network would finish before the
    page could fetch a single preview, and the preview shows the newest picture only."""
    real = worker_module.stylize

    def slower(content, styles, *, callback, **kw):
        def cb(it):
            time.sleep(0.1)
            callback(it)
        return real(content, styles, callback=cb, **kw)

    monkeypatch.setattr(worker_module, "stylize", slower)


def test_paint_watch_the_preview_change_and_download(browser_page, pictures, tmp_path,
                                                     tiny_model_file, paced):
    from playwright.sync_api import expect

    page = browser_page
    app = make_app(tmp_path / "data", tiny_model_file, preview_interval=0.0)
    with running_server(app) as url:
        _open(page, url)
        assert page.locator("#model").input_value() == "tiny"
        page.evaluate(RECORD_PREVIEWS)
        _choose(page, *pictures, size=48, iterations=8)
        page.fill("#strength", "0.3")
        page.dispatch_event("#strength", "change")
        expect(page.locator("#strength-range")).to_have_value("0.3")
        # The estimate beside the Paint button, asked for once photo and painting are in.
        expect(page.locator("#estimate")).to_contain_text("about ")
        expect(page.locator("#estimate")).to_contain_text(" GB")
        page.click("#start")

        page.wait_for_selector("#download:not([hidden])")
        assert page.locator("#job-state").inner_text().lower() == "done"
        previews = page.evaluate("window.__previews")
        assert len(set(previews)) >= 2, previews  # the picture changed while it ran
        # The loss curve got every step (8 steps at one scale).
        assert page.locator("#loss-chart").get_attribute("data-points") == "8"
        assert "8 steps" in page.locator("#status-text").inner_text()

        with page.expect_download() as info:
            page.click("#download")
        saved = tmp_path / "downloaded.png"
        info.value.save_as(saved)
        assert info.value.suggested_filename.startswith("brushwork-")
        with Image.open(saved) as im:
            assert max(im.size) == 48
        meta = read_metadata(saved)
        assert meta["settings"]["size"] == 48 and meta["settings"]["iterations"] == 8
        # The slider's strength was sent, and the knobs it sets were not.
        assert meta["settings"]["strength"] == 0.3
        assert meta["settings"]["content_weight"] == pytest.approx(knobs(0.3)["content_weight"])

        # The gallery survives a reload; re-opening a result loads its settings.
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        page.fill("#size", "300")
        page.click("#gallery button")
        page.wait_for_selector("#reopen:not([hidden])")
        page.click("#reopen")
        expect(page.locator("#size")).to_have_value("48")  # no eval: the page's CSP forbids it
        expect(page.locator("#iterations")).to_have_value("8")
        expect(page.locator("#strength")).to_have_value("0.3")
        assert page.locator("#advanced").get_attribute("open") is None
        page.wait_for_selector("#style-thumbs .thumb")
        page.wait_for_selector("#content-thumbs .thumb")
        assert page.locator("#style-thumbs .thumb").count() == 1

        # With the Advanced fold open the raw weights are sent instead of strength.
        page.click("#advanced summary")
        expect(page.locator("#strength").locator("xpath=..")).to_have_class(re.compile(r"\binactive\b"))
        page.fill("#content_weight", "7")
        page.dispatch_event("#content_weight", "change")
        page.click("#start")
        expect(page.locator("#gallery button")).to_have_count(2, timeout=20_000)
        newest = httpx.get(f"{url}/api/gallery").json()["results"][0]
        options = httpx.get(f"{url}/api/jobs/{newest['id']}").json()["options"]
        assert options["content_weight"] == 7 and "strength" not in options
    assert page.errors == []


def test_queue_places_cancel_and_a_refused_upload(browser_page, pictures, tmp_path,
                                                  tiny_model_file, monkeypatch):
    page = browser_page
    real = worker_module.stylize
    release, started = threading.Event(), threading.Event()

    def held(content, styles, *, callback, **kw):  # the first job waits for the test
        def cb(it):
            started.set()
            release.wait(20)
            callback(it)
        return real(content, styles, callback=cb, **kw)

    def late_reply(route):
        """The first POST /api/jobs answers "queued" (as when the server replied before
        its worker took the job) only after the job runs and the event saying so has
        reached the page: the stale reply must not win."""
        if route.request.method != "POST" or started.is_set():
            route.continue_()
            return
        response = route.fetch()
        reply = {**response.json(), "state": "queued", "step": 0, "place": 1}
        started.wait(20)
        time.sleep(0.5)
        route.fulfill(response=response, json=reply)

    monkeypatch.setattr(worker_module, "stylize", held)
    app = make_app(tmp_path / "data", tiny_model_file)
    with running_server(app) as url:
        try:
            _open(page, url)
            not_an_image = tmp_path / "notes.png"
            not_an_image.write_text("just text")
            page.set_input_files("#content-input", str(not_an_image))
            page.wait_for_selector("#content-error:has-text('not an image')")
            page.errors.clear()  # the browser logs the refused upload's 415 itself

            _choose(page, *pictures, size=32, iterations=4)
            page.route("**/api/jobs", late_reply)
            page.click("#start")
            page.wait_for_selector("#queue li[data-state='running']")
            page.wait_for_selector("#start:not([disabled])")  # the late reply has been read
            assert page.locator("#queue li[data-state='running']").count() == 1
            assert page.locator("#queue li[data-state='queued']").count() == 0
            page.click("#start")
            page.wait_for_selector("#queue li[data-state='queued']")
            waiting = page.locator("#queue li[data-state='queued']")
            assert "1st in queue" in waiting.inner_text()
            assert "1st in the queue" in page.locator("#status-text").inner_text()

            page.click("#cancel")  # the selected (second) job
            page.wait_for_selector("#queue li[data-state='cancelled']")
            release.set()
            page.wait_for_selector("#gallery button")
            assert page.locator("#queue li[data-state='queued']").count() == 0
        finally:
            release.set()  # before the server stops: the held job must be able to end
    assert page.errors == []


def _stroke(page, box, x0: float, x1: float, rows=(0.1, 0.3, 0.5, 0.7, 0.9)):
    """Drag the mouse across the canvas from x0 to x1 (shares of its width), at each row."""
    for fy in rows:
        y = box["y"] + fy * box["height"]
        page.mouse.move(box["x"] + x0 * box["width"], y)
        page.mouse.down()
        page.mouse.move(box["x"] + x1 * box["width"], y, steps=8)
        page.mouse.up()


def _stored_mask(data_dir: Path, upload_id: str) -> np.ndarray:
    (path,) = [p for p in (data_dir / "uploads").glob(f"{upload_id}.*")
               if not p.name.endswith(".thumb.jpg")]
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


LAYER_ALPHA = ("([k, x, y]) => "
               "regions.layers[k].getContext('2d').getImageData(x, y, 1, 1).data[3]")


def test_paint_regions_with_the_mouse_store_them_and_get_them_back(browser_page, tmp_path,
                                                                  tiny_model_file):
    from playwright.sync_api import expect

    page = browser_page
    photo, first, second = tmp_path / "photo.png", tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(photo_array(64, 48)).save(photo)
    Image.fromarray(painting_array(48, 48)).save(first)
    Image.fromarray(painting_array(48, 48, seed=3)[:, ::-1].copy()).save(second)
    data = tmp_path / "data"
    app = make_app(data, tiny_model_file)
    with running_server(app) as url:
        _open(page, url)
        page.set_input_files("#content-input", str(photo))
        page.set_input_files("#style-input", [str(first), str(second)])
        expect(page.locator("#style-thumbs .thumb")).to_have_count(2, timeout=TIMEOUT_MS)
        for name, value in (("size", 48), ("iterations", 4)):
            page.fill(f"#{name}", str(value))
            page.dispatch_event(f"#{name}", "change")
        page.check("#regions-on")
        canvas = page.locator("#region-canvas")
        # The layers are the photo's thumbnail's size: 64x48.
        expect(canvas).to_have_attribute("width", "64", timeout=TIMEOUT_MS)
        # A painting left unpainted is refused on the page, before anything is sent.
        page.click("#start")
        expect(page.locator("#form-error")).to_contain_text("paint where a.png goes",
                                                            timeout=TIMEOUT_MS)
        # 60 px of brush on a canvas about 280 px wide: about 7 px of the 64 px layers.
        page.evaluate("() => { document.getElementById('brush-size').value = 60; }")
        box = canvas.bounding_box()
        assert box is not None
        page.click("#region-tools [data-tool='0']")
        _stroke(page, box, 0.0, 0.35)
        page.click("#region-tools [data-tool='1']")
        _stroke(page, box, 0.3, 1.0)  # over the first region's right edge, then ...
        page.click("#region-tools [data-tool='-1']")  # ... "keep the photo" erases the middle
        _stroke(page, box, 0.4, 0.6, rows=(0.5,))
        assert page.evaluate(LAYER_ALPHA, [0, 4, 24]) == 255
        assert page.evaluate(LAYER_ALPHA, [0, 32, 24]) == 0  # the second brush took it
        assert page.evaluate(LAYER_ALPHA, [1, 60, 24]) == 255
        assert page.evaluate(LAYER_ALPHA, [1, 32, 24]) == 0
        page.click("#region-undo")  # brings back what the eraser took
        assert page.evaluate(LAYER_ALPHA, [1, 32, 24]) == 255
        _stroke(page, box, 0.4, 0.6)
        assert page.evaluate(LAYER_ALPHA, [1, 32, 24]) == 0
        page.click("#start")
        page.wait_for_selector("#download:not([hidden])")

        newest = httpx.get(f"{url}/api/gallery").json()["results"][0]
        job = httpx.get(f"{url}/api/jobs/{newest['id']}").json()
        assert len(job["masks"]) == 2
        left, right = (_stored_mask(data, m) for m in job["masks"])
        assert left.shape == right.shape == (48, 64)
        assert left[24, 4] > 250 and left[24, 60] == 0 and left[24, 32] == 0
        assert right[24, 60] > 250 and right[24, 4] == 0 and right[24, 32] == 0
        # The picture's settings name the masks by upload id, never a path of the server.
        assert job["settings"]["style_masks"] == job["masks"]

        # "Use these settings" brings the regions back onto a fresh page.
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        assert not page.locator("#regions-on").is_checked()
        page.click("#gallery button")
        page.wait_for_selector("#reopen:not([hidden])")
        page.click("#reopen")
        expect(page.locator("#regions-on")).to_be_checked(timeout=TIMEOUT_MS)
        expect(page.locator("#region-tools button")).to_have_count(3, timeout=TIMEOUT_MS)
        _poll(page, "() => regions.layers.length === 2 && !!regions.photo")
        assert page.evaluate(LAYER_ALPHA, [0, 4, 24]) > 240
        assert page.evaluate(LAYER_ALPHA, [0, 60, 24]) < 15
        assert page.evaluate(LAYER_ALPHA, [1, 60, 24]) > 240
    assert page.errors == []


def test_compare_the_painting_with_its_photo(browser_page, pictures, tmp_path, tiny_model_file):
    """The slider shows the photo left of the divider and the painting right of it."""
    from playwright.sync_api import expect

    page = browser_page
    app = make_app(tmp_path / "data", tiny_model_file, preview_interval=0.0)
    with running_server(app) as url:
        _open(page, url)
        _choose(page, *pictures, size=64, iterations=12)
        page.fill("#strength", "1")  # a painting far enough from the photo to tell apart
        page.dispatch_event("#strength", "change")
        page.click("#start")
        page.wait_for_selector("#download:not([hidden])", timeout=120_000)  # a busy machine
        expect(page.locator("#compare-toggle")).to_be_visible()
        expect(page.locator("#compare-slider")).to_be_hidden()
        page.click("#compare-toggle")
        expect(page.locator("#compare-toggle")).to_have_attribute("aria-pressed", "true")
        _poll(page, "() => document.getElementById('compare-photo').naturalWidth > 0")
        box = page.locator("#preview-box")

        def shot(split: int) -> np.ndarray:
            page.fill("#compare-slider", str(split))
            expect(page.locator("#compare-slider")).to_have_value(str(split))
            path = tmp_path / f"split{split}.png"
            box.screenshot(path=str(path))
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"), dtype=np.int16)

        photo, painting, half = shot(100), shot(0), shot(50)
        w = half.shape[1]
        left, right = slice(0, w // 2 - 4), slice(w // 2 + 4, w)  # the divider between
        # Each half is the picture it should be, and not the other one (which differs).
        for part, shown, other in ((left, photo, painting), (right, painting, photo)):
            apart = np.abs(shown[:, part] - other[:, part]).mean()
            assert apart > 1.5
            assert np.abs(half[:, part] - shown[:, part]).mean() < 0.1 * apart
        # A drag on the picture moves the divider too.
        b = box.bounding_box()
        page.mouse.move(b["x"] + 0.25 * b["width"], b["y"] + b["height"] / 2)
        page.mouse.down()
        page.mouse.up()
        assert int(page.locator("#compare-slider").input_value()) == pytest.approx(25, abs=1)
        page.click("#compare-toggle")
        expect(page.locator("#compare")).to_be_hidden()
    assert page.errors == []


def test_a_job_resumed_after_the_studio_is_stopped_and_started_again(
        browser_page, pictures, tmp_path, tiny_model_file, monkeypatch):
    """Paint from the page, stop the server mid-job, start a new one on the same data
    folder: the page shows the job going on from its checkpoint to the end."""
    from playwright.sync_api import expect

    page = browser_page
    real = worker_module.stylize
    runs: list[tuple[bool, int]] = []  # (resume asked, first step) per run

    def paced_recording(content, styles, *, callback, **kw):
        first: list[int] = []

        def cb(it):
            if not first:
                first.append(it.step)
                runs.append((kw["resume"], it.step))
            time.sleep(0.15)
            callback(it)
        return real(content, styles, callback=cb, **kw)

    monkeypatch.setattr(worker_module, "stylize", paced_recording)
    data = tmp_path / "data"
    app = make_app(data, tiny_model_file, preview_interval=0.0, checkpoint_every=0.0)
    with running_server(app) as url:
        _open(page, url)
        _choose(page, *pictures, size=48, iterations=40)
        page.click("#start")
        chart, deadline = page.locator("#loss-chart"), time.monotonic() + 120
        while int(chart.get_attribute("data-points") or 0) < 6:  # no eval under the CSP
            assert time.monotonic() < deadline, "the job painted no steps"
            time.sleep(0.1)
    # The block's end stopped the server as Ctrl-C does: the page says it lost it.
    expect(page.locator("#connection")).not_to_have_class("live", timeout=20_000)
    again = make_app(data, tiny_model_file, preview_interval=0.0, checkpoint_every=0.0)
    with running_server(again) as url2:
        _open(page, url2)
        page.wait_for_selector("#download:not([hidden])", timeout=120_000)
        expect(page.locator("#job-state")).to_have_text("done", ignore_case=True)
        # All 40 steps on the chart, the stopped run's and the resumed run's.
        assert page.locator("#loss-chart").get_attribute("data-points") == "40"
        jobs = httpx.get(f"{url2}/api/gallery").json()["results"]
        assert len(jobs) == 1
        job_id = jobs[0]["id"]
        history = httpx.get(f"{url2}/api/jobs/{job_id}").json()["history"]
        assert [p["step"] for p in history] == list(range(1, 41))
    assert len(runs) == 2 and runs[0] == (False, 1)
    assert runs[1][0] is True and runs[1][1] >= 6  # went on; did not start over
    assert page.errors == [] or all("Failed to load resource" in e or "net::" in e
                                    for e in page.errors)
