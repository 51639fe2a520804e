"""The pictures in docs/print.md: a tiled run's picture, reduced, and full-resolution crops
where its tiles meet, with a measure of any seam (the step between neighbouring columns
or rows at a tile edge against the same step at the 20 edges on the same 16 px grid around it).

    python docs/scripts/print_crops.py PICTURE.png EDGES NAME
    # e.g. python docs/scripts/print_crops.py print1024.png 400,800 astronaut_1024

EDGES: where the tiles' owned areas meet (the same both ways, for a square picture).
Writes docs/images/print/NAME_tiled.jpg and NAME_seams.jpg.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

HALF = 96  # half a crop's side
REDUCED = 768  # the whole picture's side in the docs


def seam_steps(a: np.ndarray, axis: int, edge: int) -> tuple[float, float]:
    """(the mean step across ``edge``, the mean step across the 20 edges on the same 16 px
    grid within 160 px of it) along ``axis``.  The same grid, because steps differ by
    phase without any tile: the network's stride-2 poolings leave a slightly larger step
    at every other pixel, and a photo enlarged 4 times has its own at every fourth; tile
    edges, on the 16 px grid, always fall on the larger ones."""
    other = (0, 2) if axis == 1 else (1, 2)
    d = np.abs(np.diff(a, axis=axis)).mean(axis=other)  # d[i]: from pixel i to i + 1
    near = [edge + k for k in range(-160, 161, 16) if k != 0 and 0 < edge + k <= len(d)]
    return float(d[edge - 1]), float(np.mean([d[e - 1] for e in near]))


def main(path: str, edges_text: str, name: str) -> None:
    edges = [int(e) for e in edges_text.split(",")]
    out = Path(__file__).resolve().parent.parent / "images" / "print"
    out.mkdir(parents=True, exist_ok=True)
    im = Image.open(path).convert("RGB")
    a = np.asarray(im, dtype=float)
    for axis, label in ((1, "columns"), (0, "rows")):
        for edge in edges:
            across, around = seam_steps(a, axis, edge)
            print(f"{label} {edge}: step across the edge {across:.2f}, around it {around:.2f}")
    im.resize((REDUCED, REDUCED), Image.Resampling.LANCZOS).save(out / f"{name}_tiled.jpg",
                                                                 quality=85)
    # Three tile corners: the first, one along the top row of corners, one down the left.
    corners = [(edges[0], edges[0]), (edges[-1], edges[0]), (edges[0], edges[-1])]
    side = 2 * HALF
    strip = Image.new("RGB", (len(corners) * (side + 8) - 8, side), "white")
    for i, (x, y) in enumerate(corners):
        strip.paste(im.crop((x - HALF, y - HALF, x + HALF, y + HALF)), (i * (side + 8), 0))
    strip.save(out / f"{name}_seams.jpg", quality=90)


if __name__ == "__main__":
    main(*sys.argv[1:4])
