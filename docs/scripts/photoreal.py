"""--photoreal's measurements and docs/photoreal.md's figure.

    python docs/scripts/photoreal.py measure PHOTO:STYLE [...] [--size 256]
            [--iterations N] [--matting-weights 1,...] [--strength S] --out DIR
            [--json OUT.json]
        paints each pair plainly and with --photoreal matting at each matting weight
        (seed 0, the defaults otherwise), and derives filter (the plain run's picture
        through the guided filter) and both (the matting run's picture through it):
        the same function the run applies after painting (brushwork.engine.painter
        _result), so no run is repeated.  For each picture:
        * matting: the matting energy per pixel under the photo's matting Laplacian
          (brushwork.maths.photoreal.matting_energy; 0..1 colours, eps 1e-7);
        * colour: the Wasserstein-2 distance between Gaussian fits of the picture's RGB
          colours (0..1) and the style photo's, over that of the photo itself: 1 = the
          photo's colours, 0 = the style photo's mean and covariance;
        * seconds: the run's wall time (filter and both: plus the filter's).
    python docs/scripts/photoreal.py table RUN.json [...]
        the measurements as a markdown table (RUN.json: --json's file, or the rows
        measure printed, one a line)
    python docs/scripts/photoreal.py figure -o OUT.jpg ROW [ROW ...]
        ROW = PHOTO:STYLE:PICTURE[:PICTURE...]: per row the photo, the style photo and
        the pictures, each 256 px high, labelled by the file names' last part

Needs the default weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

import brushwork
from brushwork.engine.cache import Cache
from brushwork.io.images import load_image, resize_to, to_image, to_tensor
from brushwork.maths.distributions import GaussianTarget, moment_matrix, w2_squared
from brushwork.maths.photoreal import guided_filter, matting_energy

_cache = Cache()


def colour_moments(picture: torch.Tensor) -> torch.Tensor:
    """The moment matrix of ``picture``'s RGB colours in 0..1, per pixel."""
    x = picture.to(torch.float64) / 255
    return moment_matrix(x) / (x.shape[-1] * x.shape[-2])


def colour_distance(picture: torch.Tensor, style: torch.Tensor) -> float:
    """W2 between the Gaussian fits of the two pictures' colours."""
    target = GaussianTarget.fit(colour_moments(style))
    return float(w2_squared(colour_moments(picture), target).clamp(min=0).sqrt())


def measure(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = [float(w) for w in args.matting_weights.split(",")]
    rows: list[dict[str, Any]] = []
    for pair in args.pairs:
        photo_path, style_path = pair.split(":")
        stem = f"{Path(photo_path).stem}_{Path(style_path).stem}_{args.size}"
        style = to_tensor(load_image(style_path))
        options: dict[str, Any] = {"size": args.size, "seed": 0, "iterations": args.iterations}
        if args.strength is not None:
            options["strength"] = args.strength
        runs: list[tuple[str, dict[str, Any]]] = [("plain", {})]
        runs += [(f"matting{w:g}", {"photoreal": "matting", "matting_weight": w})
                 for w in weights]
        for name, extra in runs:
            began = time.perf_counter()
            result = brushwork.stylize(photo_path, style_path, cache=_cache,
                                       **options, **extra)
            seconds = time.perf_counter() - began
            assert result.pixels is not None
            photo = to_tensor(resize_to(load_image(photo_path), result.image.size))
            began = time.perf_counter()
            filtered = guided_filter(result.pixels, photo).clamp(0, 255)
            filter_seconds = time.perf_counter() - began
            derived = "filter" if name == "plain" else f"both{name[len('matting'):]}"
            for label, picture, secs in ((name, to_tensor(result.image), seconds),
                                         (derived, to_tensor(to_image(filtered)),
                                          seconds + filter_seconds)):
                to_image(picture).save(out / f"{stem}_{label}.png")
                row = {"photo": Path(photo_path).stem, "style": Path(style_path).stem,
                       "size": args.size, "method": label, "strength":
                       result.settings["strength"], "matting_weight": extra.get(
                           "matting_weight", 0.0),
                       "matting": float(matting_energy(picture, photo)),
                       "colour": colour_distance(picture, style)
                       / colour_distance(photo, style),
                       "seconds": secs, "filter_seconds": filter_seconds,
                       "picture": f"{stem}_{label}.png"}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    return 0


def _rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a --json file, or of a measure's printed log (one JSON row a line)."""
    text = path.read_text()
    if text.lstrip().startswith('{"rows"') or text.lstrip().startswith('{\n'):
        return list(json.loads(text)["rows"])
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def table(args: argparse.Namespace) -> int:
    print("| photo × style photo | method | matting energy per pixel | vs. plain | "
          "colour distance to the style photo (photo = 1) | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    for path in args.json:
        rows = _rows(Path(path))
        plain = {(r["photo"], r["style"]): r["matting"] for r in rows if r["method"] == "plain"}
        for r in rows:
            base = plain.get((r["photo"], r["style"]))
            ratio = f"1/{base / r['matting']:.0f}" if base and r["method"] != "plain" else "1"
            print(f"| {r['photo']} × {r['style']} | {r['method']} | {r['matting']:.2e} | "
                  f"{ratio} | {r['colour']:.2f} | {r['seconds']:.0f} |")
    return 0


def figure(args: argparse.Namespace) -> int:
    height, pad, caption = 256, 6, 18
    rows = []
    for spec in args.rows:
        photo, style, *pictures = spec.split(":")
        tiles = []
        for path in [photo, style, *pictures]:
            im = Image.open(path).convert("RGB")
            width = round(im.width * height / im.height)
            label = "photo" if path == photo else "style photo" if path == style \
                else Path(path).stem.rsplit("_", 1)[-1]
            tiles.append((im.resize((width, height), Image.Resampling.LANCZOS), label))
        rows.append(tiles)
    width = max(sum(t.width for t, _ in r) + pad * (len(r) + 1) for r in rows)
    sheet = Image.new("RGB", (width, len(rows) * (height + caption + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    y = pad
    for r in rows:
        x = pad
        for tile, label in r:
            draw.text((x, y), label, fill="black")
            sheet.paste(tile, (x, y + caption))
            x += tile.width + pad
        y += height + caption + pad
    sheet.save(args.output, quality=85)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("pairs", nargs="+")
    m.add_argument("--size", type=int, default=256)
    m.add_argument("--iterations", type=int, default=150)
    m.add_argument("--matting-weights", default="1")
    m.add_argument("--strength", type=float)
    m.add_argument("--out", required=True)
    m.add_argument("--json")
    t = sub.add_parser("table")
    t.add_argument("json", nargs="+")
    f = sub.add_parser("figure")
    f.add_argument("rows", nargs="+")
    f.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)
    return {"measure": measure, "table": table, "figure": figure}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
