"""How often the optical flow follows the moving cat's face of docs/scripts/video.py's clip: per
frame pair, the share of the face's pixels that pass the forward-backward check, with the
flow found from nothing (DIS alone) and as a video run finds it (also searched from the
last pair's motion; brushwork.video.flow.motion), and the median error of the flow there
against the face's known motion.

    # the clip that docs/scripts/video.py wrote there:
    python docs/scripts/video_flow.py --work /tmp/vfig
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from brushwork.video.clip import open_clip, read_frames
from brushwork.video.flow import grey, motion
from brushwork.video.settings import VideoSettings
from video import face_at


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True,
                    help="docs/scripts/video.py's --work folder")
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    clip = open_clip(args.work / "clip.mp4", VideoSettings())
    size = clip.frame_size(args.size)
    frames = [grey(np.asarray(p)) for _, p in read_frames(clip, size)]
    n = len(frames)
    w, h = size
    face_h = h // 2
    face_w = round(face_h * 210 / 230)  # docs/scripts/video.py's crop of the cat, 210x230
    ys, xs = np.mgrid[0:h, 0:w]
    rows: dict[str, list[tuple[float, float]]] = {"from nothing": [], "guided": []}
    last = None
    for k in range(1, n):
        (x0, y0), (x1, y1) = face_at(k, n, w, h, face_w), face_at(k - 1, n, w, h, face_w)
        # The face's middle (an ellipse of 80% of its size), where the flow is the face's.
        inside = (((xs - x0 - face_w / 2) / (0.4 * face_w)) ** 2
                  + ((ys - y0 - face_h / 2) / (0.4 * face_h)) ** 2) < 1
        inside &= (xs >= 0) & (xs < w)
        truth = np.array([x1 - x0, y1 - y0], dtype=np.float32)
        plain = motion(frames[k], frames[k - 1])
        guided = motion(frames[k], frames[k - 1], last)
        last = guided.backward
        for name, m in (("from nothing", plain), ("guided", guided)):
            flow = m.backward[0].numpy()[:, inside].T
            rows[name].append((float(m.weights[0, 0].numpy()[inside].mean()),
                               float(np.median(np.linalg.norm(flow - truth, axis=1)))))
    print(f"{n - 1} frame pairs of {args.work / 'clip.mp4'} at {w}x{h}; the face moves "
          f"{face_at(1, n, w, h, face_w)[0] - face_at(0, n, w, h, face_w)[0]} px a frame")
    for name, values in rows.items():
        share = " ".join(f"{r:.2f}" for r, _ in values)
        error = " ".join(f"{e:.1f}" for _, e in values)
        held = sum(r > 0.5 for r, _ in values)
        print(f"{name:>12}: face pixels passing the check per pair  {share}")
        print(f"{'':>12}  median flow error on the face (px)      {error}")
        print(f"{'':>12}  pairs where most of the face is followed: {held} of {n - 1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
