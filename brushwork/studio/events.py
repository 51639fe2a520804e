"""Job events for the event streams: the broker fans them out, the publisher paces them.

The worker reports every evaluation; :class:`EventPublisher` sends one event per
``interval`` (and every state change or new preview at once), each carrying the loss
points gathered since the last one, so a fast run does not flood a slow page and a
page still draws every point.

Each event is encoded as SSE text once, in :meth:`Broker.publish`, and that one
:class:`Message` goes to every listener.  :class:`StreamSlots` caps how many streams
are open, per client address and in all, so idle streams cannot starve the server.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brushwork.studio.job import TERMINAL, Job


@dataclass(frozen=True)
class Message:
    """One job event as the streams send it: its SSE text, and what a stream filters on."""

    job_id: str
    state: str
    text: str


def encode(event: dict[str, Any]) -> Message:
    """The event as one SSE frame (the only place an event becomes JSON)."""
    data = json.dumps(event, separators=(",", ":"))
    return Message(event["id"], event["state"], f"event: job\ndata: {data}\n\n")


class Broker:
    """Fan-out of events from any thread to asyncio queues, one per listener.

    Listeners get :class:`Message` objects, encoded once per event, or None when the
    studio stops.
    """

    def __init__(self, maxsize: int = 2000) -> None:
        self.maxsize = maxsize
        self._subs: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self._lock = threading.Lock()
        self.closed = False

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(self.maxsize)
        with self._lock:
            self._subs.add((asyncio.get_running_loop(), queue))
        if self.closed:
            queue.put_nowait(None)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._subs = {s for s in self._subs if s[1] is not queue}

    def publish(self, event: dict[str, Any] | None) -> None:
        message = None if event is None else encode(event)
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Queue]] = {}
        with self._lock:
            for loop, queue in self._subs:
                by_loop.setdefault(loop, []).append(queue)
        for loop, queues in by_loop.items():  # one wake-up per event loop, not per listener
            try:
                loop.call_soon_threadsafe(_put_all, queues, message)
            except RuntimeError:  # that loop has closed: its listeners are gone
                for queue in queues:
                    self.unsubscribe(queue)

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        self.closed = True
        self.publish(None)


def _put_all(queues: list[asyncio.Queue], message: Message | None) -> None:
    for queue in queues:
        if queue.full():  # a stalled listener misses old progress, never the newest state
            queue.get_nowait()
        queue.put_nowait(message)


class StreamsFull(Exception):
    """No event stream slot free: ``status`` is 429 (this address has its share) or 503
    (the studio has its limit open)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class StreamSlots:
    """Counts open event streams, per client address and in all, against their caps."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._open: dict[str, int] = {}  # address -> its open streams
        self.count = 0  # open streams in all
        self._lock = threading.Lock()

    def take(self, client: str) -> Callable[[], None]:
        """A slot for ``client``; returns the function that gives it back (safe to call
        more than once).  Raises StreamsFull when none is free."""
        with self._lock:
            if self.count >= self.total:
                raise StreamsFull(503, f"the studio has its limit of {self.total} event "
                                       "streams open; try again later")
            if self._open.get(client, 0) >= self.per_client:
                raise StreamsFull(429, f"too many event streams from your address (limit "
                                       f"{self.per_client}); close some pages first")
            self._open[client] = self._open.get(client, 0) + 1
            self.count += 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            with self._lock:
                if given_back:
                    return
                given_back = True
                self.count -= 1
                self._open[client] -= 1
                if not self._open[client]:
                    del self._open[client]

        return give_back


class EventPublisher:
    """Paced job events: each is the job's JSON plus the loss ``points`` not yet sent."""

    def __init__(self, broker: Broker, describe: Callable[[Job], dict[str, Any]], *,
                 interval: float = 0.1) -> None:
        self.broker = broker
        self.describe = describe  # a job's JSON, as the API sends it
        self.interval = interval
        self._lock = threading.Lock()
        self._unsent: dict[str, list[dict[str, float]]] = {}
        self._last: dict[str, float] = {}

    def changed(self, job: Job) -> None:
        """Send the job's state now (queued, started, moved up, ended, new preview)."""
        event = self.describe(job)
        with self._lock:
            event["points"] = self._unsent.pop(job.id, [])
            if job.state in TERMINAL:
                self._last.pop(job.id, None)
            else:
                self._last[job.id] = time.monotonic()
        self.broker.publish(event)

    def progress(self, job: Job, point: dict[str, float], *, now: bool = False) -> None:
        """One more evaluation: sent with the next event, which goes out if one is due
        (or ``now``, for a new preview)."""
        with self._lock:
            self._unsent.setdefault(job.id, []).append(point)
            due = now or time.monotonic() - self._last.get(job.id, 0.0) >= self.interval
        if due:
            self.changed(job)
