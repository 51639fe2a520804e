"""Turns: at most N pieces of blocking work at once (decodes, estimates); the rest wait
on the event loop, holding no thread, and are refused once they have waited too long."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class NoTurn(Exception):
    """Every turn stayed taken for the whole wait."""


class Turns:
    """At most ``at_once`` calls of :meth:`run` work at a time; another waits up to
    ``wait_seconds`` for a turn and then gets NoTurn."""

    def __init__(self, at_once: int, wait_seconds: float) -> None:
        if at_once < 1 or wait_seconds < 0:
            raise ValueError("turns need at_once >= 1 and wait_seconds >= 0")
        self.at_once = at_once
        self.wait_seconds = wait_seconds
        self._slots = threading.BoundedSemaphore(at_once)  # released by the work's thread

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` in one of the event loop's executor threads, once a turn is free.

        The turn is given back in that thread when the work ends.  The work is shielded:
        a request that goes away lets it finish, so a turn is never free while its work
        still runs."""
        deadline = time.monotonic() + self.wait_seconds
        while not self._slots.acquire(blocking=False):  # polled: works under any event loop
            if time.monotonic() >= deadline:
                raise NoTurn()
            await asyncio.sleep(0.05)

        def in_turn() -> T:
            try:
                return work()
            finally:
                self._slots.release()

        return await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, in_turn))
