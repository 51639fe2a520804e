"""The job queue: jobs wait their turn and ONE worker thread paints them in order.

States: queued -> running -> done | failed | cancelled | interrupted (the studio
stopped).  Each job's picture is written atomically and its row committed as the job
ends, so a stop loses nothing that finished.  Progress goes out through a
:class:`Broker` to every event-stream listener.
"""

from __future__ import annotations

import asyncio
import io
import math
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ..engine import Iterate, stylize
from ..pyramid import count_steps
from ..errors import BrushworkError
from ..settings import Settings
from ..vgg import check_layers
from .gallery import ACTIVE, Store, new_id, valid_id
from .uploads import thumbnail_jpeg

TERMINAL = ("done", "failed", "cancelled", "interrupted")
MAX_STYLES = 8

# Options a web request may set, and the JSON type each must have.  Everything else
# (device, max_pixels, an init *path*, a model *path*) is the operator's to choose.
WEB_OPTIONS: dict[str, str] = {
    "size": "int", "iterations": "int", "strength": "number?", "content_weight": "number?",
    "style_weight": "number?", "photo_detail": "number?",
    "tv_weight": "number", "tv_power": "number", "style_scale": "number",
    "style_weights": "numbers", "preserve_colors": "str", "model": "str", "seed": "int?",
    "optimizer": "str", "learning_rate": "number?", "lr_decay": "number",
    "lr_decay_steps": "int", "history_size": "int", "pooling": "str", "multiscale": "str",
    "min_size": "int?", "init": "str", "content_layers": "strs", "style_layers": "strs",
    "style_layer_weights": "numbers?", "content_norm": "str", "style_norm": "str",
    "size_invariant": "bool", "normalize_gradients": "bool", "stop_tolerance": "number",
}


class OptionsError(ValueError):
    """A job request the studio refuses (HTTP 422)."""


class JobCancelled(Exception):
    """Raised from the callback to stop a run the user cancelled."""


class JobInterrupted(Exception):
    """Raised from the callback to stop a run because the studio is shutting down."""


@dataclass
class Limits:
    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_size: int = 2048  # long side of an output
    max_iterations: int = 5000
    max_queued: int = 100


def _type_ok(kind: str, value: Any) -> bool:
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None:
        return optional
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return number and math.isfinite(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str) and len(value) <= 100
    if kind == "numbers":
        return isinstance(value, list) and 0 < len(value) <= 64 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if kind == "strs":
        return isinstance(value, list) and 0 < len(value) <= 64 and all(
            isinstance(v, str) and len(v) <= 32 for v in value)
    raise AssertionError(kind)


def check_options(options: Any, *, models: dict[str, str], default_model: str,
                  limits: Limits, n_styles: int) -> tuple[dict[str, Any], Settings]:
    """Validate a request's options; return them (model filled in) and the Settings.

    Raises OptionsError naming the first bad option.
    """
    if not isinstance(options, dict):
        raise OptionsError("options must be a JSON object")
    for name, value in options.items():
        if name not in WEB_OPTIONS:
            raise OptionsError(f"unknown or server-only option {name!r}; allowed: "
                               f"{', '.join(sorted(WEB_OPTIONS))}")
        if not _type_ok(WEB_OPTIONS[name], value):
            raise OptionsError(f"{name} has the wrong type: {value!r}")
    opts = dict(options)
    opts.setdefault("model", default_model)
    if opts["model"] not in models:
        raise OptionsError(f"unknown model {opts['model']!r}; choose one of: "
                           f"{', '.join(models)}")
    if opts.get("init", "content") not in ("content", "noise"):
        raise OptionsError("init must be 'content' or 'noise'")
    for name, most in (("size", limits.max_size), ("min_size", limits.max_size),
                       ("iterations", limits.max_iterations)):
        if opts.get(name) is not None and opts[name] > most:
            raise OptionsError(f"{name} {opts[name]} is over this studio's limit of {most}")
    if "style_weights" in opts and len(opts["style_weights"]) != n_styles:
        raise OptionsError(f"style_weights has {len(opts['style_weights'])} values for "
                           f"{n_styles} paintings")
    run_opts = {k: (tuple(v) if isinstance(v, list) else v) for k, v in opts.items()}
    run_opts["model"] = models[opts["model"]]
    try:
        settings = Settings(**run_opts)
        # VGG19's layer names include VGG16's: a name unknown to both is surely wrong.
        check_layers("vgg19", settings.content_layers, "content")
        check_layers("vgg19", settings.style_layers, "style")
    except BrushworkError as e:
        raise OptionsError(str(e)) from None
    return opts, settings


@dataclass
class Job:
    id: str
    content: str
    styles: list[str]
    options: dict[str, Any]  # as the request gave them (model by name)
    run_options: dict[str, Any]  # what stylize gets
    total: int
    created: float = field(default_factory=time.time)
    state: str = "queued"
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    step: int = 0
    scale: int = 0
    scales: int = 1
    size: tuple[int, int] | None = None
    losses: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0
    progress: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    preview: bytes | None = None
    preview_version: int = 0
    unsent: list[dict[str, float]] = field(default_factory=list)  # history not yet in an event
    last_event: float = 0.0
    last_preview: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event)


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


class JobQueue:
    """Queued jobs, run one at a time, in order, on one worker thread."""

    def __init__(self, store: Store, broker: Broker, *, models: dict[str, str],
                 default_model: str, device: str = "auto", limits: Limits | None = None,
                 cache: Any = None, preview_interval: float = 0.5,
                 event_interval: float = 0.1,
                 log: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.broker = broker
        self.models = models
        self.default_model = default_model
        self.device = device
        self.limits = limits or Limits()
        self.cache = cache
        self.preview_interval = preview_interval
        self.event_interval = event_interval
        self.log = log or (lambda m: print(m, file=sys.stderr))
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[Job] = deque()
        self._running: Job | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="brushwork-studio-worker",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker: the running job and the queued ones are marked interrupted."""
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            left = list(self._queue)
            self._queue.clear()
            if self._running is not None:  # still inside one long evaluation
                left.insert(0, self._running)
        for job in left:
            self._finish(job, "interrupted", error="the studio stopped before this job finished")
        self.broker.close()

    def submit(self, content: str, styles: list[str], options: Any) -> Job:
        """Queue a job; raises OptionsError for a request the studio refuses."""
        if not isinstance(content, str) or not valid_id(content):
            raise OptionsError("content must be an upload id")
        if not isinstance(styles, list) or not 1 <= len(styles) <= MAX_STYLES or \
                not all(isinstance(s, str) and valid_id(s) for s in styles):
            raise OptionsError(f"styles must be a list of 1 to {MAX_STYLES} upload ids")
        for upload_id in [content, *styles]:
            if self.store.upload_file(upload_id) is None:
                raise OptionsError(f"no upload with id {upload_id!r}")
        opts, settings = check_options(options, models=self.models,
                                       default_model=self.default_model, limits=self.limits,
                                       n_styles=len(styles))
        run_options = settings.to_dict() | {"model": self.models[opts["model"]],
                                            "device": self.device,
                                            "max_pixels": self.limits.max_pixels}
        up = self.store.upload(content)
        total = count_steps(settings, (up["width"], up["height"]))
        job = Job(new_id(), content, list(styles), opts, run_options, total)
        with self._lock:
            if self._stopping:
                raise OptionsError("the studio is shutting down")
            if len(self._queue) >= self.limits.max_queued:
                raise QueueFull(f"{len(self._queue)} jobs are waiting already; try later")
            self.store.add_job({"id": job.id, "state": "queued", "created": job.created,
                                "content": content, "styles": job.styles, "options": opts,
                                "total": total})
            self._queue.append(job)
            self._wake.notify_all()
        self._publish(job)
        return job

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False if it is not active."""
        with self._lock:
            if self._running is not None and self._running.id == job_id:
                self._running.cancel.set()
                return True
            for job in self._queue:
                if job.id == job_id:
                    self._queue.remove(job)
                    break
            else:
                return False
        self._finish(job, "cancelled")
        self._publish_places()
        return True

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

    def snapshot(self, job: Job, *, history: bool = False) -> dict[str, Any]:
        with self._lock:
            out = {
                "id": job.id, "state": job.state,
                "place": self.place(job) if job.state in ACTIVE else None,
                "created": job.created, "started": job.started, "finished": job.finished,
                "content": job.content, "styles": job.styles, "options": job.options,
                "error": job.error, "step": job.step, "total": job.total,
                "progress": job.progress, "scale": job.scale, "scales": job.scales,
                "size": list(job.size) if job.size else None, "losses": job.losses,
                "elapsed": job.elapsed, "eta": _eta(job), "preview": job.preview_version,
                "result": False,
            }
            if history:
                out["history"] = list(job.history)
        return out

    # -- the worker ----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                self._running = job
                job.state = "running"
                job.started = time.time()
            self.store.update_job(job.id, state="running", started=job.started)
            self._publish_places()
            try:
                self._run(job)
            except Exception:  # never let the worker die: report and go on
                self.log("brushwork studio: internal error in job " + job.id + "\n"
                         + traceback.format_exc())
                self._finish(job, "failed", error="internal error; see the studio's console")
            finally:
                with self._lock:
                    self._running = None
                self._publish_places()

    def _run(self, job: Job) -> None:
        content = self.store.upload_file(job.content)
        styles = [self.store.upload_file(s) for s in job.styles]
        if content is None or None in styles:
            self._finish(job, "failed", error="an uploaded image is no longer stored")
            return

        def on_step(it: Iterate) -> None:
            if job.cancel.is_set():
                raise JobCancelled()
            if self._stopping:
                raise JobInterrupted()
            now = time.monotonic()
            point = {"step": it.step, "scale": it.scale, **it.losses}
            with self._lock:
                job.step, job.total, job.scale, job.scales = it.step, it.total, it.scale, it.scales
                job.size, job.losses = it.size, dict(it.losses)
                job.elapsed, job.progress = it.elapsed, it.progress
                job.history.append(point)
                job.unsent.append(point)
            new_preview = it.step == 1 or it.step == it.total or \
                now - job.last_preview >= self.preview_interval
            if new_preview:
                data = _jpeg(it.image())
                with self._lock:
                    job.preview = data
                    job.preview_version += 1
                job.last_preview = now
            if new_preview or now - job.last_event >= self.event_interval:
                self._publish(job)

        try:
            result = stylize(content, styles, callback=on_step, cache=self.cache,
                             **job.run_options)
        except JobCancelled:
            self._finish(job, "cancelled")
            return
        except JobInterrupted:
            self._finish(job, "interrupted", error="the studio stopped while this job ran")
            return
        except BrushworkError as e:  # bad image, diverged (NaN), bad weights ...
            self._finish(job, "failed", error=self._clean(str(e)))
            return
        except MemoryError:
            self._finish(job, "failed", error="out of memory; try a smaller size")
            return
        except RuntimeError as e:
            if "out of memory" in str(e).lower():
                self._finish(job, "failed", error="out of memory on the device; try a "
                                                  "smaller size")
                return
            raise

        path = self.store.result_path(job.id)
        result.save(path, force=True)  # atomic: a temporary file renamed into place
        self.store.write_atomic(self.store.result_thumb(job.id), thumbnail_jpeg(result.image))
        with self._lock:
            job.preview = _jpeg(result.image)
            job.preview_version += 1
            job.losses = dict(result.losses)
            job.elapsed = result.elapsed
            job.progress = 1.0
        self._finish(job, "done", settings=result.settings, size=result.image.size)

    def _finish(self, job: Job, state: str, *, error: str | None = None,
                settings: dict | None = None, size: tuple[int, int] | None = None) -> None:
        with self._lock:
            job.state = state
            job.error = error
            job.finished = time.time()
            history = list(job.history)
        fields: dict[str, Any] = {"state": state, "finished": job.finished, "error": error,
                                  "losses": job.losses or None, "history": history,
                                  "elapsed": job.elapsed}
        if settings is not None:
            settings = dict(settings, model=job.options["model"])  # a name, not the path
            fields["settings"] = settings
        if size is not None:
            fields["width"], fields["height"] = size
        self.store.update_job(job.id, **fields)  # committed before anyone hears of it
        self._publish(job)

    def _clean(self, message: str) -> str:
        """Error text without this machine's data folder in it."""
        return message.replace(str(self.store.dir) + "/", "")

    def _publish(self, job: Job) -> None:
        event = self.snapshot(job)
        with self._lock:
            event["points"], job.unsent = job.unsent, []
            job.last_event = time.monotonic()
        event["result"] = job.state == "done"
        self.broker.publish(event)

    def _publish_places(self) -> None:
        for job in self.active():
            self._publish(job)


class QueueFull(Exception):
    """Too many jobs waiting (HTTP 429)."""


def _eta(job: Job) -> float | None:
    if job.state != "running" or job.progress < 0.02 or job.elapsed <= 0:
        return None
    return job.elapsed * (1 - job.progress) / job.progress


def _jpeg(image: Any, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
