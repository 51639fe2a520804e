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
    frame[SQUARE_Y:SQUARE_Y + SQUARE, sx:sx + SQUARE] = patch
    return frame.astype(np.uint8)


def write_clip(path: Path, frames: int = 6, size: tuple[int, int] = (64, 48), step: int = 3,
               rate: int = 12, codec: str = "ffv1", audio: bool = False) -> Path:
    """The clip as a video file (ffv1 in .mkv is lossless; libx264 in .mp4 is not)."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=rate)
        video.width, video.height = size
        video.pix_fmt = "yuv420p" if codec == "libx264" else "bgr0"
        sound = out.add_stream("aac", rate=8000) if audio else None
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(clip_frame(k, size, step), format="rgb24")
            frame.pts = k
            frame.time_base = Fraction(1, rate)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            samples = 8000 * frames // rate
            t = np.arange(samples) / 8000
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            chunk = 1024
            for i in range(0, samples, chunk):
                part = np.ascontiguousarray(np.repeat(tone[:, i:i + chunk], 2, axis=0))
                af = av.AudioFrame.from_ndarray(part, format="fltp", layout="stereo")
                af.sample_rate = 8000
                af.pts = i
                af.time_base = Fraction(1, 8000)
                out.mux(sound.encode(af))
            out.mux(sound.encode(None))
    return path


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
