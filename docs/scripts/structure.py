"""The structure loss's calibration sweep and docs/structure.md's figures.

    python docs/scripts/structure.py sweep PHOTO:PAINTING [...] --weights 0,0.1,1
            [--size 256] [--iterations N] [--strength S] [--keep-faces] --out DIR [--json OUT.json]
        paints each pair at each --structure weight (seed 0, everything else the
        defaults), writes the pictures to DIR and, for each, two measures:
        * lap: the root mean square difference between the Laplacian of the picture and
          of the photo on the structure loss's grids, in grey levels
          (brushwork.maths.structure.structure_distance);
        * style: the unweighted style loss of the default network (relu1_1..relu5_1,
          the paper's normalisation, the painting at the picture's long side).
        The json records brushwork.maths.structure.SCALE at the time, so that `table`
        can state each weight on today's scale.
    python docs/scripts/structure.py table SWEEP.json [...]
        the sweeps as a markdown table: per pair and weight, lap and style and their
        ratios to the weight-0 picture
    python docs/scripts/structure.py crops -o OUT.jpg --box L,T,R,B --label TEXT PNG [PNG ...]
        the same box (fractions of the picture) cut from each picture, enlarged 2x and
        set side by side under their labels (--label once per picture)

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
from brushwork.engine.objective import Objective
from brushwork.engine.settings import Settings
from brushwork.io.images import load_image, resize_to, scaled_size, to_tensor
from brushwork.maths import structure

_cache = Cache()


def style_loss(picture: Image.Image, painting: Image.Image) -> float:
    settings = Settings(size=max(picture.size))
    net = _cache.network(settings, torch.device("cpu"))
    painting = resize_to(painting, scaled_size(painting.size, max(picture.size)))
    x = to_tensor(picture)
    objective = Objective.for_styles(net, settings, x, [to_tensor(painting)], cache=_cache)
    with torch.no_grad():
        return float(objective(x)["style"]) / settings.knob("style_weight")


def lap_distance(picture: Image.Image, photo: Image.Image) -> float:
    photo = resize_to(photo, picture.size)
    return structure.structure_distance(to_tensor(picture), to_tensor(photo))


def sweep(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = [float(w) for w in args.weights.split(",")]
    rows: list[dict[str, Any]] = []
    for pair in args.pairs:
        photo_path, painting_path = pair.split(":")
        photo, painting = load_image(photo_path), load_image(painting_path)
        for w in weights:
            began = time.perf_counter()
            options: dict[str, Any] = {"size": args.size, "structure": w, "seed": 0,
                                       "iterations": args.iterations}
            if args.strength is not None:
                options["strength"] = args.strength
            if args.keep_faces:
                options["keep_faces"] = True
            result = brushwork.stylize(photo, painting, cache=_cache, **options)
            name = f"{Path(photo_path).stem}_{Path(painting_path).stem}_{args.size}_w{w:g}"
            if args.keep_faces:
                name += "_faces"
            result.image.save(out / f"{name}.png")
            row = {"photo": Path(photo_path).stem, "painting": Path(painting_path).stem,
                   "size": args.size, "iterations": args.iterations, "structure": w,
                   "strength": result.settings["strength"],
                   "keep_faces": args.keep_faces,
                   "lap": lap_distance(result.image, photo),
                   "style": style_loss(result.image, painting),
                   "seconds": time.perf_counter() - began, "picture": f"{name}.png"}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"scale": structure.SCALE, "rows": rows},
                                              indent=1) + "\n")
    return 0


def table(args: argparse.Namespace) -> int:
    print("| photo × painting | --structure | Laplacian difference (grey levels) | "
          "vs. off | style loss | vs. off |")
    print("|---|---:|---:|---:|---:|---:|")
    base: dict[str, dict[str, Any]] = {}
    rows = []
    for path in args.json:
        data = json.loads(Path(path).read_text())
        ratio = data["scale"] / structure.SCALE  # a weight then, on today's scale
        rows += [{**row, "structure": row["structure"] * ratio} for row in data["rows"]]
    for row in rows:
        key = f"{row['photo']} × {row['painting']}"
        if row["structure"] == 0:
            base[key] = row
        off = base.get(key)
        lap_ratio = f"{row['lap'] / off['lap']:.2f}x" if off else "-"
        style_ratio = f"{row['style'] / off['style']:.2f}x" if off else "-"
        print(f"| {key} | {row['structure']:.3g} | {row['lap']:.2f} | {lap_ratio} | "
              f"{row['style']:.3g} | {style_ratio} |")
    return 0


def crops(args: argparse.Namespace) -> int:
    left, top, right, bottom = (float(v) for v in args.box.split(","))
    if len(args.label) != len(args.pictures):
        print("one --label per picture", file=sys.stderr)
        return 2
    tiles = []
    for path in args.pictures:
        im = Image.open(path).convert("RGB")
        w, h = im.size
        box = (round(left * w), round(top * h), round(right * w), round(bottom * h))
        cut = im.crop(box)
        tiles.append(cut.resize((cut.width * args.zoom, cut.height * args.zoom),
                                Image.Resampling.LANCZOS))
    pad, caption = 6, 22
    width = sum(t.width for t in tiles) + pad * (len(tiles) + 1)
    height = max(t.height for t in tiles) + caption + 2 * pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    x = pad
    for tile, label in zip(tiles, args.label, strict=True):
        sheet.paste(tile, (x, caption + pad))
        draw.text((x, pad), label, fill="black")
        x += tile.width + pad
    sheet.save(args.o, quality=88)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep")
    p.add_argument("pairs", nargs="+", metavar="PHOTO:PAINTING")
    p.add_argument("--weights", default="0,0.1,0.3,1,3")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--strength", type=float)
    p.add_argument("--keep-faces", action="store_true")
    p.add_argument("--out", required=True)
    p.add_argument("--json")
    p.set_defaults(run=sweep)
    p = sub.add_parser("table")
    p.add_argument("json", nargs="+")
    p.set_defaults(run=table)
    p = sub.add_parser("crops")
    p.add_argument("pictures", nargs="+")
    p.add_argument("-o", required=True)
    p.add_argument("--box", required=True, metavar="L,T,R,B")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--zoom", type=int, default=2)
    p.set_defaults(run=crops)
    args = parser.parse_args()
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
