"""The studio's uploads under attack: slow and memory-hungry files, many at once, files
padded with junk, a full disk; and deleting and pruning them.

Each hostile file is small and each bound tight, so that every test shows a bound at
work in a second or two.
"""

from __future__ import annotations

import io
import struct
import sys
import threading
import time
import warnings

import httpx
import numpy as np
import pytest
from PIL import Image
from studio_support import make_app, png_bytes, running_server

from brushwork.studio import decoder as decoder_module
from brushwork.studio.options import Limits
from brushwork.studio.store import Store
from conftest import painting_array, photo_array

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

BASE = "http://127.0.0.1:8000"
SMALL = Limits(max_upload_bytes=200_000, max_pixels=250_000)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the decode memory limit is RLIMIT_AS, Linux only")


def limits(**kw) -> Limits:
    return Limits(**{"max_upload_bytes": SMALL.max_upload_bytes,
                     "max_pixels": SMALL.max_pixels, **kw})


def upload(client, data: bytes, name: str = "picture.png"):
    return client.post("/api/upload", files={"file": (name, data, "application/octet-stream")})


def many_scans_jpeg(side: int, scans: int) -> bytes:
    """A flat progressive JPEG whose smallest scan is repeated ``scans`` times: a dozen
    bytes each, each costing the decoder a pass over every block."""
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (120, 90, 60)).save(buf, "JPEG", progressive=True)
    data = buf.getvalue()
    segments, i = [], 2
    while data[i + 1] != 0xD9:  # up to End Of Image
        end = i + 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
        if data[i + 1] == 0xDA:  # Start Of Scan: its entropy-coded data runs to the next marker
            while not (data[end] == 0xFF and data[end + 1] != 0
                       and not 0xD0 <= data[end + 1] <= 0xD7):
                end += 1
        segments.append(data[i:end])
        i = end
    smallest = min((s for s in segments if s[1] == 0xDA), key=len)
    return data[:2] + b"".join(segments) + smallest * scans + b"\xff\xd9"


def zero_png(side: int, mode: str = "RGBA") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (side, side)).save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------- time and memory


def test_a_slow_file_is_cut_off_at_the_time_bound_while_the_studio_serves_others(
        tmp_path, tiny_model_file):
    """Thousands of scans take seconds to decode; the decode is killed at the bound, and
    meanwhile the page's config and another upload are answered."""
    slow = many_scans_jpeg(4096, 12_000)  # 290 kB that take about 6 s to decode
    app = make_app(tmp_path / "data", tiny_model_file,
                   limits=limits(max_upload_bytes=400_000, max_pixels=17_000_000,
                                 decode_seconds=1.5, max_decodes=2))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        upload(http, png_bytes(photo_array()))  # the decoder is up
        answered: dict[str, tuple[float, httpx.Response]] = {}

        def send_slow() -> None:
            with httpx.Client(base_url=url, timeout=30) as other:
                t = time.monotonic()
                r = upload(other, slow, "slow.jpg")
                answered["slow"] = (time.monotonic() - t, r)

        thread = threading.Thread(target=send_slow)
        thread.start()
        time.sleep(0.3)  # the slow one is decoding
        assert http.get("/api/config").status_code == 200
        other = upload(http, png_bytes(painting_array()))
        assert other.status_code == 201, other.text
        assert "slow" not in answered  # both answered while the slow one decoded
        thread.join(30)
    seconds, r = answered["slow"]
    assert r.status_code == 422
    assert r.json()["detail"] == "the image took longer than 1.5 s to decode"
    assert seconds < 4.5
    assert len(list((tmp_path / "data" / "uploads").iterdir())) == 4  # the two others


@linux_only
def test_a_file_that_needs_too_much_memory_is_refused(client_with):
    client = client_with(max_pixels=20_000_000, decode_memory=48 * 2**20)
    bomb = zero_png(4000)  # 62 kB that decode to 64 MB (and more as RGB over white)
    assert len(bomb) < 100_000
    r = upload(client, bomb)
    assert r.status_code == 413
    assert r.json()["detail"] == "the image needs more than 48 MB of memory to decode"
    assert upload(client, png_bytes(photo_array())).status_code == 201  # small ones fit
    assert len(list(client.app.state.store.uploads_dir.iterdir())) == 2  # its file and thumb


def test_decodes_at_once_are_capped_and_the_rest_get_503_with_retry_after(client_with,
                                                                         monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real = decoder_module.Decoder._decode

    def held(self, data):
        entered.set()
        assert release.wait(20)
        return real(self, data)

    monkeypatch.setattr(decoder_module.Decoder, "_decode", held)
    client = client_with(max_decodes=1, decode_wait_seconds=0.2, decode_seconds=7)
    first: list = []
    thread = threading.Thread(target=lambda: first.append(
        upload(client, png_bytes(photo_array()))))
    thread.start()
    assert entered.wait(20)
    r = upload(client, png_bytes(painting_array()))
    assert r.status_code == 503
    assert r.json()["detail"] == ("1 image(s) are being decoded already; try again in a few "
                                  "seconds")
    assert r.headers["retry-after"] == "7"
    release.set()
    thread.join(20)
    assert first[0].status_code == 201
    assert upload(client, png_bytes(painting_array())).status_code == 201  # the turn is free


def test_the_server_process_never_takes_pillows_lock_to_decode(client, monkeypatch):
    """The decode is in the child: the server's pillow_limit is not used for an upload."""
    from brushwork.io import images as imageio

    calls: list = []
    real = imageio.pillow_limit
    monkeypatch.setattr(imageio, "pillow_limit", lambda *a: calls.append(a) or real(*a))
    assert upload(client, png_bytes(photo_array())).status_code == 201
    assert calls == []


# ------------------------------------------------------------------------- what is stored


def test_the_image_is_stored_re_encoded_never_as_sent(client_with):
    client = client_with(max_upload_bytes=4 * 2**20)
    picture = photo_array(64, 64)
    padded = png_bytes(picture) + bytes(3 * 2**20)  # 3 MB of zeros after the PNG's end
    r = upload(client, padded)
    assert r.status_code == 201, r.text
    row = r.json()
    stored = client.app.state.store.upload_file(row["id"])
    assert stored.suffix == ".png" and stored.stat().st_size == row["bytes"] < 20_000
    assert np.array_equal(np.asarray(Image.open(stored)), picture)  # lossless
    # A JPEG is kept as a (baseline) JPEG, an RGBA PNG as RGB over white.
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, "JPEG", progressive=True, quality=90)
    jpeg = upload(client, buf.getvalue(), "p.jpg").json()
    with Image.open(client.app.state.store.upload_file(jpeg["id"])) as im:
        assert (im.format, im.mode, im.size, jpeg["format"]) == ("JPEG", "RGB", (64, 64), "JPEG")
        assert "progressive" not in im.info
    rgba = np.zeros((32, 32, 4), np.uint8)
    clear = upload(client, png_bytes(rgba)).json()
    with Image.open(client.app.state.store.upload_file(clear["id"])) as im:
        assert im.mode == "RGB" and im.getextrema() == ((255, 255),) * 3


# ------------------------------------------------------------------------- quota and delete


def test_the_quota_refuses_with_507_saying_how_to_free_space(client_with):
    client = client_with(max_uploads=2)
    ids = [upload(client, png_bytes(photo_array(seed=s))).json()["id"] for s in (1, 2)]
    r = upload(client, png_bytes(painting_array()))
    assert r.status_code == 507
    assert r.json()["detail"] == (
        "the studio's uploads are at their quota (2 of 2 uploads stored); free space by "
        "deleting uploads (DELETE /api/uploads/{id}; GET /api/uploads lists them)")
    assert len(list(client.app.state.store.uploads_dir.iterdir())) == 4  # nothing added
    assert client.delete(f"/api/uploads/{ids[0]}").status_code == 200
    assert upload(client, png_bytes(painting_array())).status_code == 201
    listed = client.get("/api/uploads").json()
    assert listed["count"] == 2 and listed["max_uploads"] == 2
    assert listed["bytes"] == sum(u["bytes"] for u in listed["uploads"])


def test_the_byte_quota_counts_what_is_stored(client_with):
    first = png_bytes(photo_array())
    client = client_with(upload_quota_bytes=1)
    r = upload(client, first)
    assert r.status_code == 507 and "this one needs" in r.json()["detail"]
    assert not any(client.app.state.store.uploads_dir.iterdir())


def test_delete_an_upload_refused_while_a_job_needs_it(client):
    from brushwork.io.images import save_image

    store = client.app.state.store
    photo = upload(client, png_bytes(photo_array())).json()["id"]
    style = upload(client, png_bytes(painting_array())).json()["id"]
    # Jobs as the queue records them (the worker is not needed to hold them there).
    running, queued, done = "a" * 16, "b" * 16, "c" * 16
    for job, state, content, styles in ((running, "running", photo, [style]),
                                        (queued, "queued", style, [photo]),
                                        (done, "done", photo, [style])):
        store.add_job({"id": job, "state": state, "created": time.time(), "content": content,
                       "styles": styles, "options": {}, "total": 4})
    save_image(Image.new("RGB", (32, 32)), store.result_path(done),
               metadata={"settings": {"size": 32}})
    r = client.delete(f"/api/uploads/{photo}")
    assert r.status_code == 409
    assert r.json()["detail"] in (f"job {j} ({s}) uses this image; cancel it or wait for it "
                                  "to end" for j, s in ((running, "running"), (queued, "queued")))
    store.update_job(running, state="cancelled")
    r = client.delete(f"/api/uploads/{style}")  # still the content of the queued job
    assert r.json()["detail"] == (f"job {queued} (queued) uses this image; cancel it or wait "
                                  "for it to end")
    store.update_job(queued, state="interrupted")
    # Every job that used them has ended: the images go, the finished job stays whole.
    assert client.delete(f"/api/uploads/{photo}").json() == {"deleted": photo}
    assert client.delete(f"/api/uploads/{style}").status_code == 200
    assert not any(store.uploads_dir.iterdir())
    assert client.get(f"/api/uploads/{photo}").status_code == 404
    assert client.get(f"/api/uploads/{photo}/thumb").status_code == 404
    assert client.get(f"/api/jobs/{done}").json()["state"] == "done"
    assert client.get(f"/api/jobs/{done}/result").status_code == 200
    assert client.get(f"/api/jobs/{done}/settings").status_code == 200
    # The same job cannot be queued again, and says why in one line.
    again = client.post("/api/jobs", json={"content": photo, "styles": [style]})
    assert again.status_code == 422 and "no upload" in again.json()["detail"]
    assert client.delete(f"/api/uploads/{photo}").status_code == 404
    assert client.delete("/api/uploads/..%2Fstudio.db").status_code == 404


# ------------------------------------------------------------------------- prune at start


def test_a_start_prunes_what_a_crash_left(tmp_path, tiny_model_file):
    data = tmp_path / "data"
    store = Store(data)
    kept = store.add_upload(name="a.png", ext=".png", format="PNG", width=16, height=16,
                            data=png_bytes(photo_array(16, 16)), thumb=b"thumb")
    no_file = store.add_upload(name="b.png", ext=".png", format="PNG", width=16, height=16,
                               data=b"x", thumb=b"thumb")
    store.upload_path(no_file["id"], ".png").unlink()  # its row outlived its file
    job = "a" * 16
    store.add_job({"id": job, "state": "done", "created": time.time(), "content": kept["id"],
                   "styles": [kept["id"]], "options": {}, "total": 4})
    orphans = {
        store.uploads_dir / ("b" * 16 + ".png"),  # file of no row
        store.uploads_dir / ("b" * 16 + ".thumb.jpg"),
        store.uploads_dir / f".{'c' * 16}.png.tmp123",  # a write the crash cut short
        store.uploads_dir / f"{no_file['id']}.thumb.jpg",  # the thumbnail of the gone row
        store.results_dir / ("d" * 16 + ".png"),  # result of no job
        store.results_dir / f".{job}.png.tmpabc",
    }
    for path in orphans - {store.uploads_dir / f"{no_file['id']}.thumb.jpg"}:
        path.write_bytes(b"left over")
    for path in (store.result_path(job), store.result_thumb(job)):
        path.write_bytes(b"picture")
    (store.results_dir / "notes.txt").write_text("not ours to judge")
    store.close()
    messages: list[str] = []
    from brushwork.engine.cache import Cache
    from brushwork.studio.app import create_app

    app = create_app(data, cache=Cache(), models={"tiny": str(tiny_model_file)},
                     default_model="tiny", log=messages.append, limits=SMALL)
    with TestClient(app, base_url=BASE) as client:
        assert [u["id"] for u in client.get("/api/uploads").json()["uploads"]] == [kept["id"]]
        assert client.get(f"/api/jobs/{job}/result").status_code == 200
    assert not any(p.exists() for p in orphans)
    assert sorted(p.name for p in (data / "uploads").iterdir()) == [
        f"{kept['id']}.png", f"{kept['id']}.thumb.jpg"]
    assert sorted(p.name for p in (data / "results").iterdir()) == [
        f"{job}.png", f"{job}.thumb.jpg", "notes.txt"]
    assert messages == ["brushwork studio: removed 6 file(s) and 1 upload(s) that the last "
                        "run left half-written"]


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_the_quota_flag_must_be_positive(tmp_path, capsys, value):
    from brushwork.commands import main

    code = main(["studio", "--port", "0", "--data", str(tmp_path), "--upload-quota-gb",
                     value])
    err = capsys.readouterr().err
    assert code == 1 and err == (f"brushwork: error: --upload-quota-gb must be positive, not "
                                 f"{float(value):g}\n")


def test_the_quota_flag_sets_the_limit(tmp_path, monkeypatch, tiny_model_file):
    import uvicorn

    from brushwork.studio import app as app_module

    seen: list[Limits] = []
    real = app_module.create_app
    monkeypatch.setattr(app_module, "create_app",
                        lambda *a, **kw: seen.append(kw["limits"]) or real(*a, **kw))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    from brushwork.commands import main

    assert main(["studio", "--port", "0", "--data", str(tmp_path), "--model",
                     str(tiny_model_file), "--upload-quota-gb", "0.5"]) == 0
    assert seen[0].upload_quota_bytes == 2**29



# ------------------------------------------------------------------------- fixtures


@pytest.fixture
def client(tmp_path, tiny_model_file):
    with TestClient(make_app(tmp_path / "data", tiny_model_file), base_url=BASE) as c:
        yield c


@pytest.fixture
def client_with(tmp_path, tiny_model_file):
    """A client for a studio with these Limits (over the tests' small defaults)."""
    clients = []

    def make(**kw):
        c = TestClient(make_app(tmp_path / "data", tiny_model_file, limits=limits(**kw)),
                       base_url=BASE)
        clients.append(c.__enter__())
        return clients[-1]

    yield make
    for c in clients:
        c.__exit__(None, None, None)
