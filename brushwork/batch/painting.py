"""Painting a checked batch: the backends (:class:`LocalBackend` here;
brushwork.batch.ray's on a Ray cluster) and :func:`run`, which writes each picture as it
arrives, with its settings, inputs and where it ran inside, and keeps index.json."""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from brushwork.batch.index import write_index
from brushwork.batch.plan import (
    DONE,
    FAILED,
    INDEX_EVERY_S,
    INTERRUPTED,
    PENDING,
    RUNNING,
    Batch,
    Row,
)
from brushwork.engine.cache import Cache
from brushwork.engine.painter import stylize
from brushwork.engine.result import Iterate, Result
from brushwork.engine.settings import Settings
from brushwork.errors import BrushworkError, out_of_memory


@dataclass
class Outcome:
    """What a backend hands back for one row: the picture, or why there is none."""

    result: Result | None
    error: str | None
    ran_on: dict[str, Any]


Progress = Callable[[Row, float], None]  # a row and the share of it done, 0..1


class Backend(Protocol):
    def describe(self) -> dict[str, Any]: ...

    def check(self, batch: Batch, rows: Sequence[Row]) -> list[str]: ...

    def paint(self, batch: Batch, rows: Sequence[Row],
              progress: Progress | None) -> Iterator[tuple[Row, Outcome]]: ...


class _Stop(Exception):
    """Raised in a worker thread's callback to end its picture after Ctrl-C."""


class LocalBackend:
    """Paints here: one picture at a time (one run already keeps every core busy), or one
    per GPU on a machine with several, all sharing one :class:`Cache` so each network is
    read once."""

    def __init__(self, devices: Sequence[str] | None = None, cache: Cache | None = None,
                 on_step: Callable[[Row, Iterate], None] | None = None) -> None:
        # devices: one worker per entry, each painting the rows whose device is "auto"
        # on its own device; None: one per CUDA GPU where there are several, else one.
        self.devices = list(devices) if devices is not None else local_devices()
        self.cache = cache or Cache()
        # Sees every evaluation of every row (the studio's live preview); it may raise to
        # stop the batch, as the progress callback may.
        self.on_step = on_step

    def describe(self) -> dict[str, Any]:
        return {"name": "local", "host": socket.gethostname(),
                "devices": self.devices or "one worker; each row's device setting"}

    def check(self, batch: Batch, rows: Sequence[Row]) -> list[str]:
        from brushwork.engine.device import resolve_device

        problems = []
        for row in rows:
            device = row.settings["device"]
            wanted = [device] if device != "auto" else [d for d in self.devices if d]
            try:
                for d in wanted:
                    resolve_device(d)
            except BrushworkError as e:
                problems.append(f"{row.where}: {e}")
        return problems

    def paint(self, batch: Batch, rows: Sequence[Row],
              progress: Progress | None) -> Iterator[tuple[Row, Outcome]]:
        if len(self.devices) <= 1:
            device = self.devices[0] if self.devices else None
            for row in rows:
                yield row, self._paint(batch, row, device, progress, None)
            return
        yield from self._paint_in_threads(batch, rows, progress)

    def _paint(self, batch: Batch, row: Row, device: str | None, progress: Progress | None,
               stop: threading.Event | None) -> Outcome:
        row.state = RUNNING
        options = {**batch.options, **row.options}
        if device is not None and row.settings["device"] == "auto":
            options["device"] = device

        def on_step(it: Iterate) -> None:
            if stop is not None and stop.is_set():
                raise _Stop
            if progress is not None:
                progress(row, it.progress)
            if self.on_step is not None:
                self.on_step(row, it)

        ran_on = {"host": socket.gethostname(), "pid": os.getpid()}
        try:
            result = stylize(row.content, list(row.styles), cache=self.cache, callback=on_step,
                             **Settings.normalise(options))
        except BrushworkError as e:
            return Outcome(None, str(e), ran_on)
        except (MemoryError, RuntimeError) as e:
            oom = out_of_memory(e)
            if oom is None:
                raise
            return Outcome(None, str(oom), ran_on)
        return Outcome(result, None, {**ran_on, "device": result.device})

    def _paint_in_threads(self, batch: Batch, rows: Sequence[Row],
                          progress: Progress | None) -> Iterator[tuple[Row, Outcome]]:
        todo: queue.Queue[Row] = queue.Queue()
        for row in rows:
            todo.put(row)
        done: queue.Queue[tuple[Row, Outcome] | BaseException | None] = queue.Queue()
        stop = threading.Event()

        def worker(device: str) -> None:
            try:
                while not stop.is_set():
                    try:
                        row = todo.get_nowait()
                    except queue.Empty:
                        break
                    try:
                        done.put((row, self._paint(batch, row, device, progress, stop)))
                    except _Stop:
                        break
            except BaseException as e:  # handed to the main thread, which re-raises it
                done.put(e)
            finally:
                done.put(None)

        threads = [threading.Thread(target=worker, args=(d,), daemon=True,
                                    name=f"brushwork-batch-{d}") for d in self.devices]
        for t in threads:
            t.start()
        running = len(threads)
        try:
            while running:
                try:
                    item = done.get(timeout=0.2)  # a timeout, so Ctrl-C reaches this thread
                except queue.Empty:
                    continue
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            stop.set()
            for t in threads:
                t.join()


def local_devices() -> list[str]:
    """One worker per CUDA GPU where there are several; else none named (one worker,
    each row's device setting decides)."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(n)] if n > 1 else []


def run(batch: Batch, backend: Backend | None = None, *, force: bool = False,
        progress: Progress | None = None, on_row: Callable[[Row], None] | None = None) -> Batch:
    """Paint the batch's pending rows (after :func:`check`) with ``backend`` (here by
    default), writing each picture atomically as it arrives, with its settings, inputs and
    where it ran inside, and ``index.json`` as they finish (at most once a second, and at
    the end).  A failed picture is recorded with
    its error and the others go on.  Ctrl-C raises :class:`BatchInterrupted` once the
    index says which rows finished; a rerun then paints the rest."""
    backend = backend or LocalBackend()
    batch.backend = backend.describe()
    batch.interrupted = False
    todo = [row for row in batch.rows if row.state == PENDING]
    batch.directory.mkdir(parents=True, exist_ok=True)
    write_index(batch)
    written = time.monotonic()
    try:
        for row, outcome in backend.paint(batch, todo, progress):
            record(batch, row, outcome, force=force)
            # Each picture carries its own record, so the index may lag a little: it is
            # rewritten whole, which for a batch of thousands on many machines would
            # otherwise cost the driver more than the pictures do.
            if time.monotonic() - written >= INDEX_EVERY_S:
                write_index(batch)
                written = time.monotonic()
            if on_row is not None:
                on_row(row)
    except KeyboardInterrupt:
        for row in todo:
            if row.state == RUNNING:
                row.state = INTERRUPTED
        batch.interrupted = True
        raise BatchInterrupted(batch) from None
    except BaseException as e:  # the index must not leave a row "running" for ever
        for row in todo:
            if row.state == RUNNING:
                row.state = FAILED
                row.error = " ".join(f"the batch stopped: {type(e).__name__}: {e}".split())
        raise
    finally:
        write_index(batch)
    return batch


def record(batch: Batch, row: Row, outcome: Outcome, *, force: bool = False) -> None:
    """Write a finished row's picture (or note its error) and update the row."""
    row.ran_on = outcome.ran_on
    result = outcome.result
    if result is None:
        row.state, row.error = FAILED, " ".join((outcome.error or "failed").split())
        return
    # The same metadata whichever backend painted it: the paths and settings the row asked
    # for (a worker may have read the inputs from bytes, or its own copy of a model file).
    result.inputs = {"content": batch.name_of(row.content),
                     "style": [batch.name_of(s) for s in row.styles]}
    result.settings = batch.recorded_settings(row)
    path = batch.path_of(row)
    try:
        # Checked before painting too; a link made in the folder meanwhile is refused here.
        lands = Path(os.path.realpath(path))
        if not lands.is_relative_to(os.path.realpath(batch.directory)):
            raise BrushworkError(f"'{row.output}' now leads outside the output folder, to "
                                 f"'{lands}'")
        path.parent.mkdir(parents=True, exist_ok=True)
        result.save(path, force=force,
                    extra={"batch": {"digests": row.digests, "ran_on": outcome.ran_on,
                                     "row": row.number}})
    except (BrushworkError, OSError, ValueError) as e:
        row.state, row.error = FAILED, " ".join(f"could not write the picture: {e}".split())
        return
    row.state, row.error = DONE, None
    row.losses, row.elapsed = dict(result.losses), result.elapsed


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch; ``.batch`` says which rows finished."""

    def __init__(self, batch: Batch) -> None:
        super().__init__("interrupted")
        self.batch = batch
