"""Decoding uploads in processes of their own, bounded in time, memory and number.

An uploaded file is untrusted: a few hundred kilobytes can take seconds and hundreds of
megabytes to decode (an all-zero PNG of 25 megapixels, a progressive JPEG of thousands
of scans).  :class:`Decoder` runs :func:`~brushwork.studio.uploads.reencode` in a child
process, one per upload, so that

* a decode that runs past its time is killed (the upload gets a 422);
* on Linux, the child may add at most ``memory_bytes`` to its address space
  (``RLIMIT_AS``); past it the decode fails and the upload gets a 413.  Other systems
  have no such limit (macOS does not enforce RLIMIT_AS, Windows has no rlimits): there
  only the pixel limit, checked on the header before decoding, bounds the memory;
* the memory a decode used goes back to the system when its process ends, whatever the
  server's malloc keeps;
* Pillow's process-wide bomb limit (imageio.pillow_limit) is taken in the child, so a
  slow file never holds the server's lock;
* at most ``max_at_once`` decode at a time; another upload waits up to ``wait_seconds``
  for a turn and then gets a 503 with Retry-After.

Children are forked from multiprocessing's fork server, which imports this module once
(so a child starts in milliseconds, already holding Pillow and brushwork); where there is
no fork server (Windows) each child is spawned and imports them itself.  The time bound
starts once the child says it is ready, so that start-up is not counted against the file.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from brushwork.studio.turns import NoTurn, Turns
from brushwork.studio.uploads import Reencoded, UploadError, reencode

# How long a child may take to start before the upload gets a 503 (a spawned child
# imports torch, which can take seconds on a busy machine).
STARTUP_S = 60.0
_EXIT_CRASHED = 70
T = TypeVar("T")


def _context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


class Decoder:
    """Re-encodes uploads in bounded child processes (module docstring)."""

    def __init__(self, *, max_pixels: int, seconds: float, memory_bytes: int,
                 max_at_once: int, wait_seconds: float) -> None:
        if seconds <= 0 or memory_bytes <= 0 or max_at_once < 1 or wait_seconds < 0:
            raise ValueError("decode limits must be positive")
        self.max_pixels = max_pixels
        self.seconds = seconds
        self.memory_bytes = memory_bytes
        self.max_at_once = max_at_once
        self.wait_seconds = wait_seconds
        self._ctx = _context()
        self._turns = Turns(max_at_once, wait_seconds)

    def warm(self) -> None:
        """Start the fork server now, in the background, so the first upload need not."""
        if self._ctx.get_start_method() == "forkserver":
            from multiprocessing import forkserver
            threading.Thread(target=forkserver.ensure_running, daemon=True,
                             name="brushwork-decoder-warm").start()

    async def decode(self, source: bytes | Callable[[], bytes]) -> Reencoded:
        """The stored form of an upload, or UploadError.

        Waits its turn without holding a thread, then decodes in one of the event loop's
        executor threads.  ``source`` is the file's bytes, or a function that reads them
        (called once the turn has come, so that uploads waiting for one hold no more
        than their spooled request bodies) and may raise UploadError itself.
        """
        def in_turn() -> Reencoded:
            return self._decode(source if isinstance(source, bytes) else source())

        try:
            return await self._turns.run(in_turn)
        except NoTurn:
            raise UploadError(503, f"{self.max_at_once} image(s) are being decoded "
                                   "already; try again in a few seconds",
                              retry_after=max(1, round(self.seconds))) from None

    def _decode(self, data: bytes) -> Reencoded:
        ours, theirs = self._ctx.Pipe()
        proc = self._ctx.Process(target=_child, args=(theirs, self.max_pixels,
                                                      self.memory_bytes),
                                 name="brushwork-decode", daemon=True)
        try:
            proc.start()
            theirs.close()
            if not ours.poll(STARTUP_S):
                raise UploadError(503, "the image decoder did not start in time; try again",
                                  retry_after=5)
            ours.recv()  # ready: the memory limit is set
            ours.send_bytes(data)
            if not ours.poll(self.seconds):
                raise UploadError(422, f"the image took longer than {self.seconds:g} s to "
                                       "decode")
            answer = ours.recv()
            if answer[0] == "ok":
                fmt, ext, width, height, grey = answer[1:]
                return Reencoded(fmt, ext, width, height, ours.recv_bytes(), ours.recv_bytes(),
                                 grey)
            if answer[0] == "memory":
                raise UploadError(413, f"the image needs more than "
                                       f"{self.memory_bytes / 2**20:.0f} MB of memory to decode")
            _, status, message = answer
            raise UploadError(status, message)
        except (EOFError, OSError):  # the child died without an answer
            raise UploadError(422, "the image could not be decoded (its decoder stopped "
                                   "unexpectedly)") from None
        finally:
            if proc.pid is not None:
                if proc.is_alive():
                    proc.kill()
                proc.join()
            ours.close()
            theirs.close()

    async def call(self, fn: Callable[..., T], *args: Any, what: str = "the file") -> T:
        """``fn(*args)`` in a child bounded as a decode is (time, memory), in turn with the
        decodes; its result must pickle.  ``fn`` raises UploadError to refuse; a child
        out of time, out of memory or dead is refused as a decode is (422, 413).  For
        files read by other means than Pillow (a video is probed with PyAV: clips.py)."""
        try:
            return await self._turns.run(lambda: self._call(fn, args, what))
        except NoTurn:
            raise UploadError(503, f"{self.max_at_once} file(s) are being decoded already; "
                                   "try again in a few seconds",
                              retry_after=max(1, round(self.seconds))) from None

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...], what: str) -> T:
        ours, theirs = self._ctx.Pipe()
        proc = self._ctx.Process(target=_call_child, args=(theirs, self.memory_bytes, fn, args),
                                 name="brushwork-decode", daemon=True)
        try:
            proc.start()
            theirs.close()
            if not ours.poll(STARTUP_S):
                raise UploadError(503, "the decoder did not start in time; try again",
                                  retry_after=5)
            ours.recv()  # ready: the memory limit is set
            if not ours.poll(self.seconds):
                raise UploadError(422, f"{what} took longer than {self.seconds:g} s to read")
            answer = ours.recv()
            if answer[0] == "ok":
                result: T = answer[1]
                return result
            if answer[0] == "memory":
                raise UploadError(413, f"{what} needs more than "
                                       f"{self.memory_bytes / 2**20:.0f} MB of memory to read")
            _, status, message = answer
            raise UploadError(status, message)
        except (EOFError, OSError):  # the child died without an answer
            raise UploadError(422, f"{what} could not be read (its decoder stopped "
                                   "unexpectedly)") from None
        finally:
            if proc.pid is not None:
                if proc.is_alive():
                    proc.kill()
                proc.join()
            ours.close()
            theirs.close()


def _child(conn: Connection, max_pixels: int, memory_bytes: int) -> None:
    """In the child: set the memory limit, decode what the parent sends, answer."""
    try:
        _limit_memory(memory_bytes)
        conn.send("ready")
        data = conn.recv_bytes()
        out_of_memory = False
        try:
            out = reencode(data, max_pixels=max_pixels)
        except UploadError as e:
            conn.send(("refused", e.status, e.message))
            return
        except MemoryError:
            out_of_memory = True  # answered below, once the decode's memory is freed
        if out_of_memory:
            conn.send(("memory",))
            return
        conn.send(("ok", out.format, out.ext, out.width, out.height, out.grey))
        conn.send_bytes(out.data)
        conn.send_bytes(out.thumb)
    except BaseException:  # anything else: the parent sees the pipe close
        os._exit(_EXIT_CRASHED)


def _limit_memory(extra: int) -> bool:
    """Let this process grow its address space by at most ``extra`` bytes (Linux only).

    The limit is relative to the size now, since a fork server's child starts with the
    server's imports (torch among them) already mapped."""
    if not sys.platform.startswith("linux"):
        return False
    import resource

    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * resource.getpagesize()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return True


def _call_child(conn: Connection, memory_bytes: int, fn: Callable[..., Any],
                args: tuple[Any, ...]) -> None:
    """In the child: set the memory limit, run ``fn(*args)``, answer (Decoder.call)."""
    try:
        _limit_memory(memory_bytes)
        conn.send("ready")
        out_of_memory = False
        try:
            result = fn(*args)
        except UploadError as e:
            conn.send(("refused", e.status, e.message))
            return
        except MemoryError:
            out_of_memory = True
        if out_of_memory:
            conn.send(("memory",))
            return
        conn.send(("ok", result))
    except BaseException:  # anything else: the parent sees the pipe close
        os._exit(_EXIT_CRASHED)
