"""Writing the painted frames as an MP4 (H.264) with the source's audio, atomically.

The frames come from the run's folder of finished frames (brushwork.video.frames), so the
video can be (re)written at any moment from what is finished: at the end, and on Ctrl-C.
Before the first frame is painted, :func:`encoder_check` writes a short video in memory
the way the run will, audio included, so that nothing the run paints is lost to an
encoder that cannot take it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from brushwork.errors import BrushworkError, OutputError
from brushwork.io.images import atomic_write
from brushwork.video.clip import Clip, _open
from brushwork.video.deps import need

VIDEO_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
CODEC = "libx264"
CRF = "18"  # x264's constant quality: 18 is near transparent for painted frames
AUDIO_CODEC = "aac"
# The audio's sample rate: the source's when the encoder takes it, up to this; else the
# encoder's rate nearest to it (192 kHz PCM becomes 48 kHz AAC).
MAX_AUDIO_RATE = 48000
TRIAL_AUDIO = 0.5  # seconds of the source's audio encoded before painting


@dataclass(frozen=True)
class AudioPlan:
    """How the source's audio is written: resampled to ``rate`` and ``layout``."""

    rate: int
    layout: str


def _one_line(e: BaseException) -> str:
    return " ".join((str(e) or type(e).__name__).split())[:200]


def encoder_check(path: Path, size: tuple[int, int], clip: Clip,
                  warn: Callable[[str], None]) -> AudioPlan | None:
    """Encode two blank frames in memory as the run will, with a little of the source's
    audio: OutputError now, not after the painting, when this FFmpeg cannot write the
    picture; when it cannot write the audio, ``warn`` once and return None (the video is
    written without sound).  Returns how the audio is written."""
    av = need("av")
    fmt = VIDEO_FORMATS[path.suffix.lower()]
    blank = Image.new("RGB", size)
    try:
        _encode(io.BytesIO(), fmt, [blank, blank], clip, 2, None)
    except (av.FFmpegError, ValueError, OSError) as e:
        raise OutputError(f"output '{path}': this FFmpeg cannot write {size[0]}x{size[1]} "
                          f"H.264 at {float(clip.rate):g} fps ({_one_line(e)})") from None
    if not clip.has_audio:
        return None
    reason = "it has no audio stream FFmpeg can decode"
    for plan in _audio_plans(clip):
        try:
            _encode(io.BytesIO(), fmt, [blank, blank], clip, 2, plan, trial=True)
            return plan
        except (av.FFmpegError, ValueError, OSError, BrushworkError) as e:
            reason = _one_line(e)
    warn(f"the audio of video '{clip.path}' cannot be written to '{path}' "
         f"({reason}); the video is written without sound")
    return None


def _audio_plans(clip: Clip) -> list[AudioPlan]:
    """What to try for the audio, best first: the source's channel layout, then stereo;
    at the rate closest to the source's that the encoder takes."""
    av = need("av")
    try:
        with _open(clip.path) as container:
            if not container.streams.audio:
                return []
            context = container.streams.audio[0].codec_context
            source_rate, layout = context.sample_rate or MAX_AUDIO_RATE, context.layout.name
    except (av.FFmpegError, BrushworkError, OSError):
        return []
    try:
        rates = list(av.Codec(AUDIO_CODEC, "w").audio_rates or [])
    except (av.FFmpegError, ValueError):
        rates = []
    wanted = min(source_rate, MAX_AUDIO_RATE)
    rate = source_rate if source_rate in rates and source_rate <= MAX_AUDIO_RATE else \
        min(rates, key=lambda r: (abs(r - wanted), -r)) if rates else wanted
    layouts = [layout] + (["stereo"] if layout != "stereo" else [])
    return [AudioPlan(rate, name) for name in layouts]


def write_video(path: Path, frames: Iterable[Image.Image], clip: Clip, count: int,
                audio: AudioPlan | None) -> None:
    """Write ``frames`` (the first ``count`` of the clip's output frames) to ``path``
    atomically, as the pictures are written (a temporary file in the same folder, given
    the pictures' mode, then renamed), with the source's audio over the same span when
    ``audio`` says how."""
    av = need("av")
    fmt = VIDEO_FORMATS[path.suffix.lower()]

    def write(file: Any) -> None:
        try:
            _encode(file, fmt, frames, clip, count, audio)
        except av.FFmpegError as e:
            raise OutputError(f"output '{path}' could not be written ({_one_line(e)})"
                              ) from None

    atomic_write(path, f"output '{path}'", True, write)


def _encode(file: Any, fmt: str, frames: Iterable[Image.Image], clip: Clip, count: int,
            audio_plan: AudioPlan | None, *, trial: bool = False) -> None:
    """The first ``count`` output frames at their timestamps, and the audio under them
    (``trial``: only the first TRIAL_AUDIO seconds, and an audio error is raised)."""
    av = need("av")
    time_base, pts = clip.timestamps(count)
    with av.open(file, "w", format=fmt) as out:
        # A variable frame rate keeps its timestamps, which B-frames would reorder into
        # decoding times that make an MP4's durations wrong: none then.
        regular = len(set(np.diff(pts).tolist())) <= 1
        options = {"crf": CRF} if regular else {"crf": CRF, "bf": "0"}
        video = out.add_stream(CODEC, rate=clip.rate, options=options)
        video.codec_context.time_base = time_base
        video.pix_fmt = "yuv420p"
        audio_in = _audio_source(clip, trial) if audio_plan is not None else None
        audio = None
        if audio_in is not None and audio_plan is not None:
            audio = out.add_stream(AUDIO_CODEC, rate=audio_plan.rate, layout=audio_plan.layout)
        try:
            opened = False
            for i, picture in enumerate(frames):
                if i >= len(pts):
                    break
                if not opened:
                    video.width, video.height = picture.size
                    opened = True
                frame = av.VideoFrame.from_ndarray(np.asarray(picture.convert("RGB")),
                                                   format="rgb24")
                frame.pts = pts[i]
                frame.time_base = time_base
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
            if audio is not None and audio_in is not None:
                _copy_audio(out, audio, audio_in, clip,
                            TRIAL_AUDIO if trial else clip.span(count), strict=trial)
        finally:
            if audio_in is not None:
                audio_in[0].close()


def _audio_source(clip: Clip, strict: bool) -> tuple[Any, Any] | None:
    """The source's container and audio stream, opened as the video is (only real video
    containers); None when it cannot be opened (an error with ``strict``)."""
    av = need("av")
    try:
        container = _open(clip.path)
    except (av.FFmpegError, OSError, BrushworkError):
        if strict:
            raise
        return None
    if not container.streams.audio:
        container.close()
        if strict:
            raise BrushworkError("it has no audio stream")
        return None
    return container, container.streams.audio[0]


def _copy_audio(out: Any, audio: Any, source: tuple[Any, Any], clip: Clip,
                duration: float, *, strict: bool) -> None:
    """The source's audio from output frame 0's time for ``duration`` seconds, resampled
    to the encoder's format, layout and rate, re-encoded and trimmed to the sample
    (``strict``: a decoding error is raised, not taken for a damaged tail)."""
    av = need("av")
    container, stream = source
    rate = audio.codec_context.sample_rate
    begin = clip.first_pts_time + clip.start_time
    end = begin + duration
    resampler = av.AudioResampler(format=audio.codec_context.format.name,
                                  layout=audio.codec_context.layout.name, rate=rate)
    written = 0
    try:
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            for piece in resampler.resample(frame):
                written = _write_piece(out, audio, piece, frame.time, begin, end, rate, written)
            if frame.time > end:
                break
        for piece in resampler.resample(None):  # what the resampler still holds
            written = _write_piece(out, audio, piece, end, begin, end, rate, written)
    except av.FFmpegError:
        if strict:
            raise
        # A damaged audio tail: keep what was read; the picture is what was asked for.
    out.mux(audio.encode(None))


def _write_piece(out: Any, audio: Any, piece: Any, time: float, begin: float, end: float,
                 rate: int, written: int) -> int:
    """Encode the part of ``piece`` (starting at ``time``) that lies in [begin, end)."""
    av = need("av")
    first = max(0, round((begin - time) * rate))
    last = min(piece.samples, round((end - time) * rate))
    if last <= first:
        return written
    if first > 0 or last < piece.samples:
        data = piece.to_ndarray()
        planar = piece.format.is_planar
        data = data[:, first:last] if planar else \
            data[:, first * len(piece.layout.channels):last * len(piece.layout.channels)]
        piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(data),
                                           format=piece.format.name, layout=piece.layout.name)
        piece.sample_rate = rate
    piece.pts = written
    piece.time_base = Fraction(1, rate)
    out.mux(audio.encode(piece))
    return written + piece.samples
