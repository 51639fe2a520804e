"""The studio's web application: the page and the HTTP API it (and scripts) use.

    GET  /                          the page
    GET  /api/config                models, limits, option defaults
    POST /api/upload                multipart, field "file" -> {"id", ...}
    GET  /api/uploads/{id}          what was uploaded;  /thumb: a small JPEG of it
    POST /api/jobs                  {"content": id, "styles": [id, ...], "options": {...}}
    GET  /api/jobs                  waiting, running and recent jobs
    GET  /api/jobs/{id}             state, place in queue, progress, losses, settings
    GET  /api/jobs/{id}/events      Server-Sent Events for one job, until it ends
    GET  /api/events                Server-Sent Events for every job
    GET  /api/jobs/{id}/preview     the picture so far (JPEG), or the result
    GET  /api/jobs/{id}/result      the finished PNG (settings inside), as a download
    GET  /api/jobs/{id}/settings    the settings as a JSON download;  /thumb: small JPEG
    POST /api/jobs/{id}/cancel      cancel a waiting or running job
    DELETE /api/jobs/{id}           remove a finished job and its picture
    GET  /api/gallery               finished pictures, newest first
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from .. import __version__
from ..errors import BrushworkError
from ..imageio import read_metadata
from ..settings import Settings
from ..weights import SOURCES, locate
from .gallery import Store
from .jobs import (TERMINAL, WEB_OPTIONS, Broker, Job, JobQueue, Limits, OptionsError,
                   QueueFull)
from .security import BodyLimits, BodyTooLarge, Guard, allowed_hostnames
from .uploads import UploadError, check_image, display_name, thumbnail_jpeg

STATIC = {"studio.js": "text/javascript; charset=utf-8", "studio.css": "text/css; charset=utf-8",
          "index.html": "text/html; charset=utf-8"}
KEEPALIVE_S = 15.0
JOB_KEYS = {"content", "styles", "options"}


def default_models() -> dict[str, str]:
    return {name: name for name in SOURCES}


def create_app(data_dir: str | Path, *, cache: Any = None, limits: Limits | None = None,
               models: dict[str, str] | None = None, default_model: str | None = None,
               device: str = "auto", host: str = "127.0.0.1",
               extra_hosts: tuple[str, ...] = (), preview_interval: float = 0.5,
               log: Callable[[str], None] | None = None) -> FastAPI:
    """The studio for ``data_dir``.

    ``models`` maps the names a request may use to what stylize gets (a source name or
    an operator-given file); ``host`` is the bound address, checked against each
    request's Host header.  The worker starts with the app (its lifespan).
    """
    limits = limits or Limits()
    models = dict(models or default_models())
    default_model = default_model or ("vgg16-hed" if "vgg16-hed" in models else next(iter(models)))
    if default_model not in models:
        raise BrushworkError(f"default model {default_model!r} is not among {list(models)}")
    log = log or (lambda m: print(m, file=sys.stderr))
    store = Store(data_dir)
    broker = Broker()
    queue = JobQueue(store, broker, models=models, default_model=default_model, device=device,
                     limits=limits, cache=cache, preview_interval=preview_interval, log=log)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for job_id in store.recover():
            log(f"brushwork studio: job {job_id} was left unfinished by the last run")
        queue.start()
        try:
            yield
        finally:
            await run_in_threadpool(queue.stop)
            store.close()

    app = FastAPI(title="brushwork studio", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.queue, app.state.broker = store, queue, broker
    app.add_middleware(Guard, hosts=allowed_hostnames(host, extra_hosts),
                       limits=BodyLimits(upload=limits.max_upload_bytes + 64 * 1024))

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log("brushwork studio: internal error\n" + "".join(traceback.format_exception(exc)))
        return JSONResponse({"detail": "internal error; see the studio's console"},
                            status_code=500)

    # -- the page --------------------------------------------------------------------------

    def static(name: str) -> Response:
        data = resources.files("brushwork.studio").joinpath("static", name).read_bytes()
        return Response(data, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return static("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        if name not in STATIC:  # a fixed list: no path is ever built from the request
            raise HTTPException(404, "not found")
        return static(name)

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        resolved = Settings().to_dict()  # what an empty request paints with
        defaults = {k: _jsonable(v) for k, v in resolved.items() if k in WEB_OPTIONS}
        defaults["model"] = default_model
        listed = []
        for name, target in models.items():
            src = SOURCES.get(target) if name == target else None
            listed.append({"name": name, "description": src.description if src else
                           "weights file given with --model",
                           "present": (locate(name) is not None) if src else True})
        return {"version": __version__, "models": listed, "default_model": default_model,
                "defaults": defaults,
                "limits": {"max_upload_bytes": limits.max_upload_bytes,
                           "max_pixels": limits.max_pixels, "max_size": limits.max_size,
                           "max_iterations": limits.max_iterations,
                           "max_queued": limits.max_queued}}

    # -- uploads ---------------------------------------------------------------------------

    @app.post("/api/upload", status_code=201)
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
            data = await file.read(limits.max_upload_bytes + 1)
            name = display_name(file.filename)
        finally:
            await form.close()
        try:
            checked = await run_in_threadpool(check_image, data,
                                              max_bytes=limits.max_upload_bytes,
                                              max_pixels=limits.max_pixels)
        except UploadError as e:
            raise HTTPException(e.status, e.message) from None
        thumb = await run_in_threadpool(thumbnail_jpeg, checked.rgb)
        row = await run_in_threadpool(
            lambda: store.add_upload(name=name, ext=checked.ext, format=checked.format,
                                     width=checked.rgb.width, height=checked.rgb.height,
                                     data=data, thumb=thumb))
        return _upload_json(row)

    @app.get("/api/uploads/{upload_id}")
    def upload_info(upload_id: str) -> dict[str, Any]:
        row = store.upload(upload_id)
        if row is None:
            raise HTTPException(404, "no such upload")
        return _upload_json(row)

    @app.get("/api/uploads/{upload_id}/thumb")
    def upload_thumb(upload_id: str) -> Response:
        if store.upload(upload_id) is None or not store.upload_thumb(upload_id).is_file():
            raise HTTPException(404, "no such upload")
        return FileResponse(store.upload_thumb(upload_id), media_type="image/jpeg")

    # -- jobs ------------------------------------------------------------------------------

    def job_json(job_id: str, *, history: bool = False) -> dict[str, Any]:
        live = queue.live(job_id)
        if live is not None:
            return queue.snapshot(live, history=history)
        row = store.job(job_id)
        if row is None:
            raise HTTPException(404, "no such job")
        return _row_json(row, store, history=history)

    @app.post("/api/jobs", status_code=201)
    async def create_job(request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "send the job as application/json")
        body = await request.body()
        try:
            data = json.loads(body)
        except ValueError:
            raise HTTPException(400, "malformed JSON") from None
        if not isinstance(data, dict):
            raise HTTPException(422, "the job must be a JSON object with content, styles, "
                                     "options")
        unknown = set(data) - JOB_KEYS
        if unknown:
            raise HTTPException(422, f"unknown field(s): {', '.join(sorted(unknown))}; "
                                     "expected content, styles, options")
        try:
            job: Job = await run_in_threadpool(queue.submit, data.get("content"),
                                               data.get("styles"), data.get("options", {}))
        except OptionsError as e:
            raise HTTPException(422, str(e)) from None
        except QueueFull as e:
            raise HTTPException(429, str(e)) from None
        return queue.snapshot(job)

    @app.get("/api/jobs")
    def list_jobs(limit: int = Query(30, ge=1, le=500)) -> dict[str, Any]:
        active = [queue.snapshot(j) for j in queue.active()]
        seen = {j["id"] for j in active}
        recent = [_row_json(r, store) for r in store.jobs(TERMINAL, limit=limit)
                  if r["id"] not in seen]
        return {"jobs": active + recent}

    @app.get("/api/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return job_json(job_id, history=True)

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel_job(job_id: str) -> dict[str, Any]:
        current = job_json(job_id)
        if current["state"] in TERMINAL:
            raise HTTPException(409, f"the job has already ended ({current['state']})")
        queue.cancel(job_id)
        return job_json(job_id)

    @app.delete("/api/jobs/{job_id}")
    def delete_job(job_id: str) -> dict[str, Any]:
        current = job_json(job_id)
        if current["state"] not in TERMINAL or not store.delete_job(job_id):
            raise HTTPException(409, "only a job that has ended can be deleted")
        return {"deleted": job_id}

    @app.get("/api/jobs/{job_id}/preview")
    def preview(job_id: str) -> Response:
        live = queue.live(job_id)
        if live is not None and live.preview is not None:
            return Response(live.preview, media_type="image/jpeg",
                            headers={"Cache-Control": "no-store"})
        if store.job(job_id) is not None and store.result_path(job_id).is_file():
            return FileResponse(store.result_path(job_id), media_type="image/png")
        raise HTTPException(404, "no preview yet")

    def finished_file(job_id: str, path_of: Callable[[str], Path]) -> Path:
        row = store.job(job_id)
        if row is None:
            raise HTTPException(404, "no such job")
        path = path_of(job_id)
        if row["state"] != "done" or not path.is_file():
            raise HTTPException(404, f"the job has no result (it is {row['state']})")
        return path

    @app.get("/api/jobs/{job_id}/result")
    def result(job_id: str) -> Response:
        path = finished_file(job_id, store.result_path)
        return FileResponse(path, media_type="image/png", filename=f"brushwork-{job_id}.png")

    @app.get("/api/jobs/{job_id}/thumb")
    def result_thumb(job_id: str) -> Response:
        return FileResponse(finished_file(job_id, store.result_thumb), media_type="image/jpeg")

    @app.get("/api/jobs/{job_id}/settings")
    def result_settings(job_id: str) -> Response:
        path = finished_file(job_id, store.result_path)
        try:
            meta = read_metadata(path) or {}
        except BrushworkError:
            meta = {}
        meta["studio"] = {"job": job_id, "options": store.job(job_id)["options"]}
        return JSONResponse(meta, headers={
            "Content-Disposition": f'attachment; filename="brushwork-{job_id}.json"'})

    @app.get("/api/gallery")
    def gallery(limit: int = Query(60, ge=1, le=500),
                offset: int = Query(0, ge=0)) -> dict[str, Any]:
        rows = store.jobs(["done"], limit=limit, offset=offset)
        return {"results": [_row_json(r, store) for r in rows],
                "total": store.count(["done"])}

    # -- events ----------------------------------------------------------------------------

    @app.get("/api/events")
    async def all_events(request: Request) -> StreamingResponse:
        return _stream(broker, [queue.snapshot(j) for j in queue.active()], None)

    @app.get("/api/jobs/{job_id}/events")
    async def job_events(job_id: str) -> StreamingResponse:
        first = job_json(job_id)  # 404 for an unknown id
        return _stream(broker, [first], job_id)

    return app


def _stream(broker: Broker, initial: list[dict[str, Any]], job_id: str | None
            ) -> StreamingResponse:
    """An SSE response: ``initial`` first, then live events (of one job, if given)."""
    queue = broker.subscribe()  # before the snapshot is sent, so nothing falls between

    async def events() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            for event in initial:
                yield _sse(event)
                if job_id is not None and event["state"] in TERMINAL:
                    return
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if event is None:  # the studio is stopping
                    return
                if job_id is not None and event["id"] != job_id:
                    continue
                yield _sse(event)
                if job_id is not None and event["state"] in TERMINAL:
                    return
        finally:
            broker.unsubscribe(queue)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _sse(event: dict[str, Any]) -> str:
    return f"event: job\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _upload_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "name", "format", "width", "height", "bytes", "created")}


def _row_json(row: dict[str, Any], store: Store, *, history: bool = False) -> dict[str, Any]:
    hist = row.get("history") or []
    done = row["state"] == "done"
    out = {
        "id": row["id"], "state": row["state"], "place": None, "created": row["created"],
        "started": row["started"], "finished": row["finished"], "content": row["content"],
        "styles": row["styles"], "options": row["options"], "error": row["error"],
        "step": hist[-1]["step"] if hist else (row["total"] if done else 0),
        "total": row["total"], "progress": 1.0 if done else None,
        "scale": hist[-1]["scale"] if hist else None, "scales": None,
        "size": [row["width"], row["height"]] if row.get("width") else None,
        "losses": row["losses"] or {}, "elapsed": row["elapsed"], "eta": None, "preview": 0,
        "result": done and store.result_path(row["id"]).is_file(),
        "settings": row.get("settings"),
    }
    if history:
        out["history"] = hist
    return out
