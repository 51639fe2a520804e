"""Clips in the studio: a short video uploaded, painted by brushwork.video.stylize_video
as a job of kind "clip", played and downloaded as an MP4.

    GET  /api/clips/config          whether clips can be painted here, their limits, defaults
    POST /api/upload/clip           multipart, field "file": a video -> the upload's JSON
    POST /api/clips                 {"content": clip id, "styles": [...], "options": {...}}
    POST /api/clips/estimate        the same, not queued: time and memory of the frames
    GET  /api/jobs/{id}/video       the finished MP4 (Range requests answered: 206)

An uploaded video is kept as it was sent (it is read again by the run): it is bounded by
its bytes as it streams in, then probed in the decoder's bounded child process (time,
memory) with brushwork.video.clip.open_clip: the container must be one of the video
demuxers brushwork reads, its frames no larger than ``max_clip_pixels``, no longer than
``max_clip_seconds``, and its first frame must decode (that frame is the thumbnail).
A clip job's options are a picture's (checked as a picture's are) with the video knobs
of :class:`~brushwork.video.settings.VideoSettings`; its frames are written into
``results/ID.mp4.frames/`` as they finish, so a restart of the studio goes on from the
last finished frame (stylize_video's resume), and the video is ``results/ID.mp4``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from starlette.datastructures import UploadFile

from brushwork.engine.memory.calibration import NotMeasured
from brushwork.engine.memory.forecast import GB, format_seconds
from brushwork.engine.painter import estimate_size
from brushwork.engine.pyramid import count_steps
from brushwork.engine.settings import Settings
from brushwork.errors import BrushworkError, out_of_memory
from brushwork.studio.decoder import Decoder
from brushwork.studio.job import Job
from brushwork.studio.job_queue import JobQueue
from brushwork.studio.options import (
    MAX_ITEMS,
    MAX_STYLES,
    MAX_TEXT,
    MEMORY_ADVICE,
    OptionsError,
    absent_weights,
    check_options,
    check_pictures,
)
from brushwork.studio.routes import Studio, enqueue, job_request
from brushwork.studio.security import BodyTooLarge
from brushwork.studio.store import QuotaFull, Store, new_id, valid_id
from brushwork.studio.uploads import UploadError, display_name, thumbnail_jpeg
from brushwork.studio.worker import JobCancelled, JobInterrupted, clean_message

KIND = "clip"
# The demuxer FFmpeg chose -> the MIME type shown and the stored file's extension.
CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": ("video/mp4", ".mp4"),
              "matroska,webm": ("video/x-matroska", ".mkv"), "avi": ("video/x-msvideo", ".avi"),
              "mpegts": ("video/mp2t", ".ts"), "mpeg": ("video/mpeg", ".mpg"),
              "flv": ("video/x-flv", ".flv"), "ogg": ("video/ogg", ".ogv"),
              "asf": ("video/x-ms-asf", ".wmv")}
# The video knobs a request may set, and their JSON types (VideoSettings checks values).
VIDEO_OPTIONS = {"frame_iterations": "int", "temporal_weight": "number",
                 "temporal_frames": "ints", "fps": "number", "start": "number",
                 "end": "number", "frames": "str"}
VIDEO_INITS = ("prev-warped", "content", "noise")
# A later frame's evaluation against a picture's: the temporal terms and the split of the
# frame into its held and new parts cost about what a second style mask does
# (docs/video.md, "New parts of a frame").
LATER_FRAME_COST = 1.1
CHUNK = 1 << 20


def video_available() -> str | None:
    """None if PyAV and OpenCV are installed, else the one line saying how to get them."""
    from brushwork.video.deps import need

    try:
        need("av")
        need("cv2")
    except BrushworkError as e:
        return str(e)
    return None


# -- the upload's probe, in the decoder's child ---------------------------------------------


def probe(path: str, max_pixels: int, max_seconds: float, max_frames: int) -> dict[str, Any]:
    """What the studio records of the video at ``path``, and its first frame as a JPEG
    thumbnail; UploadError for a file that is not a video brushwork reads or is over a
    limit.  Runs in the decoder's bounded child (Decoder.call)."""
    from brushwork.video.clip import DEMUXERS, open_clip, read_frames
    from brushwork.video.deps import need
    from brushwork.video.settings import VideoSettings

    av = need("av")
    name = "the video"
    try:
        clip = open_clip(path, VideoSettings(), max_pixels=max_pixels)
    except BrushworkError as e:
        text = _named(str(e), path, name)
        status = 413 if "megapixels" in text else 415 if "not a video" in text or \
            "cannot be read" in text or "no video stream" in text else 422
        raise UploadError(status, text) from None
    if clip.duration > max_seconds + 1e-6:
        raise UploadError(413, f"the video is {clip.duration:.1f} s long, over this studio's "
                               f"limit of {max_seconds:g} s")
    if clip.frames > max_frames:
        raise UploadError(413, f"the video has {clip.frames} frames, over this studio's limit "
                               f"of {max_frames}")
    with av.open(path, "r", container_options={"format_whitelist": ",".join(DEMUXERS),
                                               "protocol_whitelist": "file"}) as container:
        demuxer = container.format.name
        stream = container.streams.video[0]
        codec = stream.codec_context.name
    try:
        first = next(iter(read_frames(clip, clip.size)))[1]
    except BrushworkError as e:
        raise UploadError(422, _named(str(e), path, name)) from None
    except StopIteration:
        raise UploadError(422, "the video's first frame cannot be decoded") from None
    mime, ext = CONTAINERS.get(demuxer, ("video/unknown", ".video"))
    return {"format": mime, "ext": ext, "width": clip.size[0], "height": clip.size[1],
            "thumb": thumbnail_jpeg(first),
            "video": {"frames": clip.frames, "fps": round(float(clip.rate), 3),
                      "duration": round(clip.duration, 3), "codec": codec,
                      "audio": clip.has_audio}}


def _named(text: str, path: str, name: str) -> str:
    """An error about the file at ``path`` naming it ``name``, without the server's path."""
    return text.replace(f"video '{path}'", name).replace(f"'{path}'", name).replace(path, name)


# -- a job ------------------------------------------------------------------------------------


def _type_ok(kind: str, value: Any) -> bool:
    if value is None:
        return kind not in ("int", "ints")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return number
    if kind == "ints":
        return isinstance(value, list) and 0 < len(value) <= MAX_ITEMS and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value)
    return isinstance(value, str) and len(value) <= MAX_TEXT


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    """A clip job's run: stylize_video's options and the frames it paints."""

    run_options: dict[str, Any]
    first: Settings  # the first frame's settings, at the frames' size
    later: Settings  # every later frame's
    frames: int
    size: tuple[int, int]  # the painted frames' (width, height)


def plan_clip(queue: JobQueue, content: Any, styles: Any, options: Any
              ) -> tuple[Job, ClipPlan]:
    """The clip job a request asks for, checked but not queued; raises OptionsError.

    ``options``: a picture's options (checked by check_options), ``init`` one of
    prev-warped (the default), content, noise, and the video knobs (VIDEO_OPTIONS)."""
    from brushwork.video.clip import open_clip
    from brushwork.video.settings import VideoSettings

    store, limits = queue.store, queue.limits
    missing = video_available()
    if missing is not None:
        raise OptionsError(missing)
    if not isinstance(content, str) or not valid_id(content):
        raise OptionsError("content must be the upload id of a video")
    if not isinstance(styles, list) or not 1 <= len(styles) <= MAX_STYLES or \
            not all(isinstance(s, str) and valid_id(s) for s in styles):
        raise OptionsError(f"styles must be a list of 1 to {MAX_STYLES} upload ids")
    rows = {}
    for upload_id in [content, *styles]:
        row = store.upload(upload_id)
        if row is None or store.upload_file(upload_id) is None:
            raise OptionsError(f"no upload with id {upload_id!r}")
        rows[upload_id] = row
    clip_row = rows[content]
    if not clip_row.get("video"):
        raise OptionsError(f"the clip '{clip_row['name']}' is a picture, not a video")
    paintings = [rows[s] for s in styles]
    check_pictures(paintings[0], paintings, [], max_pixels=limits.max_pixels)
    if not isinstance(options, dict):
        raise OptionsError("options must be a JSON object")
    video_given = {k: v for k, v in options.items() if k in VIDEO_OPTIONS}
    for name, value in video_given.items():
        if not _type_ok(VIDEO_OPTIONS[name], value):
            raise OptionsError(f"{name} has the wrong type: {value!r}")
    picture = {k: v for k, v in options.items() if k not in VIDEO_OPTIONS}
    init = picture.pop("init", "prev-warped")
    if init not in VIDEO_INITS:
        raise OptionsError(f"init must be one of {', '.join(VIDEO_INITS)} for a clip")
    if init != "prev-warped":
        picture["init"] = init
    opts, settings = check_options(picture, models=queue.models,
                                   default_model=queue.default_model, limits=limits,
                                   n_styles=len(styles), arch_of=queue.arch_of)
    if settings.bit_depth != 8 or settings.dpi is not None:
        raise OptionsError("bit_depth and dpi are for pictures and prints; a clip is "
                           "encoded at 8 bits with no print size")
    try:
        knobs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                 for k, v in video_given.items()}
        video = VideoSettings(**knobs)
    except BrushworkError as e:
        raise OptionsError(str(e)) from None
    if video.frame_iterations > limits.max_iterations:
        raise OptionsError(f"frame_iterations {video.frame_iterations} is over this studio's "
                           f"limit of {limits.max_iterations}")
    path = store.upload_file(content)
    assert path is not None
    try:
        clip = open_clip(path, video, max_pixels=limits.max_clip_pixels)  # demuxes only
        size = clip.frame_size(settings.size)
    except BrushworkError as e:
        raise OptionsError(_named(str(e), os.fspath(path), f"the clip '{clip_row['name']}'")
                           .replace("--", "")) from None
    if clip.frames > limits.max_clip_frames:
        raise OptionsError(f"the clip would paint {clip.frames} frames, over this studio's "
                           f"limit of {limits.max_clip_frames} (a lower fps or a shorter "
                           "part paints fewer)")
    first = Settings.from_options(settings.to_dict(), size=max(size))
    later = Settings.from_options(first.to_dict(), iterations=video.frame_iterations,
                                  multiscale="off")
    run_options = settings.to_dict() | video.to_dict() | {
        "init": init, "model": queue.models[opts["model"]], "device": queue.device,
        "max_pixels": limits.max_pixels}
    total = count_steps(first, size) + (clip.frames - 1) * video.frame_iterations
    job = Job(new_id(), content, list(styles), opts | video_given | {"init": init}, run_options,
              total, kind=KIND)
    job.detail = {"frame": 0, "frames": clip.frames, "frames_done": 0,
                  "frame_size": list(size), "fps": round(float(clip.rate), 3)}
    return job, ClipPlan(run_options, first, later, clip.frames, size)


def estimate_clip(queue: JobQueue, plan: ClipPlan, *, measure: bool) -> dict[str, Any]:
    """The clip's time and peak memory: its first frame's estimate and a later frame's
    times the frames after it (raises NotMeasured before this machine's calibration)."""
    server = {k: plan.run_options[k] for k in ("model", "device", "max_pixels")}
    first = estimate_size(plan.size, cache=queue.cache, measure=measure,
                          **(plan.first.to_dict() | server))
    later = estimate_size(plan.size, cache=queue.cache, measure=measure,
                          **(plan.later.to_dict() | server)) if plan.frames > 1 else first
    seconds = first.seconds + (plan.frames - 1) * later.seconds * LATER_FRAME_COST
    peak = max(first.peak_bytes, later.peak_bytes)
    return {"peak_bytes": round(peak), "seconds": round(seconds, 3),
            "budget_bytes": round(first.budget_bytes), "tiled": first.tiled or later.tiled,
            "frames": plan.frames, "frame_size": list(plan.size),
            "first_frame_seconds": round(first.seconds, 3),
            "frame_seconds": round(later.seconds * LATER_FRAME_COST, 3),
            "fits": peak <= first.budget_bytes, "describe": first.describe()}


# -- the runner ---------------------------------------------------------------------------------


class ClipRunner:
    """Paints a clip job with stylize_video and ends it through the queue (as
    Worker._run_picture ends a picture): done, failed, cancelled (its frames go), or
    suspended when the studio stops (its finished frames stay for the next start)."""

    def __init__(self, queue: JobQueue, store: Store, *, cache: Any = None,
                 preview_interval: float = 0.5) -> None:
        self.queue, self.store, self.cache = queue, store, cache
        self.preview_interval = preview_interval

    def __call__(self, job: Job) -> None:
        from brushwork.video.frames import MANIFEST
        from brushwork.video.paint import FrameStep, stylize_video

        stored = [self.store.upload_file(u) for u in (job.content, *job.styles)]
        files = [f for f in stored if f is not None]
        if len(files) != len(stored):
            self.queue.finish(job, "failed", error="an uploaded file is no longer stored")
            return
        missing = absent_weights(job.options["model"], job.run_options["model"]) or \
            video_available()
        if missing is not None:
            self.queue.finish(job, "failed", error=missing)
            return
        output = self.store.result_file(job.id, KIND)
        folder = self.store.frames_dir(job.id)
        resume = (folder / MANIFEST).is_file()
        if not resume and output.is_file():
            # Written, and its frames cleared, just before the last run stopped.
            self._done(job, output)
            return
        frames = int(job.detail.get("frames") or 1)
        first_total = max(1, job.total - (frames - 1) * job.run_options["frame_iterations"])
        weights = [first_total] + [job.run_options["frame_iterations"]] * (frames - 1)
        began = time.monotonic()
        last_preview = 0.0

        def on_step(s: FrameStep) -> None:
            nonlocal last_preview
            if job.cancel.is_set():
                raise JobCancelled()
            if self.queue.stopping:
                raise JobInterrupted()
            it = s.iterate
            before = sum(weights[:s.frame])
            now = time.monotonic()
            preview = None
            if it.step == 1 or now - last_preview >= self.preview_interval:
                preview, last_preview = _jpeg(it.image()), now
            job.detail = dict(job.detail, frame=s.frame + 1, frames=s.frames,
                              frames_done=s.frame)
            overall = dataclasses.replace(
                it, step=before + it.step, total=sum(weights),
                progress=(before + it.progress * weights[s.frame]) / sum(weights),
                elapsed=now - began)
            self.queue.step(job, overall, preview)

        def on_frame(k: int, count: int, result: Any) -> None:
            if k == 0:
                self.store.write_atomic(self.store.result_thumb(job.id),
                                        thumbnail_jpeg(result.image))
            # The next frame is the one in progress now ("frame 3 of 5").
            job.detail = dict(job.detail, frame=min(k + 2, count), frames=count,
                              frames_done=k + 1)
            self.queue.show(job, _jpeg(result.image))

        options = dict(job.run_options)
        try:
            result = stylize_video(files[0], files[1:], output, force=not resume,
                                   resume=resume, callback=on_step, on_frame=on_frame,
                                   cache=self.cache, **options)
        except KeyboardInterrupt:  # JobInterrupted, then VideoInterrupted: frames kept
            self.queue.suspend(job)
            return
        except JobCancelled:
            self._discard(job)
            self.queue.finish(job, "cancelled")
            return
        except BrushworkError as e:
            self._discard(job)
            self.queue.finish(job, "failed", error=clean_message(self.store, str(e)))
            return
        except (MemoryError, RuntimeError) as e:
            oom = out_of_memory(e, advice=MEMORY_ADVICE)
            if oom is None:
                raise
            self._discard(job)
            self.queue.finish(job, "failed", error=str(oom))
            return
        job.detail = dict(job.detail, frames_done=result.frames, painted=result.painted,
                          seconds_per_frame=[round(t, 3) for t in result.seconds_per_frame])
        self._done(job, output)

    def _done(self, job: Job, output: Path) -> None:
        thumb = self.store.result_thumb(job.id)
        if not thumb.is_file():
            with contextlib.suppress(BrushworkError, OSError, StopIteration):
                self.store.write_atomic(thumb, thumbnail_jpeg(first_frame(output)))
        settings = {k: v for k, v in job.run_options.items()
                    if k not in ("device", "max_pixels")}
        size = tuple(job.detail.get("frame_size") or ()) or None
        job.progress = 1.0
        self.queue.finish(job, "done", settings=settings,
                          size=(size[0], size[1]) if size else None)

    def _discard(self, job: Job) -> None:
        """A cancelled or failed clip: its frames and any video written so far go."""
        shutil.rmtree(self.store.frames_dir(job.id), ignore_errors=True)
        for path in (self.store.result_file(job.id, KIND), self.store.result_thumb(job.id)):
            with contextlib.suppress(OSError):
                path.unlink()


def first_frame(path: Path) -> Any:
    """The first frame of a video the studio wrote, as a picture."""
    from brushwork.video.deps import need

    av = need("av")
    with av.open(os.fspath(path)) as container:
        return next(iter(container.decode(video=0))).to_image()


def _jpeg(image: Any, quality: int = 90) -> bytes:
    import io

    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


# -- HTTP ---------------------------------------------------------------------------------------


def clip_routes(studio: Studio) -> APIRouter:
    router = APIRouter()
    store, limits, queue = studio.store, studio.limits, studio.queue
    # One clip probed at a time, in a child bounded as an image's decode is.
    decoder = Decoder(max_pixels=limits.max_clip_pixels, seconds=limits.decode_seconds,
                      memory_bytes=limits.decode_memory, max_at_once=1,
                      wait_seconds=limits.decode_wait_seconds)
    quota: dict[str, Any] = {"quota_bytes": limits.upload_quota_bytes,
                             "max_uploads": limits.max_uploads}

    @router.get("/api/clips/config")
    def clips_config() -> dict[str, Any]:
        from brushwork.video.settings import VideoSettings

        missing = video_available()
        return {"available": missing is None, "reason": missing,
                "limits": {"max_clip_bytes": limits.max_clip_bytes,
                           "max_clip_seconds": limits.max_clip_seconds,
                           "max_clip_frames": limits.max_clip_frames,
                           "max_clip_pixels": limits.max_clip_pixels},
                "defaults": {k: v for k, v in VideoSettings().to_dict().items()
                             if k in VIDEO_OPTIONS} | {"init": "prev-warped"}}

    @router.post("/api/upload/clip", status_code=201)
    async def upload_clip(request: Request) -> dict[str, Any]:
        missing = video_available()
        if missing is not None:
            raise HTTPException(501, missing)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HTTPException(415, "send multipart/form-data with the video in a field "
                                     "named 'file'")
        try:
            form = await request.form(max_files=1, max_fields=8, max_part_size=64 * 1024)
        except (HTTPException, BodyTooLarge):
            raise
        except Exception as e:  # the multipart parser's own errors
            raise HTTPException(400, f"malformed multipart body ({type(e).__name__})") from None
        tmp: Path | None = None
        try:
            file = form.get("file")
            if not isinstance(file, UploadFile):
                raise HTTPException(400, "no file in the field named 'file'")
            name = display_name(file.filename)
            store.check_quota(0, **quota)  # already full: no need to read it
            tmp = await run_in_threadpool(_spool, file, store.uploads_dir,
                                          limits.max_clip_bytes)
            info = await decoder.call(probe, os.fspath(tmp), limits.max_clip_pixels,
                                      limits.max_clip_seconds, limits.max_clip_frames,
                                      what="the video")
            source = tmp
            row = await run_in_threadpool(
                lambda: store.add_upload(name=name, ext=info["ext"], format=info["format"],
                                         width=info["width"], height=info["height"],
                                         data=source, thumb=info["thumb"],
                                         video=info["video"], **quota))
            tmp = None  # renamed into place
        except UploadError as e:
            headers = {"Retry-After": str(e.retry_after)} if e.retry_after else None
            raise HTTPException(e.status, e.message, headers=headers) from None
        except QuotaFull as e:
            raise HTTPException(507, str(e)) from None
        finally:
            await form.close()
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()
        return {k: row[k] for k in ("id", "name", "format", "width", "height", "bytes",
                                    "created", "video")}

    async def planned(request: Request) -> tuple[Job, ClipPlan]:
        data = await job_request(request)
        if "masks" in data:
            raise HTTPException(422, "a clip takes no masks")
        try:
            return await run_in_threadpool(plan_clip, queue, data.get("content"),
                                           data.get("styles"), data.get("options", {}))
        except OptionsError as e:
            raise HTTPException(422, clean_message(store, str(e))) from None

    async def estimated(plan: ClipPlan, *, measure: bool) -> dict[str, Any]:
        forecast = await studio.forecasts.in_turn(
            lambda: estimate_clip(queue, plan, measure=measure))
        if not forecast["fits"]:
            raise HTTPException(422, "a frame of the clip would not fit this machine's "
                                "memory: " + forecast["describe"].removeprefix("estimate: "))
        return forecast

    @router.post("/api/clips", status_code=201)
    async def create_clip_job(request: Request) -> dict[str, Any]:
        job, plan = await planned(request)
        with contextlib.suppress(NotMeasured):  # as a picture's: the run checks again
            await estimated(plan, measure=False)
        return await enqueue(queue, job)

    @router.post("/api/clips/estimate")
    async def estimate_clip_job(request: Request) -> dict[str, Any]:
        job, plan = await planned(request)
        try:
            forecast = await estimated(plan, measure=queue.idle())
        except NotMeasured:
            return {"estimate": None, "frames": plan.frames,
                    "text": f"{plan.frames} frames; the estimate comes once the studio is "
                            "free to measure this machine"}
        forecast.pop("describe")
        w, h = plan.size
        text = (f"{plan.frames} frames of {w}x{h}: about {format_seconds(forecast['seconds'])}"
                f", peak {forecast['peak_bytes'] / GB:.1f} GB"
                + (", in tiles" if forecast["tiled"] else ""))
        return {"estimate": forecast, "frames": plan.frames, "text": text}

    @router.get("/api/jobs/{job_id}/video")
    def video(job_id: str, download: bool = False) -> Response:
        row = store.job(job_id)
        if row is None:
            raise HTTPException(404, "no such job")
        path = store.result_file(job_id, KIND)
        if row.get("kind") != KIND or row["state"] != "done" or not path.is_file():
            raise HTTPException(404, f"the job has no video (it is a {row.get('kind')} job, "
                                     f"{row['state']})")
        # Starlette's FileResponse answers Range requests (206), which players need to seek.
        return FileResponse(path, media_type="video/mp4",
                            filename=f"brushwork-{job_id}.mp4" if download else None,
                            headers={"Cache-Control": "no-cache"})

    return router


def _spool(file: UploadFile, folder: Path, max_bytes: int) -> Path:
    """The uploaded file copied into ``folder`` under a temporary name (prune removes
    one a crash leaves); UploadError past ``max_bytes`` or when empty."""
    file.file.seek(0)
    tmp = tempfile.NamedTemporaryFile(delete=False, dir=folder, prefix=".clip-")
    path = Path(tmp.name)
    try:
        with tmp:
            seen = 0
            while chunk := file.file.read(CHUNK):
                seen += len(chunk)
                if seen > max_bytes:
                    raise UploadError(413, f"the video is over the limit of {max_bytes} "
                                           "bytes")
                tmp.write(chunk)
        if not seen:
            raise UploadError(400, "the file is empty")
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return path


def register(queue: JobQueue, worker_runners: dict[str, Callable[[Job], None]], store: Store,
             *, cache: Any = None, preview_interval: float = 0.5) -> None:
    """Add the clip kind to the queue (its restart rebuilder) and the worker (its runner)."""
    queue.rebuilders[KIND] = lambda row: plan_clip(queue, row["content"], row["styles"],
                                                   row["options"])[0]
    worker_runners[KIND] = ClipRunner(queue, store, cache=cache,
                                      preview_interval=preview_interval)

