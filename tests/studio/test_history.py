"""A running job's loss history survives a crash up to its last saved batch.

The job runs on the tiny network and is held inside its run after a few evaluations,
as if the process had died there; the store is then opened again from the same folder
and recovered, as a restart does, while the first studio never reached its end path.
"""

from __future__ import annotations

import threading
import warnings

import pytest
from studio_support import make_app, png_bytes

from brushwork.studio import worker as worker_module
from brushwork.studio.store import Store
from conftest import painting_array, photo_array

with warnings.catch_warnings():  # starlette's TestClient would rather have httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

HOLD = 3  # the evaluation the job is held after


@pytest.fixture
def hold(monkeypatch):
    """Hold each job right after its evaluation HOLD has been recorded, until released."""
    real = worker_module.stylize
    held, release = threading.Event(), threading.Event()

    def stylize(content, styles, *, callback, **kw):
        def cb(it):
            callback(it)
            if it.step == HOLD:
                held.set()
                release.wait(60)
        return real(content, styles, callback=cb, **kw)

    monkeypatch.setattr(worker_module, "stylize", stylize)
    yield held, release
    release.set()


@pytest.mark.parametrize("history_interval, saved", [
    (0.0, [1, 2, 3]),  # a batch is due at every evaluation
    (1e9, [1]),  # only the first preview's: the points after it are what a crash loses
])
def test_a_crash_keeps_the_running_jobs_history_up_to_the_last_save(
        tmp_path, tiny_model_file, hold, history_interval, saved):
    held, release = hold
    app = make_app(tmp_path / "data", tiny_model_file, preview_interval=1e9)
    app.state.queue.history_interval = history_interval
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        ids = [client.post("/api/upload", files={"file": (name, png_bytes(array()),
                                                          "image/png")}).json()["id"]
               for name, array in (("p.png", photo_array), ("s.png", painting_array))]
        r = client.post("/api/jobs", json={"content": ids[0], "styles": ids[1:],
                                           "options": {"size": 32, "iterations": 6}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        assert held.wait(60)  # the first run on a device measures it (seconds)
        live = app.state.queue.live(job_id)
        assert live is not None and len(live.history) == HOLD

        restarted = Store(tmp_path / "data")  # the crash: the first studio never ends it
        try:
            assert restarted.recover() == [job_id]
            row = restarted.job(job_id)
        finally:
            restarted.close()
            release.set()  # the first studio may now end as it will
    assert row is not None and row["state"] == "queued"  # for the next start to go on with
    assert [p["step"] for p in row["history"]] == saved
    assert row["history"] == live.history[:len(saved)]
    assert set(row["history"][0]) == {"step", "scale", "content", "style", "tv", "structure",
                                      "matting", "total"}


def test_saved_points_are_kept_while_running_and_go_with_the_whole_history(tmp_path):
    store = Store(tmp_path / "data")
    try:
        job_id = "a" * 16
        store.add_job({"id": job_id, "state": "running", "created": 0.0, "content": "0" * 16,
                       "styles": ["1" * 16], "options": {}, "total": 4})
        points = [{"step": s, "scale": 0, "total": 1.0 / s} for s in (1, 2, 3)]
        store.add_points(job_id, points[:2])
        store.add_points(job_id, points[2:])
        assert store.saved_points(job_id) == points
        store.update_job(job_id, state="done", history=points)
        assert store.saved_points(job_id) == []
        store.add_points(job_id, points)  # too late: the job has ended
        assert store.saved_points(job_id) == [] and store.job(job_id)["history"] == points
    finally:
        store.close()
