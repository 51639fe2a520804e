"""Job events for the event streams: the broker fans them out, the publisher paces them.

The worker reports every evaluation; :class:`EventPublisher` sends one event per
``interval`` (and every state change or new preview at once), each carrying the loss
points gathered since the last one, so a fast run does not flood a slow page and a
page still draws every point.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from .job import TERMINAL, Job


class Broker:
    """Fan-out of events from any thread to asyncio queues, one per listener."""

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
        with self._lock:
            subs = list(self._subs)
        for loop, queue in subs:
            try:
                loop.call_soon_threadsafe(_put_latest, queue, event)
            except RuntimeError:  # that listener's loop has closed
                self.unsubscribe(queue)

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        self.closed = True
        self.publish(None)


def _put_latest(queue: asyncio.Queue, event: Any) -> None:
    if queue.full():  # a stalled listener misses old progress, never the newest state
        queue.get_nowait()
    queue.put_nowait(event)


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
