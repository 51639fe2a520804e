"""Reading a video: which of its frames a run paints, at what rate, and decoding them.

PyAV (FFmpeg's libraries, shipped in its wheel) reads the file, but only through the
demuxers of real video containers (``DEMUXERS``): FFmpeg's playlists, concat lists and
image readers open other files or are pictures, which ``stylize`` reads with its own
checks.  The clip is looked at first by demuxing only (packet timestamps, no decoding), so
that a bad file or range fails before any work; frames are decoded one by one while
painting, each held to the pictures' pixel limits.
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
from brushwork.io.images import DEFAULT_MAX_PIXELS, MIN_SIDE, resize_to, scaled_size
from brushwork.video.deps import need
from brushwork.video.settings import VideoSettings

DEFAULT_RATE = Fraction(25)  # when a stream states no rate and has one frame

# FFmpeg's names of the demuxers a video is read with (a name may list several formats,
# "matroska,webm": FFmpeg matches any of them).  Left out on purpose: playlists (hls,
# dash), concat lists and other demuxers that open further files by the names inside,
# image readers (image2, png_pipe, gif, ...: pictures go to `stylize`, under its checks),
# raw bitstreams without timestamps, and devices.
DEMUXERS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts", "mpeg", "flv", "ogg",
            "asf")
DEMUXERS_TEXT = "MP4/MOV, Matroska/WebM, AVI, MPEG-TS, MPEG-PS, FLV, Ogg, ASF/WMV"
# Given to FFmpeg when a file is opened: it refuses any other demuxer right after probing
# the first bytes, before the demuxer reads anything (a playlist opens nothing), and any
# protocol but plain files for what a demuxer opens.
_OPEN_OPTIONS = {"format_whitelist": ",".join(DEMUXERS), "protocol_whitelist": "file"}


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
    max_pixels: int = DEFAULT_MAX_PIXELS  # of every decoded frame
    # True when --fps sets the output's rate; else each output frame keeps its source
    # frame's time (a variable frame rate stays variable), in the source's time base.
    resampled: bool = True
    time_base: Fraction = Fraction(1, 1000)  # the source stream's

    @property
    def frames(self) -> int:
        return len(self.picks)

    @property
    def duration(self) -> float:
        return len(self.picks) / float(self.rate)

    def timestamps(self, count: int) -> tuple[Fraction, list[int]]:
        """The output's time base and the first ``count`` output frames' timestamps in
        it, from 0: ``k`` in 1/rate with --fps, else the source frames' own times (each
        at least one tick after the one before)."""
        if self.resampled or not self.times:
            return 1 / self.rate, list(range(count))
        base = self.times[self.picks[0]]
        pts: list[int] = []
        for source in self.picks[:count]:
            t = round((self.times[source] - base) / self.time_base)
            pts.append(max(t, pts[-1] + 1) if pts else 0)
        return self.time_base, pts

    def span(self, count: int) -> float:
        """Seconds that the first ``count`` output frames cover: to the source frame after
        the last one (a frame's time at the output's mean rate past the clip's end)."""
        if self.resampled or not self.times or count == 0:
            return count / float(self.rate)
        last = self.picks[count - 1]
        end = self.times[last + 1] if last + 1 < len(self.times) else \
            self.times[last] + 1 / float(self.rate)
        return end - self.times[self.picks[0]]

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
        return av.open(os.fspath(path), "r", container_options=dict(_OPEN_OPTIONS))
    except av.ArgumentError:  # EINVAL: FFmpeg's demuxer is not on the list
        raise BrushworkError(f"{name} is not a video file brushwork reads (accepted: "
                             f"{DEMUXERS_TEXT}); pictures, animated ones included, are painted "
                             f"by brushwork stylize") from None
    except (av.FFmpegError, OSError, ValueError) as e:
        raise BrushworkError(f"{name} cannot be read as a video ({_reason(e)})") from None


def check_pixels(size: tuple[int, int], what: str, max_pixels: int) -> None:
    """The pictures' limits (brushwork.io.images): at most ``max_pixels``, at least
    MIN_SIDE on a side."""
    w, h = size
    if w * h > max_pixels:
        raise BrushworkError(f"{what} is {w}x{h} = {w * h / 1e6:.3g} megapixels, over the "
                             f"limit of {max_pixels / 1e6:.3g} (max_pixels)")
    if min(w, h) < MIN_SIDE:
        raise BrushworkError(f"{what} is {w}x{h} pixels; at least {MIN_SIDE} pixels are "
                             f"needed on each side")


def _limit_decoder(stream: Any, max_pixels: int) -> None:
    """FFmpeg's own bound on the pictures its decoder allocates: a frame bigger than its
    stream declared fails to decode before its memory is taken."""
    stream.codec_context.options = {**stream.codec_context.options,
                                    "max_pixels": str(max_pixels)}


def _over_limit(stream: Any, what: str, max_pixels: int) -> None:
    """After a decoding error: the pixel limit's error when the decoder had met a picture
    over it (it says so in the stream's size), else nothing."""
    check_pixels((stream.codec_context.width or MIN_SIDE,
                  stream.codec_context.height or MIN_SIDE), what, max_pixels)


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200]


def open_clip(path: str | os.PathLike[str], video: VideoSettings, *,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> Clip:
    """The frames of ``path`` that ``video``'s --start, --end, --fps and --frames select;
    BrushworkError for a file that is not a video, has no video stream or no frames, a
    picture size outside the pictures' limits, or a range outside the clip."""
    av = need("av")
    p = Path(os.fsdecode(path)).expanduser()
    name = _name(p)
    with _open(p) as container:
        if not container.streams.video:
            raise BrushworkError(f"{name} has no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:  # FFmpeg guessed a format but found no picture in it
            raise BrushworkError(f"{name} is not a video: FFmpeg finds no pictures in it")
        check_pixels((width, height), name, max_pixels)  # before any frame is decoded
        _limit_decoder(stream, max_pixels)
        try:
            times = _frame_times(container, stream)
        except av.FFmpegError as e:
            _over_limit(stream, f"a frame of {name}", max_pixels)
            raise BrushworkError(f"{name} cannot be read as a video ({_reason(e)})") from None
        rate = stream.average_rate or stream.guessed_rate
        time_base = stream.time_base or Fraction(1, 1000)
        has_audio = bool(container.streams.audio)
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
    return Clip(p, (width, height), out_rate, picks, start_time, first, has_audio, tuple(rel),
                max_pixels=max_pixels, resampled=bool(video.fps), time_base=Fraction(time_base))


def _frame_times(container: Any, stream: Any) -> list[float]:
    """Each frame's presentation time in seconds, sorted, from the packets alone (each
    dropped once its time is read: a long film's packets are gigabytes); by decoding when
    the packets carry no timestamps."""
    times: list[float] = []
    untimed = False
    for packet in container.demux(stream):
        if not packet.size:
            continue
        if packet.pts is None:
            untimed = True
        else:
            times.append(float(packet.pts * packet.time_base))
    if not untimed:
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
    name = _name(clip.path)
    with _open(clip.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        check_pixels((stream.codec_context.width, stream.codec_context.height), name,
                     clip.max_pixels)
        _limit_decoder(stream, clip.max_pixels)
        index = -1
        try:
            for n, frame in enumerate(container.decode(stream)):
                index = n if frame.time is None or not clip.times else \
                    _nearest(clip.times, frame.time - clip.first_pts_time)
                check_pixels((frame.width, frame.height), f"a frame of {name}",
                             clip.max_pixels)
                if not pending or pending[0] > index:
                    continue
                picture = resize_to(frame.to_image().convert("RGB"), size)
                while pending and pending[0] <= index:
                    for k in wanted[pending.popleft()]:
                        yield k, picture
                if not pending:
                    return
        except av.FFmpegError as e:
            _over_limit(stream, f"a frame of {name}", clip.max_pixels)
            raise BrushworkError(f"{name} could not be decoded after frame {index} "
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
