"""The figure of docs/texture.md: a texture of one painting, tileable and flat, each
shown as a 2x2 repetition so that a seam shows where it is, with the seam ratios.

    python docs/scripts/texture.py [PAINTING] [--size 256] [--iterations 40] [--seed 1]
                                   [--out docs/images/texture_starry_night.jpg]

Paints the texture twice with the default network, the same seed and settings, once
with ``tileable=True``; prints each one's seam ratio (brushwork.maths.torus.seam_ratio:
in the 2x2 repetition, the mean step between neighbouring pixels across the seam lines
over the mean step elsewhere; 1 = no seam), the losses and the time; writes the sheet
(painting | tileable 2x2 | flat 2x2) as JPEG.  PAINTING defaults to
../shared/images/style/starry_night.jpg.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("painting", nargs="?", default=str(PAINTING))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "images" / "texture_starry_night.jpg"))
    args = ap.parse_args()
    cache = Cache()
    pics, notes = [], []
    for tileable in (True, False):
        began = time.perf_counter()
        result = brushwork.texture(args.painting, args.size, iterations=args.iterations,
                                   seed=args.seed, tileable=tileable, cache=cache)
        assert result.pixels is not None
        ratio = seam_ratio(result.pixels)
        name = "tileable" if tileable else "flat"
        print(f"{name}: {result.image.width}x{result.image.height}, seam ratio {ratio:.3f}, "
              f"style loss {result.losses['style']:.4g}, "
              f"{time.perf_counter() - began:.0f} s")
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
