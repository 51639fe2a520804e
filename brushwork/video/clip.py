"""Reading a video: which of its frames a run paints, at what rate, and decoding them.

PyAV (FFmpeg's libraries, shipped in its wheel) reads any file FFmpeg reads.  The clip is
looked at first by demuxing only (packet timestamps, no decoding), so that a bad file or
range fails before any work; frames are decoded one by one while painting.
"""

from __future__ import annotations

import bisect
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from brushwork.errors import BrushworkError
from brushwork.io.images import MIN_SIDE, resize_to, scaled_size
from brushwork.video.deps import need
from brushwork.video.settings import VideoSettings

DEFAULT_RATE = Fraction(25)  # when a stream states no rate and has one frame


@dataclass(frozen=True)
class Clip:
    """The frames a run paints: ``picks[k]`` is the source frame (in presentation order)
    shown as output frame k, at ``rate`` frames per second."""

    path: Path
    size: tuple[int, int]  # the source's (width, height)
    rate: Fraction
    picks: list[int]
    start_time: float  # seconds from the stream's first frame to output frame 0
    first_pts_time: float  # the stream's first frame, in the file's clock (for the audio)
    has_audio: bool
    # Each source frame's presentation time, from the first frame's, in order: decoded
    # frames are matched to them, so a frame the decoder drops does not shift the rest.
    times: tuple[float, ...] = ()

    @property
    def frames(self) -> int:
        return len(self.picks)

    @property
    def duration(self) -> float:
        return len(self.picks) / float(self.rate)

    def frame_size(self, long_side: int) -> tuple[int, int]:
        """The painted frames' (width, height): the long side ``long_side``, both sides
        even (H.264's 4:2:0 needs it)."""
        w, h = scaled_size(self.size, long_side)
        w, h = max(2, w - w % 2), max(2, h - h % 2)
        if min(w, h) < MIN_SIDE:
            raise BrushworkError(f"--size {long_side} makes {w}x{h} frames of this "
                                 f"{self.size[0]}x{self.size[1]} video; the short side must "
                                 f"be at least {MIN_SIDE} px")
        return w, h


def _name(path: Path) -> str:
    return f"video '{os.fsdecode(path)}'"


def _open(path: Path) -> Any:
    av = need("av")
    name = _name(path)
    if not path.exists():
        raise BrushworkError(f"{name} does not exist")
    if not path.is_file():
        raise BrushworkError(f"{name} is not a file")
    try:
        return av.open(os.fspath(path), "r")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise BrushworkError(f"{name} cannot be read as a video ({_reason(e)})") from None


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200]


def open_clip(path: str | os.PathLike[str], video: VideoSettings) -> Clip:
    """The frames of ``path`` that ``video``'s --start, --end, --fps and --frames select;
    BrushworkError for a file that is not a video, has no video stream or no frames, or
    a range outside the clip."""
    av = need("av")
    p = Path(os.fsdecode(path)).expanduser()
    name = _name(p)
    with _open(p) as container:
        if not container.streams.video:
            raise BrushworkError(f"{name} has no video stream")
        stream = container.streams.video[0]
        try:
            times = _frame_times(container, stream)
        except av.FFmpegError as e:
            raise BrushworkError(f"{name} cannot be read as a video ({_reason(e)})") from None
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or stream.guessed_rate
        has_audio = bool(container.streams.audio)
    if not width or not height:  # FFmpeg guessed a format but found no picture in it
        raise BrushworkError(f"{name} is not a video: FFmpeg finds no pictures in it")
    if not times:
        raise BrushworkError(f"{name} has no frames")
    if not rate or rate <= 0:
        rate = _rate_from(times)
    first = times[0]
    rel = [t - first for t in times]
    step = 1 / float(rate)
    length = rel[-1] + step  # the clip's duration
    start = video.start or 0.0
    if start >= length:
        raise BrushworkError(f"--start {start:g} s is past the end of {name} ({length:.2f} s)")
    end = min(video.end, length) if video.end is not None else length
    out_rate = Fraction(video.fps).limit_denominator(1001) if video.fps else Fraction(rate)
    picks: list[int] = []
    if video.fps:
        k = 0
        while (t := start + k / float(out_rate)) < end - 1e-9:
            picks.append(max(0, bisect.bisect_right(rel, t + 1e-6) - 1))
            k += 1
    else:
        picks = [i for i, t in enumerate(rel) if start - 1e-6 <= t < end - 1e-9]
    if not picks:
        raise BrushworkError(f"{name} has no frames from {start:g} s to {end:g} s")
    a, b = video.frame_range()
    if a >= len(picks) or (b is not None and b > len(picks)):
        raise BrushworkError(f"--frames {video.frames} is outside the clip, which has "
                             f"{len(picks)} frames (0:{len(picks)})")
    picks = picks[a:b]
    start_time = rel[picks[0]] if not video.fps else start + a / float(out_rate)
    return Clip(p, (width, height), out_rate, picks, start_time, first, has_audio, tuple(rel))


def _frame_times(container: Any, stream: Any) -> list[float]:
    """Each frame's presentation time in seconds, sorted, from the packets alone; by
    decoding when the packets carry no timestamps."""
    packets = [packet for packet in container.demux(stream) if packet.size]
    if not packets:
        return []
    times = [float(packet.pts * packet.time_base) for packet in packets if packet.pts is not None]
    if len(times) == len(packets):
        return sorted(times)
    container.seek(0)
    decoded = [frame.time for frame in container.decode(stream)]
    return sorted(t if t is not None else i for i, t in enumerate(decoded))


def _rate_from(times: list[float]) -> Fraction:
    if len(times) < 2:
        return DEFAULT_RATE
    gaps = np.diff(np.asarray(times))
    gap = float(np.median(gaps[gaps > 0])) if (gaps > 0).any() else 1 / float(DEFAULT_RATE)
    return Fraction(1 / gap).limit_denominator(1001)


def read_frames(clip: Clip, size: tuple[int, int]) -> Iterator[tuple[int, Image.Image]]:
    """Output frames ``(k, picture)`` in order, each resized to ``size`` (width, height);
    a source frame shown several times is decoded once.  Decoded frames are matched to
    the source frames by their timestamps; one the decoder skips (a damaged packet) is
    shown as the next frame decoded."""
    av = need("av")
    wanted: dict[int, list[int]] = {}
    for k, source in enumerate(clip.picks):
        wanted.setdefault(source, []).append(k)
    pending = deque(sorted(wanted))  # source frames not yet yielded (k rises with them)
    with _open(clip.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = -1
        try:
            for n, frame in enumerate(container.decode(stream)):
                index = n if frame.time is None or not clip.times else \
                    _nearest(clip.times, frame.time - clip.first_pts_time)
                if not pending or pending[0] > index:
                    continue
                picture = resize_to(frame.to_image().convert("RGB"), size)
                while pending and pending[0] <= index:
                    for k in wanted[pending.popleft()]:
                        yield k, picture
                if not pending:
                    return
        except av.FFmpegError as e:
            raise BrushworkError(f"{_name(clip.path)} could not be decoded after frame {index} "
                                 f"({_reason(e)})") from None
    raise BrushworkError(f"{_name(clip.path)} ended before frame {pending[0]}, which its "
                         f"index lists")


def _nearest(times: tuple[float, ...], t: float) -> int:
    """The index of the time in the sorted ``times`` nearest to ``t``."""
    i = bisect.bisect_left(times, t)
    if i == 0:
        return 0
    if i == len(times):
        return len(times) - 1
    return i if times[i] - t < t - times[i - 1] else i - 1
