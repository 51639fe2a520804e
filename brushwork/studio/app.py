"""The studio's web application: the page and the HTTP API it (and scripts) use.

    GET  /                          the page
    GET  /api/config                models, limits, option defaults
    POST /api/upload                multipart, field "file" -> {"id", ...}
    GET  /api/uploads               every upload, and how much of the quota they use
    GET  /api/uploads/{id}          what was uploaded;  /thumb: a small JPEG of it
    DELETE /api/uploads/{id}        remove an upload no waiting or running job needs
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
    POST /api/plans                 photos x paintings (x strengths) as one job (plans.py)

The routes are in routes.py; here they are put together with the store, the queue,
the worker and the request guard.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from brushwork._version import __version__
from brushwork.errors import BrushworkError
from brushwork.io.weights import SOURCES
from brushwork.studio import plans, textures
from brushwork.studio.clips import clip_routes
from brushwork.studio.clips import register as register_clips
from brushwork.studio.events import Broker
from brushwork.studio.job_queue import JobQueue
from brushwork.studio.options import Limits, OptionsError
from brushwork.studio.routes import (
    Studio,
    event_routes,
    job_routes,
    page_routes,
    result_routes,
    submit_routes,
    upload_routes,
)
from brushwork.studio.security import BodyLimits, BodyTooLarge, Guard, allowed_hostnames
from brushwork.studio.store import Store
from brushwork.studio.worker import CHECKPOINT_EVERY, Worker


def default_models() -> dict[str, str]:
    return {name: name for name in SOURCES}


def create_app(data_dir: str | Path, *, cache: Any = None, limits: Limits | None = None,
               models: dict[str, str] | None = None, default_model: str | None = None,
               device: str = "auto", host: str = "127.0.0.1",
               extra_hosts: tuple[str, ...] = (), preview_interval: float = 0.5,
               checkpoint_every: float = CHECKPOINT_EVERY,
               log: Callable[[str], None] | None = None) -> FastAPI:
    """The studio for ``data_dir``.

    ``models`` maps the names a request may use to what stylize gets (a source name or
    an operator-given file); ``host`` is the bound address, checked against each
    request's Host header.  The worker starts with the app (its lifespan), after the
    jobs the last run left unfinished are queued again (a running one goes on from the
    checkpoint it saved every ``checkpoint_every`` seconds and as the studio stopped).
    """
    limits = limits or Limits()
    models = dict(models or default_models())
    default_model = default_model or ("vgg16-hed" if "vgg16-hed" in models else next(iter(models)))
    if default_model not in models:
        raise BrushworkError(f"default model {default_model!r} is not among {list(models)}")
    say = log or (lambda m: print(m, file=sys.stderr))
    store = Store(data_dir)
    broker = Broker()
    queue = JobQueue(store, broker, models=models, default_model=default_model, device=device,
                     limits=limits, cache=cache)
    worker = Worker(queue, store, cache=cache, preview_interval=preview_interval,
                    checkpoint_every=checkpoint_every, log=say)
    register_clips(queue, worker.runners, store, cache=cache, preview_interval=preview_interval)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.recover()
        for listed in sorted(store.jobs(("queued",), limit=1_000_000),
                             key=lambda r: r["created"]):
            row = store.job(listed["id"]) or listed  # with the history it had saved
            try:
                queue.resume(row)
                say(f"brushwork studio: job {row['id']} was left unfinished by the last run; "
                    "it goes on")
            except OptionsError as e:
                store.update_job(row["id"], state="interrupted", finished=time.time(),
                                 error=f"could not go on after a restart: {e}")
                say(f"brushwork studio: job {row['id']} was left unfinished and cannot go on: "
                    f"{e}")
        pruned = store.prune()
        if any(pruned.values()):
            say(f"brushwork studio: removed {pruned['files']} file(s) and {pruned['uploads']} "
                "upload(s) that the last run left half-written")
        worker.start()
        try:
            yield
        finally:
            await run_in_threadpool(worker.stop)
            broker.close()
            store.close()

    app = FastAPI(title="brushwork studio", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.queue, app.state.broker = store, queue, broker
    app.state.worker = worker
    app.add_middleware(Guard, hosts=allowed_hostnames(host, extra_hosts),
                       limits=BodyLimits(upload=limits.max_upload_bytes + 64 * 1024,
                                         clip=limits.max_clip_bytes + 64 * 1024))

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        say("brushwork studio: internal error\n" + "".join(traceback.format_exception(exc)))
        return JSONResponse({"detail": "internal error; see the studio's console"},
                            status_code=500)

    # Plans: several photos x several paintings as one job (plans.py).
    queue.rebuilders[plans.KIND] = lambda row: plans.rebuild(queue, row)
    worker.runners[plans.KIND] = plans.PlanRunner(queue, store, cache=cache,
                                                  preview_interval=preview_interval, log=say)
    studio = Studio(store, queue, broker, limits, models, default_model, cache)
    for routes in (page_routes, upload_routes, submit_routes, job_routes, result_routes,
                   event_routes, plans.plan_routes, clip_routes):
        app.include_router(routes(studio))
    app.include_router(textures.register(queue, worker, studio.forecasts))
    return app
