"""The figure of docs/texture.md: a texture of one painting, tileable and flat, each
shown as a 2x2 repetition so that a seam shows where it is, with the seam ratios.

    python docs/scripts/texture.py [PAINTING] [--size 256] [--iterations 40] [--seed 1]
                                   [--out docs/images/texture_starry_night.jpg] [--keep DIR]

Paints the texture twice with the default network, the same seed and settings, once
with ``tileable=True``; prints each one's seam ratio (brushwork.maths.torus.seam_ratio:
in the 2x2 repetition, the mean step between neighbouring pixels across the seam lines
over the mean step elsewhere; 1 = no seam), the same ratio with each other line of the
network's 16 px pooling grid rolled to the seam (a torus has no special line, so the seam
is only one of them), the losses and the time; writes the sheet
(painting | tileable 2x2 | flat 2x2) as JPEG.  PAINTING defaults to
../shared/images/style/starry_night.jpg.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image

import brushwork
from brushwork.engine.cache import Cache
from brushwork.io.images import load_image, resize_to, scaled_size
from brushwork.io.sheets import grid_sheet
from brushwork.maths.torus import seam_ratio

HERE = Path(__file__).resolve().parent.parent  # docs/
PAINTING = HERE.parent.parent / "shared" / "images" / "style" / "starry_night.jpg"


def repeat(picture: Image.Image) -> Image.Image:
    """``picture`` 2x2."""
    w, h = picture.size
    out = Image.new("RGB", (2 * w, 2 * h))
    for x in (0, w):
        for y in (0, h):
            out.paste(picture, (x, y))
    return out


def grid_lines(pixels: torch.Tensor, step: int = 16) -> tuple[float, float]:
    """The seam ratio of ``pixels`` rolled so that each other line of the network's
    16 px pooling grid becomes the seam (the mean over them), and so that the lines
    half-way between become it: on a torus the real seam is one of the grid lines, so
    it is only as visible as they are."""
    h, w = pixels.shape[-2:]
    on = [seam_ratio(pixels.roll((r * h // w, r), (-2, -1)))
          for r in range(step, w, step)]
    off = [seam_ratio(pixels.roll((r * h // w, r), (-2, -1)))
           for r in range(step // 2, w, step)]
    return sum(on) / len(on), sum(off) / len(off)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("painting", nargs="?", default=str(PAINTING))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "images" / "texture_starry_night.jpg"))
    ap.add_argument("--keep", metavar="DIR", help="also write each texture as a PNG here")
    ap.add_argument("--only", choices=("tileable", "flat"), help="paint only this one")
    args = ap.parse_args()
    cache = Cache()
    pics, notes = [], []
    for tileable in [t for t in (True, False)
                     if args.only is None or args.only == ("tileable" if t else "flat")]:
        began = time.perf_counter()
        result = brushwork.texture(args.painting, args.size, iterations=args.iterations,
                                   seed=args.seed, tileable=tileable, cache=cache)
        assert result.pixels is not None
        ratio = seam_ratio(result.pixels)
        name = "tileable" if tileable else "flat"
        on, off = grid_lines(result.pixels)
        print(f"{name}: {result.image.width}x{result.image.height}, seam ratio {ratio:.3f} "
              f"(the other 16 px grid lines as seams: {on:.3f}; the lines between them: "
              f"{off:.3f}), style loss {result.losses['style']:.4g}, "
              f"{time.perf_counter() - began:.0f} s")
        if args.keep:
            result.save(Path(args.keep) / f"texture_{name}.png", force=True)
        pics.append(repeat(result.image))
        notes.append(f"{name}: seam ratio {ratio:.2f}")
    painting = load_image(args.painting, role="style")
    painting = resize_to(painting, scaled_size(painting.size, 2 * args.size))
    sheet = grid_sheet([[painting, *pics]], [""], ["the painting", *notes],
                       title=f"texture of {Path(args.painting).name}, {args.size} px, "
                             f"{args.iterations} iterations, seed {args.seed}, each 2x2",
                       thumb=2 * args.size)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=88)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
