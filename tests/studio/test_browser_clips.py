"""Clips in a real browser (Debian's chromium, driven by Playwright, as test_browser.py):
a tiny clip uploaded, painted, its frames shown as they finish, the result played in the
page and offered as an MP4."""

from __future__ import annotations

import time

import pytest
from PIL import Image
from studio_support import make_app, running_server
from test_browser import RECORD_PREVIEWS, _open, _poll, browser_page  # noqa: F401
from test_clips import clip_bytes

from conftest import painting_array

pytest.importorskip("av")
pytest.importorskip("cv2")


@pytest.fixture
def paced_clips(monkeypatch):
    """Each step of a clip takes at least 0.1 s, so that the page sees its frames go by."""
    import brushwork.video.paint as paint

    real = paint.stylize_video

    def slower(source, style, output, *, callback, **kw):
        def cb(s):
            time.sleep(0.1)
            callback(s)
        return real(source, style, output, callback=cb, **kw)

    monkeypatch.setattr(paint, "stylize_video", slower)


def test_paint_a_clip_watch_its_frames_and_play_it(browser_page, tmp_path,  # noqa: F811
                                                   tiny_model_file, paced_clips):
    from playwright.sync_api import expect

    page = browser_page
    clip, painting = tmp_path / "clip.mp4", tmp_path / "painting.png"
    clip.write_bytes(clip_bytes(frames=5, size=(48, 32)))
    Image.fromarray(painting_array(48, 48)).save(painting)
    app = make_app(tmp_path / "data", tiny_model_file, preview_interval=0.0)
    with running_server(app) as url:
        _open(page, url)
        page.wait_for_selector("body[data-clips-ready='1']")
        expect(page.locator("#clip-panel")).to_be_hidden()
        page.click("#mode-clip")
        expect(page.locator("#clip-panel")).to_be_visible()
        expect(page.locator("#photo-panel")).to_be_hidden()
        expect(page.locator("#start")).to_have_text("Paint the clip")
        page.set_input_files("#clip-input", str(clip))
        page.set_input_files("#style-input", str(painting))
        page.wait_for_selector("#clip-thumbs .thumb img")
        page.wait_for_selector("#style-thumbs .thumb img")
        expect(page.locator("#clip-info")).to_contain_text("5 frames")
        for name, value in (("size", 48), ("iterations", 4), ("frame_iterations", 3)):
            page.fill(f"#{name}", str(value))
            page.dispatch_event(f"#{name}", "change")
        expect(page.locator("#estimate")).to_contain_text("5 frames of 48x32", timeout=60_000)
        page.evaluate(RECORD_PREVIEWS)
        page.click("#start")
        # While it paints: "frame N of 5" under the preview, the frames' pictures in it.
        seen = set()
        deadline = time.monotonic() + 120
        while not page.locator("#download-clip").is_visible():
            text = page.locator("#status-text").text_content() or ""
            if "frame" in text:
                seen.add(text.split(" · ")[0])
            assert time.monotonic() < deadline, "the clip never finished"
            time.sleep(0.05)
        assert {"frame 1 of 5", "frame 3 of 5", "frame 5 of 5"} <= seen, seen
        assert len(set(page.evaluate("() => window.__previews"))) >= 5
        # Done: the video plays in the page, and downloads as an MP4.
        expect(page.locator("#clip-video")).to_be_visible()
        expect(page.locator("#preview")).to_be_hidden()
        _poll(page, "() => { const v = document.getElementById('clip-video');"
                    " return v.readyState >= 2 && v.duration > 0; }", timeout=30)
        duration = page.evaluate("() => document.getElementById('clip-video').duration")
        assert duration == pytest.approx(5 / 12, abs=0.1)
        page.evaluate("() => { const v = document.getElementById('clip-video');"
                      " v.muted = true; return v.play(); }")
        _poll(page, "() => document.getElementById('clip-video').currentTime > 0")
        expect(page.locator("#status-text")).to_contain_text("5 frames")
        href = page.locator("#download-clip").get_attribute("href")
        assert href.endswith("/video?download=1")
        with page.expect_download() as download:
            page.click("#download-clip")
        assert download.value.suggested_filename.endswith(".mp4")
        # The gallery shows it with its first frame and a badge.
        expect(page.locator("#gallery button .kind")).to_have_text("clip")
        expect(page.locator("#download")).to_be_hidden()  # no PNG for a clip
        page.screenshot(path=str(tmp_path / "clip.png"))
    assert page.errors == []
