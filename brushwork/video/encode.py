"""Writing the painted frames as an MP4 (H.264) with the source's audio, atomically.

The frames come from the run's folder of finished frames (brushwork.video.frames), so the
video can be (re)written at any moment from what is finished: at the end, and on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from brushwork.errors import OutputError
from brushwork.video.clip import Clip
from brushwork.video.deps import need

VIDEO_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
CODEC = "libx264"
CRF = "18"  # x264's constant quality: 18 is near transparent for painted frames
AUDIO_CODEC = "aac"


def encoder_check(path: Path, size: tuple[int, int], rate: Fraction) -> None:
    """Encode two blank frames in memory as the run will: OutputError now, not after the
    painting, when this FFmpeg cannot."""
    av = need("av")
    blank = Image.new("RGB", size)
    try:
        _encode(io.BytesIO(), VIDEO_FORMATS[path.suffix.lower()], [blank, blank], rate,
                None, None)
    except (av.FFmpegError, ValueError, OSError) as e:
        raise OutputError(f"output '{path}': this FFmpeg cannot write {size[0]}x{size[1]} "
                          f"H.264 at {float(rate):g} fps ({' '.join(str(e).split())[:200]})"
                          ) from None


def write_video(path: Path, frames: Iterable[Image.Image], rate: Fraction,
                clip: Clip | None, count: int) -> None:
    """Write ``frames`` (``count`` of them) to ``path`` atomically (a temporary file in the
    same folder, then renamed), with ``clip``'s audio over the same span when it has
    some."""
    av = need("av")
    fmt = VIDEO_FORMATS[path.suffix.lower()]
    tmp = tempfile.NamedTemporaryFile(delete=False, dir=path.parent, prefix=f".{path.name}.",
                                      suffix=path.suffix)
    try:
        with tmp:
            _encode(tmp, fmt, frames, rate, clip, count / float(rate))
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        if isinstance(e, (OSError, av.FFmpegError)):
            raise OutputError(f"output '{path}' could not be written "
                              f"({' '.join(str(e).split())[:200]})") from None
        raise


def _encode(file: Any, fmt: str, frames: Iterable[Image.Image], rate: Fraction,
            clip: Clip | None, duration: float | None) -> None:
    av = need("av")
    with av.open(file, "w", format=fmt) as out:
        video = out.add_stream(CODEC, rate=rate, options={"crf": CRF})
        video.pix_fmt = "yuv420p"
        audio_in = _audio_source(clip) if clip is not None and clip.has_audio else None
        audio = None
        if audio_in is not None:
            audio = out.add_stream(AUDIO_CODEC, rate=audio_in[1].codec_context.sample_rate
                                   or 48000)
        try:
            opened = False
            for i, picture in enumerate(frames):
                if not opened:
                    video.width, video.height = picture.size
                    opened = True
                frame = av.VideoFrame.from_ndarray(np.asarray(picture.convert("RGB")),
                                                   format="rgb24")
                frame.pts = i
                frame.time_base = 1 / rate
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
            if audio is not None and audio_in is not None and clip is not None \
                    and duration is not None:
                _copy_audio(out, audio, audio_in, clip, duration)
        finally:
            if audio_in is not None:
                audio_in[0].close()


def _audio_source(clip: Clip) -> tuple[Any, Any] | None:
    av = need("av")
    try:
        container = av.open(os.fspath(clip.path), "r")
    except (av.FFmpegError, OSError):
        return None
    if not container.streams.audio:
        container.close()
        return None
    return container, container.streams.audio[0]


def _copy_audio(out: Any, audio: Any, source: tuple[Any, Any], clip: Clip,
                duration: float) -> None:
    """The source's audio from output frame 0's time for ``duration`` seconds, re-encoded
    (AAC) and trimmed to the sample."""
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
        pass  # a damaged audio tail: keep what was read; the picture is what was asked for
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
