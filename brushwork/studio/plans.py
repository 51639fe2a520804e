"""Plans: several photos x several paintings (x strengths) as one studio job.

A plan is a :mod:`brushwork.batch` (the same planning, check, painting and records as
``brushwork batch``) whose folder is ``DATA/results/ID/``, painted by the studio's one
worker, one picture at a time, with the studio's network cache:

    POST /api/plans                 {"photos": [id, ...], "styles": [id, ...],
                                     "strengths": [s, ...] (optional), "options": {...}}
    POST /api/plans/estimate        what it would need, without queueing it
    POST /api/jobs/{id}/rerun       paint again what is missing, failed or changed
    GET  /api/jobs/{id}/sheet       the contact sheet (PNG);  /index: index.json
    GET  /api/jobs/{id}/pictures/{n}  picture n (1-based, the plan's order)
    GET  /api/jobs/{id}/zip         the pictures, index.json and sheet.png as one ZIP

In the jobs table a plan keeps the table's shape: ``content`` is its first photo,
``styles`` its paintings, and ``options`` the checked picture options with its lists
under ``"plan"`` (``{"photos": [...], "strengths": [...]}``).  Its ``detail`` reports
every picture's state and how many this run painted, skipped and failed.

A stop (the studio shutting down) suspends the plan; the next start runs it again and
the batch's check skips the pictures already painted with the same settings and inputs
(by their digests): only the rest are painted.  A rerun does the same for an ended plan.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import re
import threading
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse

from brushwork.batch import (
    DONE,
    FAILED,
    INDEX,
    PENDING,
    RUNNING,
    SHEET,
    SKIPPED,
    Batch,
    BatchInterrupted,
    LocalBackend,
    PlanError,
    Row,
    check,
    run,
    write_index,
    write_sheet,
)
from brushwork.engine.memory.calibration import NotMeasured
from brushwork.engine.memory.forecast import GB, Estimate, format_seconds
from brushwork.engine.painter import estimate_size
from brushwork.engine.pyramid import count_steps
from brushwork.engine.result import Iterate
from brushwork.engine.settings import Settings
from brushwork.errors import BrushworkError
from brushwork.studio.job import TERMINAL, Job
from brushwork.studio.job_queue import JobQueue
from brushwork.studio.options import OptionsError, absent_weights, check_options, check_pictures
from brushwork.studio.routes import enqueue
from brushwork.studio.store import Store, new_id, valid_id
from brushwork.studio.uploads import thumbnail_jpeg
from brushwork.studio.worker import JobCancelled, JobInterrupted, _jpeg, clean_message

KIND = "plan"
MAX_STRENGTHS = 8
PLAN_KEYS = {"photos", "styles", "strengths", "options"}
NAME_PART = 40  # characters of a photo's or painting's name in a picture's file name
ESTIMATE_RETRY_S = 5


# ------------------------------------------------------------------------ the request

def prepare_plan(queue: JobQueue, photos: Any, styles: Any, strengths: Any,
                 options: Any) -> Job:
    """The plan a request asks for, checked but not queued; raises OptionsError naming
    the first problem (one line)."""
    limits = queue.limits
    most = limits.max_plan_pictures
    for what, ids in (("photos", photos), ("styles", styles)):
        if not isinstance(ids, list) or not 1 <= len(ids) <= most or \
                not all(isinstance(i, str) and valid_id(i) for i in ids):
            raise OptionsError(f"{what} must be a list of 1 to {most} upload ids")
        if len(set(ids)) != len(ids):
            raise OptionsError(f"{what} lists an upload twice")
    if strengths is not None:
        if not isinstance(strengths, list) or not 1 <= len(strengths) <= MAX_STRENGTHS or \
                not all(isinstance(s, (int, float)) and not isinstance(s, bool)
                        and math.isfinite(s) for s in strengths):
            raise OptionsError(f"strengths must be a list of 1 to {MAX_STRENGTHS} numbers")
        if len(set(strengths)) != len(strengths):
            raise OptionsError("strengths lists a value twice")
        if isinstance(options, dict) and "strength" in options:
            raise OptionsError("give strengths or options.strength, not both")
    count = len(photos) * len(styles) * len(strengths or [None])
    if count > most:
        raise OptionsError(f"the plan has {len(photos)} photos x {len(styles)} paintings"
                           + (f" x {len(strengths)} strengths" if strengths else "")
                           + f" = {count} pictures, over this studio's limit of {most}")
    uploads = {}
    for upload_id in [*photos, *styles]:
        row = queue.store.upload(upload_id)
        if row is None or queue.store.upload_file(upload_id) is None:
            raise OptionsError(f"no upload with id {upload_id!r}")
        uploads[upload_id] = row
    for photo in photos:
        check_pictures(uploads[photo], [uploads[s] for s in styles], [],
                       max_pixels=limits.max_pixels)
    if isinstance(options, dict) and "plan" in options:
        raise OptionsError("unknown or server-only option 'plan'")
    opts, settings = check_options(options, models=queue.models,
                                   default_model=queue.default_model, limits=limits,
                                   n_styles=1, arch_of=queue.arch_of)
    per_strength = {None: settings}
    for s in strengths or []:
        try:
            _, per_strength[s] = check_options(dict(opts, strength=s), models=queue.models,
                                               default_model=queue.default_model,
                                               limits=limits, n_styles=1,
                                               arch_of=queue.arch_of)
        except OptionsError as e:
            raise OptionsError(f"strength {s:g}: {e}") from None
    total = sum(count_steps(per_strength[s], (uploads[p]["width"], uploads[p]["height"]))
                for p in photos for s in (strengths or [None]))
    # The batch's options as the request gave them (a row's strength then sets the knobs
    # it implies), the model as stylize gets it, and the server's own settings.
    run_options = Settings.normalise(opts) | {"model": queue.models[opts["model"]],
                                             "device": queue.device,
                                             "max_pixels": limits.max_pixels}
    plan = {"photos": list(photos), "strengths": list(strengths) if strengths else None}
    job = Job(new_id(), photos[0], list(styles), dict(opts, plan=plan), run_options, total,
              kind=KIND)
    job.detail = initial_detail(queue.store, job)
    return job


def rebuild(queue: JobQueue, row: dict[str, Any]) -> Job:
    """A stored plan checked again as a new request would be (a restart, a rerun)."""
    options = dict(row["options"])
    plan = options.pop("plan", None) or {}
    return prepare_plan(queue, plan.get("photos"), row["styles"], plan.get("strengths"),
                        options)


def plan_lists(job: Job) -> tuple[list[str], list[str], list[float | None]]:
    plan = job.options["plan"]
    return plan["photos"], job.styles, plan["strengths"] or [None]


def initial_detail(store: Store, job: Job) -> dict[str, Any]:
    """Every picture pending: the rows as the page lists them."""
    photos, styles, strengths = plan_lists(job)
    names = {u: _upload_name(store, u) for u in [*photos, *styles]}
    rows = [{"row": n, "photo": p, "photo_name": names[p], "style": s,
             "style_name": names[s], "strength": k, "state": PENDING, "output": None,
             "error": None}
            for n, (p, s, k) in enumerate(((p, s, k) for p in photos for s in styles
                                           for k in strengths), 1)]
    return {"rows": rows, "total": len(rows), "done": 0, "painted": 0, "skipped": 0,
            "failed": 0, "current": None}


# ------------------------------------------------------------------------ the batch

def safe_part(name: str, fallback: str) -> str:
    """A display name as a harmless file-name part: ASCII letters, digits, - and _."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    text = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    text = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")[:NAME_PART].strip("-_")
    return text or fallback


def output_name(number: int, width: int, photo: str, painting: str,
                strength: float | None) -> str:
    """``03-photo--painting--s0.6.png``: the row number first, so two names never meet."""
    name = f"{number:0{width}d}-{safe_part(photo, 'photo')}--{safe_part(painting, 'painting')}"
    if strength is not None:
        name += f"--s{strength:g}"
    return name + ".png"


def build_batch(store: Store, job: Job) -> Batch:
    """The job's batch in ``results/ID/``: its uploads by their stored paths, named in
    its records by their display names (and the model by the name the request used).
    Raises OptionsError when an upload is gone."""
    photos, styles, strengths = plan_lists(job)
    paths: dict[str, str] = {}
    names: dict[str, str] = {job.run_options["model"]: job.options["model"]}
    for upload_id in [*photos, *styles]:
        path = store.upload_file(upload_id)
        if path is None:
            raise OptionsError("an uploaded image is no longer stored")
        paths[upload_id] = str(path)
        names[str(path)] = _upload_name(store, upload_id)
    combos = [(p, s, k) for p in photos for s in styles for k in strengths]
    width = len(str(len(combos)))
    rows = []
    for n, (p, s, k) in enumerate(combos, 1):
        photo, painting = names[paths[p]], names[paths[s]]
        label = f"{photo} x {painting}" + (f", strength {k:g}" if k is not None else "")
        rows.append(Row(n, f"picture {n} ({label})", paths[p], (paths[s],),
                        output_name(n, width, photo, painting, k),
                        {"strength": k} if k is not None else {}))
    return Batch(rows, store.job_dir(job.id), dict(job.run_options), "studio plan",
                 names=names)


def _upload_name(store: Store, upload_id: str) -> str:
    row = store.upload(upload_id)
    return row["name"] if row else "image"


# ------------------------------------------------------------------------ the runner

class PlanRunner:
    """Worker.runners["plan"]: paints a plan's batch and ends the job through the queue."""

    def __init__(self, queue: JobQueue, store: Store, *, cache: Any = None,
                 preview_interval: float = 0.5,
                 log: Callable[[str], None] | None = None) -> None:
        self.queue = queue
        self.store = store
        self.cache = cache
        self.preview_interval = preview_interval
        self.log = log or (lambda m: None)

    def __call__(self, job: Job) -> None:
        try:
            batch = build_batch(self.store, job)
        except OptionsError as e:
            self.queue.finish(job, "failed", error=str(e))
            return
        missing = absent_weights(job.options["model"], job.run_options["model"])
        if missing is not None:
            self.queue.finish(job, "failed", error=missing)
            return
        try:
            # Skips the pictures already there with the same settings and inputs.
            check(batch, cache=self.cache)
        except BrushworkError as e:  # PlanError: every problem, one line each
            problems = e.problems if isinstance(e, PlanError) else [str(e)]
            self.queue.finish(job, "failed", error=clean_message(
                self.store, problems[0] + (f" (and {len(problems) - 1} more problems)"
                                           if len(problems) > 1 else "")))
            return
        todo = [row for row in batch.rows if row.state == PENDING]
        started = time.monotonic()
        finished = 0
        last_preview = 0.0
        self._report(job, batch)

        def on_step(row: Row, it: Iterate) -> None:
            nonlocal last_preview
            if job.cancel.is_set():
                raise JobCancelled()
            if self.queue.stopping:
                raise JobInterrupted()
            if it.step == 1:
                self._report(job, batch, current=row.number)
            now = time.monotonic()
            preview = None
            if it.step == 1 or it.step == it.total or \
                    now - last_preview >= self.preview_interval:
                preview, last_preview = _jpeg(it.image()), now
            # The step counts within the picture (so the loss chart is the picture's);
            # progress and time over the whole plan, for its bar and ETA.
            overall = (finished + it.progress) / max(1, len(todo))
            self.queue.step(job, dataclasses.replace(
                it, progress=overall, elapsed=now - started), preview)

        def on_row(row: Row) -> None:
            nonlocal finished
            finished += 1
            self._report(job, batch)

        backend = LocalBackend(devices=[], cache=self.cache, on_step=on_step)
        try:
            run(batch, backend, on_row=on_row)
        except BatchInterrupted:  # the studio stops: the next start paints the rest
            self._report(job, batch)
            self.queue.suspend(job)
            return
        except JobCancelled:
            self._finish_records(job, batch)
            self.queue.finish(job, "cancelled")
            return
        self._finish_records(job, batch)
        counts = batch.counts()
        failed = [row for row in batch.rows if row.state == FAILED]
        if failed and len(failed) == len(batch.rows):
            self.queue.finish(job, "failed", error=clean_message(
                self.store, f"every picture failed; the first: {failed[0].error}"))
            return
        error = None
        if failed:
            error = clean_message(self.store, f"{len(failed)} of {len(batch.rows)} pictures "
                                  f"failed; picture {failed[0].number}: {failed[0].error}")
        self.log(f"brushwork studio: plan {job.id}: {counts}")
        self.queue.finish(job, "done", error=error)

    def _report(self, job: Job, batch: Batch, current: int | None = None) -> None:
        """The rows' states into the job's detail (a new dict: the JSON of the job may be
        being written meanwhile), saved and announced."""
        rows = []
        old = {r["row"]: r for r in job.detail.get("rows", [])}
        for row in batch.rows:
            entry = dict(old.get(row.number, {}))
            entry.update(row=row.number, state=row.state, error=row.error,
                         output=row.output if row.state in (DONE, SKIPPED) else None)
            rows.append(entry)
        counts = batch.counts()
        current = current if current is not None else next(
            (row.number for row in batch.rows if row.state == RUNNING), None)
        job.detail = {"rows": rows, "total": len(rows),
                      "done": counts.get(DONE, 0) + counts.get(SKIPPED, 0),
                      "painted": counts.get(DONE, 0), "skipped": counts.get(SKIPPED, 0),
                      "failed": counts.get(FAILED, 0), "current": current}
        self.store.update_job(job.id, detail=job.detail)
        self.queue.events.changed(job)

    def _finish_records(self, job: Job, batch: Batch) -> None:
        """index.json (run wrote it), the contact sheet and the gallery's thumbnail of it."""
        self._report(job, batch)
        try:
            write_index(batch)
            sheet = write_sheet(batch)
            from PIL import Image

            with Image.open(sheet) as im:
                self.store.write_atomic(self.store.result_thumb(job.id), thumbnail_jpeg(im))
        except (BrushworkError, OSError) as e:
            self.log(f"brushwork studio: plan {job.id}: no contact sheet ({e})")


# ------------------------------------------------------------------------ the routes

async def _plan_request(request: Request) -> dict[str, Any]:
    """The JSON object of a plan request, or an HTTP error (one line)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "send the plan as application/json")
    try:
        data = json.loads(await request.body())
    except ValueError:
        raise HTTPException(400, "malformed JSON") from None
    except RecursionError:
        raise HTTPException(400, "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise HTTPException(422, "the plan must be a JSON object with photos, styles, "
                                 "strengths, options")
    unknown = set(data) - PLAN_KEYS
    if unknown:
        raise HTTPException(422, f"unknown field(s): {', '.join(sorted(unknown))}; "
                                 "expected photos, styles, strengths, options")
    return data


def plan_routes(studio: Any) -> APIRouter:
    """The plan routes over the studio (brushwork.studio.routes.Studio)."""
    router = APIRouter()
    store: Store = studio.store
    queue: JobQueue = studio.queue
    rerunning = threading.Lock()  # one rerun at a time: a plan is never queued twice

    async def prepared(data: dict[str, Any]) -> Job:
        try:
            return await run_in_threadpool(prepare_plan, queue, data.get("photos"),
                                           data.get("styles"), data.get("strengths"),
                                           data.get("options", {}))
        except OptionsError as e:
            raise HTTPException(422, str(e)) from None

    async def forecast(job: Job, *, measure: bool) -> tuple[Estimate, float]:
        """The plan's largest picture's estimate and the seconds of them all; 422 naming
        a picture that would not fit.  Each distinct photo size and strength is sized once,
        from the sizes recorded at upload."""
        photos, styles, strengths = plan_lists(job)
        sizes = {}
        for p in photos:
            up = store.upload(p)
            if up is None:
                raise HTTPException(422, "an uploaded image is no longer stored")
            sizes[p] = (up["width"], up["height"])

        def work() -> tuple[Estimate, float]:
            seen: dict[tuple[tuple[int, int], float | None], Estimate] = {}
            worst: Estimate | None = None
            seconds = 0.0
            for n, (p, _s, k) in enumerate(((p, s, k) for p in photos for s in styles
                                            for k in strengths), 1):
                key = (sizes[p], k)
                if key not in seen:
                    options = dict(job.run_options)
                    if k is not None:
                        options["strength"] = k
                    seen[key] = estimate_size(sizes[p], cache=studio.cache, measure=measure,
                                              **options)
                    if seen[key].peak_bytes > seen[key].budget_bytes:
                        name = _upload_name(store, p)
                        raise OptionsError(
                            f"picture {n} ({name}) would not fit this machine's memory: "
                            + seen[key].describe().removeprefix("estimate: "))
                est = seen[key]
                seconds += est.seconds
                if worst is None or est.peak_bytes > worst.peak_bytes:
                    worst = est
            assert worst is not None
            return worst, seconds

        return await studio.forecasts.in_turn(work)

    @router.post("/api/plans", status_code=201)
    async def create_plan(request: Request) -> dict[str, Any]:
        job = await prepared(await _plan_request(request))
        with contextlib.suppress(NotMeasured):  # as a picture's: the run checks again
            await forecast(job, measure=False)
        return await enqueue(queue, job)

    @router.post("/api/plans/estimate")
    async def estimate_plan(request: Request) -> dict[str, Any]:
        job = await prepared(await _plan_request(request))
        pictures = job.detail["total"]
        try:
            worst, seconds = await forecast(job, measure=queue.idle())
        except NotMeasured:
            return {"estimate": None, "pictures": pictures,
                    "text": f"{pictures} pictures; the estimate comes once the studio is "
                            "free to measure this machine"}
        return {"estimate": {"peak_bytes": round(worst.peak_bytes),
                             "seconds": round(seconds, 3),
                             "budget_bytes": round(worst.budget_bytes)},
                "pictures": pictures,
                "text": f"{pictures} pictures, about {format_seconds(seconds)}, peak "
                        f"{worst.peak_bytes / GB:.1f} GB"}

    @router.post("/api/jobs/{job_id}/rerun")
    def rerun(job_id: str) -> dict[str, Any]:
        with rerunning:
            row = store.job(job_id)
            if row is None:
                raise HTTPException(404, "no such job")
            if row.get("kind") != KIND:
                raise HTTPException(409, "only a plan can be rerun")
            if row["state"] not in TERMINAL:
                raise HTTPException(409, f"the plan is {row['state']} already")
            if queue.stopping:
                raise HTTPException(503, "the studio is shutting down")
            if sum(j.state == "queued" for j in queue.active()) >= studio.limits.max_queued:
                raise HTTPException(429, "too many jobs are waiting already; try later")
            try:
                job = rebuild(queue, row)  # checked as a new plan would be
            except OptionsError as e:
                raise HTTPException(422, str(e)) from None
            store.update_job(job_id, state="queued", started=None, finished=None, error=None,
                             history=[], detail=job.detail)
            queue.resume(dict(row, history=[]))
        return studio.job_json(job_id)

    def plan_row(job_id: str) -> dict[str, Any]:
        row = store.job(job_id)
        if row is None or row.get("kind") != KIND:
            raise HTTPException(404, "no such plan")
        return row

    def folder_file(job_id: str, name: str, media: str, what: str) -> Response:
        plan_row(job_id)
        path = store.job_dir(job_id) / name
        if not path.is_file() or path.is_symlink():
            raise HTTPException(404, f"the plan has no {what} yet")
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})

    @router.get("/api/jobs/{job_id}/sheet")
    def sheet(job_id: str) -> Response:
        return folder_file(job_id, SHEET, "image/png", "contact sheet")

    @router.get("/api/jobs/{job_id}/index")
    def index(job_id: str) -> Response:
        return folder_file(job_id, INDEX, "application/json", "index")

    @router.get("/api/jobs/{job_id}/pictures/{number}")
    def picture(job_id: str, number: int) -> Response:
        plan_row(job_id)
        rows = studio.job_json(job_id)["detail"].get("rows", [])
        if not 1 <= number <= len(rows):
            raise HTTPException(404, f"the plan has no picture {number}")
        output = rows[number - 1].get("output")
        # The name the plan gave it (output_name), never a path from the request.
        if not isinstance(output, str) or not OUTPUT_RE.fullmatch(output):
            raise HTTPException(404, f"picture {number} is not painted "
                                     f"({rows[number - 1].get('state')})")
        return FileResponse(store.job_dir(job_id) / output, media_type="image/png",
                            filename=f"brushwork-{job_id}-{output}",
                            content_disposition_type="inline")

    @router.get("/api/jobs/{job_id}/zip")
    def download_zip(job_id: str) -> Response:
        """The plan's pictures, index.json and sheet.png as one ZIP, streamed as it is
        written (stored, not compressed: PNGs are compressed already)."""
        plan_row(job_id)
        folder = store.job_dir(job_id)
        names = [row["output"] for row in studio.job_json(job_id)["detail"].get("rows", [])
                 if isinstance(row.get("output"), str) and OUTPUT_RE.fullmatch(row["output"])]
        files = [folder / n for n in [*names, INDEX, SHEET]
                 if (folder / n).is_file() and not (folder / n).is_symlink()]
        if not names:
            raise HTTPException(404, "the plan has no pictures yet")
        return StreamingResponse(_zip_chunks(files, f"brushwork-{job_id}"),
                                 media_type="application/zip", headers={
                                     "Content-Disposition":
                                         f'attachment; filename="brushwork-{job_id}.zip"'})

    return router


class _Chunks(io.RawIOBase):
    """A write-only stream that hands on what was written since the last take()."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def _zip_chunks(files: list[Path], folder: str) -> Iterator[bytes]:
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in files:
            with path.open("rb") as src, zf.open(f"{folder}/{path.name}", "w",
                                                   force_zip64=True) as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


OUTPUT_RE = re.compile(r"[0-9]+-[A-Za-z0-9_-]+--[A-Za-z0-9_-]+(?:--s[0-9.e+-]+)?\.png")
