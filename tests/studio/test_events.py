"""The studio's event streams under load: capped connections, each event encoded once.

The streams are read from a real server (uvicorn in a thread, studio_support) so that
several stay open at once and a client can close one; no job runs, events are
published straight to the broker, and every read has a timeout.
"""

from __future__ import annotations

import contextlib
import json
import time

import httpx
import pytest
from studio_support import make_app, running_server

from brushwork.studio.events import StreamsFull, StreamSlots
from brushwork.studio.options import Limits


def limits(**kw) -> Limits:
    return Limits(max_upload_bytes=200_000, max_pixels=250_000, **kw)


class Stream:
    """A stream that has started (its first line read), or the refusal, read whole."""

    def __init__(self, http: httpx.Client, stack: contextlib.ExitStack,
                 path: str = "/api/events") -> None:
        self.response = stack.enter_context(http.stream("GET", path))
        self.status_code = self.response.status_code
        if self.status_code == 200:
            self.lines = self.response.iter_lines()
            assert next(self.lines) == "retry: 2000"
        else:
            self.response.read()

    def json(self) -> dict:
        return self.response.json()


def fake_event(job_id: str) -> dict:
    return {"id": job_id, "state": "running", "step": 1, "points": []}


def test_stream_slots_count_per_address_and_in_all():
    slots = StreamSlots(total=3, per_client=2)
    a1, _ = slots.take("a"), slots.take("a")
    with pytest.raises(StreamsFull) as refused:
        slots.take("a")
    assert refused.value.status == 429 and "your address" in str(refused.value)
    slots.take("b")
    with pytest.raises(StreamsFull) as refused:
        slots.take("c")
    assert refused.value.status == 503 and "limit of 3" in str(refused.value)
    a1()
    a1()  # giving a slot back twice frees it once
    assert slots.count == 2
    slots.take("c")
    with pytest.raises(StreamsFull):
        slots.take("d")


def test_the_stream_over_the_cap_is_refused_and_a_closed_one_frees_its_slot(
        tmp_path, tiny_model_file):
    app = make_app(tmp_path / "data", tiny_model_file,
                   limits=limits(max_streams=10, max_streams_per_client=2))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        first, rest = contextlib.ExitStack(), contextlib.ExitStack()
        with first, rest:
            held = [Stream(http, first), Stream(http, rest)]  # kept: a dropped one closes
            assert [s.status_code for s in held] == [200, 200]
            over = Stream(http, rest)
            assert over.status_code == 429
            assert over.json()["detail"] == ("too many event streams from your address "
                                             "(limit 2); close some pages first")
            # A job's stream counts too; an unknown job is a 404 and takes no slot.
            assert Stream(http, rest, "/api/jobs/0123456789abcdef/events"
                               ).status_code == 404
            assert Stream(http, rest, "/api/jobs/0123456789abcdef/events"
                               ).status_code == 404
            assert http.get("/api/config").status_code == 200  # the rest still answers

            first.close()  # the client hangs up: the server notices and frees the slot
            deadline = time.monotonic() + 10
            while (again := Stream(http, rest)).status_code == 429:
                assert time.monotonic() < deadline, "a closed stream kept its slot"
                time.sleep(0.05)
            assert again.status_code == 200
            assert Stream(http, rest).status_code == 429  # and it is taken again


def test_the_studio_wide_cap_answers_503(tmp_path, tiny_model_file):
    app = make_app(tmp_path / "data", tiny_model_file, limits=limits(max_streams=0))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as http, \
            contextlib.ExitStack() as stack:
        r = Stream(http, stack)
        assert r.status_code == 503
        assert r.json()["detail"] == ("the studio has its limit of 0 event streams open; "
                                      "try again later")


def test_each_event_is_encoded_once_whatever_the_number_of_listeners(
        tmp_path, tiny_model_file, monkeypatch):
    app = make_app(tmp_path / "data", tiny_model_file)
    events = [fake_event(f"{i:016x}") for i in range(3)]
    encoded: list[str] = []
    real_dumps = json.dumps

    def counting_dumps(obj, *args, **kw):
        if any(obj is e for e in events):
            encoded.append(obj["id"])
        return real_dumps(obj, *args, **kw)

    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as http, \
            contextlib.ExitStack() as stack:
        streams = [Stream(http, stack) for _ in range(4)]
        assert all(s.status_code == 200 for s in streams)
        monkeypatch.setattr(json, "dumps", counting_dumps)
        for event in events:
            app.state.broker.publish(event)
        for stream in streams:
            received = []
            for line in stream.lines:
                if line.startswith("data:"):
                    received.append(json.loads(line[5:])["id"])
                    if len(received) == len(events):
                        break
            assert received == [e["id"] for e in events]
        monkeypatch.undo()
    assert encoded == [e["id"] for e in events]  # once each, not once per listener
