"""``brushwork video``: checks, a progress bar over the frames, Ctrl-C, the final line."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields
from typing import Any

from tqdm import tqdm

from brushwork.commands.options import add_settings_options, list_of, settings_from_args
from brushwork.engine.settings import default_of
from brushwork.errors import EXIT_INTERRUPTED
from brushwork.video.paint import FrameStep, VideoInterrupted, stylize_video
from brushwork.video.settings import VideoSettings

HELP = ("paint a video (MP4 or PNG frames) in the style of one or more STYLE images, without "
        "flicker (Ruder et al. 2016); needs brushwork[video]")
DESCRIPTION = ("Paint INPUT frame by frame; each frame after the first starts from the "
               "previous painting carried along the optical flow (--init prev-warped) and is "
               "held to the earlier paintings by a temporal loss where the motion is reliable.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="the video: MP4/MOV, Matroska/WebM, AVI, MPEG-TS, "
                        "MPEG-PS, FLV, Ogg or ASF/WMV, with any codec FFmpeg decodes")
    parser.add_argument("style", nargs="+",
                        help="one or more paintings (blended by --style-weights)")
    parser.add_argument("-o", "--output", required=True,
                        help="OUT.mp4 (.mov, .mkv; H.264 with the input's audio), or a folder "
                        "for numbered PNG frames")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--resume", action="store_true",
                        help="continue an unfinished run into the same OUTPUT after its last "
                        "finished frame (same options and inputs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    add_video_options(parser)
    add_settings_options(parser, overrides={"init": "prev-warped"})


_TYPES: dict[str, Any] = {"int": int, "float": float, "float | None": float, "str | None": str,
                          "tuple[int, ...]": list_of(int, "whole numbers")}


def add_video_options(parser: argparse.ArgumentParser) -> None:
    """One option per VideoSettings field, with its default in the help."""
    group = parser.add_argument_group("video options")
    for f in fields(VideoSettings):
        meta = f.metadata
        default = default_of(f)
        shown = meta.get("shown") if default is None else (
            ",".join(map(str, default)) if isinstance(default, tuple) else default)
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=_TYPES[str(f.type)],
                           metavar=meta.get("metavar"), default=argparse.SUPPRESS,
                           help=f"{meta['help']} (default: {shown})")


def video_options(args: argparse.Namespace) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in fields(VideoSettings) if hasattr(args, f.name)}


class _Bar:
    """Frames done (fractions for the frame in progress), the frame's step, and an ETA
    from the frames painted so far: the first frame's time does not count for the rest,
    which start close and take their own, fewer, steps."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: tqdm | None = None
        self.frame = -1
        self.frame_began = time.perf_counter()
        self.times: list[tuple[int, float]] = []  # (frame, seconds)

    def step(self, s: FrameStep) -> None:
        if self.quiet:
            return
        if self.bar is None:
            self.bar = tqdm(total=s.frames, initial=s.frame, unit="frame", file=sys.stderr,
                            dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| [{elapsed}{postfix}]")
        if s.frame != self.frame:
            if self.frame >= 0:
                self.times.append((self.frame, time.perf_counter() - self.frame_began))
            self.frame, self.frame_began = s.frame, time.perf_counter()
        it = s.iterate
        self.bar.set_description(f"frame {s.frame + 1}/{s.frames}", refresh=False)
        eta = self.eta(s, it.progress)
        self.bar.set_postfix_str(f"step {it.step}/{it.total}"
                                 + (f" ETA {_clock(eta)}" if eta is not None else ""),
                                 refresh=False)
        self.bar.update(s.frame + it.progress - self.bar.n)

    def eta(self, s: FrameStep, progress: float) -> float | None:
        """Seconds left: the frames after the first at the mean pace of those finished (or
        of this one so far); None while the first frame is painted."""
        later = [t for k, t in self.times if k > 0]
        if later:
            per = sum(later) / len(later)
        elif s.frame > 0 and progress > 0.05:
            per = (time.perf_counter() - self.frame_began) / progress
        else:
            return None
        return (1 - progress) * per + per * (s.frames - s.frame - 1)

    def write(self, message: str) -> None:
        if not self.quiet:
            (self.bar.write if self.bar else print)(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def run(args: argparse.Namespace) -> int:
    options = settings_from_args(args)
    bar = _Bar(args.quiet)
    try:
        result = stylize_video(args.input, list(args.style), args.output, force=args.force,
                               resume=args.resume, callback=bar.step, log=bar.write,
                               **options, **video_options(args))
    except VideoInterrupted as stop:
        bar.close()
        r = stop.result
        if r.frames:
            where = "the frames so far" if r.output.suffix else "its frames"
            print(f"interrupted; {r.output} holds {where} ({r.frames}); the same command with "
                  f"--resume continues from frame {r.frames + 1}", file=sys.stderr)
        else:
            print("interrupted before the first frame finished; nothing written",
                  file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        bar.close()
    if not args.quiet:
        later = result.seconds_per_frame[1:] if result.painted == result.frames \
            else result.seconds_per_frame
        pace = f", {sum(later) / len(later):.1f} s a frame after the first" if later else ""
        print(f"wrote {result.output} ({result.frames} frames, {result.elapsed:.1f} s{pace})",
              file=sys.stderr)
    return 0
