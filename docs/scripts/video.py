"""Figures for docs/video.md: flicker and cost of `brushwork video` against painting each
frame on its own, on a clip made here from a photo (no video ships with the project).

    python docs/scripts/video.py                       # prints the figures; writes the clip,
                                               # the two paintings and the pictures
    python docs/scripts/video.py --frames 8 --size 192 # quicker
    python docs/scripts/video.py --gammas 1e4,1e5,1e6  # the video painted at each temporal weight

The clip: a slow pan and zoom over coffee.jpg, with an oval cut from chelsea_cat.jpg
(the cat's face) sliding across it, 12 fps, rendered with PyAV (H.264, near lossless).
Both runs use the same settings (the defaults, seed 1); frame by frame is
`brushwork stylize` on each frame (the full budget every frame; its first frame is the
video run's, which is the same computation), the video mode is `brushwork video` (the
full budget for the first frame, --frame-iterations after).
Flicker is the temporal warping error: the mean squared difference between each painted
frame and the previous one carried to it along the optical flow of the clip's frames,
over reliable pixels (brushwork.video.temporal.warping_error).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from brushwork import Cache, stylize
from brushwork.engine.result import Result
from brushwork.io.images import to_tensor
from brushwork.video import stylize_video
from brushwork.video.flow import grey
from brushwork.video.temporal import warping_error

HERE = Path(__file__).resolve().parent.parent  # docs/
SHARED = HERE.parent.parent / "shared" / "images"
PHOTO, SPRITE, STYLE = "coffee.jpg", "chelsea_cat.jpg", "starry_night.jpg"
RATE = 12


def make_clip(path: Path, frames: int, size: int) -> Path:
    """A pan and zoom over the photo with the cat's face sliding across, as an MP4."""
    import av

    photo = Image.open(SHARED / "content" / PHOTO).convert("RGB")
    cat = Image.open(SHARED / "content" / SPRITE).convert("RGB")
    face = cat.crop((120, 20, 330, 250))  # the cat's head, 210x230
    w = size - size % 2
    h = round(w * photo.height / photo.width)
    h -= h % 2
    sprite_h = h // 2
    face = face.resize((round(sprite_h * face.width / face.height), sprite_h),
                       Image.Resampling.LANCZOS)
    mask = Image.new("L", face.size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, face.width - 1, face.height - 1), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(1))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "10"}
        for k in range(frames):
            s = k / max(frames - 1, 1)
            # The camera: a window 80% -> 72% of the photo's width, drifting right and down.
            cw = photo.width * (0.80 - 0.08 * s)
            ch = cw * h / w
            x0 = (photo.width - cw) * (0.15 + 0.5 * s)
            y0 = (photo.height - ch) * (0.3 + 0.3 * s)
            frame = photo.resize((w, h), Image.Resampling.LANCZOS,
                                 box=(x0, y0, x0 + cw, y0 + ch))
            frame.paste(face, face_at(k, frames, w, h, face.width), mask)
            vf = av.VideoFrame.from_image(frame)
            vf.pts, vf.time_base = k, Fraction(1, RATE)
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    return path


def face_at(k: int, frames: int, w: int, h: int, face_w: int) -> tuple[int, int]:
    """Where the cat's face is pasted in frame k: left to right across the frame, a
    little downwards."""
    s = k / max(frames - 1, 1)
    return round(-face_w * 0.3 + (w - face_w * 0.4) * s), round(h * 0.15 + h * 0.1 * s)


def frames_of(folder: Path) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted(folder.glob("frame_*.png"))]


def side_by_side(rows: list[list[Image.Image]], path: Path) -> None:
    """An animated GIF: the clip, frame by frame, brushwork video, side by side."""
    w, h = rows[0][0].size
    pictures = []
    for k in range(len(rows[0])):
        sheet = Image.new("RGB", (w * len(rows) + 4 * (len(rows) - 1), h), "white")
        for i, row in enumerate(rows):
            sheet.paste(row[k], (i * (w + 4), 0))
        pictures.append(sheet.quantize(colors=255, method=Image.Quantize.MEDIANCUT))
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=1000 // RATE,
                     loop=0, optimize=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", type=Path, default=HERE / "images",
                    help="where the pictures go (default: docs/images)")
    ap.add_argument("--gammas", default="1e5", help="temporal weights to paint the video "
                    "with, comma-separated (default 1e5, the default; the pictures are made "
                    "from the first)")
    ap.add_argument("--work", type=Path, help="folder for the clip and the painted frames "
                    "(default: a temporary one)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="brushwork-video-"))
    work.mkdir(parents=True, exist_ok=True)
    style = SHARED / "style" / STYLE
    clip = make_clip(work / "clip.mp4", args.frames, args.size)
    options = dict(size=args.size, seed=1)
    print(f"clip: {clip} ({args.frames} frames at {RATE} fps, {args.size} px); "
          f"style {STYLE}; settings: defaults, seed 1", flush=True)

    gammas = [float(g) for g in args.gammas.split(",")]
    runs = []
    for gamma in gammas:
        video_out = work / ("video" if gamma == gammas[0] else f"video_{gamma:g}")

        def done(k: int, n: int, r: Result, g: float = gamma) -> None:
            print(f"video (gamma {g:g}): {k + 1}/{n} {r.elapsed:.1f} s", flush=True)

        result = stylize_video(clip, style, video_out, force=True, temporal_weight=gamma,
                               on_frame=done, **options)
        runs.append((gamma, result, frames_of(video_out)))
    painted = runs[0][2]
    photos = [Image.open(p).convert("RGB") for p in _photo_frames(clip, work, painted[0].size)]

    cache = Cache()
    # Frame 0 of the video run is this very run (same settings, seed, start): reused.
    solo: list[Image.Image] = [painted[0]]
    solo_seconds: list[float] = []
    for k, photo in enumerate(photos[1:], 1):
        t0 = time.perf_counter()
        solo.append(stylize(photo, style, cache=cache, **options).image)
        solo_seconds.append(time.perf_counter() - t0)
        print(f"frame by frame: {k + 1}/{len(photos)} {solo_seconds[-1]:.1f} s", flush=True)
    for k, picture in enumerate(solo):
        picture.save(work / f"solo_{k + 1:05d}.png")

    greys = [grey(np.asarray(p)) for p in photos]
    flicker_solo = float(np.mean(warping_error([to_tensor(p) for p in solo], greys)))
    flicker_clip = float(np.mean(warping_error([to_tensor(p) for p in photos], greys)))
    single = float(np.mean(solo_seconds))
    print()
    print(f"temporal warping error (grey levels^2, reliable pixels, mean over "
          f"{len(photos) - 1} frame pairs):")
    print(f"  the clip itself        {flicker_clip:8.1f}")
    print(f"  frame by frame         {flicker_solo:8.1f}")
    for gamma, _, frames in runs:
        flicker = float(np.mean(warping_error([to_tensor(p) for p in frames], greys)))
        print(f"  video, gamma {gamma:<8g}  {flicker:8.1f}   "
              f"ratio {flicker / flicker_solo:.3f} (goal <= 0.3)")
    print("seconds per frame:")
    print(f"  single-image run       {single:8.1f}   (frame by frame, mean of frames 2 on)")
    for gamma, result, _ in runs:
        later = float(np.mean(result.seconds_per_frame[1:]))
        print(f"  video, gamma {gamma:<8g}  first {result.seconds_per_frame[0]:.1f}, "
              f"later {later:.1f}   ratio {later / single:.3f} (goal <= 0.4)")

    args.out.mkdir(parents=True, exist_ok=True)
    side_by_side([photos, solo, painted], args.out / "video_coffee_starry_night.gif")
    # Rows: the clip, frame by frame, brushwork video; at most 8 frames across.
    w, h = painted[0].size
    picks = np.unique(np.linspace(0, len(photos) - 1, min(8, len(photos))).round().astype(int))
    strip = Image.new("RGB", (len(picks) * (w + 4) - 4, 3 * (h + 4) - 4), "white")
    for i, k in enumerate(picks):
        for r, row in enumerate([photos, solo, painted]):
            strip.paste(row[k], (i * (w + 4), r * (h + 4)))
    strip.save(args.out / "video_frames_coffee_starry_night.jpg", quality=85, optimize=True)
    print(f"\nwrote {args.out / 'video_coffee_starry_night.gif'} and "
          f"{args.out / 'video_frames_coffee_starry_night.jpg'}; frames in {work}")
    return 0


def _photo_frames(clip: Path, work: Path, size: tuple[int, int]) -> list[Path]:
    """The clip's frames as the runs saw them (decoded, at the painted size), as PNGs."""
    from brushwork.video.clip import open_clip, read_frames
    from brushwork.video.settings import VideoSettings

    paths = []
    for k, picture in read_frames(open_clip(clip, VideoSettings()), size):
        path = work / f"photo_{k + 1:05d}.png"
        picture.save(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    sys.exit(main())
