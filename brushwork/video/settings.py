"""The options of a video run and their defaults, in one place (with brushwork.engine.settings,
whose options apply to every frame)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from brushwork.engine.settings import _opt
from brushwork.errors import BrushworkError

INITS = ("prev-warped", "content", "noise")
# --fps: from one frame in 100 s (its rate is kept as a fraction with a denominator of at
# most 1001, like 30000/1001, so a smaller rate would become 0) to 240, the fastest rate
# players show; a higher rate only repeats frames, and each output frame is listed.
MIN_FPS = 0.01
MAX_FPS = 240.0


@dataclass(frozen=True)
class VideoSettings:
    # The temporal terms (Ruder et al. 2016).
    frame_iterations: int = _opt(
        50, "optimiser evaluations for each frame after the first, at the output's size; "
        "they start from the previous frame's painting carried along the motion, so they "
        "need far fewer than the first frame, which gets --iterations over the whole pyramid",
        metavar="N")
    # On the scale of the style loss (beta = 1e4 with the paper's normalisation), which is
    # size-invariant as this mean is.  1e6 holds too hard: new parts' edges cannot settle
    # in a frame's steps and leave speckles; 1e4 flickers 4x more than 1e5, which keeps
    # both clean (the sweep in docs/video.md).
    temporal_weight: float = _opt(
        1e5, "gamma, the weight of the temporal loss: the mean squared difference (grey "
        "levels of 0..255) to the earlier frames' paintings carried along the motion, where "
        "that is reliable; 0 = frame by frame", metavar="W")
    temporal_frames: tuple[int, ...] = _opt(
        (1, 2, 4), "earlier frames the temporal loss compares with, in frames back: 1 is the "
        "short-term term, the others long-term ones (each pixel counts from the nearest "
        "frame where the motion is reliable)", metavar="J,J,...")
    # Which part of the clip, at which rate.
    fps: float | None = _opt(None, f"frames per second of the output, {MIN_FPS:g} to "
                             f"{MAX_FPS:g} (frames are dropped or repeated)", metavar="FPS",
                             shown="the input's")
    start: float | None = _opt(None, "start this many seconds into the clip", metavar="SEC",
                               shown="0")
    end: float | None = _opt(None, "stop this many seconds into the clip", metavar="SEC",
                             shown="the end")
    frames: str | None = _opt(
        None, "paint only frames A to B-1 (counted from 0, after --start/--end/--fps), "
        "as A:B; A: or :B leave one end open", metavar="A:B", shown="all")

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def frame_range(self) -> tuple[int, int | None]:
        """``frames`` as (first, end), end exclusive, None = to the end of the clip."""
        if self.frames is None:
            return 0, None
        first, _, last = self.frames.partition(":")
        return (int(first) if first.strip() else 0), (int(last) if last.strip() else None)


def video_fields() -> list[str]:
    return [f.name for f in fields(VideoSettings)]


def validate(v: VideoSettings) -> None:
    """Raise BrushworkError naming the first bad option and its value."""
    if isinstance(v.frame_iterations, bool) or not isinstance(v.frame_iterations, int) \
            or v.frame_iterations <= 0:
        raise BrushworkError(f"frame_iterations must be a positive integer, not "
                             f"{v.frame_iterations!r}")
    if not _number(v.temporal_weight) or v.temporal_weight < 0:
        raise BrushworkError(f"temporal_weight must be a non-negative finite number, not "
                             f"{v.temporal_weight!r}")
    if not v.temporal_frames or any(isinstance(j, bool) or not isinstance(j, int) or j < 1
                                    for j in v.temporal_frames) \
            or len(set(v.temporal_frames)) != len(v.temporal_frames):
        raise BrushworkError(f"temporal_frames must be distinct positive frame counts, such as "
                             f"1,2,4; not {v.temporal_frames!r}")
    if v.fps is not None and (not _number(v.fps) or not MIN_FPS <= v.fps <= MAX_FPS):
        raise BrushworkError(f"fps must be from {MIN_FPS:g} to {MAX_FPS:g} frames per second, "
                             f"not {v.fps!r}")
    for name in ("start", "end"):
        value = getattr(v, name)
        if value is not None and (not _number(value) or value < 0):
            raise BrushworkError(f"{name} must be 0 or a positive number of seconds, "
                                 f"not {value!r}")
    if v.start is not None and v.end is not None and v.end <= v.start:
        raise BrushworkError(f"end ({v.end:g} s) must come after start ({v.start:g} s)")
    if v.frames is not None:
        first, colon, last = str(v.frames).partition(":")
        try:
            if not colon:
                raise ValueError
            a = int(first) if first.strip() else 0
            b = int(last) if last.strip() else None
        except ValueError:
            raise BrushworkError(f"frames must be A:B (frame numbers from 0, B excluded), "
                                 f"not {v.frames!r}") from None
        if a < 0 or (b is not None and b <= a):
            raise BrushworkError(f"frames {v.frames!r} is empty or negative: A:B needs "
                                 f"0 <= A < B")


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and \
        math.isfinite(value)
