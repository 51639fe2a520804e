"""A texture painted from the studio page (Debian's chromium, as test_browser.py)."""

from __future__ import annotations

from PIL import Image
from studio_support import make_app, running_server
from test_browser import _open, browser_page  # noqa: F401  (a fixture)

from conftest import painting_array


def test_a_texture_painted_from_the_page_at_its_size_and_reopened(browser_page,  # noqa: F811
                                                                   tmp_path, tiny_model_file):
    from playwright.sync_api import expect

    page = browser_page
    painting = tmp_path / "painting.png"
    Image.fromarray(painting_array(48, 48)).save(painting)
    app = make_app(tmp_path / "data", tiny_model_file, preview_interval=0.0)
    with running_server(app) as url:
        _open(page, url)
        page.click("#mode-texture")
        # No photo to choose, and none of the photo's options.
        for hidden in ("#content-drop", "#strength", "#size", "#preserve_colors",
                       "#regions-on", "#clip-drop", "#plan-library", "#photoreal"):
            expect(page.locator(hidden)).to_be_hidden()
        expect(page.locator("#start")).to_have_text("Paint texture")
        # The size first: the default 512x512 is over this test studio's pixel limit.
        for name, value in (("texture-width", 48), ("texture-height", 32), ("iterations", 4)):
            page.fill(f"#{name}", str(value))
            page.dispatch_event(f"#{name}", "change")
        page.set_input_files("#style-input", str(painting))
        page.wait_for_selector("#style-thumbs .thumb img")
        page.wait_for_selector("#estimate:text-matches('^about ')", timeout=60_000)
        page.click("#start")
        page.wait_for_selector("#download:not([hidden])", timeout=120_000)
        job_id = page.locator("#preview").get_attribute("data-job")
        job = app.state.store.job(job_id)
        assert job["kind"] == "texture" and job["options"]["tileable"] is True
        with Image.open(app.state.store.result_path(job_id)) as im:
            assert im.size == (48, 32)
        expect(page.locator("#compare-toggle")).to_be_hidden()  # no photo to compare with
        # From noise the loss falls many decades: the chart keeps where it ends in view.
        losses = [p["total"] for p in app.state.store.job(job_id)["history"]]
        low, high = (int(v) for v in page.evaluate(
            "() => document.getElementById('loss-chart').dataset.decades").split(","))
        assert 10.0 ** low <= losses[-1] <= 10.0 ** high
        page.wait_for_selector(f"#gallery [data-job='{job_id}'] img")
        # Back to a photo's form, then "Use these settings" brings the texture's back.
        page.fill("#texture-width", "64")
        page.click("#mode-picture")
        expect(page.locator("#content-drop")).to_be_visible()
        page.click("#reopen")
        expect(page.locator("#mode-texture")).to_have_attribute("aria-selected", "true")
        expect(page.locator("#texture-width")).to_have_value("48")
        expect(page.locator("#texture-height")).to_have_value("32")
        expect(page.locator("#style-thumbs .thumb")).to_have_count(1)
    assert page.errors == []
