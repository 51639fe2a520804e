"""Textures in the studio: a job of kind "texture", the paintings' style alone from noise
at a width and height (brushwork.engine.texture, as ``brushwork texture`` paints it).

A texture job has no photo (its ``content`` is ""), and the request gives ``width`` and
``height`` instead of ``size``; its picture, thumbnail, settings and gallery entry are a
picture job's.  The photo's options (strength, colours, structure ...) are refused by
name, as the library refuses them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from brushwork.engine.memory.forecast import Estimate
from brushwork.engine.pyramid import count_steps
from brushwork.engine.settings import Settings
from brushwork.engine.texture import PHOTO_OPTIONS, estimate_texture, texture
from brushwork.io.images import MIN_SIDE
from brushwork.maths.strength import DEFAULT_STRENGTH, knobs
from brushwork.studio.job import Job
from brushwork.studio.job_queue import JobQueue
from brushwork.studio.options import MAX_STYLES, OptionsError, check_options
from brushwork.studio.routes import Forecasts, enqueue, job_request
from brushwork.studio.store import new_id, valid_id
from brushwork.studio.worker import Worker, upload_ref

KIND = "texture"
REQUEST_KEYS = frozenset({"styles", "width", "height", "options"})
# The coarsest scale a texture starts from when the request does not say: the one the
# default strength gives a painting (as `brushwork texture` does; a texture has no
# strength to derive it from).
COARSEST = knobs(DEFAULT_STRENGTH)["min_size"]


def prepare(queue: JobQueue, styles: Any, width: Any, height: Any, options: Any) -> Job:
    """The texture job a request asks for, checked but not queued; OptionsError naming
    the first problem."""
    if not isinstance(styles, list) or not 1 <= len(styles) <= MAX_STYLES or \
            not all(isinstance(s, str) and valid_id(s) for s in styles):
        raise OptionsError(f"styles must be a list of 1 to {MAX_STYLES} upload ids")
    limits = queue.limits
    for name, side in (("width", width), ("height", height)):
        if not isinstance(side, int) or isinstance(side, bool) or \
                not MIN_SIDE <= side <= limits.max_size:
            raise OptionsError(f"{name} must be a whole number of pixels from {MIN_SIDE} to "
                               f"this studio's limit of {limits.max_size}, not {side!r}")
    if width * height > limits.max_pixels:
        raise OptionsError(f"a {width}x{height} texture is over this studio's limit of "
                           f"{limits.max_pixels / 1e6:.3g} megapixels")
    for upload_id in styles:
        row = queue.store.upload(upload_id)
        if row is None or queue.store.upload_file(upload_id) is None:
            raise OptionsError(f"no upload with id {upload_id!r}")
        if row["width"] * row["height"] > limits.max_pixels:
            raise OptionsError(f"painting '{row['name']}' is over this studio's limit of "
                               f"{limits.max_pixels / 1e6:.3g} megapixels")
    if not isinstance(options, dict):
        raise OptionsError("options must be a JSON object")
    given = sorted(set(options) & {*PHOTO_OPTIONS, "size"})
    if given:
        raise OptionsError(f"a texture has no photo, so it takes no {', '.join(given)}"
                           + ("; give width and height instead of size"
                              if "size" in given else ""))
    if options.get("init", "noise") != "noise":
        raise OptionsError("a texture starts from noise: init must be 'noise'")
    request = {"init": "noise", "min_size": COARSEST} | options
    opts, _ = check_options(request | {"size": max(width, height)}, models=queue.models,
                            default_model=queue.default_model, limits=limits,
                            n_styles=len(styles), arch_of=queue.arch_of)
    opts.pop("size")
    run_options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in opts.items()} | {
        "model": queue.models[opts["model"]], "device": queue.device,
        "max_pixels": limits.max_pixels}
    total = count_steps(Settings.from_options(run_options | {"size": max(width, height),
                                                             "content_weight": 0.0}),
                        (width, height))
    return Job(new_id(), "", list(styles), opts | {"width": width, "height": height},
               run_options, total, kind=KIND)


def rebuild(queue: JobQueue, row: dict[str, Any]) -> Job:
    """A stored texture job, checked again (for a restart)."""
    options = dict(row["options"])
    width, height = options.pop("width", None), options.pop("height", None)
    return prepare(queue, row["styles"], width, height, options)


def size_of(job: Job) -> tuple[int, int]:
    return job.options["width"], job.options["height"]


def run(worker: Worker, job: Job) -> None:
    """The worker's runner for a texture job."""
    files = [worker.store.upload_file(u) for u in job.styles]
    if None in files:
        worker.queue.finish(job, "failed", error="an uploaded image is no longer stored")
        return
    size = size_of(job)
    inputs = {"texture": list(size), "style": [upload_ref(worker.store, s) for s in job.styles]}
    worker.paint(job, lambda **run: texture(files, size, **run, **job.run_options), inputs)


def estimate(job: Job, cache: Any, measure: bool) -> Estimate:
    return estimate_texture(size_of(job), cache=cache, measure=measure, **job.run_options)


def register(queue: JobQueue, worker: Worker, forecasts: Forecasts) -> APIRouter:
    """Teach the queue, the worker and the estimates this kind; its routes."""
    queue.rebuilders[KIND] = lambda row: rebuild(queue, row)
    worker.runners[KIND] = lambda job: run(worker, job)
    forecasts.estimators[KIND] = estimate
    return routes(queue, forecasts)


async def request_job(queue: JobQueue, request: Request) -> Job:
    """The texture job a POST asks for; 4xx naming what is wrong."""
    data = await job_request(request, REQUEST_KEYS)
    try:
        return await run_in_threadpool(prepare, queue, data.get("styles"), data.get("width"),
                                       data.get("height"), data.get("options", {}))
    except OptionsError as e:
        raise HTTPException(422, str(e)) from None


def routes(queue: JobQueue, forecast: Forecasts) -> APIRouter:
    """POST /api/textures (queue one) and /api/textures/estimate, estimated as every job
    is (``forecast``, which refuses one that cannot fit with the plan's reason)."""
    router = APIRouter()

    @router.post("/api/textures", status_code=201)
    async def create(request: Request) -> dict[str, Any]:
        job = await request_job(queue, request)
        await forecast.refuse_if_too_big(job)
        return await enqueue(queue, job)

    @router.post("/api/textures/estimate")
    async def estimate_job(request: Request) -> dict[str, Any]:
        return await forecast.describe(await request_job(queue, request))

    return router
