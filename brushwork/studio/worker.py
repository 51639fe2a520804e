"""The worker: ONE thread that paints the queue's jobs, in order, with stylize.

It takes the next job from the :class:`~brushwork.studio.job_queue.JobQueue`, reports each
evaluation back to it (with a JPEG preview every ``preview_interval`` seconds), writes
the finished picture atomically into the store, and turns every way a run can fail
into a failed job with a one-line reason; it never dies of a job.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from brushwork.engine.painter import stylize
from brushwork.engine.result import Iterate, Result
from brushwork.errors import BrushworkError, out_of_memory
from brushwork.studio.job import Job
from brushwork.studio.job_queue import JobQueue
from brushwork.studio.options import MEMORY_ADVICE, absent_weights
from brushwork.studio.store import Store
from brushwork.studio.uploads import thumbnail_jpeg

# How often a running job saves its state: a restart loses at most this much painting.
CHECKPOINT_EVERY = 60.0


class JobCancelled(Exception):
    """Raised from the callback to stop a run the user cancelled."""


class JobInterrupted(KeyboardInterrupt):
    """Raised from the callback to stop a run because the studio is shutting down: a
    KeyboardInterrupt, so that the painter saves the run's checkpoint first, as on
    Ctrl-C, and the next start goes on from it."""


class Worker:
    """The thread that runs the queue's jobs one at a time."""

    def __init__(self, queue: JobQueue, store: Store, *, cache: Any = None,
                 preview_interval: float = 0.5, checkpoint_every: float = CHECKPOINT_EVERY,
                 log: Callable[[str], None] | None = None) -> None:
        self.queue = queue
        self.store = store
        self.cache = cache
        self.preview_interval = preview_interval
        self.checkpoint_every = checkpoint_every
        self.log = log or (lambda m: print(m, file=sys.stderr))
        self._thread: threading.Thread | None = None
        # One runner per job kind (brushwork.studio.job.KINDS): each paints the job and
        # ends it through the queue (painted/finish/suspend), whatever happens.
        self.runners: dict[str, Callable[[Job], None]] = {"picture": self._run_picture}

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="brushwork-studio-worker",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop: the running job saves its checkpoint, and it and the queued ones are left
        queued for the next start (:meth:`JobQueue.leave_for_next_start`)."""
        self.queue.close()
        if self._thread is not None:
            self._thread.join(timeout)
        self.queue.leave_for_next_start()

    def _work(self) -> None:
        while (job := self.queue.next_job()) is not None:
            try:
                self.runners[job.kind](job)
            except Exception:  # never let the worker die: report and go on
                self.log("brushwork studio: internal error in job " + job.id + "\n"
                         + traceback.format_exc())
                self.queue.finish(job, "failed", error="internal error; see the studio's console")
            finally:
                self.queue.release(job)

    def _run_picture(self, job: Job) -> None:
        files = [self.store.upload_file(u) for u in (job.content, *job.styles,
                                                      *(job.masks or []))]
        if None in files:
            self.queue.finish(job, "failed", error="an uploaded image is no longer stored")
            return
        content, *styles = [f for f in files if f is not None][:1 + len(job.styles)]
        # The picture records the uploads by id and name: never this machine's paths.
        inputs = {"content": upload_ref(self.store, job.content),
                  "style": [upload_ref(self.store, s) for s in job.styles]}
        self.paint(job, lambda **run: stylize(content, styles, **run, **job.run_options),
                   inputs)

    def paint(self, job: Job, run: Callable[..., Result], inputs: dict[str, Any]) -> None:
        """Paint ``job`` with ``run`` (stylize, or what calls it), given the callback and
        checkpoint keywords; save its picture and end the job, whichever way it ends.

        ``inputs``: what the saved picture records as its inputs."""
        missing = absent_weights(job.options["model"], job.run_options["model"])
        if missing is not None:  # removed since the job was queued: never fetched from here
            self.queue.finish(job, "failed", error=missing)
            return
        last_preview = 0.0

        def on_step(it: Iterate) -> None:
            nonlocal last_preview
            if job.cancel.is_set():
                raise JobCancelled()
            if self.queue.stopping:
                raise JobInterrupted()
            now = time.monotonic()
            preview = None
            if it.step == 1 or it.step == it.total or \
                    now - last_preview >= self.preview_interval:
                preview, last_preview = _jpeg(it.image()), now
            self.queue.step(job, it, preview)

        # Saved every checkpoint_every seconds and when the studio stops; a job the last
        # run left unfinished goes on from it (brushwork.io.checkpoint, as --resume does).
        checkpoint = self.store.checkpoint_path(job.id)
        try:
            result = run(callback=on_step, cache=self.cache, checkpoint=checkpoint,
                         checkpoint_every=self.checkpoint_every, resume=checkpoint.is_file())
        except KeyboardInterrupt:  # JobInterrupted, or the painter's Interrupted after it
            self.queue.suspend(job)
            return
        except JobCancelled:
            _remove(checkpoint)
            self.queue.finish(job, "cancelled")
            return
        except BrushworkError as e:  # bad image, diverged (NaN), bad weights ...
            _remove(checkpoint)
            self.queue.finish(job, "failed", error=self._clean(str(e)))
            return
        except (MemoryError, RuntimeError) as e:
            oom = out_of_memory(e, advice=MEMORY_ADVICE)
            if oom is None:
                raise
            _remove(checkpoint)
            self.queue.finish(job, "failed", error=str(oom))
            return

        # The model by the name the request used, not its path here.
        result.inputs = inputs
        result.settings = dict(result.settings, model=job.options["model"])
        if job.masks:  # the masks' upload ids, not where this machine keeps them
            result.settings["style_masks"] = list(job.masks)
        result.save(self.store.result_path(job.id), force=True)  # atomic: temp file renamed
        self.store.write_atomic(self.store.result_thumb(job.id), thumbnail_jpeg(result.image))
        self.queue.painted(job, result, _jpeg(result.image))

    def _clean(self, message: str) -> str:
        return clean_message(self.store, message)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def clean_message(store: Store, message: str) -> str:
    """Error text without this machine's data folder in it."""
    return message.replace(str(store.dir) + "/", "")


def upload_ref(store: Store, upload_id: str) -> dict[str, Any]:
    """An input as a result records it: the upload's id and the name it was sent with."""
    row = store.upload(upload_id)
    return {"upload": upload_id, "name": row["name"] if row else None}


def _jpeg(image: Any, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
