"""A video run: each frame painted by :func:`brushwork.stylize`, the frames after the first
starting from the previous painting carried along the optical flow and held to the
earlier paintings by the temporal terms (Ruder, Dosovitskiy and Brox 2016)."""

from __future__ import annotations

import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from brushwork.engine.cache import Cache
from brushwork.engine.device import resolve_device
from brushwork.engine.painter import stylize
from brushwork.engine.result import Iterate, Result
from brushwork.engine.settings import Settings
from brushwork.errors import BrushworkError, OutputError
from brushwork.io.images import (
    BrushworkWarning,
    check_side_file,
    load_image,
    to_image,
    to_tensor,
)
from brushwork.video.clip import Clip, open_clip, read_frames
from brushwork.video.encode import VIDEO_FORMATS, AudioPlan, encoder_check, write_video
from brushwork.video.flow import Motion, grey, motion
from brushwork.video.frames import FrameStore, fingerprint, folder_for
from brushwork.video.settings import VideoSettings, video_fields
from brushwork.video.temporal import Earlier, TemporalTerms, carried, warped_start

StepCallback = Callable[["FrameStep"], None]
FrameCallback = Callable[[int, int, Result], None]
Log = Callable[[str], None]


@dataclass
class FrameStep:
    """What a callback receives after every evaluation of a video run."""

    frame: int  # the frame being painted, from 0
    frames: int  # frames in the run
    iterate: Iterate  # the frame's own step, losses and picture


@dataclass
class VideoResult:
    output: Path
    frames: int  # frames written
    painted: int  # of which painted by this call (the others were resumed)
    elapsed: float
    seconds_per_frame: list[float]  # each frame painted by this call, in order
    interrupted: bool = False


class VideoInterrupted(KeyboardInterrupt):
    """Ctrl-C during a video run, after the output was written with the frames finished;
    ``.result`` says how many."""

    def __init__(self, result: VideoResult) -> None:
        super().__init__("interrupted")
        self.result = result


@dataclass(frozen=True)
class Output:
    """Where a run writes: a video file (its frames kept beside it until it is written),
    or a folder of numbered PNG frames."""

    path: Path
    folder: Path  # the finished frames

    @property
    def is_video(self) -> bool:
        return self.path != self.folder

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> Output:
        given = Path(os.fsdecode(path)).expanduser()
        if given.suffix.lower() in VIDEO_FORMATS:
            return cls(given, folder_for(given))
        if given.is_dir() or not given.suffix:
            return cls(given, given)
        raise OutputError(f"output '{os.fsdecode(path)}' has extension '{given.suffix}'; use "
                          f"{', '.join(VIDEO_FORMATS)} (H.264), or a folder for numbered "
                          f"PNG frames")


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Settings options, VideoSettings options) from one set of keyword arguments."""
    names = set(video_fields())
    return ({k: v for k, v in options.items() if k not in names},
            {k: v for k, v in options.items() if k in names})


def stylize_video(source: str | os.PathLike[str], style: Any | Sequence[Any],
                  output: str | os.PathLike[str], *, force: bool = False,
                  resume: bool = False, callback: StepCallback | None = None,
                  on_frame: FrameCallback | None = None, log: Log | None = None,
                  cache: Cache | None = None, **options: Any) -> VideoResult:
    """Paint the video ``source`` in the style of ``style`` (one image or several) into
    ``output``: a video file (.mp4, .mov, .mkv; H.264, with the source's audio) or a
    folder of numbered PNG frames.

    ``options``: the fields of :class:`brushwork.engine.settings.Settings` (they apply to every
    frame; ``init`` may also be "prev-warped", the default: each frame after the first
    starts from the previous painting carried along the motion) and of
    :class:`brushwork.video.VideoSettings`.  Frames are written as they finish;
    ``resume=True`` continues an unfinished run into the same output after its last
    finished frame.  Ctrl-C writes the output with the finished frames and raises
    :class:`VideoInterrupted`.  Everything is checked before the first frame is painted.
    """
    began = time.perf_counter()
    frame_options, video_options = split_options(options)
    video = VideoSettings(**video_options)
    init = frame_options.pop("init", "prev-warped")
    carry_start = init == "prev-warped"
    first = Settings.from_options(frame_options, init="content" if carry_start else init)
    if first.bit_depth != 8 or first.dpi is not None:
        raise BrushworkError("bit_depth and dpi are for pictures and prints; a video is "
                             "encoded at 8 bits with no print size")
    if first.init not in ("content", "noise"):
        load_image(first.init, role="init", max_pixels=first.max_pixels)
    clip = open_clip(source, video, max_pixels=first.max_pixels)
    size = clip.frame_size(first.size)
    # Every frame at the frames' own size (their long side, even): no resize in the engine.
    first = _with(first, size=max(size))
    later = _with(first, iterations=video.frame_iterations, multiscale="off")
    target = Output.at(output)
    styles_in: list[Any] = list(style) if isinstance(style, (list, tuple)) else [style]
    styles = [load_image(s, role="style", max_pixels=first.max_pixels) for s in styles_in]
    blend = list(first.style_weights or [1.0] * len(styles))
    store = FrameStore(target.folder, {
        "inputs": fingerprint(clip, styles, [b / sum(blend) for b in blend]),
        "source": os.fspath(clip.path), "init": init, "settings": first.to_dict(),
        "video": video.to_dict(), "frames": clip.frames, "size": list(size),
        "rate": str(clip.rate)})
    done = store.check(resume=resume, force=force)
    audio = None
    if target.is_video:
        check_side_file(target.path, "output", force=force or resume)
        audio = encoder_check(target.path, size, clip,
                              _warn if log is None else lambda m: log(f"warning: {m}"))
    cache = cache or Cache()
    cache.network(first, resolve_device(first.device), log)  # bad weights fail here
    painter = _FramePainter(video, first, later, styles, cache, carry_start, log)
    timings: list[float] = []
    finished = done
    try:
        store.start(resume=resume)
        if done >= clip.frames and log is not None:
            log(f"all {clip.frames} frames were already painted")
        for k, photo in read_frames(clip, size) if done < clip.frames else ():
            if k < done:  # resumed: only what the next frames compare with
                painter.remember(photo, to_tensor(store.read_painting(k)))
                continue
            t0 = time.perf_counter()

            def step(it: Iterate, k: int = k) -> None:
                if callback is not None:
                    callback(FrameStep(k, clip.frames, it))

            result = painter.paint(photo, step)
            store.write(k, result.image, painter.kept_painting(result))
            finished = k + 1
            timings.append(time.perf_counter() - t0)
            if on_frame is not None:
                on_frame(k, clip.frames, result)
    except KeyboardInterrupt:
        # The frame in progress is dropped: a finished frame is one that ran its course.
        outcome = _finish(target, store, clip, audio, finished, began, timings, done,
                          interrupted=True)
        raise VideoInterrupted(outcome) from None
    except BaseException:
        if finished == done == 0:  # nothing painted: nothing to resume
            store.abandon()
        raise
    return _finish(target, store, clip, audio, finished, began, timings, done,
                   interrupted=False)


def _warn(message: str) -> None:
    warnings.warn(message, BrushworkWarning, stacklevel=3)




def _with(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with ``changes``, validated again."""
    return Settings.from_options(settings.to_dict(), **changes)


def _finish(target: Output, store: FrameStore, clip: Clip, audio: AudioPlan | None,
            finished: int, began: float, timings: list[float], done: int, *,
            interrupted: bool) -> VideoResult:
    """Write the video file from the finished frames (all, or those so far)."""
    if interrupted and finished == done == 0:
        store.abandon()  # nothing painted: no unfinished run to resume
    elif target.is_video and finished > 0:
        write_video(target.path, store.pictures(finished), clip, finished, audio)
        if not interrupted:
            store.done()
    elif not interrupted:
        store.finish_in_place()
    return VideoResult(target.path, finished, finished - done, time.perf_counter() - began,
                       timings, interrupted)


class _FramePainter:
    """Paints frame after frame, keeping the recent frames and their paintings that the
    temporal terms compare with."""

    def __init__(self, video: VideoSettings, first: Settings, later: Settings,
                 styles: list[Image.Image], cache: Cache, carry_start: bool,
                 log: Log | None) -> None:
        self.video, self.first, self.later = video, first, later
        self.styles, self.cache, self.carry_start, self.log = styles, cache, carry_start, log
        depth = max(video.temporal_frames)
        self.greys: deque[np.ndarray] = deque(maxlen=depth)
        self.paintings: deque[torch.Tensor] = deque(maxlen=depth)
        self.last_flow: torch.Tensor | None = None  # the last frame back to the one before

    def _step_back(self, frame: np.ndarray) -> Motion:
        """The motion from ``frame`` back to the last frame, guessed from the last pair's
        (objects keep moving as they moved)."""
        m = motion(frame, self.greys[-1], self.last_flow)
        self.last_flow = m.backward
        return m

    def kept_painting(self, result: Result) -> Image.Image | None:
        """The painting to keep beside the frame for a resumed run, when the frame is not
        the painting (its colours changed after painting)."""
        if self.first.preserve_colors != "luminance":
            return None
        assert result.pixels is not None
        return to_image(result.pixels)

    def remember(self, photo: Image.Image, painting: torch.Tensor) -> None:
        frame = grey(np.asarray(photo))
        if self.greys:  # the flow the next frame's is guessed from, as when painted
            self._step_back(frame)
        self.greys.append(frame)
        self.paintings.append(painting)

    def paint(self, photo: Image.Image, step: Callable[[Iterate], None]) -> Result:
        frame = grey(np.asarray(photo))
        if not self.paintings:
            result = stylize(photo, self.styles, callback=step, log=self.log, cache=self.cache,
                             **self.first.to_dict())
        else:
            back = self._step_back(frame)
            # Frames further back: their motion guessed as the last step's, that many times.
            earlier = [carried(self.paintings[-j], back if j == 1 else motion(
                frame, self.greys[-j], j * back.backward), j)
                for j in sorted(self.video.temporal_frames) if j <= len(self.paintings)]
            start = warped_start(to_tensor(photo), earlier[0]) if self.carry_start else None
            # With no temporal weight nothing holds the frame to the earlier ones: no region
            # of it is newer than another.
            terms = TemporalTerms(earlier, self.video.temporal_weight) \
                if self.video.temporal_weight > 0 else None
            result = stylize(photo, self.styles, callback=step, cache=self.cache, start=start,
                             terms=terms, fresh=terms.fresh() if terms else None,
                             **self.later.to_dict())
        if result.pixels is None:  # pragma: no cover - the engine always sets it
            raise BrushworkError("the engine returned no picture")
        self.greys.append(frame)
        # As written to disk (8 bits), so that a resumed run, which reads it back, paints
        # the next frames exactly as an uninterrupted one.
        self.paintings.append(to_tensor(to_image(result.pixels)))
        return result


__all__ = ["stylize_video", "VideoResult", "VideoInterrupted", "FrameStep", "Output",
           "Earlier", "split_options"]
