"""The studio's HTTP routes, one router per resource: the page, uploads, job requests,
jobs, results, events.

Each ``*_routes(studio)`` returns an :class:`~fastapi.APIRouter` over the one
:class:`Studio` (the store, the queue, the broker, the limits and the models offered).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from brushwork._version import __version__
from brushwork.engine.memory.calibration import NotMeasured
from brushwork.engine.memory.forecast import GB, Estimate, format_seconds
from brushwork.engine.painter import estimate_size
from brushwork.errors import BrushworkError
from brushwork.io.images import read_metadata
from brushwork.io.weights import SOURCES
from brushwork.studio.decoder import Decoder
from brushwork.studio.events import Broker, Message, StreamsFull, StreamSlots, encode
from brushwork.studio.job import TERMINAL, Job, from_row, job_json
from brushwork.studio.job_queue import JobQueue, QueueFull
from brushwork.studio.options import Limits, OptionsError, absent_weights, web_defaults
from brushwork.studio.security import BodyTooLarge
from brushwork.studio.store import QuotaFull, Store, UploadInUse
from brushwork.studio.turns import NoTurn, Turns
from brushwork.studio.uploads import UploadError, check_bytes, display_name
from brushwork.studio.worker import clean_message, upload_ref

STATIC = {"studio.js": "text/javascript; charset=utf-8", "studio.css": "text/css; charset=utf-8",
          "index.html": "text/html; charset=utf-8", "clips.js": "text/javascript; charset=utf-8",
          "plans.js": "text/javascript; charset=utf-8", "plans.css": "text/css; charset=utf-8"}
T = TypeVar("T")
KEEPALIVE_S = 15.0
MAX_OFFSET = 10**9  # past SQLite's 64-bit integers an OFFSET overflows (a 500)
JOB_KEYS = frozenset({"content", "styles", "options", "masks"})
ESTIMATE_RETRY_S = 5  # an estimate takes milliseconds, or seconds when it measures


@dataclass
class Studio:
    """What the routes serve from."""

    store: Store
    queue: JobQueue
    broker: Broker
    limits: Limits
    models: dict[str, str]  # name a request may use -> what stylize gets
    default_model: str
    cache: Any = None  # the worker's brushwork.Cache, shared by the estimates
    forecasts: Forecasts = field(init=False)

    def __post_init__(self) -> None:
        self.forecasts = Forecasts(self)

    def job_json(self, job_id: str, *, history: bool = False) -> dict[str, Any]:
        """A job waiting or running (from memory) or ended (from the store); 404 if none."""
        live = self.queue.live(job_id)
        if live is not None:
            return self.queue.describe(live, history=history)
        row = self.store.job(job_id)
        if row is None:
            raise HTTPException(404, "no such job")
        return self.stored_json(row, history=history)

    def stored_json(self, row: dict[str, Any], *, history: bool = False) -> dict[str, Any]:
        job: Job = from_row(row)
        return job_json(job, place=None, history=history, result=job.state == "done"
                        and self.store.result_file(job.id, job.kind).is_file())


def page_routes(studio: Studio) -> APIRouter:
    router = APIRouter()

    def static(name: str) -> Response:
        data = resources.files("brushwork.studio").joinpath("static").joinpath(name)
        return Response(data.read_bytes(), media_type=STATIC[name],
                        headers={"Cache-Control": "no-cache"})

    @router.get("/", include_in_schema=False)
    def index() -> Response:
        return static("index.html")

    @router.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        if name not in STATIC:  # a fixed list: no path is ever built from the request
            raise HTTPException(404, "not found")
        return static(name)

    @router.get("/api/config")
    def config() -> dict[str, Any]:
        listed = []
        for name, target in studio.models.items():
            src = SOURCES.get(target) if name == target else None
            # An absent model is listed, marked, and refused at submit (options.py).
            listed.append({"name": name, "description": src.description if src else
                           "weights file given with --model",
                           "present": absent_weights(name, target) is None})
        limits = studio.limits
        return {"version": __version__, "models": listed,
                "default_model": studio.default_model,
                "defaults": web_defaults(studio.default_model),
                "limits": {"max_upload_bytes": limits.max_upload_bytes,
                           "max_pixels": limits.max_pixels, "max_size": limits.max_size,
                           "max_iterations": limits.max_iterations,
                           "max_queued": limits.max_queued}}

    return router


def upload_routes(studio: Studio) -> APIRouter:
    router = APIRouter()
    store, limits = studio.store, studio.limits
    decoder = Decoder(max_pixels=limits.max_pixels, seconds=limits.decode_seconds,
                      memory_bytes=limits.decode_memory, max_at_once=limits.max_decodes,
                      wait_seconds=limits.decode_wait_seconds)
    decoder.warm()
    quota: dict[str, Any] = {"quota_bytes": limits.upload_quota_bytes,
                             "max_uploads": limits.max_uploads}

    @router.post("/api/upload", status_code=201)
    async def upload(request: Request) -> dict[str, Any]:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HTTPException(415, "send multipart/form-data with the image in a field "
                                     "named 'file'")
        try:
            form = await request.form(max_files=1, max_fields=8, max_part_size=64 * 1024)
        except (HTTPException, BodyTooLarge):
            raise
        except Exception as e:  # the multipart parser's own errors
            raise HTTPException(400, f"malformed multipart body ({type(e).__name__})") from None
        try:
            file = form.get("file")
            if not isinstance(file, UploadFile):
                raise HTTPException(400, "no file in the field named 'file'")
            name = display_name(file.filename)

            def read() -> bytes:  # once a decoder is free: until then the body stays spooled
                file.file.seek(0)
                data = file.file.read(limits.max_upload_bytes + 1)
                check_bytes(data, max_bytes=limits.max_upload_bytes)
                return data

            store.check_quota(0, **quota)  # already full: no need to decode
            # In a bounded process of its own; what is stored is its re-encoding.
            image = await decoder.decode(read)
            row = await run_in_threadpool(
                lambda: store.add_upload(name=name, ext=image.ext, format=image.format,
                                         width=image.width, height=image.height,
                                         grey=image.grey, data=image.data,
                                         thumb=image.thumb, **quota))
        except UploadError as e:
            headers = {"Retry-After": str(e.retry_after)} if e.retry_after else None
            raise HTTPException(e.status, e.message, headers=headers) from None
        except QuotaFull as e:
            raise HTTPException(507, str(e)) from None
        finally:
            await form.close()
        return _upload_json(row)

    @router.get("/api/uploads")
    def list_uploads() -> dict[str, Any]:
        n, total = store.upload_usage()
        return {"uploads": [_upload_json(r) for r in store.uploads()], "count": n,
                "bytes": total, "max_uploads": limits.max_uploads,
                "quota_bytes": limits.upload_quota_bytes}

    @router.get("/api/uploads/{upload_id}")
    def upload_info(upload_id: str) -> dict[str, Any]:
        row = store.upload(upload_id)
        if row is None:
            raise HTTPException(404, "no such upload")
        return _upload_json(row)

    @router.get("/api/uploads/{upload_id}/thumb")
    def upload_thumb(upload_id: str) -> Response:
        if store.upload(upload_id) is None or not store.upload_thumb(upload_id).is_file():
            raise HTTPException(404, "no such upload")
        return FileResponse(store.upload_thumb(upload_id), media_type="image/jpeg")

    @router.get("/api/uploads/{upload_id}/image")
    def upload_image(upload_id: str) -> Response:
        """The stored picture (as re-encoded at upload): the gallery's compare view."""
        path = store.upload_file(upload_id)
        if path is None:
            raise HTTPException(404, "no such upload")
        media = "image/jpeg" if path.suffix == ".jpg" else "image/png"
        return FileResponse(path, media_type=media)

    @router.delete("/api/uploads/{upload_id}")
    def delete_upload(upload_id: str) -> dict[str, Any]:
        try:
            if not store.delete_upload(upload_id):
                raise HTTPException(404, "no such upload")
        except UploadInUse as e:
            raise HTTPException(409, str(e)) from None
        return {"deleted": upload_id}

    return router


async def job_request(request: Request, keys: frozenset[str] = JOB_KEYS) -> dict[str, Any]:
    """The JSON object of a job request (by default content, styles, options, masks:
    ``keys``, those it may have), or an HTTP error."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "send the job as application/json")
    body = await request.body()
    try:
        data = json.loads(body)
    except ValueError:
        raise HTTPException(400, "malformed JSON") from None
    except RecursionError:  # [[[[... thousands deep: the parser's recursion gives out
        raise HTTPException(400, "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise HTTPException(422, f"the job must be a JSON object with {', '.join(sorted(keys))}")
    unknown = set(data) - keys
    if unknown:
        raise HTTPException(422, f"unknown field(s): {', '.join(sorted(unknown))}; "
                                 f"expected {', '.join(sorted(keys))}")
    return data


async def _prepared(studio: Studio, data: dict[str, Any]) -> Job:
    """The job a request asks for, its options checked; 422 naming what is wrong."""
    try:
        return await run_in_threadpool(studio.queue.prepare, data.get("content"),
                                       data.get("styles"), data.get("options", {}),
                                       data.get("masks"))
    except OptionsError as e:
        raise HTTPException(422, str(e)) from None


async def enqueue(queue: JobQueue, job: Job) -> dict[str, Any]:
    """Queue a checked job of any kind and answer with its JSON; 422 when the studio is
    stopping, 429 when the queue is full."""
    try:
        await run_in_threadpool(queue.enqueue, job)
    except OptionsError as e:
        raise HTTPException(422, str(e)) from None
    except QueueFull as e:
        raise HTTPException(429, str(e)) from None
    return queue.describe(job)


class Forecasts:
    """The estimates of jobs before they are queued (time and peak memory), one way per
    job kind (``estimators``), at most ``max_estimates`` at a time."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.turns = Turns(studio.limits.max_estimates, studio.limits.estimate_wait_seconds)
        self.estimators: dict[str, Callable[[Job, Any, bool], Estimate]] = {
            "picture": self._picture}

    def _picture(self, job: Job, cache: Any, measure: bool) -> Estimate:
        # The plan needs only the photo's size, which the store recorded at upload: no
        # picture is decoded here (that happens in the decoder's child, and in the
        # worker's run).
        up = self.studio.store.upload(job.content)
        if up is None:
            raise HTTPException(422, "an uploaded image is no longer stored")
        return estimate_size((up["width"], up["height"]), cache=cache, measure=measure,
                             **job.run_options)

    async def in_turn(self, work: Callable[[], T]) -> T:
        """``work()`` (an estimate: it may load the network or measure the machine) in
        one of the ``max_estimates`` turns every kind of job shares; past the wait for a
        turn, 503 with Retry-After; a refusal (BrushworkError, OptionsError) is a 422.
        NotMeasured, before this machine's calibration, goes through."""
        try:
            return await self.turns.run(work)
        except NotMeasured:
            raise
        except NoTurn:
            raise HTTPException(503, f"{self.turns.at_once} estimate(s) are being made "
                                     "already; try again in a few seconds",
                                headers={"Retry-After": str(ESTIMATE_RETRY_S)}) from None
        except (BrushworkError, OptionsError) as e:
            raise HTTPException(422, clean_message(self.studio.store, str(e))) from None

    async def forecast(self, job: Job, *, measure: bool) -> Estimate:
        """The job's estimate (:meth:`in_turn`); 422 with the plan's one-line reason when
        it would not fit the memory budget."""
        estimator = self.estimators[job.kind]
        forecast = await self.in_turn(lambda: estimator(job, self.studio.cache, measure))
        if forecast.peak_bytes > forecast.budget_bytes:
            raise HTTPException(422, "the job would not fit this machine's memory: "
                                + forecast.describe().removeprefix("estimate: "))
        return forecast

    async def refuse_if_too_big(self, job: Job) -> None:
        """422 for a job predicted not to fit, before it is queued.  Before the first
        calibration (it is measured only while the studio is idle) the bounds on the
        options still apply, and the run itself checks its plan before painting: the job
        then fails with the same reason."""
        with contextlib.suppress(NotMeasured):
            await self.forecast(job, measure=False)

    async def describe(self, job: Job) -> dict[str, Any]:
        """What a job would need, as POST /api/estimate answers."""
        try:
            # Measuring the device while it paints would spoil the measurement.
            forecast = await self.forecast(job, measure=self.studio.queue.idle())
        except NotMeasured:
            return {"estimate": None, "text": "the estimate comes once the studio is free "
                    "to measure this machine (after the picture it paints now)"}
        text = (f"about {format_seconds(forecast.seconds)}, peak "
                f"{forecast.peak_bytes / GB:.1f} GB" + (", in tiles" if forecast.tiled else ""))
        return {"estimate": {"peak_bytes": round(forecast.peak_bytes),
                             "seconds": round(forecast.seconds, 3),
                             "budget_bytes": round(forecast.budget_bytes),
                             "tiled": forecast.tiled}, "text": text}


def submit_routes(studio: Studio) -> APIRouter:
    """Asking for a job: queue it, or only estimate what it would need."""
    router = APIRouter()
    queue = studio.queue

    @router.post("/api/jobs", status_code=201)
    async def create_job(request: Request) -> dict[str, Any]:
        data = await job_request(request)
        job = await _prepared(studio, data)
        await studio.forecasts.refuse_if_too_big(job)
        return await enqueue(queue, job)

    @router.post("/api/estimate")
    async def estimate_job(request: Request) -> dict[str, Any]:
        """What a job would need (peak memory, wall time), without queueing it."""
        return await studio.forecasts.describe(
            await _prepared(studio, await job_request(request)))

    return router


def job_routes(studio: Studio) -> APIRouter:
    """The jobs themselves: list, state, cancel, delete, the live preview."""
    router = APIRouter()
    store, queue = studio.store, studio.queue

    @router.get("/api/jobs")
    def list_jobs(limit: int = Query(30, ge=1, le=500)) -> dict[str, Any]:
        active = [queue.describe(j) for j in queue.active()]
        seen = {j["id"] for j in active}
        recent = [studio.stored_json(r) for r in store.jobs(TERMINAL, limit=limit)
                  if r["id"] not in seen]
        return {"jobs": active + recent}

    @router.get("/api/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return studio.job_json(job_id, history=True)

    @router.post("/api/jobs/{job_id}/cancel")
    def cancel_job(job_id: str) -> dict[str, Any]:
        current = studio.job_json(job_id)
        if current["state"] in TERMINAL:
            raise HTTPException(409, f"the job has already ended ({current['state']})")
        queue.cancel(job_id)
        return studio.job_json(job_id)

    @router.delete("/api/jobs/{job_id}")
    def delete_job(job_id: str) -> dict[str, Any]:
        current = studio.job_json(job_id)
        if current["state"] not in TERMINAL or not store.delete_job(job_id):
            raise HTTPException(409, "only a job that has ended can be deleted")
        return {"deleted": job_id}

    @router.get("/api/jobs/{job_id}/preview")
    def preview(job_id: str) -> Response:
        live = queue.live(job_id)
        if live is not None and live.preview is not None:
            return Response(live.preview, media_type="image/jpeg",
                            headers={"Cache-Control": "no-store"})
        if store.job(job_id) is not None and store.result_path(job_id).is_file():
            return FileResponse(store.result_path(job_id), media_type="image/png")
        # A job of another kind (a clip, a plan) has no picture once it has ended: its
        # thumbnail, so that a page asking just as it ends gets a picture, not a 404.
        if store.job(job_id) is not None and store.result_thumb(job_id).is_file():
            return FileResponse(store.result_thumb(job_id), media_type="image/jpeg")
        raise HTTPException(404, "no preview yet")

    return router


def _finished_file(store: Store, job_id: str, path_of: Callable[[str], Path]
                   ) -> tuple[Path, dict]:
    """A finished job's file (its picture, thumbnail); 404 saying why there is none."""
    row = store.job(job_id)
    if row is None:
        raise HTTPException(404, "no such job")
    path = path_of(job_id)
    if row["state"] != "done" or not path.is_file():
        raise HTTPException(404, f"the job has no result (it is {row['state']})")
    return path, row


def result_routes(studio: Studio) -> APIRouter:
    """Finished pictures: the file, its thumbnail, its settings, the gallery."""
    router = APIRouter()
    store = studio.store

    @router.get("/api/jobs/{job_id}/result")
    def result(job_id: str) -> Response:
        path, _ = _finished_file(store, job_id, store.result_path)
        return FileResponse(path, media_type="image/png", filename=f"brushwork-{job_id}.png")

    @router.get("/api/jobs/{job_id}/thumb")
    def result_thumb(job_id: str) -> Response:
        path, _ = _finished_file(store, job_id, store.result_thumb)
        return FileResponse(path, media_type="image/jpeg")

    @router.get("/api/jobs/{job_id}/settings")
    def result_settings(job_id: str) -> Response:
        path, row = _finished_file(store, job_id, store.result_path)
        try:
            meta = read_metadata(path) or {}
        except BrushworkError:
            meta = {}
        # The store's record, not the file's: a picture painted by an older studio
        # carries the server's paths of the uploads and of the weights.
        meta["inputs"] = {"style": [upload_ref(store, u) for u in row["styles"]]}
        if row["content"]:  # a texture has none
            meta["inputs"] = {"content": upload_ref(store, row["content"]), **meta["inputs"]}
        else:
            meta["inputs"]["texture"] = [row["options"].get("width"),
                                         row["options"].get("height")]
        if isinstance(meta.get("settings"), dict):
            meta["settings"]["model"] = row["options"].get("model")
        meta["studio"] = {"job": job_id, "options": row["options"]}
        return JSONResponse(meta, headers={
            "Content-Disposition": f'attachment; filename="brushwork-{job_id}.json"'})

    @router.get("/api/gallery")
    def gallery(limit: int = Query(60, ge=1, le=500),
                offset: int = Query(0, ge=0, le=MAX_OFFSET)) -> dict[str, Any]:
        rows = store.jobs(["done"], limit=limit, offset=offset)
        return {"results": [studio.stored_json(r) for r in rows],
                "total": store.count(["done"])}

    return router


def event_routes(studio: Studio) -> APIRouter:
    router = APIRouter()
    slots = StreamSlots(studio.limits.max_streams, studio.limits.max_streams_per_client)

    @router.get("/api/events")
    async def all_events(request: Request) -> Response:
        return _stream(studio.broker, slots, request,
                       lambda: [studio.queue.describe(j) for j in studio.queue.active()], None)

    @router.get("/api/jobs/{job_id}/events")
    async def job_events(request: Request, job_id: str) -> Response:
        studio.job_json(job_id)  # 404 for an unknown id, before a slot is taken
        return _stream(studio.broker, slots, request, lambda: [studio.job_json(job_id)],
                       job_id)

    return router


class _EventStream(StreamingResponse):
    """An SSE response that runs ``done`` however it ends (finished, client gone, error)."""

    def __init__(self, content: AsyncIterator[str], done: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self._done = done

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._done()


def _stream(broker: Broker, slots: StreamSlots, request: Request,
            initial: Callable[[], list[dict[str, Any]]], job_id: str | None) -> Response:
    """An SSE response: ``initial()`` first, then live events (of one job, if given).

    Refused with 429 or 503 (a one-line detail) when no stream slot is free; the slot
    and the subscription are given back in a ``finally`` whichever way the stream ends.
    """
    try:
        give_back = slots.take(request.client.host if request.client else "")
    except StreamsFull as e:
        return JSONResponse({"detail": str(e)}, status_code=e.status,
                            headers={"Retry-After": "10"})
    queue = broker.subscribe()  # before the snapshot is taken, so nothing falls between

    def done() -> None:
        broker.unsubscribe(queue)
        give_back()

    try:
        first = [encode(event) for event in initial()]
    except BaseException:
        done()
        raise

    async def events() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            for message in first:
                yield message.text
                if job_id is not None and message.state in TERMINAL:
                    return
            while True:
                try:
                    latest: Message | None = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if latest is None:  # the studio is stopping
                    return
                if job_id is not None and latest.job_id != job_id:
                    continue
                yield latest.text
                if job_id is not None and latest.state in TERMINAL:
                    return
        finally:
            done()

    return _EventStream(events(), done)


def _upload_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ("id", "name", "format", "width", "height", "bytes",
                                     "created", "video")}
