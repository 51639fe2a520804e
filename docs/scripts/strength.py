"""How far a picture moved from its photo, and how close it came to its painting.

    python docs/scripts/strength.py measure CELLS_DIR [CELLS_DIR ...] [--json OUT.json]
        one table per sweep (a `brushwork sweep` cells folder): each cell's content
        similarity and style loss, and whether both move monotonically along the sweep
    python docs/scripts/strength.py diagnose PHOTO PAINTING [--size 256] [--json OUT.json]
        paints the photo with the variants that docs/strength.md compares (raw
        weights, init, pyramid, photo detail) and measures each the same way
    python docs/scripts/strength.py compare PHOTO:PAINTING [...] -o OUT.png [--size 256]
        the defaults before strength existed beside today's, for each pair, measured;
        also writes today's picture of each pair beside OUT.png (PHOTO_PAINTING_SIZE.png)

The two measures (docs/strength.md says why these):

* content similarity: SSIM between the picture's luminance and the photo's (resized
  to the picture), both blurred by a Gaussian of sigma = 1 px per 256 px of long side
  first, so that the painting's finest texture alone does not count as a change: 1 is
  the photo, below 0.5 its shapes have been repainted.  The same with sigma = 2 px is
  printed beside it: that blur leaves windows so flat that SSIM compares little more
  than their mean brightness, and a picture with nothing of the photo left but its
  light and dark masses still scores 0.55 (docs/strength.md).
* style loss: the unweighted style term of the default network (relu1_1..relu5_1,
  the paper's normalisation, the painting resized to the picture's long side), the
  quantity the optimisation lowers.

Needs `pip install -e '.[docs]'` (pytorch-msssim) and the default weights.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter
from pytorch_msssim import ssim

import brushwork
from brushwork.engine.cache import Cache
from brushwork.engine.objective import Objective
from brushwork.engine.settings import Settings
from brushwork.io.images import load_image, read_metadata, resize_to, scaled_size, to_tensor
from brushwork.maths.strength import PRE_STRENGTH_DEFAULTS

BLUR_PER_256 = 1.0  # the headline measure; BLUR_PER_256 * 2 is printed beside it
_cache = Cache()


def blurred_luminance(image: Image.Image, long_side: int, blur: float) -> torch.Tensor:
    radius = blur * long_side / 256
    grey = image.convert("L").filter(ImageFilter.GaussianBlur(radius))
    return torch.from_numpy(np.asarray(grey, dtype=np.float32))[None, None]


def content_similarity(picture: Image.Image, photo: Image.Image,
                       blur: float = BLUR_PER_256) -> float:
    long_side = max(picture.size)
    photo = resize_to(photo, picture.size)
    return float(ssim(blurred_luminance(picture, long_side, blur),
                      blurred_luminance(photo, long_side, blur), data_range=255))


def style_loss(picture: Image.Image, painting: Image.Image) -> float:
    settings = Settings(size=max(picture.size))
    net = _cache.network(settings, torch.device("cpu"))
    painting = resize_to(painting, scaled_size(painting.size, max(picture.size)))
    x = to_tensor(picture)
    objective = Objective.for_styles(net, settings, x, [to_tensor(painting)], cache=_cache)
    with torch.no_grad():  # the style term before beta
        return float(objective(x)["style"]) / objective.style_weight


def measure(picture: Image.Image, photo: Image.Image, painting: Image.Image) -> dict[str, float]:
    return {"similarity": round(content_similarity(picture, photo), 3),
            "similarity_blur2": round(content_similarity(picture, photo, 2 * BLUR_PER_256), 3),
            "style_loss": round(style_loss(picture, painting), 1)}


def _monotonic(values: list[float], falling: bool) -> bool:
    pairs = list(itertools.pairwise(values))
    return all(b < a for a, b in pairs) if falling else all(b > a for a, b in pairs)


def cmd_measure(dirs: list[Path]) -> list[dict]:
    out = []
    for folder in dirs:
        index = json.loads((folder / "index.json").read_text())
        rows = []
        photo = painting = None
        for cell in index["cells"]:
            if not cell["file"]:
                continue
            path = Path(cell["file"])
            path = path if path.exists() else folder / path.name
            meta = read_metadata(path)
            if meta is None:
                sys.exit(f"{path} carries no brushwork metadata (inputs unknown)")
            if photo is None or painting is None:
                photo = load_image(meta["inputs"]["content"])
                painting = load_image(meta["inputs"]["style"][0])
            rows.append({**cell["values"], **measure(load_image(path), photo, painting),
                         "seconds": cell["elapsed_s"]})
        name = index["columns"]["name"]
        sims = [r["similarity"] for r in rows]
        losses = [r["style_loss"] for r in rows]
        sweep = {"folder": str(folder), "axis": name, "rows": rows,
                 "similarity_falls": _monotonic(sims, True),
                 "style_loss_falls": _monotonic(losses, True)}
        out.append(sweep)
        print(f"\n{folder.name}: " + ", ".join(f"{name} {r[name]}" for r in rows))
        print(f"| {name} | content similarity | (blur x2) | style loss |\n"
              "|---|---|---|---|")
        for r in rows:
            print(f"| {r[name]} | {r['similarity']:.3f} | {r['similarity_blur2']:.3f} "
                  f"| {r['style_loss']:.4g} |")
        print(f"similarity falls monotonically: {sweep['similarity_falls']}; "
              f"style loss falls monotonically: {sweep['style_loss_falls']}")
    return out


OLD_DEFAULTS = PRE_STRENGTH_DEFAULTS
# The variants docs/strength.md compares: name -> stylize options (at --size).
VARIANTS: dict[str, dict[str, Any]] = {
    "old defaults (alpha 0.5, beta 1e4)": OLD_DEFAULTS,
    "beta x10": {**OLD_DEFAULTS, "style_weight": 1e5},
    "beta x100": {**OLD_DEFAULTS, "style_weight": 1e6},
    "alpha / 10": {**OLD_DEFAULTS, "content_weight": 0.05},
    "alpha = 0": {**OLD_DEFAULTS, "content_weight": 0.0},
    "alpha x10": {**OLD_DEFAULTS, "content_weight": 5.0},
    "content layer relu4_2 alone": {**OLD_DEFAULTS, "content_layers": ("relu4_2",)},
    "noise init": {**OLD_DEFAULTS, "init": "noise"},
    "pyramid from 64 px, photo detail 1": {**OLD_DEFAULTS, "min_size": 64, "multiscale": "on"},
    "pyramid from 64 px, photo detail 0": {**OLD_DEFAULTS, "min_size": 64, "multiscale": "on",
                                           "photo_detail": 0.0},
    "pyramid from 64 px, detail 0, alpha / 100": {**OLD_DEFAULTS, "min_size": 64,
                                                  "multiscale": "on", "photo_detail": 0.0,
                                                  "content_weight": 0.005},
}


def cmd_diagnose(photo_path: Path, painting_path: Path, size: int) -> list[dict]:
    photo, painting = load_image(photo_path), load_image(painting_path)
    rows = []
    print(f"| variant ({photo_path.name} x {painting_path.name}, {size} px, seed 1) "
          "| content similarity | (blur x2) | style loss | seconds |\n|---|---|---|---|---|")
    for name, options in VARIANTS.items():
        t = time.perf_counter()
        result = brushwork.stylize(photo, painting, size=size, seed=1, cache=_cache, **options)
        row = {"variant": name, "options": options, **measure(result.image, photo, painting),
               "seconds": round(time.perf_counter() - t, 1)}
        rows.append(row)
        print(f"| {name} | {row['similarity']:.3f} | {row['similarity_blur2']:.3f} "
              f"| {row['style_loss']:.4g} | {row['seconds']} |", flush=True)
    return rows


def cmd_compare(pairs: list[str], size: int, output: Path) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    fig, axes = plt.subplots(len(pairs), 3, figsize=(10, 3.2 * len(pairs)), squeeze=False)
    for r, pair in enumerate(pairs):
        photo_path, painting_path = (Path(p) for p in pair.split(":"))
        photo, painting = load_image(photo_path), load_image(painting_path)
        pictures = {}
        for label, options in (("before", OLD_DEFAULTS), ("after", {})):
            result = brushwork.stylize(photo, painting, size=size, seed=1, cache=_cache, **options)
            pictures[label] = result.image
            if label == "after":  # README's examples: today's defaults at this size
                result.save(output.parent / f"{photo_path.stem}_{painting_path.stem}_{size}.png",
                            force=True)
            rows.append({"pair": pair, "defaults": label, "size": size,
                         **measure(result.image, photo, painting)})
        for c, (title, im) in enumerate((
                (painting_path.stem, painting),
                (f"before: {rows[-2]['similarity']:.2f} / {rows[-2]['style_loss']:.3g}",
                 pictures["before"]),
                (f"after: {rows[-1]['similarity']:.2f} / {rows[-1]['style_loss']:.3g}",
                 pictures["after"]))):
            axes[r][c].imshow(im)
            axes[r][c].set_title(title, fontsize=10)
            axes[r][c].axis("off")
        print(f"{pair}: before {rows[-2]}, after {rows[-1]}", flush=True)
    fig.suptitle(f"Defaults before and after strength, {size} px, seed 1 "
                 "(titles: content similarity / style loss)")
    fig.tight_layout()
    fig.savefig(output, dpi=80)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("cells", nargs="+", type=Path)
    d = sub.add_parser("diagnose")
    d.add_argument("photo", type=Path)
    d.add_argument("painting", type=Path)
    d.add_argument("--size", type=int, default=256)
    c = sub.add_parser("compare")
    c.add_argument("pairs", nargs="+", metavar="PHOTO:PAINTING")
    c.add_argument("-o", "--output", type=Path, required=True)
    c.add_argument("--size", type=int, default=256)
    for p in (m, d, c):
        p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    brushwork.reuse_freed_memory()
    if args.command == "measure":
        report = cmd_measure(args.cells)
    elif args.command == "compare":
        report = cmd_compare(args.pairs, args.size, args.output)
    else:
        report = cmd_diagnose(args.photo, args.painting, args.size)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
