"""Plans in the studio: photos x paintings (x strengths) as one job, through the HTTP API.

The tiny test network at 32 px for a few steps; a 2x2 plan paints in seconds.
"""

from __future__ import annotations

import io
import json
import threading
import time
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image
from studio_support import make_app, png_bytes

from brushwork.batch import painting as batch_painting
from brushwork.io.images import read_metadata
from brushwork.studio.options import Limits
from brushwork.studio.plans import output_name, safe_part
from brushwork.studio.store import Store
from conftest import painting_array, photo_array

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

BASE = "http://127.0.0.1:8000"
FAST = {"size": 32, "iterations": 3, "seed": 1}
ENDED = ("done", "failed", "cancelled", "interrupted")


@pytest.fixture
def app(tmp_path, tiny_model_file):
    return make_app(tmp_path / "data", tiny_model_file, preview_interval=0.0)


@pytest.fixture
def client(app):
    with TestClient(app, base_url=BASE) as c:
        yield c


def upload(client, array, name):
    r = client.post("/api/upload", files={"file": (name, png_bytes(array), "image/png")})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def two_by_two(client):
    photos = [upload(client, photo_array(seed=1), "cat photo.png"),
              upload(client, photo_array(seed=5), "../../etc/passwd.png")]
    styles = [upload(client, painting_array(seed=2), "Starry Night.jpg.png"),
              upload(client, painting_array(seed=7), "wave.png")]
    return photos, styles


def plan(client, photos, styles, strengths=None, options=None):
    body = {"photos": photos, "styles": styles, "options": dict(FAST, **(options or {}))}
    if strengths is not None:
        body["strengths"] = strengths
    return client.post("/api/plans", json=body)


def wait_for(client, job_id, states=ENDED, timeout=120.0):
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"plan stuck in {job['state']}"
        time.sleep(0.05)


@pytest.fixture
def gate(monkeypatch):
    """Hold each picture of a plan at its second step until released (the first has
    been reported)."""
    real = batch_painting.stylize
    started, release = threading.Event(), threading.Event()

    def held(content, styles, *, callback, **kw):
        def cb(it):
            if it.step >= 2:
                started.set()
                release.wait(120)
            callback(it)
        return real(content, styles, callback=cb, **kw)

    monkeypatch.setattr(batch_painting, "stylize", held)
    return started, release


def test_a_2x2_plan_paints_four_pictures_an_index_and_a_sheet(client, tmp_path):
    photos, styles = two_by_two(client)
    r = plan(client, photos, styles)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["kind"] == "plan" and job["content"] == photos[0] and job["styles"] == styles
    assert job["options"]["plan"] == {"photos": photos, "strengths": None}
    assert job["detail"]["total"] == 4
    assert [row["state"] for row in job["detail"]["rows"]] == ["pending"] * 4
    done = wait_for(client, job["id"])
    assert done["state"] == "done" and done["error"] is None, done
    detail = done["detail"]
    assert (detail["painted"], detail["skipped"], detail["failed"], detail["done"]) == \
        (4, 0, 0, 4)
    rows = detail["rows"]
    assert [(row["photo"], row["style"]) for row in rows] == \
        [(p, s) for p in photos for s in styles]
    assert [row["photo_name"] for row in rows[::2]] == ["cat photo.png", "passwd.png"]
    # Readable file names, made from the display names, never a path
    assert [row["output"] for row in rows] == [
        "1-cat-photo--Starry-Night-jpg.png", "2-cat-photo--wave.png",
        "3-passwd--Starry-Night-jpg.png", "4-passwd--wave.png"]
    folder = client.app.state.store.job_dir(job["id"])
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [row["output"] for row in rows] + ["index.json", "sheet.png"])

    for n in range(1, 5):
        pic = client.get(f"/api/jobs/{job['id']}/pictures/{n}")
        assert pic.status_code == 200 and pic.headers["content-type"] == "image/png"
        assert pic.content == (folder / rows[n - 1]["output"]).read_bytes()
        assert max(Image.open(folder / rows[n - 1]["output"]).size) == 32
    sheet = client.get(f"/api/jobs/{job['id']}/sheet")
    assert sheet.status_code == 200 and Image.open(folder / "sheet.png").size[0] > 64
    index = client.get(f"/api/jobs/{job['id']}/index").json()
    assert index["counts"] == {"done": 4} and len(index["rows"]) == 4
    assert index["rows"][0]["content"] == "cat photo.png"
    assert index["options"]["model"] == "tiny"
    assert client.get(f"/api/jobs/{job['id']}/thumb").headers["content-type"] == "image/jpeg"
    # No server path anywhere the studio serves or records
    meta = read_metadata(folder / rows[0]["output"])
    assert meta["inputs"] == {"content": "cat photo.png", "style": ["Starry Night.jpg.png"]}
    assert meta["settings"]["model"] == "tiny"
    for text in (json.dumps(meta), json.dumps(index), client.get(f"/api/jobs/{job['id']}").text,
                 client.get("/api/gallery").text):
        assert str(tmp_path) not in text
    gallery = client.get("/api/gallery").json()["results"]
    assert [(g["id"], g["kind"]) for g in gallery] == [(job["id"], "plan")]
    r = client.get(f"/api/jobs/{job['id']}/zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.testzip() is None
        listed = zf.namelist()
        assert sorted(listed) == sorted(f"brushwork-{job['id']}/{n}" for n in
                                        [row["output"] for row in rows] + ["index.json",
                                                                          "sheet.png"])
        assert zf.read(listed[0]) == (folder / rows[0]["output"]).read_bytes()


def test_a_strength_sweep_is_a_column_per_strength(client):
    photos, styles = two_by_two(client)
    job = plan(client, photos[:1], styles[:1], strengths=[0.2, 0.9]).json()
    done = wait_for(client, job["id"])
    assert done["state"] == "done", done
    outputs = [row["output"] for row in done["detail"]["rows"]]
    assert outputs == ["1-cat-photo--Starry-Night-jpg--s0.2.png",
                       "2-cat-photo--Starry-Night-jpg--s0.9.png"]
    folder = client.app.state.store.job_dir(job["id"])
    strengths = [read_metadata(folder / o)["settings"]["strength"] for o in outputs]
    assert strengths == [0.2, 0.9]
    index = client.get(f"/api/jobs/{job['id']}/index").json()
    assert [row["options"] for row in index["rows"]] == [{"strength": 0.2},
                                                         {"strength": 0.9}]


def test_rerun_paints_only_what_is_missing(client):
    photos, styles = two_by_two(client)
    job = plan(client, photos, styles).json()
    first = wait_for(client, job["id"])
    assert first["detail"]["painted"] == 4
    folder = client.app.state.store.job_dir(job["id"])
    missing = folder / first["detail"]["rows"][2]["output"]
    kept = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png") if p != missing}
    missing.unlink()

    r = client.post(f"/api/jobs/{job['id']}/rerun")
    assert r.status_code == 200 and r.json()["state"] in ("queued", "running"), r.text
    again = wait_for(client, job["id"])
    assert again["state"] == "done", again
    d = again["detail"]
    assert (d["painted"], d["skipped"], d["failed"]) == (1, 3, 0)
    assert [row["state"] for row in d["rows"]] == ["skipped", "skipped", "done", "skipped"]
    assert missing.is_file()
    for name, mtime in kept.items():
        if name != "sheet.png":
            assert (folder / name).stat().st_mtime_ns == mtime, name  # not painted again

    third = client.post(f"/api/jobs/{job['id']}/rerun")
    assert third.status_code == 200
    assert wait_for(client, job["id"])["detail"]["skipped"] == 4
    assert client.get("/api/gallery").json()["total"] == 1  # one job, rerun in place


def test_rerun_is_refused_for_a_picture_an_active_plan_and_an_unknown_id(client, gate):
    started, release = gate
    photos, styles = two_by_two(client)
    job = plan(client, photos[:1], styles).json()
    assert started.wait(120)
    r = client.post(f"/api/jobs/{job['id']}/rerun")
    assert r.status_code == 409 and "running" in r.json()["detail"]
    release.set()
    wait_for(client, job["id"])
    picture = client.post("/api/jobs", json={"content": photos[0], "styles": styles[:1],
                                             "options": FAST}).json()
    wait_for(client, picture["id"])
    assert client.post(f"/api/jobs/{picture['id']}/rerun").status_code == 409
    assert client.post("/api/jobs/0123456789abcdef/rerun").status_code == 404
    assert client.get(f"/api/jobs/{picture['id']}/sheet").status_code == 404
    assert client.get(f"/api/jobs/{job['id']}/pictures/0").status_code == 404
    assert client.get(f"/api/jobs/{job['id']}/pictures/3").status_code == 404
    assert client.get(f"/api/jobs/{job['id']}/pictures/..%2F..%2Fstudio.db").status_code \
        in (404, 422)


@pytest.mark.parametrize("body, needle", [
    ({"photos": [], "styles": ["0" * 16]}, "photos must be a list of 1 to"),
    ({"photos": "abc", "styles": ["0" * 16]}, "photos must be a list"),
    ({"photos": ["../etc/passwd"], "styles": ["0" * 16]}, "photos must be a list"),
    ({"photos": ["0" * 16], "styles": ["0" * 16]}, "no upload with id"),
    ({"photos": ["P"], "styles": ["S"], "strengths": [0.5, True]}, "strengths must be"),
    ({"photos": ["P"], "styles": ["S"], "strengths": []}, "strengths must be"),
    ({"photos": ["P"], "styles": ["S"], "strengths": [0.5, 0.5]}, "a value twice"),
    ({"photos": ["P"], "styles": ["S"], "strengths": [7.0]}, "strength 7:"),
    ({"photos": ["P"], "styles": ["S"], "strengths": [0.5],
      "options": {"strength": 0.3}}, "not both"),
    ({"photos": ["P", "P"], "styles": ["S"]}, "an upload twice"),
    ({"photos": ["P"], "styles": ["S"], "options": {"plan": {}}}, "'plan'"),
    ({"photos": ["P"], "styles": ["S"], "options": {"size": 99999}}, "limit"),
    ({"photos": ["P"], "styles": ["S"], "extra": 1}, "unknown field"),
])
def test_bad_plans_are_refused_in_one_line(client, body, needle):
    p = upload(client, photo_array(), "p.png")
    s = upload(client, painting_array(), "s.png")
    swap = {"P": p, "S": s}
    body = {k: [swap.get(x, x) if isinstance(x, str) else x for x in v]
            if isinstance(v, list) else v for k, v in body.items()}
    r = client.post("/api/plans", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert needle in detail and "\n" not in detail
    assert client.post("/api/plans/estimate", json=body).status_code == 422
    assert client.get("/api/jobs").json()["jobs"] == []


def test_a_plan_over_the_picture_limit_is_refused(tmp_path, tiny_model_file):
    app = make_app(tmp_path / "data", tiny_model_file,
                   limits=Limits(max_upload_bytes=200_000, max_pixels=250_000,
                                 max_plan_pictures=5))
    with TestClient(app, base_url=BASE) as c:
        photos, styles = two_by_two(c)
        r = plan(c, photos, styles, strengths=[0.3, 0.6])
        assert r.status_code == 422
        assert r.json()["detail"] == ("the plan has 2 photos x 2 paintings x 2 strengths = 8 "
                                      "pictures, over this studio's limit of 5")
        assert plan(c, photos, styles).status_code == 201  # 4 fit


def test_the_estimate_counts_every_picture(client, monkeypatch):
    from brushwork.engine.memory.forecast import Estimate
    from brushwork.studio import plans as plans_module

    sized = []

    def fake(content_size, /, *, cache, measure, **options):
        sized.append((content_size, options.get("strength")))
        return Estimate(peak_bytes=1e9, seconds=10.0, budget_bytes=4e9, scales=())

    monkeypatch.setattr(plans_module, "estimate_size", fake)
    photos, styles = two_by_two(client)
    body = {"photos": photos, "styles": styles, "strengths": [0.3, 1], "options": FAST}
    r = client.post("/api/plans/estimate", json=body).json()
    assert r["pictures"] == 8 and r["estimate"]["seconds"] == 80.0
    assert r["text"] == "8 pictures, about 1 min 20 s, peak 1.0 GB"
    assert len(sized) == 2  # both photos are 40x32: one size per strength

    def too_big(content_size, /, *, cache, measure, **options):
        return Estimate(peak_bytes=9e9, seconds=10.0, budget_bytes=4e9, scales=())

    monkeypatch.setattr(plans_module, "estimate_size", too_big)
    r = client.post("/api/plans", json=body)
    assert r.status_code == 422 and r.json()["detail"].startswith(
        "picture 1 (cat photo.png) would not fit this machine's memory")
    assert client.get("/api/jobs").json()["jobs"] == []


def test_cancel_a_running_plan(client, gate):
    started, release = gate
    photos, styles = two_by_two(client)
    job = plan(client, photos, styles).json()
    assert started.wait(120)
    running = client.get(f"/api/jobs/{job['id']}").json()
    assert running["state"] == "running" and running["detail"]["current"] == 1
    assert running["detail"]["rows"][0]["state"] == "running"
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
    release.set()
    ended = wait_for(client, job["id"])
    assert ended["state"] == "cancelled"
    assert ended["detail"]["painted"] == 0
    folder = client.app.state.store.job_dir(job["id"])
    assert not list(folder.glob("*-*.png"))  # no picture of the plan
    assert client.post(f"/api/jobs/{job['id']}/rerun").status_code == 200  # go on later
    assert wait_for(client, job["id"])["detail"]["painted"] == 4


def test_a_plan_stopped_with_the_studio_goes_on_at_the_next_start(tmp_path, tiny_model_file,
                                                                  monkeypatch):
    real = batch_painting.stylize
    painted: list[str] = []
    second_started, release = threading.Event(), threading.Event()

    def counting(content, styles, *, callback, **kw):
        def cb(it):
            if len(painted) == 1:  # the second picture: held until the studio stops
                second_started.set()
                release.wait(120)
            callback(it)
        result = real(content, styles, callback=cb, **kw)
        painted.append(content)
        return result

    monkeypatch.setattr(batch_painting, "stylize", counting)
    app = make_app(tmp_path / "data", tiny_model_file)
    with TestClient(app, base_url=BASE) as c:
        photos, styles = two_by_two(c)
        job = plan(c, photos, styles).json()
        assert second_started.wait(120)

        def release_once_stopping():
            while not app.state.queue.stopping:
                time.sleep(0.01)
            release.set()
        threading.Thread(target=release_once_stopping, daemon=True).start()
    store = Store(tmp_path / "data")
    row = store.job(job["id"])
    assert row["state"] == "queued" and row["detail"]["painted"] == 1
    store.close()
    assert len(painted) == 1
    release.set()
    again = make_app(tmp_path / "data", tiny_model_file)
    with TestClient(again, base_url=BASE) as c:
        done = wait_for(c, job["id"])
        assert done["state"] == "done", done
        assert (done["detail"]["painted"], done["detail"]["skipped"]) == (3, 1)
    assert len(painted) == 4


def test_delete_removes_the_folder_and_uploads_stay_while_a_plan_waits(client, gate):
    started, release = gate
    photos, styles = two_by_two(client)
    first = plan(client, photos[:1], styles[:1]).json()
    assert started.wait(120)
    waiting = plan(client, photos, styles[1:]).json()
    # The waiting plan's second photo is in no job's content: still refused.
    r = client.delete(f"/api/uploads/{photos[1]}")
    assert r.status_code == 409 and waiting["id"] in r.json()["detail"]
    assert client.delete(f"/api/uploads/{styles[0]}").status_code == 409  # the running one
    release.set()
    wait_for(client, first["id"])
    wait_for(client, waiting["id"])
    store = client.app.state.store
    folder = store.job_dir(waiting["id"])
    assert folder.is_dir()
    assert client.delete(f"/api/jobs/{waiting['id']}").status_code == 200
    assert not folder.exists() and not store.result_thumb(waiting["id"]).exists()
    assert client.delete(f"/api/uploads/{photos[1]}").status_code == 200


def test_prune_keeps_plan_folders_and_drops_those_of_no_job(tmp_path):
    store = Store(tmp_path / "data")
    store.add_job({"id": "a" * 16, "kind": "plan", "state": "done", "created": 1.0,
                   "content": "b" * 16, "styles": ["c" * 16], "options": {}})
    kept, orphan = store.job_dir("a" * 16), store.job_dir("d" * 16)
    for folder in (kept, orphan):
        folder.mkdir()
        (folder / "1-x--y.png").write_bytes(b"x")
    other = store.results_dir / "notes"
    other.mkdir()
    store.prune()
    assert (kept / "1-x--y.png").is_file() and not orphan.exists() and other.is_dir()
    store.close()


def test_output_names_are_plain_and_numbered():
    assert safe_part("../../etc/passwd", "photo") == "passwd"
    assert safe_part("Café au lait.jpeg", "photo") == "Cafe-au-lait"
    assert safe_part("日本.png", "photo") == "photo"
    assert safe_part("a" * 300 + ".png", "x") == "a" * 40
    assert output_name(7, 2, "x.png", "y.png", 0.25) == "07-x--y--s0.25.png"
    assert output_name(12, 2, "..", "\n", None) == "12-photo--painting.png"


def test_the_sheet_names_photos_and_paintings_by_their_upload_names(client):
    photos, styles = two_by_two(client)
    job = plan(client, photos[:1], styles[:1]).json()
    assert wait_for(client, job["id"])["state"] == "done"
    folder = client.app.state.store.job_dir(job["id"])
    sheet = np.asarray(Image.open(folder / "sheet.png").convert("L"))
    assert sheet.shape[0] > 32 and sheet.std() > 5
    meta = read_metadata(folder / "sheet.png")
    assert meta["brushwork_batch"]["rows"][0]["content"] == "cat photo.png"


def test_the_batch_sheet_gives_a_row_with_its_own_options_a_column(tmp_path):
    from pathlib import Path

    from brushwork.batch import DONE, Batch, Row, contact_sheet

    for name, seed in (("a.png", 1), ("b.png", 2)):
        Image.fromarray(photo_array(seed=seed)).save(tmp_path / name)

    def sheet(options: list[dict]) -> Image.Image:
        rows = [Row(n, f"row {n}", "/srv/photo.png", ("/srv/paint.png",), out, opts,
                    state=DONE)
                for n, (out, opts) in enumerate(zip(("a.png", "b.png"), options,
                                                    strict=True), 1)]
        return contact_sheet(Batch(rows, Path(tmp_path), {}, "test",
                                   names={"/srv/photo.png": "my photo"}))

    two = sheet([{"strength": 0.2}, {"strength": 0.9}])
    one = sheet([{}, {}])  # the same cell twice: the later picture in it
    assert two.size[0] > one.size[0] + 32 and two.size[1] == one.size[1]
