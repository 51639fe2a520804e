"""The job queue: jobs wait their turn, in order, for the one worker (worker.py).

States: queued -> running -> done | failed | cancelled | interrupted (the studio
stopped).  Every change of state goes through :class:`JobQueue`, which commits it to
the store and only then announces it (events.py), so a stop loses nothing that
finished and no page hears of a state the store does not hold.  The running job's
loss history is saved as it goes, in batches (every ``history_interval`` seconds and
with every new preview), so a crash loses at most the points since the last batch.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from brushwork.engine.pyramid import count_steps
from brushwork.engine.result import Iterate, Result
from brushwork.io.weights import SOURCES, load_weights
from brushwork.studio.events import Broker, EventPublisher
from brushwork.studio.job import Job, job_json
from brushwork.studio.options import (
    MAX_STYLES,
    Limits,
    OptionsError,
    check_options,
    check_pictures,
)
from brushwork.studio.store import ACTIVE, Store, new_id, valid_id


class QueueFull(Exception):
    """Too many jobs waiting (HTTP 429)."""


class JobQueue:
    """Queued jobs and the running one, their state changes, and their JSON."""

    def __init__(self, store: Store, broker: Broker, *, models: dict[str, str],
                 default_model: str, device: str = "auto", limits: Limits | None = None,
                 cache: Any = None, event_interval: float = 0.1,
                 history_interval: float = 2.0) -> None:
        self.store = store
        self.models = models
        self.default_model = default_model
        self.device = device
        self.limits = limits or Limits()
        self.cache = cache
        self.events = EventPublisher(broker, self.describe, interval=event_interval)
        self.history_interval = history_interval
        self._saved = 0  # how many of the running job's points the store holds
        self._saved_at = 0.0  # when the last of them were saved (monotonic)
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[Job] = deque()
        self._running: Job | None = None
        self._stopping = False
        self._archs: dict[str, str] = {}
        # How a stored job of each kind is checked again and rebuilt at a restart.
        self.rebuilders: dict[str, Callable[[dict[str, Any]], Job]] = {
            "picture": lambda row: self.prepare(row["content"], row["styles"],
                                                row["options"], row.get("masks"))}

    @property
    def stopping(self) -> bool:
        """True once the studio began to stop: no new job starts or is accepted."""
        return self._stopping

    # -- requests ------------------------------------------------------------------------

    def submit(self, content: Any, styles: Any, options: Any, masks: Any = None) -> Job:
        """Queue a job; raises OptionsError for a request the studio refuses."""
        return self.enqueue(self.prepare(content, styles, options, masks))

    def enqueue(self, job: Job) -> Job:
        """Queue a job :meth:`prepare` made (and the caller checked further)."""
        with self._lock:
            if self._stopping:
                raise OptionsError("the studio is shutting down")
            if len(self._queue) >= self.limits.max_queued:
                raise QueueFull(f"{len(self._queue)} jobs are waiting already; try later")
            self.store.add_job({"id": job.id, "kind": job.kind, "state": "queued",
                                "created": job.created, "content": job.content,
                                "styles": job.styles, "masks": job.masks, "options": job.options,
                                "total": job.total})
            self._queue.append(job)
            self._wake.notify_all()
        self.events.changed(job)
        return job

    def idle(self) -> bool:
        """Nothing running and nothing waiting: the device is free to be measured."""
        with self._lock:
            return self._running is None and not self._queue

    def prepare(self, content: Any, styles: Any, options: Any, masks: Any = None) -> Job:
        """The job a request asks for, checked but not queued; raises OptionsError.

        ``masks``: None, or one upload id per painting, each a greyscale mask over the
        photo (white = that painting; black everywhere = the photo kept)."""
        if not isinstance(content, str) or not valid_id(content):
            raise OptionsError("content must be an upload id")
        if not isinstance(styles, list) or not 1 <= len(styles) <= MAX_STYLES or \
                not all(isinstance(s, str) and valid_id(s) for s in styles):
            raise OptionsError(f"styles must be a list of 1 to {MAX_STYLES} upload ids")
        if masks is not None and (
                not isinstance(masks, list) or len(masks) != len(styles)
                or not all(isinstance(m, str) and valid_id(m) for m in masks)):
            raise OptionsError("masks must be a list of upload ids, one per painting")
        rows = {}
        for upload_id in [content, *styles, *(masks or [])]:
            row = self.store.upload(upload_id)
            if row is None or self.store.upload_file(upload_id) is None:
                raise OptionsError(f"no upload with id {upload_id!r}")
            rows[upload_id] = row
        check_pictures(rows[content], [rows[s] for s in styles],
                       [rows[m] for m in masks or []], max_pixels=self.limits.max_pixels)
        opts, settings = check_options(options, models=self.models,
                                       default_model=self.default_model, limits=self.limits,
                                       n_styles=len(styles), arch_of=self.arch_of)
        run_options = settings.to_dict() | {"model": self.models[opts["model"]],
                                            "device": self.device,
                                            "max_pixels": self.limits.max_pixels}
        if masks:
            run_options["style_masks"] = [str(self.store.upload_file(m)) for m in masks]
        up = rows[content]
        total = count_steps(settings, (up["width"], up["height"]))
        return Job(new_id(), content, list(styles), opts, run_options, total,
                   masks=list(masks) if masks else None)

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False if it is not active."""
        with self._lock:
            if self._running is not None and self._running.id == job_id:
                self._running.cancel.set()  # the worker stops at its next step
                return True
            for job in self._queue:
                if job.id == job_id:
                    self._queue.remove(job)
                    break
            else:
                return False
        self.finish(job, "cancelled")
        self._publish_places()
        return True

    def arch_of(self, model: str) -> str:
        """The network (vgg16 or vgg19) of a model name a request may use."""
        target = self.models[model]
        if model not in self._archs:
            if target in SOURCES:
                self._archs[model] = SOURCES[target].arch
            else:  # an operator's file: its tensors say (read once, kept for the run)
                weights = self.cache.weights(target) if self.cache else load_weights(target)
                self._archs[model] = weights.arch
        return self._archs[model]

    # -- reading -------------------------------------------------------------------------

    def live(self, job_id: str) -> Job | None:
        """The job if it is waiting or running; an ended job is read from the store."""
        with self._lock:
            if self._running is not None and self._running.id == job_id:
                return self._running if self._running.state == "running" else None
            return next((j for j in self._queue if j.id == job_id), None)

    def active(self) -> list[Job]:
        with self._lock:
            return ([self._running] if self._running else []) + list(self._queue)

    def place(self, job: Job) -> int | None:
        """0 = running, 1 = next, ...; None when not waiting."""
        with self._lock:
            if job is self._running:
                return 0
            for i, j in enumerate(self._queue):
                if j is job:
                    return i + 1
        return None

    def describe(self, job: Job, *, history: bool = False) -> dict[str, Any]:
        """A job in memory as JSON (:func:`brushwork.studio.job.job_json`)."""
        with self._lock:
            place = self.place(job) if job.state in ACTIVE else None
            return job_json(job, place=place, history=history, result=job.state == "done"
                            and self.store.result_file(job.id, job.kind).is_file())

    # -- the worker's side -----------------------------------------------------------------

    def next_job(self) -> Job | None:
        """Wait for the next job and mark it running; None once the studio is stopping."""
        with self._lock:
            while not self._queue and not self._stopping:
                self._wake.wait()
            if self._stopping:
                return None
            job = self._queue.popleft()
            self._running = job
            job.state = "running"
            job.started = time.time()
            self._saved, self._saved_at = 0, time.monotonic()
        self.store.update_job(job.id, state="running", started=job.started)
        self._publish_places()
        return job

    def step(self, job: Job, it: Iterate, preview: bytes | None) -> None:
        """Record one evaluation of the running job (and a new preview, if given); save
        the history's new points when a batch is due."""
        point = {"step": it.step, "scale": it.scale, **it.losses}
        now = time.monotonic()
        with self._lock:
            # A resumed run goes on from its checkpoint's step (a fresh one from 1): the
            # points the last run recorded past it are painted again.
            while job.history and job.history[-1]["step"] >= it.step:
                job.history.pop()
            self._saved = min(self._saved, len(job.history))
            job.step, job.total, job.scale, job.scales = it.step, it.total, it.scale, it.scales
            job.size, job.losses = it.size, dict(it.losses)
            job.elapsed, job.progress = it.elapsed, it.progress
            job.history.append(point)
            if preview is not None:
                job.preview = preview
                job.preview_version += 1
            unsaved = []
            if preview is not None or now - self._saved_at >= self.history_interval:
                unsaved = job.history[self._saved:]
                self._saved, self._saved_at = len(job.history), now
        if unsaved:
            self.store.add_points(job.id, unsaved)
        self.events.progress(job, point, now=preview is not None)

    def show(self, job: Job, preview: bytes) -> None:
        """A new preview of the running job between its steps (a clip's finished frame),
        announced now."""
        with self._lock:
            job.preview = preview
            job.preview_version += 1
        self.events.changed(job)

    def painted(self, job: Job, result: Result, preview: bytes) -> None:
        """The run ended with ``result``, whose picture the store now holds."""
        with self._lock:
            job.preview = preview
            job.preview_version += 1
            job.losses = dict(result.losses)
            job.elapsed = result.elapsed
            job.progress = 1.0
        self.finish(job, "done", settings=result.settings, size=result.image.size)

    def finish(self, job: Job, state: str, *, error: str | None = None,
               settings: dict | None = None, size: tuple[int, int] | None = None) -> None:
        """End a job: its row is committed before anyone hears of it."""
        with self._lock:
            job.state = state
            job.error = error
            job.finished = time.time()
            if settings is not None:
                job.settings = dict(settings, model=job.options["model"])  # a name, not a path
            if size is not None:
                job.size = size
            history = list(job.history)
        fields: dict[str, Any] = {"state": state, "finished": job.finished, "error": error,
                                  "losses": job.losses or None, "history": history,
                                  "elapsed": job.elapsed}
        if job.settings is not None:
            fields["settings"] = job.settings
        if job.detail:
            fields["detail"] = job.detail
        if size is not None:
            fields["width"], fields["height"] = size
        self.store.update_job(job.id, **fields)
        self.events.changed(job)

    def release(self, job: Job) -> None:
        """The worker is done with ``job`` (whatever its end): the next one moves up."""
        with self._lock:
            if self._running is job:
                self._running = None
        self._publish_places()

    # -- stopping --------------------------------------------------------------------------

    def close(self) -> None:
        """Accept no more jobs, start no more, and tell the running one to stop."""
        with self._lock:
            self._stopping = True
            self._wake.notify_all()

    def leave_for_next_start(self) -> None:
        """After the worker stopped: the job it still ran (inside one long evaluation) and
        the queued ones stay queued in the store, for the next start to go on with."""
        with self._lock:
            left = list(self._queue)
            self._queue.clear()
            if self._running is not None:
                left.insert(0, self._running)
        for job in left:
            self.suspend(job)

    def suspend(self, job: Job) -> None:
        """The studio stopped ``job``: queued again in the store, with its history (its
        checkpoint, if it ran long enough to save one, is where the next start resumes)."""
        with self._lock:
            job.state = "queued"
            history = list(job.history)
        self.store.update_job(job.id, state="queued", history=history)
        self.events.changed(job)

    def resume(self, row: dict[str, Any]) -> Job:
        """Queue again a job the last run of the studio left unfinished (its store row),
        checked as a new request would be; raises OptionsError when it no longer can be
        (an upload deleted, a network no longer offered)."""
        kind = row.get("kind") or "picture"
        if kind not in self.rebuilders:
            raise OptionsError(f"this studio does not run jobs of kind {kind!r}")
        job = self.rebuilders[kind](row)
        job.id, job.created = row["id"], row["created"]
        job.history = list(row.get("history") or [])
        with self._lock:
            self._queue.append(job)
            self._wake.notify_all()
        self.events.changed(job)
        return job

    def _publish_places(self) -> None:
        for job in self.active():
            self.events.changed(job)
