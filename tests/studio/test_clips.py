"""Clips in the studio: a video uploaded (bounded), painted as a job of kind "clip" by
brushwork.video.stylize_video, served as an MP4 with Range requests; cancel, and a
restart that goes on from the finished frames.  Tiny clips (5 frames of 32x24) made here
with PyAV, the tiny test network."""

from __future__ import annotations

import io
import threading
import time
import warnings
from fractions import Fraction

import numpy as np
import pytest
from studio_support import make_app, png_bytes

from brushwork.studio.options import Limits
from brushwork.studio.store import Store
from conftest import painting_array, photo_array

av = pytest.importorskip("av")
pytest.importorskip("cv2")

with warnings.catch_warnings():  # starlette's TestClient would rather have httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

BASE = "http://127.0.0.1:8000"
FAST = {"size": 32, "iterations": 4, "frame_iterations": 3, "seed": 1}
TERMINAL = ("done", "failed", "cancelled", "interrupted")


def clip_bytes(frames: int = 5, size: tuple[int, int] = (32, 24), rate: int = 12,
               fmt: str = "mp4") -> bytes:
    """A tiny H.264 clip: a bright square sliding over a gradient."""
    w, h = size
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        y, x = np.mgrid[0:h, 0:w]
        for k in range(frames):
            frame = np.stack([60 + 120 * x / w, 60 + 120 * y / h, 140 + 0 * x], -1)
            frame[4:12, 2 + 3 * k:10 + 3 * k] = [250, 220, 40]
            vf = av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")
            vf.pts, vf.time_base = k, Fraction(1, rate)
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    return buf.getvalue()


def video_frames(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture
def app(tmp_path, tiny_model_file):
    return make_app(tmp_path / "data", tiny_model_file, preview_interval=0.0)


@pytest.fixture
def client(app):
    with TestClient(app, base_url=BASE) as c:
        yield c


def upload_clip(client, data: bytes, name: str = "clip.mp4"):
    return client.post("/api/upload/clip", files={"file": (name, data, "video/mp4")})


def upload_painting(client) -> str:
    r = client.post("/api/upload", files={"file": ("painting.png", png_bytes(painting_array()),
                                                    "image/png")})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def submit_clip(client, clip: str, styles: list[str], options=None):
    return client.post("/api/clips", json={"content": clip, "styles": styles,
                                           "options": dict(FAST, **(options or {}))})


def wait_for(client, job_id, states=TERMINAL, timeout=120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"job stuck in {job['state']}"
        time.sleep(0.02)


def leftovers(store: Store) -> list[str]:
    """Files in uploads/ that no upload row holds (a refused upload leaves none)."""
    kept = {f"{u['id']}{u['ext']}" for u in store.uploads()} | {
        f"{u['id']}.thumb.jpg" for u in store.uploads()}
    return sorted(p.name for p in store.uploads_dir.iterdir() if p.name not in kept)


# --------------------------------------------------------------------------- uploads


def test_a_clip_upload_is_probed_stored_and_listed(client):
    data = clip_bytes()
    r = upload_clip(client, data)
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["format"] == "video/mp4" and (up["width"], up["height"]) == (32, 24)
    assert up["video"]["frames"] == 5 and up["video"]["fps"] == 12
    assert up["video"]["duration"] == pytest.approx(5 / 12, abs=1e-3)
    assert up["video"]["codec"] == "h264" and up["bytes"] == len(data)
    store = client.app.state.store
    assert store.upload_file(up["id"]).read_bytes() == data  # kept as it was sent
    thumb = client.get(f"/api/uploads/{up['id']}/thumb")
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    listed = {u["id"]: u for u in client.get("/api/uploads").json()["uploads"]}
    assert listed[up["id"]]["video"]["frames"] == 5
    painting = upload_painting(client)
    assert {u["id"]: u for u in client.get("/api/uploads").json()["uploads"]}[
        painting]["video"] is None
    assert leftovers(store) == []


@pytest.mark.parametrize("limits, data, status, words", [
    (Limits(max_clip_seconds=0.3), None, 413, "0.4 s long, over this studio's limit of 0.3 s"),
    (Limits(max_clip_frames=4), None, 413, "5 frames, over this studio's limit of 4"),
    (Limits(max_clip_pixels=32 * 20), None, 413, "megapixels"),
    (Limits(max_clip_bytes=1000), None, 413, "over the limit of"),
    (Limits(), png_bytes(photo_array()), 415, "not a video file brushwork reads"),
    (Limits(), b"\x00" * 5000, 415, "video"),
    (Limits(), b"", 400, "the file is empty"),
])
def test_a_clip_over_a_limit_or_not_a_video_is_refused_in_one_line(
        tmp_path, tiny_model_file, limits, data, status, words):
    limits.max_upload_bytes, limits.max_pixels = 200_000, 250_000
    app = make_app(tmp_path / "data", tiny_model_file, limits=limits)
    with TestClient(app, base_url=BASE) as c:
        r = upload_clip(c, clip_bytes() if data is None else data)
        assert r.status_code == status, r.text
        detail = r.json()["detail"]
        assert words in detail and "\n" not in detail and str(tmp_path) not in detail
        assert c.get("/api/uploads").json()["count"] == 0
        assert leftovers(app.state.store) == []
        assert c.get("/api/config").status_code == 200  # still serving


def test_a_clip_over_the_body_limit_is_cut_off_before_it_is_read(tmp_path, tiny_model_file):
    app = make_app(tmp_path / "data", tiny_model_file,
                   limits=Limits(max_upload_bytes=200_000, max_pixels=250_000,
                                 max_clip_bytes=2000))
    with TestClient(app, base_url=BASE) as c:
        r = c.post("/api/upload/clip", content=b"x" * 200_000,
                   headers={"content-type": "multipart/form-data; boundary=x"})
        assert r.status_code == 413 and "over the limit" in r.json()["detail"]


def test_clips_and_pictures_are_not_mixed_up(tmp_path, tiny_model_file):
    app = make_app(tmp_path / "data", tiny_model_file,
                   limits=Limits(max_upload_bytes=200_000, max_pixels=250_000,
                                 max_clip_frames=50))
    with TestClient(app, base_url=BASE) as client:
        refuse_mixed(client)


def refuse_mixed(client) -> None:
    clip = upload_clip(client, clip_bytes()).json()["id"]
    painting = upload_painting(client)
    r = client.post("/api/jobs", json={"content": clip, "styles": [painting],
                                       "options": {"size": 32, "iterations": 2}})
    assert r.status_code == 422 and "is a video" in r.json()["detail"]
    r = submit_clip(client, painting, [painting])
    assert r.status_code == 422 and "not a video" in r.json()["detail"]
    r = submit_clip(client, clip, [clip])
    assert r.status_code == 422 and "is a video" in r.json()["detail"]
    for options, words in [({"frame_iterations": "3"}, "frame_iterations has the wrong type"),
                           ({"temporal_weight": -1}, "temporal_weight must be"),
                           ({"frames": "9:12"}, "outside the clip, which has 5 frames"),
                           ({"fps": 240}, "paint 100 frames, over this studio's limit of 50"),
                           ({"init": "photo.png"}, "init must be one of"),
                           ({"bit_depth": 16}, "bit_depth and dpi are for pictures")]:
        r = submit_clip(client, clip, [painting], options)
        assert r.status_code == 422 and words in r.json()["detail"], (options, r.text)
        assert "\n" not in r.json()["detail"] and "uploads/" not in r.json()["detail"]


# ------------------------------------------------------------------------------- jobs


def test_a_clip_is_painted_end_to_end_and_served_with_ranges(client):
    clip = upload_clip(client, clip_bytes()).json()["id"]
    painting = upload_painting(client)
    est = client.post("/api/clips/estimate", json={"content": clip, "styles": [painting],
                                                   "options": FAST})
    assert est.status_code == 200, est.text
    assert est.json()["frames"] == 5 and "5 frames" in est.json()["text"]
    if est.json()["estimate"] is not None:
        assert est.json()["estimate"]["seconds"] > 0
    r = submit_clip(client, clip, [painting])
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["kind"] == "clip" and job["detail"]["frames"] == 5
    assert job["detail"]["frame_size"] == [32, 24]
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
        events = [line for line in stream.iter_lines() if line.startswith("data:")]
    assert '"frames_done":3' in "".join(events)  # frames reported as they finish
    done = wait_for(client, job["id"])
    assert done["state"] == "done", done["error"]
    assert done["result"] is True and done["detail"]["frames_done"] == 5
    assert done["detail"]["painted"] == 5 and done["progress"] == 1.0
    assert done["total"] == done["history"][-1]["step"]
    assert done["settings"]["frame_iterations"] == 3 and done["settings"]["model"] == "tiny"
    store = client.app.state.store
    assert not store.frames_dir(job["id"]).exists()

    r = client.get(f"/api/jobs/{job['id']}/video")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert r.headers["accept-ranges"] == "bytes"
    whole = r.content
    frames = video_frames(whole)
    assert len(frames) == 5 and frames[0].shape == (24, 32, 3)
    part = client.get(f"/api/jobs/{job['id']}/video", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole)}"
    down = client.get(f"/api/jobs/{job['id']}/video?download=1")
    assert f'filename="brushwork-{job["id"]}.mp4"' in down.headers["content-disposition"]
    assert client.get(f"/api/jobs/{job['id']}/thumb").status_code == 200
    # A page asking for the preview just as the clip ends gets its first frame, no 404.
    preview = client.get(f"/api/jobs/{job['id']}/preview")
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/jpeg"
    gallery = client.get("/api/gallery").json()["results"]
    assert [(g["id"], g["kind"]) for g in gallery] == [(job["id"], "clip")]
    # The clip cannot be deleted while... it is not in use now: it can.
    r = client.delete(f"/api/jobs/{job['id']}")
    assert r.status_code == 200 and not store.result_file(job["id"], "clip").exists()
    assert client.get(f"/api/jobs/{job['id']}/video").status_code == 404


@pytest.fixture
def held(monkeypatch):
    """Clip runs held at frame ``held.frame``'s first step until released."""
    import brushwork.video.paint as paint

    real = paint.stylize_video

    class Gate:
        frame = 2
        at = threading.Event()
        release = threading.Event()
        painted: list[int] = []

    def wrapped(source, style, output, *, callback, on_frame, **kw):
        def cb(s):
            if s.frame == Gate.frame and s.iterate.step == 1:
                Gate.at.set()
                Gate.release.wait(30)
            callback(s)

        def frame_done(k, n, result):
            Gate.painted.append(k)
            on_frame(k, n, result)
        return real(source, style, output, callback=cb, on_frame=frame_done, **kw)

    monkeypatch.setattr(paint, "stylize_video", wrapped)
    return Gate


def test_cancelling_a_clip_removes_its_frames(client, held):
    clip = upload_clip(client, clip_bytes()).json()["id"]
    painting = upload_painting(client)
    job = submit_clip(client, clip, [painting]).json()
    assert held.at.wait(60)
    store = client.app.state.store
    assert len(list(store.frames_dir(job["id"]).glob("frame_*.png"))) == 2
    running = client.get(f"/api/jobs/{job['id']}").json()
    assert running["detail"]["frames_done"] == 2 and running["detail"]["frame"] == 3
    assert client.get(f"/api/jobs/{job['id']}/preview").status_code == 200
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
    held.release.set()
    ended = wait_for(client, job["id"])
    assert ended["state"] == "cancelled" and ended["result"] is False
    assert not store.frames_dir(job["id"]).exists()
    assert not store.result_file(job["id"], "clip").exists()
    assert client.get(f"/api/jobs/{job['id']}/video").status_code == 404


def test_a_clip_stopped_with_the_studio_goes_on_from_its_finished_frames(
        tmp_path, tiny_model_file, held):
    app = make_app(tmp_path / "data", tiny_model_file, preview_interval=0.0)
    with TestClient(app, base_url=BASE) as c:
        clip = upload_clip(c, clip_bytes()).json()["id"]
        painting = upload_painting(c)
        job = submit_clip(c, clip, [painting]).json()
        assert held.at.wait(60)

        def release_once_stopping():
            while not app.state.queue.stopping:
                time.sleep(0.01)
            held.release.set()
        threading.Thread(target=release_once_stopping, daemon=True).start()
    # The studio stopped (as on Ctrl-C) during frame 3: frames 1 and 2 are kept.
    assert held.painted == [0, 1]
    store = Store(tmp_path / "data")
    assert store.job(job["id"])["state"] == "queued"
    assert len(list(store.frames_dir(job["id"]).glob("frame_*.png"))) == 2
    store.close()
    held.painted.clear()
    held.frame = -1  # no more holding
    again = make_app(tmp_path / "data", tiny_model_file)
    with TestClient(again, base_url=BASE) as c:
        done = wait_for(c, job["id"])
        assert done["state"] == "done", done["error"]
        assert held.painted == [2, 3, 4]  # only the frames not finished before
        assert done["detail"]["painted"] == 3 and done["detail"]["frames_done"] == 5
        assert len(video_frames(c.get(f"/api/jobs/{job['id']}/video").content)) == 5
        assert not again.state.store.frames_dir(job["id"]).exists()


def test_prune_keeps_an_unfinished_clips_frames_and_drops_an_ended_ones(tmp_path):
    store = Store(tmp_path / "data")
    ids = {}
    for state in ("queued", "cancelled"):
        ids[state] = job_id = f"{len(ids):016x}"
        store.add_job({"id": job_id, "kind": "clip", "state": state, "created": time.time(),
                       "content": "0" * 16, "styles": ["1" * 16], "options": {}})
        folder = store.frames_dir(job_id)
        folder.mkdir()
        (folder / "frame_00001.png").write_bytes(b"x")
        store.result_file(job_id, "clip").write_bytes(b"partial")
    stray = store.results_dir / ("f" * 16 + ".mp4")
    stray.write_bytes(b"nobody's")
    temp = store.results_dir / f".{'0' * 16}.mp4.abc123.mp4"
    temp.write_bytes(b"half")
    store.prune()
    assert store.frames_dir(ids["queued"]).is_dir()
    assert not store.frames_dir(ids["cancelled"]).exists()
    assert store.result_file(ids["queued"], "clip").exists()
    assert not stray.exists() and not temp.exists()
    store.close()


@pytest.mark.parametrize("argv, needle", [
    (["--max-clip-mb", "0"], "--max-clip-mb must be above 0"),
    (["--max-clip-seconds", "-1"], "--max-clip-seconds"),
    (["--max-clip-frames", "0"], "--max-clip-frames"),
    (["--max-clip-pixels", "30000000"], "--max-clip-pixels must be above 0 and at most"),
])
def test_the_clip_limits_flags_refuse_nonsense_in_one_line(tmp_path, capsys, argv, needle):
    from brushwork.commands import main

    code = main(["studio", "--port", "0", "--data", str(tmp_path / "d"), *argv])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_the_clip_limits_flags_reach_the_studio(tmp_path, monkeypatch):
    from brushwork.commands import main
    from brushwork.commands import studio as command

    seen = {}
    monkeypatch.setattr(command, "serve", lambda app, host, port, data: seen.setdefault(
        "limits", app.state.queue.limits) and 0)
    assert main(["studio", "--port", "0", "--data", str(tmp_path / "d"), "--max-clip-mb", "2",
                 "--max-clip-seconds", "5", "--max-clip-frames", "40",
                 "--max-clip-pixels", "100000"]) == 0
    limits = seen["limits"]
    assert (limits.max_clip_bytes, limits.max_clip_seconds, limits.max_clip_frames,
            limits.max_clip_pixels) == (2 * 1024 * 1024, 5, 40, 100_000)


def test_without_the_video_extra_clips_are_refused_in_one_line(client, monkeypatch):
    from brushwork.studio import clips

    clip = upload_clip(client, clip_bytes()).json()["id"]
    painting = upload_painting(client)
    line = "video needs PyAV, which is not installed: pip install 'brushwork[video]'"
    monkeypatch.setattr(clips, "video_available", lambda: line)
    config = client.get("/api/clips/config").json()
    assert config["available"] is False and config["reason"] == line
    r = upload_clip(client, clip_bytes())
    assert r.status_code == 501 and r.json()["detail"] == line
    r = submit_clip(client, clip, [painting])
    assert r.status_code == 422 and r.json()["detail"] == line
    # The page greys the Clip switch out and says why.
    page = client.get("/static/clips.js").text
    assert "clip-unavailable" in page and '$("mode-clip").disabled = true' in page


def test_a_clip_that_takes_too_long_to_probe_is_refused(tmp_path, tiny_model_file):
    app = make_app(tmp_path / "data", tiny_model_file,
                   limits=Limits(max_upload_bytes=200_000, max_pixels=250_000,
                                 decode_seconds=0.001))
    with TestClient(app, base_url=BASE) as c:
        r = upload_clip(c, clip_bytes())
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == "the video took longer than 0.001 s to read"
        assert c.get("/api/uploads").json()["count"] == 0 and leftovers(app.state.store) == []
