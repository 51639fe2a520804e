"""A plan in the studio's page, in a real browser (Debian's chromium, as test_browser.py):
2 photos x 2 paintings ticked in the picker, painted, opened from the gallery, rerun."""

from __future__ import annotations

import httpx
from PIL import Image
from studio_support import make_app, running_server
from test_browser import _open, _poll, browser_page  # noqa: F401 (a fixture)

from conftest import painting_array, photo_array


def test_a_2x2_plan_made_in_the_page_finishes_and_reruns_only_what_is_missing(
        browser_page, tmp_path, tiny_model_file):  # noqa: F811
    from playwright.sync_api import expect

    page = browser_page
    files = []
    for name, array in (("harbour.png", photo_array(64, 48, seed=1)),
                        ("garden.png", photo_array(64, 48, seed=4)),
                        ("storm.png", painting_array(48, 48, seed=2)),
                        ("lilies.png", painting_array(48, 48, seed=9))):
        Image.fromarray(array).save(tmp_path / name)
        files.append(str(tmp_path / name))
    app = make_app(tmp_path / "data", tiny_model_file, preview_interval=0.0)
    with running_server(app) as url:
        _open(page, url)
        page.click("#mode-plan")
        expect(page.locator("#plan-panel")).to_be_visible()
        expect(page.locator("#content-drop")).to_be_hidden()
        page.set_input_files("#plan-input", files)
        expect(page.locator("#plan-library .pick")).to_have_count(4, timeout=60_000)
        for name, role in (("harbour.png", "photo"), ("garden.png", "photo"),
                           ("storm.png", "painting"), ("lilies.png", "painting")):
            page.check(f'#plan-library input[aria-label="{name} as a {role}"]')
        for name, value in (("size", 48), ("iterations", 6)):
            page.fill(f"#{name}", str(value))
            page.dispatch_event(f"#{name}", "change")
        expect(page.locator("#plan-count")).to_have_text(
            "2 photos × 2 paintings = 4 pictures")
        expect(page.locator("#plan-estimate")).to_contain_text("4 pictures", timeout=60_000)
        page.click("#plan-start")

        expect(page.locator("#plan-view")).to_be_visible()
        expect(page.locator("#job-state")).to_have_text("done", timeout=120_000)
        expect(page.locator("#plan-rows li")).to_have_count(4)
        expect(page.locator('#plan-rows li[data-state="done"]')).to_have_count(4)
        expect(page.locator("#plan-summary")).to_have_text("4 pictures: 4 painted, 0 skipped")
        job_id = page.locator("#preview").get_attribute("data-job")
        # The contact sheet on the stage; the gallery shows the plan as one group.
        _poll(page, "() => document.getElementById('preview').naturalWidth > 100 && "
                    "document.getElementById('preview').src.includes('/sheet')")
        expect(page.locator("#gallery button.group")).to_have_count(1)
        expect(page.locator("#gallery button.group .count")).to_have_text("4")

        # A reload, then the group opened from the gallery: its pictures, each viewable.
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        page.click("#gallery button.group")
        expect(page.locator('#plan-rows li[data-state="done"]')).to_have_count(4)
        _poll(page, "() => [...document.querySelectorAll('#plan-rows .pic img')]"
                    ".every((img) => img.complete && img.naturalWidth === 48)")
        first = page.locator("#plan-rows li").first
        expect(first.locator(".label")).to_have_text("1. harbour.png × storm.png")
        href = first.locator("a.save").get_attribute("href")
        assert httpx.get(url + href).headers["content-type"] == "image/png"
        expect(page.locator("#plan-index")).to_be_visible()
        zipped = httpx.get(url + page.locator("#plan-zip").get_attribute("href"))
        assert zipped.headers["content-type"] == "application/zip"
        assert httpx.get(url + page.locator("#plan-index").get_attribute("href")).json()[
            "counts"] == {"done": 4}

        # One picture lost: "Rerun missing" paints it alone.
        rows = httpx.get(f"{url}/api/jobs/{job_id}").json()["detail"]["rows"]
        (app.state.store.job_dir(job_id) / rows[1]["output"]).unlink()
        page.click("#plan-rerun")
        expect(page.locator("#plan-summary")).to_have_text("4 pictures: 1 painted, 3 skipped",
                                                           timeout=120_000)
        expect(page.locator("#job-state")).to_have_text("done")
        expect(page.locator('#plan-rows li[data-state="skipped"]')).to_have_count(3)
        expect(page.locator('#plan-rows li[data-row="2"]')).to_have_attribute(
            "data-state", "done")
        expect(page.locator("#gallery button.group")).to_have_count(1)
        page.screenshot(path=str(tmp_path / "plan.png"))
    assert page.errors == []
