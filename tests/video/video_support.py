"""Tiny synthetic clips for the video tests, written with PyAV: a textured square sliding
over a gradient, optionally with a tone on an audio track."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

SQUARE = 12  # px
SQUARE_Y = 16


def need_video_packages() -> None:
    """Skip without PyAV and OpenCV, except in CI, which installs the video extra."""
    for module in ("av", "cv2"):
        if os.environ.get("CI"):
            __import__(module)
        else:
            pytest.importorskip(module)


def square_x(k: int, step: int, x0: int = 8) -> int:
    return x0 + step * k


def clip_frame(k: int, size: tuple[int, int] = (64, 48), step: int = 3) -> np.ndarray:
    """Frame k: a still background (a diagonal gradient under a fine wavy texture, which
    the flow can lock on to), and a checkered square at x = 8 + step * k."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    texture = 30 * np.sin(x * 0.9 + 0.3 * y) * np.cos(y * 0.7 - 0.2 * x)
    frame = np.stack([60 + 120 * x / w + texture, 60 + 120 * y / h + texture,
                      140 - texture], axis=-1)
    sx = square_x(k, step)
    checker = ((np.arange(SQUARE)[:, None] // 3 + np.arange(SQUARE)[None, :] // 3) % 2)
    patch = np.where(checker[..., None] == 1, [250, 230, 40], [200, 30, 30])
    region = frame[SQUARE_Y:SQUARE_Y + SQUARE, sx:sx + SQUARE]  # (cut off by a small frame)
    region[...] = patch[:region.shape[0], :region.shape[1]]
    return frame.astype(np.uint8)


def write_clip(path: Path, frames: int = 6, size: tuple[int, int] = (64, 48), step: int = 3,
               rate: int = 12, codec: str = "ffv1", audio: bool = False,
               audio_rate: int = 8000, audio_codec: str = "aac",
               times: list[float] | None = None) -> Path:
    """The clip as a video file (ffv1 in .mkv is lossless; libx264 in .mp4 is not).
    ``times``: each frame's time in seconds (a variable frame rate), in 1/1000 s; else
    frame k is at k / rate."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=rate)
        video.width, video.height = size
        video.pix_fmt = "yuv420p" if codec == "libx264" else "bgr0"
        time_base = Fraction(1, 1000) if times is not None else Fraction(1, rate)
        if times is not None:
            video.codec_context.time_base = time_base
        sound = out.add_stream(audio_codec, rate=audio_rate) if audio else None
        for k in range(frames if times is None else len(times)):
            frame = av.VideoFrame.from_ndarray(clip_frame(k, size, step), format="rgb24")
            frame.pts = k if times is None else round(times[k] * 1000)
            frame.time_base = time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            _write_tone(out, sound, audio_rate, frames / rate)
    return path


def _write_tone(out, sound, rate: int, seconds: float) -> None:
    """A 440 Hz tone, stereo, in the encoder's first sample format."""
    import av

    fmt = av.AudioFormat(sound.codec_context.codec.audio_formats[0].name)
    samples = int(rate * seconds)
    t = np.arange(samples) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440 * t))[None, :]
    chunk = 1024
    for i in range(0, samples, chunk):
        part = np.repeat(tone[:, i:i + chunk], 2, axis=0)
        if fmt.name.startswith("s16"):
            part = (part * 32767).astype(np.int16)
        else:
            part = part.astype(np.float32)
        if not fmt.is_planar:
            part = part.T.reshape(1, -1)
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format=fmt.name,
                                        layout="stereo")
        af.sample_rate = rate
        af.pts = i
        af.time_base = Fraction(1, rate)
        out.mux(sound.encode(af))
    out.mux(sound.encode(None))


def read_video(path: Path) -> tuple[list[np.ndarray], bool, float]:
    """(frames as RGB arrays, whether it has audio, the audio's duration in seconds)."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        has_audio = bool(container.streams.audio)
        seconds = 0.0
        if has_audio:
            container.seek(0)
            seconds = sum(f.samples / f.sample_rate for f in container.decode(audio=0))
    return frames, has_audio, seconds


def frame_times(path: Path) -> list[float]:
    """Each decoded frame's presentation time in seconds, in order."""
    import av

    with av.open(str(path)) as container:
        return [float(f.time) for f in container.decode(video=0)]


def audio_rate(path: Path) -> int | None:
    """The sample rate of the file's audio stream; None without one."""
    import av

    with av.open(str(path)) as container:
        audio = container.streams.audio
        return audio[0].codec_context.sample_rate if audio else None
