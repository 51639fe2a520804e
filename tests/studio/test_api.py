"""brushwork studio's HTTP API: jobs end to end, the queue, and every bad request.

Each refused request is checked for its 4xx status and for the server answering the
next request.  Jobs use the tiny test network at 32 px for a few steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

import httpx
import numpy as np
import pytest
from PIL import Image
from studio_support import make_app, png_bytes, running_server

from brushwork.commands import main
from brushwork.commands.parser import build_parser
from brushwork.errors import DivergedError
from brushwork.io.images import read_metadata
from brushwork.maths.distributions import STYLE_LOSSES
from brushwork.maths.photoreal import PHOTOREAL_METHODS
from brushwork.maths.strength import DEFAULT_STRENGTH, knobs
from brushwork.studio import worker as worker_module
from brushwork.studio.options import OptionsError
from brushwork.studio.store import Store
from conftest import painting_array, photo_array

with warnings.catch_warnings():  # starlette's TestClient would rather have httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

BASE = "http://127.0.0.1:8000"
FAST = {"size": 32, "iterations": 4, "seed": 1}


@pytest.fixture
def app(tmp_path, tiny_model_file):
    return make_app(tmp_path / "data", tiny_model_file, preview_interval=0.0)


@pytest.fixture
def client(app):
    with TestClient(app, base_url=BASE) as c:
        yield c


def upload(client, data: bytes, name: str = "picture.png", **kw):
    return client.post("/api/upload", files={"file": (name, data, "image/png")}, **kw)


def uploaded_pair(client) -> tuple[str, str]:
    a = upload(client, png_bytes(photo_array()), "photo.png")
    b = upload(client, png_bytes(painting_array()), "painting.png")
    assert a.status_code == 201 and b.status_code == 201, (a.text, b.text)
    return a.json()["id"], b.json()["id"]


def submit(client, content, styles, options=None, **kw):
    return client.post("/api/jobs", json={"content": content, "styles": styles,
                                          "options": dict(FAST, **(options or {}))}, **kw)


def wait_for(client, job_id, states=("done", "failed", "cancelled", "interrupted"),
             timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job stuck in {job['state']}")
        time.sleep(0.02)


def still_serving(client) -> None:
    r = client.get("/api/config")
    assert r.status_code == 200 and r.json()["models"][0]["name"] == "tiny"


def sse_events(lines) -> list[dict]:
    return [json.loads(line[5:]) for line in lines if line.startswith("data:")]


# ------------------------------------------------------------------------- happy paths


def test_upload_job_result_settings_and_gallery(client):
    content, style = uploaded_pair(client)
    info = client.get(f"/api/uploads/{content}").json()
    assert (info["width"], info["height"], info["format"], info["name"]) == (40, 32, "PNG",
                                                                           "photo.png")
    r = submit(client, content, [style])
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] in ("queued", "running") and job["total"] == 4
    assert job["options"]["model"] == "tiny"

    with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = sse_events(stream.iter_lines())
    assert events[-1]["state"] == "done" and events[-1]["result"] is True
    assert events[-1]["place"] is None and events[0]["place"] in (0, 1)
    steps = [p["step"] for e in events for p in e.get("points", [])]
    assert steps == sorted(steps) and steps[-1] == 4
    assert any(e["preview"] > 0 for e in events)

    done = client.get(f"/api/jobs/{job['id']}").json()
    assert done["state"] == "done" and done["error"] is None
    assert [h["step"] for h in done["history"]] == [1, 2, 3, 4]
    assert set(done["losses"]) == {"content", "style", "tv", "structure", "matting", "total"}
    assert done["settings"]["size"] == 32 and done["settings"]["model"] == "tiny"

    r = client.get(f"/api/jobs/{job['id']}/result")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"].startswith("attachment")
    path = client.app.state.store.result_path(job["id"])
    assert r.content == path.read_bytes()
    meta = read_metadata(path)
    assert meta["settings"]["size"] == 32 and meta["settings"]["iterations"] == 4
    assert max(Image.open(path).size) == 32

    r = client.get(f"/api/jobs/{job['id']}/settings")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    assert r.json()["settings"]["seed"] == 1 and r.json()["studio"]["options"]["size"] == 32
    assert client.get(f"/api/jobs/{job['id']}/preview").status_code == 200
    assert client.get(f"/api/jobs/{job['id']}/thumb").headers["content-type"] == "image/jpeg"
    gallery = client.get("/api/gallery").json()
    assert gallery["total"] == 1 and gallery["results"][0]["id"] == job["id"]


def test_page_and_static_files_are_served_with_safe_headers(client):
    r = client.get("/")
    assert r.status_code == 200 and "<canvas id=\"loss-chart\"" in r.text
    assert "http://" not in r.text and "https://" not in r.text  # nothing from the internet
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    for name, kind in (("studio.js", "javascript"), ("studio.css", "css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert "https://" not in r.text
    config = client.get("/api/config").json()
    assert [m["name"] for m in config["models"]] == ["tiny"]
    assert config["defaults"]["size"] == 512 and config["defaults"]["model"] == "tiny"
    # What an empty request paints with: the default strength and the knobs it sets.
    assert config["defaults"]["strength"] == DEFAULT_STRENGTH
    assert config["defaults"]["content_weight"] == pytest.approx(
        knobs(DEFAULT_STRENGTH)["content_weight"])
    assert config["defaults"]["min_size"] == knobs(DEFAULT_STRENGTH)["min_size"]
    # The page offers each style statistic the API takes, the default first.
    page = client.get("/").text.split('<select id="style_loss"')[1].split("</select>")[0]
    offered = [part.split('"')[0] for part in page.split('<option value="')[1:]]
    assert offered == list(STYLE_LOSSES) and config["defaults"]["style_loss"] == offered[0]
    page = client.get("/").text.split('<select id="photoreal"')[1].split("</select>")[0]
    offered = [part.split('"')[0] for part in page.split('<option value="')[1:]]
    assert offered == list(PHOTOREAL_METHODS) and config["defaults"]["photoreal"] == "off"


@pytest.fixture
def gate(monkeypatch):
    """Hold each job at its first step until released (jobs.stylize wrapped)."""
    real = worker_module.stylize
    started, release = threading.Event(), threading.Event()

    def held(content, styles, *, callback, **kw):
        def cb(it):
            started.set()
            release.wait(20)
            callback(it)
        return real(content, styles, callback=cb, **kw)

    monkeypatch.setattr(worker_module, "stylize", held)
    return started, release


def test_queue_runs_in_order_reports_places_and_cancels(client, gate):
    started, release = gate
    content, style = uploaded_pair(client)
    ids = [submit(client, content, [style]).json()["id"] for _ in range(3)]
    assert started.wait(20)
    places = {j["id"]: (j["state"], j["place"]) for j in client.get("/api/jobs").json()["jobs"]}
    assert [places[i] for i in ids] == [("running", 0), ("queued", 1), ("queued", 2)]

    r = client.post(f"/api/jobs/{ids[1]}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert client.get(f"/api/jobs/{ids[2]}").json()["place"] == 1
    assert client.post(f"/api/jobs/{ids[1]}/cancel").status_code == 409  # already ended

    release.set()
    first, third = wait_for(client, ids[0]), wait_for(client, ids[2])
    assert first["state"] == third["state"] == "done"
    assert first["finished"] <= third["started"]  # one at a time, in order
    assert client.get(f"/api/jobs/{ids[1]}/result").status_code == 404


def test_a_job_has_one_shape_running_and_ended(client, gate):
    """One serialiser: the JSON of a job in memory and of the stored row have the same keys."""
    started, release = gate
    content, style = uploaded_pair(client)
    job_id = submit(client, content, [style]).json()["id"]
    assert started.wait(20)
    running = client.get(f"/api/jobs/{job_id}").json()
    release.set()
    ended = wait_for(client, job_id)
    assert running["state"] == "running" and ended["state"] == "done"
    assert set(running) == set(ended)
    listed = {j["id"]: j for j in client.get("/api/jobs").json()["jobs"]}[job_id]
    assert set(listed) == set(ended) - {"history"}


def test_cancel_running_job_then_queue_goes_on(client, gate):
    started, release = gate
    content, style = uploaded_pair(client)
    job = submit(client, content, [style], {"iterations": 50}).json()
    assert started.wait(20)
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
    release.set()
    ended = wait_for(client, job["id"])
    assert ended["state"] == "cancelled" and ended["step"] < 50
    assert not client.app.state.store.result_path(job["id"]).exists()
    nxt = submit(client, content, [style]).json()
    assert wait_for(client, nxt["id"])["state"] == "done"


@pytest.mark.parametrize("error, expected", [
    (DivergedError("the loss became nan at step 3; lower --style-weight"), "loss became nan"),
    (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "out of memory"),
    (MemoryError(), "out of memory"),
    # PyTorch's CPU allocator does not say "out of memory".
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 40000000000 bytes. Error code 12 "
                  "(Cannot allocate memory)"),
     "out of memory (it asked for 37.25 GiB more in RAM); try a smaller size, or a tile_size"),
    (ZeroDivisionError("boom"), "internal error"),
])
def test_failing_job_reports_its_error_and_the_queue_goes_on(client, monkeypatch, error,
                                                              expected):
    real = worker_module.stylize
    calls = []

    def flaky(*args, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return real(*args, **kw)

    monkeypatch.setattr(worker_module, "stylize", flaky)
    content, style = uploaded_pair(client)
    bad = submit(client, content, [style]).json()
    good = submit(client, content, [style]).json()
    failed = wait_for(client, bad["id"])
    assert failed["state"] == "failed" and expected in failed["error"]
    assert wait_for(client, good["id"])["state"] == "done"
    assert [j["id"] for j in client.get("/api/gallery").json()["results"]] == [good["id"]]


def test_real_nan_and_a_damaged_upload_fail_cleanly(client):
    content, style = uploaded_pair(client)
    # A style weight so large that the loss overflows float32 to inf: a real DivergedError.
    nan = submit(client, content, [style], {"style_weight": 1e300}).json()
    failed = wait_for(client, nan["id"])
    assert failed["state"] == "failed" and "the loss became" in failed["error"]
    # The stored photo damaged after upload: submit sizes the job from the stored width
    # and height and decodes nothing, so the run is what reads it, and it fails the job.
    store = client.app.state.store
    store.upload_file(content).write_bytes(b"not a picture any more")
    broken = wait_for(client, submit(client, content, [style]).json()["id"])
    assert broken["state"] == "failed" and "not an image" in broken["error"]
    assert str(store.dir) not in broken["error"]  # no server paths on the page
    still_serving(client)


def test_a_job_stopped_with_the_studio_goes_on_from_its_checkpoint_at_the_next_start(
        tmp_path, tiny_model_file, gate, monkeypatch):
    started, release = gate
    resumed: list[tuple[bool, int]] = []  # (resume asked, first step seen) per run
    held = worker_module.stylize

    def recording(content, styles, *, callback, **kw):
        first: list[int] = []

        def cb(it):
            if not first:
                first.append(it.step)
                resumed.append((kw["resume"], it.step))
            callback(it)
        return held(content, styles, callback=cb, **kw)

    monkeypatch.setattr(worker_module, "stylize", recording)
    app = make_app(tmp_path / "data", tiny_model_file, checkpoint_every=0.0)
    with TestClient(app, base_url=BASE) as c:
        content, style = uploaded_pair(c)
        done = submit(c, content, [style]).json()
        release.set()
        wait_for(c, done["id"], timeout=120)
        release.clear()
        started.clear()
        running = submit(c, content, [style], {"iterations": 12}).json()
        queued = submit(c, content, [style]).json()
        assert started.wait(60)
        release.set()  # let it paint a few steps (a checkpoint after each)
        deadline = time.monotonic() + 60
        while c.get(f"/api/jobs/{running['id']}").json()["step"] < 4:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        release.clear()  # held again at its next step, stopped there once the stop began

        def release_once_stopping():
            while not app.state.queue.stopping:
                time.sleep(0.01)
            release.set()
        threading.Thread(target=release_once_stopping, daemon=True).start()
    # Leaving the block stopped the studio (lifespan shutdown), as Ctrl-C does.
    store = Store(tmp_path / "data")
    left = {r["id"]: r for r in store.jobs(("queued",))}
    stopped_at = max(p["step"] for p in store.job(running["id"])["history"])
    assert set(left) == {running["id"], queued["id"]}
    assert store.checkpoint_path(running["id"]).is_file()
    store.close()
    release.set()
    resumed.clear()
    again = make_app(tmp_path / "data", tiny_model_file, checkpoint_every=0.0)
    with TestClient(again, base_url=BASE) as c:
        first = wait_for(c, running["id"], timeout=120)
        second = wait_for(c, queued["id"], timeout=120)
        assert first["state"] == second["state"] == "done"
        # The stopped job went on from its checkpoint; the queued one started afresh.
        assert resumed[0][0] is True and resumed[0][1] >= 4
        assert resumed[0][1] <= stopped_at + 1
        assert resumed[1] == (False, 1)
        history = c.get(f"/api/jobs/{running['id']}").json()["history"]
        assert [p["step"] for p in history] == list(range(1, first["total"] + 1))
        assert not again.state.store.checkpoint_path(running["id"]).exists()
        assert c.get(f"/api/jobs/{done['id']}").json()["state"] == "done"
        gallery = [j["id"] for j in c.get("/api/gallery").json()["results"]]
        assert set(gallery) == {done["id"], running["id"], queued["id"]}


def test_restart_recovers_jobs_a_crash_left_running(tmp_path, tiny_model_file):
    store = Store(tmp_path / "data")
    for job_id, state in (("a" * 16, "running"), ("b" * 16, "queued"), ("c" * 16, "running")):
        store.add_job({"id": job_id, "state": state, "created": time.time(), "content": "0" * 16,
                       "styles": ["1" * 16], "options": {}, "total": 4})
    # Job c's picture was written but the process died before its row was committed.
    from brushwork.io.images import save_image
    save_image(Image.new("RGB", (32, 32)), store.result_path("c" * 16),
               metadata={"settings": {"size": 32}, "final_losses": {"total": 1.0},
                         "elapsed_s": 0.5})
    store.close()
    with TestClient(make_app(tmp_path / "data", tiny_model_file), base_url=BASE) as c:
        a, b, cc = (c.get(f"/api/jobs/{x * 16}").json() for x in "abc")
        # Their uploads are gone: they cannot go on, and say why.
        assert a["state"] == b["state"] == "interrupted"
        assert a["error"].startswith("could not go on after a restart: no upload with id")
        assert cc["state"] == "done" and cc["losses"] == {"total": 1.0}


# ------------------------------------------------------------------------- bad uploads


def test_upload_over_the_byte_limit(client):
    noise = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    data = png_bytes(noise)
    assert len(data) > 200_000
    r = upload(client, data)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    still_serving(client)


def test_upload_over_the_pixel_limit_and_a_decompression_bomb(client):
    r = upload(client, png_bytes(np.zeros((500, 600, 3), np.uint8)))  # 300k > 250k px
    assert r.status_code == 413 and "megapixels" in r.json()["detail"]
    bomb = Image.new("1", (20_000, 20_000))  # 400 Mpx in a few kB
    buf = __import__("io").BytesIO()
    bomb.save(buf, format="PNG")
    assert len(buf.getvalue()) < 200_000
    r = upload(client, buf.getvalue())
    assert r.status_code == 413 and "megapixels" in r.json()["detail"]
    still_serving(client)


@pytest.mark.parametrize("data, status", [
    (b"hello, this is text", 415),
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", 415),
    (b"<html><script>alert(1)</script></html>", 415),
    (b"", 400),
])
def test_upload_of_something_that_is_not_an_image(client, data, status):
    r = upload(client, data, "evil.png")
    assert r.status_code == status
    assert not any(client.app.state.store.uploads_dir.iterdir())
    still_serving(client)


def test_upload_truncated_or_tiny_image(client):
    good = png_bytes(photo_array(64, 64))
    r = upload(client, good[: len(good) // 2])
    assert r.status_code == 422 and "decoded" in r.json()["detail"]
    r = upload(client, png_bytes(photo_array(8, 8)))
    assert r.status_code == 422 and "16 pixels" in r.json()["detail"]
    still_serving(client)


def test_uploaded_names_are_never_paths(client, tmp_path):
    r = upload(client, png_bytes(photo_array()), "../../../../tmp/evil.png")
    assert r.status_code == 201
    assert r.json()["name"] == "evil.png"
    assert not (tmp_path / "tmp").exists()
    files = sorted(p.name for p in client.app.state.store.uploads_dir.iterdir())
    upload_id = r.json()["id"]
    assert files == [f"{upload_id}.png", f"{upload_id}.thumb.jpg"]


@pytest.mark.parametrize("kwargs, status", [
    ({"content": b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                 b"\r\nabc", "headers": {"content-type": "multipart/form-data; boundary=x"}},
     400),  # unterminated
    ({"content": b"garbage", "headers": {"content-type": "multipart/form-data"}}, 400),
    ({"data": {"other": "field"}}, 415),  # urlencoded, not multipart
    ({"files": {"picture": ("a.png", b"x", "image/png")}}, 400),  # no field named file
    ({"json": {"file": "data"}}, 415),
])
def test_malformed_multipart(client, kwargs, status):
    r = client.post("/api/upload", **kwargs)
    assert r.status_code == status, r.text
    still_serving(client)


def test_two_files_in_one_upload(client):
    data = png_bytes(photo_array())
    r = client.post("/api/upload", files=[("file", ("a.png", data, "image/png")),
                                          ("file", ("b.png", data, "image/png"))])
    assert r.status_code == 400
    still_serving(client)


def test_display_names_are_plain_text():
    from brushwork.studio.uploads import display_name

    assert display_name("..\\..\\windows\\evil.png") == "evil.png"
    assert display_name("a\x00b\x1b[31mc.png") == "ab[31mc.png"
    assert display_name("/") == "image" and display_name(None) == "image"
    assert len(display_name("x" * 500)) == 80


# ------------------------------------------------------------------------- bad ids and paths


@pytest.mark.parametrize("path", [
    "/api/jobs/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/jobs/%2e%2e%2f%2e%2e%2fstudio.db/result",
    "/api/jobs/....//....//etc/passwd",
    "/api/uploads/..%2fstudio.db",
    "/api/uploads/..%2F..%2Fetc%2Fpasswd/thumb",
    "/api/jobs/0123456789ABCDEF/result",  # upper case: not an id we make
    "/api/jobs/0123456789abcdef0/preview",  # one character too many
    "/static/..%2Fapp.py",
    "/static/..%2F..%2Fstudio%2Fapp.py",
    "/static/app.py",
    "/static/%2Fetc%2Fpasswd",
])
def test_traversal_looking_paths_are_refused(client, path):
    r = client.get(path)
    assert 400 <= r.status_code < 500
    assert b"root:" not in r.content and b"SQLite" not in r.content and b"import" not in r.content
    still_serving(client)


def test_traversal_looking_upload_ids_in_a_job(client):
    content, style = uploaded_pair(client)
    for bad in ("../../etc/passwd", "/etc/passwd", content + "/..", "", None, 7):
        r = submit(client, bad, [style])
        assert r.status_code == 422, bad
        r = submit(client, content, [bad])
        assert r.status_code == 422, bad
    still_serving(client)


@pytest.mark.parametrize("method, suffix", [
    ("GET", ""), ("GET", "/result"), ("GET", "/preview"), ("GET", "/events"),
    ("GET", "/settings"), ("GET", "/thumb"), ("POST", "/cancel"), ("DELETE", ""),
])
def test_unknown_job_id(client, method, suffix):
    r = client.request(method, f"/api/jobs/0123456789abcdef{suffix}")
    assert r.status_code == 404
    still_serving(client)


def test_unknown_upload_id(client):
    assert client.get("/api/uploads/0123456789abcdef").status_code == 404
    assert client.get("/api/uploads/0123456789abcdef/thumb").status_code == 404
    r = submit(client, "0123456789abcdef", ["fedcba9876543210"])
    assert r.status_code == 422 and "no upload" in r.json()["detail"]


# ------------------------------------------------------------------------- bad options


@pytest.mark.parametrize("options, needle", [
    ({"size": -1}, "size"),
    ({"size": "big"}, "size"),
    ({"size": 32.5}, "size"),
    ({"size": True}, "size"),
    ({"size": 100_000}, "limit"),
    ({"iterations": 0}, "iterations"),
    ({"iterations": 10**9}, "limit"),
    ({"style_weight": -1}, "style_weight"),
    ({"content_weight": "a lot"}, "content_weight"),
    ({"style_scale": 0}, "style_scale"),
    ({"strength": 1.5}, "strength must be a number from 0 to 1"),
    ({"strength": "strong"}, "strength"),
    ({"strength": 0.5, "content_weight": 5}, "contradicts"),
    ({"photo_detail": -0.1}, "photo_detail"),
    ({"preserve_colors": "sepia"}, "preserve_colors"),
    ({"style_loss": "w3"}, "style_loss must be one of gram, w2, sliced"),
    ({"optimizer": "newton"}, "optimizer"),
    ({"content_layers": ["relu9_9"]}, "relu9_9"),
    # relu5_4 is VGG19's; the offered model is a VGG16, so the request is refused at once.
    ({"style_layers": ["relu1_1", "relu5_4"]}, "unknown style layer 'relu5_4' for vgg16"),
    ({"style_layers": []}, "style_layers"),
    ({"size": None}, "size"),
    ({"style_weights": [1, 2]}, "style_weights"),
    ({"model": "vgg16-hed"}, "unknown model"),  # only what the operator offered
    ({"model": "/etc/passwd"}, "unknown model"),
    ({"model": "../tiny_vgg16.safetensors"}, "unknown model"),
    ({"model": 5}, "model has the wrong type: 5"),  # a 422 naming it, never a 500
    ({"model": ["tiny"]}, "model has the wrong type"),
    ({"content_layers": {"relu4_2": 1}}, "content_layers has the wrong type"),
    ({"init": "/etc/passwd"}, "init"),
    ({"device": "cuda"}, "server-only"),
    ({"max_pixels": 10**12}, "server-only"),
    ({"no_such_option": 1}, "unknown"),
    # What sizes memory or time is bounded: by Settings (the CLI's bounds too) ...
    ({"history_size": 10**12}, "history_size must be at most 1000"),
    ({"style_scale": 100}, "style_scale must be at most 4"),
    ({"seed": 2**100}, "seed must be an integer from 0 to 9223372036854775807"),
    ({"content_layers": ["relu4_2"] * 64}, "content_layers names 'relu4_2' more than once"),
    # ... and by the studio's own limits: the style image no larger than its largest output.
    ({"style_scale": 4, "size": 1024}, "makes the painting 4096 px long, over this studio's "
                                       "limit of 2048"),
])
def test_bad_options(client, options, needle):
    content, style = uploaded_pair(client)
    r = submit(client, content, [style], options)
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]
    assert client.get("/api/jobs").json()["jobs"] == []  # nothing was queued
    still_serving(client)


def test_web_options_are_the_settings_but_the_server_only_ones():
    from brushwork.engine.settings import Settings, option_specs
    from brushwork.studio.options import REGION_OPTIONS, SERVER_ONLY, WEB_OPTIONS

    assert sorted(SERVER_ONLY) == ["device", "max_memory", "max_pixels"]
    assert set(WEB_OPTIONS) == {s.name for s in option_specs()} - SERVER_ONLY - REGION_OPTIONS
    assert set(WEB_OPTIONS) | SERVER_ONLY | REGION_OPTIONS == set(Settings.__dataclass_fields__)


def test_nan_and_infinity_in_json_are_refused(client):
    content, style = uploaded_pair(client)
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = (f'{{"content": "{content}", "styles": ["{style}"], '
                f'"options": {{"content_weight": {literal}}}}}')
        r = client.post("/api/jobs", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "content_weight" in r.json()["detail"]
    still_serving(client)


@pytest.mark.parametrize("body, ctype, status", [
    (b"{not json", "application/json", 400),
    (b"\xff\xfe\x00", "application/json", 400),
    (b"[1, 2, 3]", "application/json", 422),
    (b'"a string"', "application/json", 422),
    (b'{"content": "x", "styles": [], "extra": 1}', "application/json", 422),
    (b'{"content": "x", "styles": []}', "text/plain", 415),
    (b"content=x", "application/x-www-form-urlencoded", 415),
])
def test_malformed_job_requests(client, body, ctype, status):
    r = client.post("/api/jobs", content=body, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    still_serving(client)


@pytest.mark.parametrize("route", ["/api/jobs", "/api/estimate"])
def test_deeply_nested_json_is_a_400(client, route):
    """json.loads gives up with a RecursionError (not a ValueError) long before 64 KB."""
    for body in ("[" * 20_000 + "]" * 20_000,
                 '{"content": "x", "options": {"size": ' + "[" * 20_000 + "]" * 20_000 + "}}"):
        r = client.post(route, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["detail"] == "JSON nested too deeply", r.text
    still_serving(client)


def test_oversized_json_body(client):
    r = client.post("/api/jobs", content=b'{"content": "' + b"a" * 100_000 + b'"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    still_serving(client)


def test_bad_query_parameters(client):
    assert client.get("/api/gallery?limit=-1").status_code == 422
    # Past SQLite's 64-bit integers the OFFSET overflowed: a 500.
    assert client.get("/api/gallery?offset=99999999999999999999").status_code == 422
    assert client.get("/api/gallery?offset=1000000000").json()["results"] == []
    assert client.get("/api/gallery?limit=lots").status_code == 422
    assert client.get("/api/jobs?limit=100000").status_code == 422
    still_serving(client)


# ------------------------------------------------------------------------- origin and host


@pytest.mark.parametrize("headers", [
    {"origin": "http://evil.example"},
    {"origin": "http://127.0.0.1:9999"},  # another port is another origin
    {"origin": "null"},
    {"origin": "file://"},
    {"sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "same-site"},
])
def test_foreign_origin_is_refused_on_every_non_get_request(client, headers):
    content, style = uploaded_pair(client)
    data = png_bytes(photo_array())
    assert upload(client, data, headers=headers).status_code == 403
    assert submit(client, content, [style], headers=headers).status_code == 403
    assert client.post("/api/jobs/0123456789abcdef/cancel", headers=headers).status_code == 403
    assert client.delete("/api/jobs/0123456789abcdef", headers=headers).status_code == 403
    assert client.get("/api/jobs").json()["jobs"] == []
    still_serving(client)


def test_same_origin_and_scripts_are_let_through(client):
    assert upload(client, png_bytes(photo_array()), headers={"origin": BASE}).status_code == 201
    assert upload(client, png_bytes(photo_array()),
                  headers={"origin": BASE, "sec-fetch-site": "same-origin"}).status_code == 201
    assert upload(client, png_bytes(photo_array())).status_code == 201  # curl: no Origin


@pytest.mark.parametrize("host", [
    "evil.example", "evil.example:8000", "127.0.0.1.nip.io:8000", "localhost.evil.example",
    "127.0.0.1:80:80", "[::1", "127.0.0.1:abc", "",
])
def test_bad_host_header_is_refused(client, host):
    for method, path in (("GET", "/"), ("GET", "/api/config"), ("POST", "/api/jobs")):
        r = client.request(method, path, headers={"host": host})
        assert r.status_code == 400, (method, path, r.status_code)
    still_serving(client)


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000"])
def test_loopback_host_names_are_accepted(client, host):
    assert client.get("/api/config", headers={"host": host}).status_code == 200


# ------------------------------------------------------------------------- a real server


def test_real_server_streams_events_and_survives_raw_abuse(app):
    with running_server(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with httpx.Client(base_url=url, timeout=10) as http:
            content = http.post("/api/upload", files={"file": ("p.png", png_bytes(photo_array()),
                                                               "image/png")}).json()["id"]
            style = http.post("/api/upload", files={"file": ("s.png",
                                                             png_bytes(painting_array()),
                                                             "image/png")}).json()["id"]
            events = []
            with http.stream("GET", "/api/events") as stream:
                job = http.post("/api/jobs", json={"content": content, "styles": [style],
                                                   "options": FAST}).json()
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        events.append(json.loads(line[5:]))
                        if events[-1]["id"] == job["id"] and events[-1]["state"] == "done":
                            break
            states = [e["state"] for e in events if e["id"] == job["id"]]
            assert states[-1] == "done" and "running" in states

            # A chunked upload with no Content-Length is cut off at the byte limit.
            def chunks():
                yield (b'--b\r\nContent-Disposition: form-data; name="file"; '
                       b'filename="a.png"\r\nContent-Type: image/png\r\n\r\n')
                for _ in range(40):
                    yield b"x" * 10_000
            r = http.post("/api/upload", content=chunks(),
                          headers={"content-type": "multipart/form-data; boundary=b"})
            assert r.status_code == 413

            # Raw garbage and a DNS-rebinding style Host on the wire.
            for raw in (b"NOT HTTP AT ALL\r\n\r\n",
                        b"GET /api/config HTTP/1.1\r\nHost: rebind.example\r\n\r\n",
                        b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Length: nope\r\n\r\n"):
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(raw)
                    reply = s.recv(200)
                assert reply.startswith(b"HTTP/1.1 4"), reply
            assert http.get("/api/config").status_code == 200


# ------------------------------------------------------------------------- the command


def test_cli_port_in_use_is_one_line(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        code = main(["studio", "--port", str(port), "--data", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert f"port {port} on 127.0.0.1 is in use" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, needle", [
    (["--data", "/proc/brushwork-studio"], "data folder"),
    (["--model", "/no/such/weights.pth"], "is not a file"),
    (["--port", "70000"], "--port"),
    (["--max-upload-mb", "0"], "--max-upload-mb"),
    (["--max-pixels", "-5"], "--max-pixels"),
    (["--device", "tpu"], "device"),
    (["--host", "no such host name.invalid"], "--host"),
])
def test_cli_user_mistakes_are_one_line(tmp_path, capsys, argv, needle):
    if "--data" not in argv:
        argv = [*argv, "--data", str(tmp_path / "d")]
    code = main(["studio", "--port", "0", *argv])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_cli_warns_when_not_on_loopback(tmp_path, capsys, monkeypatch, tiny_model_file):
    """--host 0.0.0.0 warns; the test listens on 127.0.0.1 all the same and serves nothing."""
    import uvicorn

    from brushwork.studio import server as studio_server

    real_bind = studio_server.bind
    monkeypatch.setattr(studio_server, "bind", lambda host, port: real_bind("127.0.0.1", 0))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    code = main(["studio", "--host", "0.0.0.0", "--port", "0", "--data", str(tmp_path),
                     "--model", str(tiny_model_file)])
    out, err = capsys.readouterr()
    assert code == 0
    assert "warning: listening on 0.0.0.0" in err and "no login" in err
    assert out.startswith("brushwork studio on http://127.0.0.1:")
    code = main(["studio", "--port", "0", "--data", str(tmp_path),
                     "--model", str(tiny_model_file)])
    assert code == 0 and "warning" not in capsys.readouterr().err


def test_the_studio_leaves_malloc_alone_and_painting_commands_do_not(tmp_path, monkeypatch,
                                                                     tiny_model_file):
    """A long-running server must give its peak memory back: only the one-shot commands
    ask malloc to keep freed memory (brushwork.engine.memory.allocator)."""
    import uvicorn

    from brushwork.commands import entry
    from brushwork.studio import server as studio_server

    calls: list[str] = []
    monkeypatch.setattr(entry, "reuse_freed_memory", lambda: calls.append("reuse") or True)
    real_bind = studio_server.bind
    monkeypatch.setattr(studio_server, "bind", lambda host, port: real_bind("127.0.0.1", 0))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    assert main(["studio", "--port", "0", "--data", str(tmp_path),
                     "--model", str(tiny_model_file)]) == 0
    assert calls == []
    # A painting command does set it (it fails afterwards on the missing photo).
    assert main(["stylize", str(tmp_path / "none.png"), str(tmp_path / "none.png"),
                     "-o", str(tmp_path / "out.png")]) == 1
    assert calls == ["reuse"]


def test_cli_serves_until_ctrl_c_and_leaves_the_running_job_for_the_next_start(
        tmp_path, tiny_model_file):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "brushwork", "studio", "--port", "0", "--data",
         str(tmp_path / "data"), "--model", str(tiny_model_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("brushwork studio on http://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].strip().rstrip("/")
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/api/config").json()["default_model"] == "tiny_vgg16.safetensors"
            ids = [http.post("/api/upload", files={"file": ("a.png", png_bytes(a),
                                                            "image/png")}).json()["id"]
                   for a in (photo_array(), painting_array())]
            job = http.post("/api/jobs", json={"content": ids[0], "styles": [ids[1]],
                                               "options": {"size": 64, "iterations": 5000}})
            assert job.status_code == 201
            deadline = time.monotonic() + 90  # the first job measures the machine first
            while http.get(f"/api/jobs/{job.json()['id']}").json()["step"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err
    store = Store(tmp_path / "data")
    row = store.job(job.json()["id"])
    assert row["state"] == "queued" and 2 <= len(row["history"]) < 5000
    assert store.checkpoint_path(row["id"]).is_file()  # saved as it stopped


def test_docs_document_every_studio_flag_and_route(app):
    """The studio's page (docs/studio.md) must not drift from the code."""
    import re
    from pathlib import Path

    section = (Path(__file__).parents[2] / "docs" / "studio.md").read_text()
    studio = build_parser()._subparsers._group_actions[0].choices["studio"]
    for action in studio._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}" in section, flag
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith("/api/"):
            documented = re.sub(r"\{[a-z_]*id\}", "{id}", path)
            for method in route.methods - {"HEAD"}:
                assert f"`{method} {documented}" in section or \
                    f"`{method} {documented}`" in section or \
                    re.search(rf"{method} {re.escape(documented)}[`?]", section), (method, path)


# ------------------------------------------------------------------------- the estimate


def test_estimate_beside_the_paint_button(client, monkeypatch, tmp_path):
    """POST /api/estimate: the run's time and peak, nothing queued; not measured while busy."""
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path / "fresh-cache"))
    content, style = uploaded_pair(client)
    body = {"content": content, "styles": [style], "options": dict(FAST, size=64)}
    # While the studio paints it must not measure the machine: no estimate yet.
    monkeypatch.setattr(client.app.state.queue, "idle", lambda: False)
    r = client.post("/api/estimate", json=body)
    assert r.status_code == 200 and r.json()["estimate"] is None
    assert "once the studio is free" in r.json()["text"]
    monkeypatch.undo()
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path / "fresh-cache"))
    r = client.post("/api/estimate", json=body)
    assert r.status_code == 200, r.text
    est = r.json()["estimate"]
    assert est["peak_bytes"] > 2 ** 20 and est["seconds"] >= 0 and est["tiled"] is False
    assert r.json()["text"].startswith("about ") and " GB" in r.json()["text"]
    assert client.get("/api/jobs").json()["jobs"] == []  # nothing was queued
    # The same checks as a job: bad options are a 422 with the reason.
    bad = client.post("/api/estimate", json={**body, "options": {"size": -3}})
    assert bad.status_code == 422 and "size" in bad.json()["detail"]
    assert client.post("/api/estimate", content=b"{", headers={
        "content-type": "application/json"}).status_code == 400


def test_estimates_and_submits_decode_no_picture_in_the_server(client, monkeypatch,
                                                                calibrated):
    """A job is sized from the width and height stored at upload: estimating or queueing
    it decodes no photo, painting or mask in the server's request threads (before the
    fix: 17 full decodes of 25 Mpx for one request, 3 GB).  The worker's run decodes."""
    from PIL import ImageFile

    content, style = uploaded_pair(client)
    other = upload(client, png_bytes(painting_array(seed=5)), "other.png").json()["id"]
    left = np.zeros((32, 40), np.uint8)
    left[:, :16] = 255
    masks = [upload(client, png_bytes(m), f"mask{k}.png").json()["id"]
             for k, m in enumerate((left, 255 - left))]
    decoded: list[str] = []
    real_open, real_load = Image.open, ImageFile.ImageFile.load

    def spy_open(*args, **kwargs):
        decoded.append(f"open in {threading.current_thread().name}")
        return real_open(*args, **kwargs)

    def spy_load(self):
        decoded.append(f"load in {threading.current_thread().name}")
        return real_load(self)

    monkeypatch.setattr(Image, "open", spy_open)
    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    body = {"content": content, "styles": [style, other], "masks": masks,
            "options": FAST}
    r = client.post("/api/estimate", json=body)
    assert r.status_code == 200 and r.json()["estimate"]["peak_bytes"] > 0, r.text
    r = client.post("/api/jobs", json=body)
    assert r.status_code == 201, r.text
    assert wait_for(client, r.json()["id"])["state"] == "done"
    outside_the_worker = [d for d in decoded if not d.endswith("brushwork-studio-worker")]
    assert outside_the_worker == []
    assert decoded  # the spies see the run's own reads


def test_estimates_at_once_are_bounded_and_the_rest_get_503(tmp_path, tiny_model_file,
                                                            monkeypatch, calibrated):
    from brushwork.studio import routes
    from brushwork.studio.options import Limits

    entered, release = threading.Event(), threading.Event()
    real = routes.estimate_size

    def held(*args, **kwargs):
        entered.set()
        assert release.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(routes, "estimate_size", held)
    app = make_app(tmp_path / "data", tiny_model_file, limits=Limits(
        max_upload_bytes=200_000, max_pixels=250_000, max_estimates=1,
        estimate_wait_seconds=0.3))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        content, style = uploaded_pair(http)
        body = {"content": content, "styles": [style], "options": FAST}
        first: list[httpx.Response] = []
        waiting = threading.Thread(target=lambda: first.append(
            http.post("/api/estimate", json=body)))
        waiting.start()
        assert entered.wait(20)  # the one turn is taken
        for route in ("/api/estimate", "/api/jobs"):
            r = http.post(route, json=body)
            assert r.status_code == 503, r.text
            assert r.json()["detail"] == ("1 estimate(s) are being made already; try again "
                                          "in a few seconds")
            assert r.headers["retry-after"] == "5"
        assert http.get("/api/config").status_code == 200  # the studio still answers
        assert http.get("/api/jobs").json()["jobs"] == []  # nothing was queued
        release.set()
        waiting.join(20)
        assert first[0].status_code == 200, first[0].text
        assert http.post("/api/estimate", json=body).status_code == 200  # the turn is back


def test_a_picture_over_a_lowered_pixel_limit_is_refused_from_its_stored_size(client):
    content, style = uploaded_pair(client)
    client.app.state.queue.limits.max_pixels = 1000  # lowered since the uploads
    for route in ("/api/estimate", "/api/jobs"):
        r = client.post(route, json={"content": content, "styles": [style],
                                     "options": FAST})
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == ("the photo 'photo.png' is 40x32 = 0.00128 megapixels, "
                                      "over this studio's limit of 0.001")


# ------------------------------------------------------------------------- memory at submit


def fake_calibration(monkeypatch, *, measured: bool, budget: float | None = 10_000.0):
    """This machine's calibration as a fixed line (no measuring), or none yet; and a
    memory budget (10 kB: no scale of any picture fits, whole or in tiles)."""
    from brushwork.engine.memory import calibration, probe

    known = calibration.Calibration(device="cpu", resident_bytes=0.0,
                               eval_bytes=calibration.Line(0.0, 1000.0),
                               eval_seconds=calibration.Line(0.0, 1e-6), forward_share=0.3)

    def calibration_for(net, settings, device, *, refresh=False, measure=True):
        if not measured and not measure:
            raise calibration.NotMeasured("this device has not been measured for this network yet")
        return known

    monkeypatch.setattr(calibration, "calibration_for", calibration_for)
    if budget is not None:
        monkeypatch.setattr(probe, "default_budget", lambda device: budget)


@pytest.fixture
def calibrated(monkeypatch):
    """Skip measuring this machine (seconds on a busy CPU) where the plan does not matter."""
    fake_calibration(monkeypatch, measured=True, budget=None)


def test_a_job_predicted_not_to_fit_is_refused_at_submit(client, monkeypatch):
    fake_calibration(monkeypatch, measured=True)
    content, style = uploaded_pair(client)
    r = submit(client, content, [style])
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "needs at least" in detail and "budget" in detail and "\n" not in detail
    assert client.get("/api/jobs").json()["jobs"] == []  # nothing was queued
    still_serving(client)


def test_before_the_machine_is_measured_the_run_checks_its_plan_before_painting(
        client, monkeypatch):
    """Submit cannot measure (the worker may be painting): the job is queued, and the run's
    own plan fails it before its first step, with the same one-line reason."""
    fake_calibration(monkeypatch, measured=False)
    steps = []
    real = worker_module.stylize
    monkeypatch.setattr(worker_module, "stylize", lambda *a, callback, **kw: real(
        *a, callback=lambda it: (steps.append(it.step), callback(it)), **kw))
    content, style = uploaded_pair(client)
    r = submit(client, content, [style])
    assert r.status_code == 201, r.text
    failed = wait_for(client, r.json()["id"])
    assert failed["state"] == "failed" and "needs at least" in failed["error"]
    assert steps == []


# ------------------------------------------------------------------------- weights present


@pytest.fixture
def no_fetching(monkeypatch):
    """Any download fails the test: the studio must never start one."""
    from brushwork.io import weights

    def fetch(*args, **kwargs):
        raise AssertionError("the studio started a download")

    monkeypatch.setattr(weights, "fetch", fetch)


def test_absent_weights_are_marked_and_refused_never_fetched(tmp_path, tiny_model_file,
                                                             monkeypatch, no_fetching):
    from brushwork.studio import options

    monkeypatch.setattr(options, "locate", lambda name: None)
    app = make_app(tmp_path / "data", tiny_model_file,
                   models={"tiny": str(tiny_model_file), "vgg19": "vgg19"})
    with TestClient(app, base_url=BASE) as client:
        listed = {m["name"]: m["present"] for m in client.get("/api/config").json()["models"]}
        assert listed == {"tiny": True, "vgg19": False}
        content, style = uploaded_pair(client)
        for route in ("/api/jobs", "/api/estimate"):
            r = client.post(route, json={"content": content, "styles": [style],
                                         "options": dict(FAST, model="vgg19")})
            assert r.status_code == 422, r.text
            assert r.json()["detail"] == ("weights not installed; run brushwork models "
                                          "--fetch vgg19 on the server")
        assert client.get("/api/jobs").json()["jobs"] == []


def test_the_studio_cache_never_fetches(no_fetching):
    from brushwork.engine.cache import Cache
    from brushwork.errors import WeightsError

    with pytest.raises(WeightsError, match="'vgg19' are not downloaded"):
        Cache(download=False).weights("vgg19")


def test_weights_removed_after_submit_fail_the_job_without_a_download(
        tmp_path, tiny_model_file, monkeypatch, gate, no_fetching, calibrated):
    from brushwork.io import weights
    from brushwork.studio import options

    started, release = gate
    present = {"vgg19": tiny_model_file}
    for module in (options, weights):
        monkeypatch.setattr(module, "locate", lambda name: present.get(name))
    # The tiny file stands in for vgg19's, so vgg19's hash must be the tiny file's.
    digest = hashlib.sha256(tiny_model_file.read_bytes()).hexdigest()
    monkeypatch.setitem(weights.SOURCES, "vgg19",
                        dataclasses.replace(weights.SOURCES["vgg19"], sha256=digest))
    spare = tmp_path / "spare.safetensors"
    spare.write_bytes(tiny_model_file.read_bytes())
    app = make_app(tmp_path / "data", tiny_model_file,
                   models={"tiny": str(tiny_model_file), "vgg19": "vgg19",
                           "spare": str(spare)})
    with TestClient(app, base_url=BASE) as client:
        content, style = uploaded_pair(client)
        first = submit(client, content, [style]).json()
        assert started.wait(20)  # the first job holds the worker
        source = submit(client, content, [style], {"model": "vgg19"})
        local = submit(client, content, [style], {"model": "spare"})
        assert source.status_code == local.status_code == 201, (source.text, local.text)
        present.clear()  # the operator removed the weights meanwhile
        spare.unlink()
        release.set()
        assert wait_for(client, first["id"])["state"] == "done"
        gone = wait_for(client, source.json()["id"])
        assert gone["state"] == "failed"
        assert gone["error"] == ("weights not installed; run brushwork models --fetch vgg19 "
                                 "on the server")
        gone = wait_for(client, local.json()["id"])
        assert gone["state"] == "failed"
        assert gone["error"] == "the weights file of model 'spare' is no longer on the server"


# ------------------------------------------------------------------------- no server paths


def test_results_and_their_settings_carry_upload_ids_never_server_paths(client, tmp_path,
                                                                       calibrated):
    from brushwork.io.images import save_image

    content, style = uploaded_pair(client)
    job_id = submit(client, content, [style]).json()["id"]
    assert wait_for(client, job_id)["state"] == "done"
    store = client.app.state.store
    path = store.result_path(job_id)
    meta = read_metadata(path)
    assert meta["inputs"] == {"content": {"upload": content, "name": "photo.png"},
                              "style": [{"upload": style, "name": "painting.png"}]}
    assert meta["settings"]["model"] == "tiny"
    served = [json.dumps(meta), client.get(f"/api/jobs/{job_id}/settings").text,
              client.get(f"/api/jobs/{job_id}").text, client.get("/api/gallery").text,
              client.get("/api/jobs").text]
    for text in served:
        assert str(tmp_path) not in text
    # A picture an older studio painted holds the paths: the settings API does not pass
    # them on.
    save_image(Image.open(path), path, force=True, metadata=dict(
        meta, inputs={"content": str(store.upload_file(content)),
                      "style": [str(store.upload_file(style))]},
        settings=dict(meta["settings"], model=str(tmp_path / "tiny_vgg16.safetensors"))))
    settings = client.get(f"/api/jobs/{job_id}/settings")
    assert str(tmp_path) not in settings.text
    assert settings.json()["inputs"]["style"] == [{"upload": style, "name": "painting.png"}]
    assert settings.json()["settings"]["model"] == "tiny"


# ------------------------------------------------------------------------- regions


def test_a_job_with_region_masks_stores_them_and_refuses_bad_ones(client, gate):
    content, style = uploaded_pair(client)
    other = upload(client, png_bytes(painting_array(seed=5)), "other.png").json()["id"]
    left = np.zeros((32, 40), np.uint8)
    left[:, :16] = 255
    masks = [upload(client, png_bytes(m), f"mask{k}.png").json()["id"]
             for k, m in enumerate((left, 255 - left))]
    black = upload(client, png_bytes(np.zeros((32, 40), np.uint8)), "black.png").json()["id"]
    square = upload(client, png_bytes(np.full((40, 40), 255, np.uint8)), "sq.png").json()["id"]
    for bad, needle in [([masks[0]], "one per painting"), ("x", "one per painting"),
                        ([masks[0], "0123456789abcdef"], "no upload with id"),
                        ([masks[0], black], "style mask 2 .* is all black"),
                        ([masks[0], square], r"is 40x40 .* the photo is 40x32")]:
        r = client.post("/api/jobs", json={"content": content, "styles": [style, other],
                                           "options": FAST, "masks": bad})
        assert r.status_code == 422 and re.search(needle, r.json()["detail"]), r.text
        assert "/data/" not in r.text  # the server's folders are not named
    r = client.post("/api/jobs", json={"content": content, "styles": [style, other],
                                       "options": FAST, "masks": masks})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert r.json()["masks"] == masks
    # A mask a waiting or running job needs cannot be deleted.
    assert client.delete(f"/api/uploads/{masks[1]}").status_code == 409
    gate[1].set()
    job = wait_for(client, job_id)
    assert job["state"] == "done" and job["masks"] == masks
    assert job["settings"]["style_masks"] == masks
    assert read_metadata(client.app.state.store.result_path(job_id))["settings"][
        "style_masks"] == masks


def test_a_data_folder_from_before_regions_gains_the_masks_column(tmp_path):
    import sqlite3

    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "studio.db")
    db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, created REAL "
               "NOT NULL, started REAL, finished REAL, content TEXT NOT NULL, styles TEXT "
               "NOT NULL, options TEXT NOT NULL, settings TEXT, error TEXT, losses TEXT, "
               "history TEXT, total INTEGER, elapsed REAL, width INTEGER, height INTEGER)")
    db.execute("INSERT INTO jobs (id, state, created, content, styles, options) VALUES "
               "('0123456789abcdef', 'done', 1.0, 'aaaaaaaaaaaaaaaa', '[]', '{}')")
    db.commit()
    db.close()
    store = Store(data)
    assert store.job("0123456789abcdef")["masks"] is None
    assert store.job("0123456789abcdef")["kind"] == "picture"  # the kind column came too
    store.update_job("0123456789abcdef", detail={"frames": 3})
    assert store.job("0123456789abcdef")["detail"] == {"frames": 3}  # and detail
    store.close()


def test_a_stored_job_of_a_kind_this_studio_cannot_run_is_refused_at_resume(tmp_path):
    from brushwork.studio.events import Broker
    from brushwork.studio.job_queue import JobQueue

    store = Store(tmp_path / "data")
    store.add_job({"id": "0123456789abcdef", "kind": "hologram", "state": "queued",
                   "created": 1.0, "content": "aaaaaaaaaaaaaaaa", "styles": [], "options": {}})
    row = store.job("0123456789abcdef")
    assert row["kind"] == "hologram"
    queue = JobQueue(store, Broker(), models={"m": "m"}, default_model="m")
    with pytest.raises(OptionsError, match="kind 'hologram'"):
        queue.resume(row)
    store.close()


def test_a_data_folder_from_before_grey_levels_gains_their_columns(tmp_path):
    import sqlite3

    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "studio.db")
    db.execute("CREATE TABLE uploads (id TEXT PRIMARY KEY, name TEXT NOT NULL, ext TEXT NOT "
               "NULL, format TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, "
               "bytes INTEGER NOT NULL, created REAL NOT NULL)")
    db.execute("INSERT INTO uploads VALUES ('0123456789abcdef', 'old.png', '.png', 'PNG', "
               "40, 32, 100, 1.0)")
    db.commit()
    db.close()
    store = Store(data)
    old = store.upload("0123456789abcdef")
    assert old["grey_min"] is None and old["grey_max"] is None  # not known: not checked
    new = store.add_upload(name="new.png", ext=".png", format="PNG", width=16, height=16,
                           data=b"x", thumb=b"y", grey=(0, 255))
    assert store.upload(new["id"])["grey_max"] == 255
    store.close()
