"""One job: what was asked, where it stands, and its JSON (the one serialiser).

A job waiting or running lives in memory (:class:`Job`, updated by the worker); an
ended one is a row of the store, read back into a :class:`Job` by :func:`from_row`, so
the page and the API see one shape, :func:`job_json`, whichever it is.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("done", "failed", "cancelled", "interrupted")
# What a job makes: "picture" = one painted photo (stylize); "clip" = a painted video
# (clips.py: stylize_video); "plan" = several photos x several paintings (x strengths), a
# brushwork.batch into a folder (plans.py).  The worker has one runner per kind, and the
# queue one way to check a stored job of each kind again at a restart.
KINDS = ("picture", "clip", "plan")


@dataclass
class Job:
    id: str
    content: str
    styles: list[str]
    options: dict[str, Any]  # as the request gave them (model by name)
    run_options: dict[str, Any]  # what stylize gets
    total: int
    masks: list[str] | None = None  # upload ids: each painting's region over the photo
    kind: str = "picture"  # one of KINDS
    created: float = field(default_factory=time.time)
    state: str = "queued"
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    step: int = 0
    scale: int | None = 0
    scales: int | None = 1
    size: tuple[int, int] | None = None
    losses: dict[str, float] = field(default_factory=dict)
    elapsed: float | None = 0.0
    progress: float | None = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    settings: dict[str, Any] | None = None  # the full settings of a finished run
    # What a job of another kind reports beyond a picture's fields (frames painted, a
    # plan's rows ...): sent as it is in the JSON, and stored when the job ends.
    detail: dict[str, Any] = field(default_factory=dict)
    preview: bytes | None = None  # the latest picture, JPEG
    preview_version: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)


def from_row(row: dict[str, Any]) -> Job:
    """An ended (or stored) job as the store keeps it; without its history when the row
    was read without one."""
    history = row.get("history") or []
    done = row["state"] == "done"
    return Job(
        row["id"], row["content"], row["styles"], row["options"], {}, row["total"],
        masks=row.get("masks"), kind=row.get("kind") or "picture",
        created=row["created"], state=row["state"], started=row["started"],
        finished=row["finished"], error=row["error"],
        step=history[-1]["step"] if history else (row["total"] if done else 0),
        scale=history[-1]["scale"] if history else None, scales=None,
        size=(row["width"], row["height"]) if row.get("width") else None,
        losses=row["losses"] or {}, elapsed=row["elapsed"], progress=1.0 if done else None,
        history=history, settings=row.get("settings"), detail=row.get("detail") or {})


def job_json(job: Job, *, place: int | None, result: bool,
             history: bool = False) -> dict[str, Any]:
    """The job as the API and the event streams send it.

    ``place``: 0 = running, 1 = next, ...; None when not waiting.  ``result``: whether
    its finished picture can be downloaded.  The caller holds whatever lock guards
    ``job``.
    """
    out: dict[str, Any] = {
        "id": job.id, "kind": job.kind, "state": job.state, "place": place,
        "created": job.created, "started": job.started, "finished": job.finished,
        "content": job.content, "styles": job.styles, "masks": job.masks,
        "options": job.options,
        "error": job.error, "step": job.step, "total": job.total,
        "progress": job.progress, "scale": job.scale, "scales": job.scales,
        "size": list(job.size) if job.size else None, "losses": job.losses,
        "elapsed": job.elapsed, "eta": eta(job), "preview": job.preview_version,
        "result": result, "settings": job.settings, "detail": job.detail,
    }
    if history:
        out["history"] = list(job.history)
    return out


def eta(job: Job) -> float | None:
    """Seconds left for a running job, from its progress so far; None until it is known."""
    if job.state != "running" or not job.progress or job.progress < 0.02 or not job.elapsed:
        return None
    return job.elapsed * (1 - job.progress) / job.progress
