"""Textures in the studio (brushwork/studio/textures.py): POST /api/textures paints a
painting's style alone at a width and height, as `brushwork texture` does."""

from __future__ import annotations

import time
import warnings

import pytest
from PIL import Image
from studio_support import make_app, png_bytes

from brushwork.io.images import read_metadata
from brushwork.studio.store import Store
from conftest import painting_array

with warnings.catch_warnings():  # starlette's TestClient would rather have httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

BASE = "http://127.0.0.1:8000"
FAST = {"iterations": 4, "seed": 1}


@pytest.fixture
def client(tmp_path, tiny_model_file):
    with TestClient(make_app(tmp_path / "data", tiny_model_file, preview_interval=0.0),
                    base_url=BASE) as c:
        yield c


def painting(client) -> str:
    r = client.post("/api/upload", files={"file": ("wave.png", png_bytes(painting_array()),
                                                   "image/png")})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def wait_for(client, job_id, timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/api/jobs/{job_id}").json())["state"] not in (
            "done", "failed", "cancelled", "interrupted"):
        assert time.monotonic() < deadline, f"job stuck in {job['state']}"
        time.sleep(0.02)
    return job


def test_a_texture_is_painted_at_its_width_and_height_and_kept_in_the_gallery(client):
    style = painting(client)
    r = client.post("/api/textures", json={"styles": [style], "width": 48, "height": 32,
                                           "options": FAST})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["kind"] == "texture" and job["content"] == "" and job["styles"] == [style]
    done = wait_for(client, job["id"])
    assert done["state"] == "done", done["error"]
    assert done["size"] == [48, 32] and done["kind"] == "texture"
    assert done["losses"]["content"] == 0  # no photo to hold to
    path = client.app.state.store.result_path(job["id"])
    assert Image.open(path).size == (48, 32)
    meta = read_metadata(path)
    assert meta["inputs"]["texture"] == [48, 32] and "content" not in meta["inputs"]
    assert meta["settings"]["model"] == "tiny"  # the name, not the server's path
    settings = client.get(f"/api/jobs/{job['id']}/settings").json()
    assert settings["inputs"]["texture"] == [48, 32] and "content" not in settings["inputs"]
    assert settings["inputs"]["style"][0]["name"] == "wave.png"
    gallery = client.get("/api/gallery").json()["results"]
    assert [g["id"] for g in gallery] == [job["id"]] and gallery[0]["kind"] == "texture"
    assert client.get(f"/api/jobs/{job['id']}/thumb").status_code == 200


def test_a_tileable_texture_has_sides_of_whole_16_px_and_repeats(client):
    style = painting(client)
    r = client.post("/api/textures", json={"styles": [style], "width": 40, "height": 36,
                                           "options": dict(FAST, tileable=True)})
    assert r.status_code == 201, r.text
    done = wait_for(client, r.json()["id"])
    assert done["state"] == "done", done["error"]
    w, h = Image.open(client.app.state.store.result_path(done["id"])).size
    assert w % 16 == 0 and h % 16 == 0 and abs(w - 40) <= 8 and abs(h - 36) <= 8
    assert done["settings"]["tileable"] is True


@pytest.mark.parametrize("body, words", [
    ({"width": 48, "height": 32, "options": {"strength": 0.5}}, "takes no strength"),
    ({"width": 48, "height": 32, "options": {"preserve_colors": "luminance"}},
     "takes no preserve_colors"),
    ({"width": 48, "height": 32, "options": {"size": 64}}, "width and height instead"),
    ({"width": 48, "height": 32, "options": {"init": "content"}}, "init must be 'noise'"),
    ({"width": 8, "height": 32}, "width must be a whole number of pixels from 16"),
    ({"width": 48, "height": 5000}, "height must be a whole number"),
    ({"width": 48.5, "height": 32}, "width must be"),
    ({"width": 48, "height": 32, "options": {"iterations": -1}}, "iterations"),
    ({"width": 48, "height": 32, "styles": ["0123456789abcdef"]}, "no upload with id"),
    ({"width": 48, "height": 32, "styles": []}, "styles must be a list"),
    ({"width": 48, "height": 32, "photo": "x"}, "unknown field(s): photo"),
])
def test_a_texture_request_the_studio_refuses_gets_a_422_naming_why(client, body, words):
    style = painting(client)
    request = {"styles": [style], "options": FAST} | body
    for route in ("/api/textures", "/api/textures/estimate"):
        r = client.post(route, json=request)
        assert r.status_code == 422 and words in r.json()["detail"], (route, r.text)
    assert client.get("/api/jobs").json()["jobs"] == []


def test_a_texture_estimate_gives_time_and_memory(client, monkeypatch, tmp_path):
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path / "fresh-cache"))
    style = painting(client)
    r = client.post("/api/textures/estimate", json={"styles": [style], "width": 64,
                                                    "height": 48, "options": FAST})
    assert r.status_code == 200, r.text
    assert r.json()["estimate"]["peak_bytes"] > 2 ** 20
    assert r.json()["text"].startswith("about ") and " GB" in r.json()["text"]
    assert client.get("/api/jobs").json()["jobs"] == []


def test_a_texture_left_queued_by_the_last_run_is_painted_after_a_restart(tmp_path,
                                                                          tiny_model_file):
    data = tmp_path / "data"
    with TestClient(make_app(data, tiny_model_file), base_url=BASE) as c:
        style = painting(c)
    # What a stop leaves of a job it had not begun: its row, queued.
    store = Store(data)
    store.add_job({"id": "0123456789abcdef", "kind": "texture", "state": "queued",
                   "created": time.time(), "content": "", "styles": [style],
                   "options": {"width": 32, "height": 32, "iterations": 3, "seed": 2,
                               "model": "tiny"}})
    store.close()
    with TestClient(make_app(data, tiny_model_file), base_url=BASE) as c:
        done = wait_for(c, "0123456789abcdef")
        assert done["state"] == "done", done["error"]
        assert done["kind"] == "texture" and done["size"] == [32, 32]
