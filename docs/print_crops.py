"""The pictures in docs/print.md: a tiled 1024 px run, reduced, and full-resolution crops
where its tiles meet, with a measure of any seam (the step between neighbouring columns
or rows at a tile edge against the same step averaged over the 40 around it).

    python docs/print_crops.py PICTURE.png   # the result of a --size 1024 --tile-size 400 run
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

EDGES = (400, 800)  # where 400 px tiles meet in a 1024 px picture
CROPS = ((400, 400), (800, 400), (400, 800))  # tile corners
HALF = 96  # half a crop's side


def seam_steps(a: np.ndarray, axis: int, edge: int) -> tuple[float, float]:
    """(the mean step across ``edge``, the mean step around it) along ``axis``."""
    other = (0, 2) if axis == 1 else (1, 2)
    d = np.abs(np.diff(a, axis=axis)).mean(axis=other)
    around = np.r_[d[edge - 21:edge - 1], d[edge:edge + 20]].mean()
    return float(d[edge - 1]), float(around)


def main(path: str) -> None:
    out = Path(__file__).parent / "images" / "print"
    out.mkdir(parents=True, exist_ok=True)
    im = Image.open(path).convert("RGB")
    a = np.asarray(im, dtype=float)
    for axis, name in ((1, "columns"), (0, "rows")):
        for edge in EDGES:
            across, around = seam_steps(a, axis, edge)
            print(f"{name} {edge}: step across the edge {across:.2f}, around it {around:.2f}")
    im.resize((768, 768), Image.Resampling.LANCZOS).save(out / "astronaut_1024_tiled.jpg",
                                                         quality=85)
    side = 2 * HALF
    strip = Image.new("RGB", (len(CROPS) * (side + 8) - 8, side), "white")
    for i, (x, y) in enumerate(CROPS):
        strip.paste(im.crop((x - HALF, y - HALF, x + HALF, y + HALF)), (i * (side + 8), 0))
    strip.save(out / "seams.jpg", quality=90)


if __name__ == "__main__":
    main(sys.argv[1])
