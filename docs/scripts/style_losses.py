"""The style losses side by side: cost per evaluation, and the frontier over strength.

    python docs/scripts/style_losses.py time [--sizes 256,512] [--whole-sizes 256,512]
            [--reps 3]
        seconds of each loss's style term (forward and backward from the network's
        features, which every loss shares), and of a whole evaluation of the objective
        (the network's passes too) at --whole-sizes, best of --reps, the photo and
        painting astronaut x starry_night; writes docs/style_losses_time.json
    python docs/scripts/style_losses.py sweep [--size 256] [--strengths 0.4,0.7,1]
            [--pairs astronaut:starry_night,chelsea_cat:great_wave] [--out /tmp/sl]
        [--iterations N] [--losses gram,w2,sliced]
        paints each pair at each strength with each loss (seed 1, defaults otherwise),
        measures every picture (below), writes docs/style_losses.json (pictures under
        --out; a run already there is measured, not painted again), one sheet per pair
        docs/images/style_losses_PHOTO_PAINTING.jpg (rows: losses, columns: strengths)
        and the frontier plot docs/images/style_losses_frontier.png

The measures, each of the picture against the photo or the painting at the picture's
size, on the default network in float32:

* content distance: ``sum ||F(x) - F(photo)||^2 / ||F(photo)||^2`` over the content
  layers (relu3_2, relu4_2): 0 is the photo, and what every loss's content term keeps;
* gram: the paper's Gram style loss (what the gram loss lowers);
* sliced: the sliced Wasserstein distance along 64 held-out directions per layer (seed
  12345, none of the runs' own), the mean over relu1_1..relu5_1 of sqrt(SW2^2);
* both style measures are also given as the share of the photo's own distance left.

Images from ../shared/images (not in the repository).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

import brushwork
from brushwork.engine.cache import Cache
from brushwork.engine.objective import Objective
from brushwork.engine.settings import Settings
from brushwork.io.images import load_image, resize_to, scaled_size, to_tensor
from brushwork.io.sheets import grid_sheet
from brushwork.maths.distributions import (
    STYLE_LOSSES,
    random_directions,
    resample_sorted,
    sliced_loss,
    sorted_projections,
)
from brushwork.maths.strength import STYLE_LOSS_SCALES

DOCS = Path(__file__).resolve().parents[1]
IMAGES = Path(__file__).resolve().parents[3] / "shared" / "images"
HELD_OUT_SEED, HELD_OUT_DIRECTIONS = 12345, 64
_cache = Cache()
CPU = torch.device("cpu")


def _picture(path: Path, size: int) -> torch.Tensor:
    image = load_image(path)
    return to_tensor(resize_to(image, scaled_size(image.size, size)))


def _paths(pair: str) -> tuple[Path, Path]:
    photo, painting = pair.split(":")
    return IMAGES / "content" / f"{photo}.jpg", IMAGES / "style" / f"{painting}.jpg"


def _best(run: Any, reps: int) -> float:
    best = float("inf")
    for _ in range(reps + 1):  # the first sets up the kernels
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return best


def _style_term(objective: Objective, feats: dict[str, torch.Tensor],
                layers: tuple[str, ...]) -> None:
    leaves = {n: feats[n].clone().requires_grad_(True) for n in layers}
    total = sum(layer(leaves[n]) for n, layer in zip(layers, objective.style_layers,
                                                      strict=True))
    assert isinstance(total, torch.Tensor)
    total.backward()


def _whole(objective: Objective, photo: torch.Tensor) -> None:
    x = photo.clone().requires_grad_(True)
    objective(x)["total"].backward()


def cmd_time(sizes: list[int], whole_sizes: list[int], reps: int) -> dict[str, Any]:
    """Per loss: the style term alone (forward and backward from the network's features,
    which every loss shares) at ``sizes``, and a whole evaluation (the network's forward
    and backward too) at ``whole_sizes``."""
    photo_path, painting_path = _paths("astronaut:starry_night")
    out: dict[str, Any] = {"torch_threads": torch.get_num_threads(), "rows": []}
    for size in sizes:
        photo, style = _picture(photo_path, size), _picture(painting_path, size)
        for loss in STYLE_LOSSES:
            s = Settings(style_loss=loss, size=size, seed=0)
            net = _cache.network(s, CPU)
            objective = Objective.for_styles(net, s, photo, [style])
            with torch.no_grad():
                feats = {n: f.detach() for n, f in net(photo).items()}

            row: dict[str, Any] = {
                "size": f"{photo.shape[-1]}x{photo.shape[-2]}", "loss": loss,
                "precision": str(net.dtype).removeprefix("torch."),
                "style_term_seconds": round(_best(
                    functools.partial(_style_term, objective, feats, s.style_layers), reps), 3)}
            if size in whole_sizes:
                row["evaluation_seconds"] = round(_best(
                    functools.partial(_whole, objective, photo), reps), 3)
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
    return out


def _layers_features(x: torch.Tensor) -> dict[str, torch.Tensor]:
    s = Settings(precision="fp32")
    net = _cache.network(s, CPU)
    with torch.no_grad():
        return net(x)


def measure(picture: torch.Tensor, photo: torch.Tensor, painting: torch.Tensor
            ) -> dict[str, float]:
    s = Settings(precision="fp32")
    fx, fp, fs = (_layers_features(t) for t in (picture, photo, painting))
    content = sum(float((fx[n] - fp[n]).pow(2).sum() / fp[n].pow(2).sum())
                  for n in s.content_layers)
    net = _cache.network(s, CPU)
    with torch.no_grad():
        objective = Objective.for_styles(net, s, picture, [painting], cache=_cache)
        gram = float(objective(picture)["style"]) / objective.style_weight
    sliced = []
    for i, n in enumerate(s.style_layers):
        g = torch.Generator().manual_seed(HELD_OUT_SEED + i)
        d = random_directions(fx[n].shape[1], HELD_OUT_DIRECTIONS, g)
        target = resample_sorted(sorted_projections(fs[n], d), fx[n].shape[-1] * fx[n].shape[-2])
        sliced.append(float(sliced_loss(fx[n], d, target)) ** 0.5)
    return {"content": content, "gram": gram, "sliced": sum(sliced) / len(sliced)}


def cmd_sweep(pairs: list[str], strengths: list[float], size: int, out: Path,
              losses: tuple[str, ...] = STYLE_LOSSES, iterations: int | None = None,
              paint: bool = True) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    budget: dict[str, Any] = {} if iterations is None else {"iterations": iterations}
    record: dict[str, Any] = {"size": size, "strengths": strengths, "pairs": {}, **budget,
                              "scales": STYLE_LOSS_SCALES}
    for pair in pairs:
        photo_path, painting_path = _paths(pair)
        photo_img = load_image(photo_path)
        rows, pics = [], []
        base = None
        for loss in losses:
            row_pics: list[Image.Image | None] = []
            for strength in strengths:
                file = out / (f"{pair.replace(':', '_')}_{loss}_{strength:g}_"
                              f"{iterations or 'default'}.png")
                began = time.perf_counter()
                if not file.exists() and not paint:
                    row_pics.append(None)  # shown as "not run"
                    continue
                if not file.exists():
                    result = brushwork.stylize(photo_path, painting_path, size=size,
                                               strength=strength, style_loss=loss, seed=1,
                                               cache=_cache, **budget)
                    result.save(file)
                seconds = time.perf_counter() - began
                measured = file.with_suffix(".json")  # the row, once measured
                picture = to_tensor(load_image(file))
                w, h = picture.shape[-1], picture.shape[-2]
                photo = to_tensor(resize_to(photo_img, (w, h)))
                painting = _picture(painting_path, max(w, h))
                if base is None:
                    base = measure(photo, photo, painting)
                if measured.exists():
                    row = json.loads(measured.read_text())
                else:
                    m = measure(picture, photo, painting)
                    row = {"loss": loss, "strength": strength, **m,
                           "gram_left": m["gram"] / base["gram"],
                           "sliced_left": m["sliced"] / base["sliced"],
                           "seconds": round(seconds, 1)}
                    measured.write_text(json.dumps(row))
                rows.append(row)
                row_pics.append(load_image(file))
                print(pair, json.dumps(row), flush=True)
            pics.append(row_pics)
        record["pairs"][pair] = {"photo": base, "rows": rows}
        sheet = grid_sheet(pics, list(losses), [f"strength {s:g}" for s in strengths],
                           title=f"{pair.replace(':', ' x ')}, {size} px, seed 1"
                           + (f", {iterations} iterations" if iterations else ""),
                           thumb=size)
        sheet.convert("RGB").save(DOCS / "images" / f"style_losses_{pair.replace(':', '_')}.jpg",
                                  quality=85)
    _frontier_plot(record)
    return record


def _frontier_plot(record: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = record["pairs"]
    fig, axes = plt.subplots(2, len(pairs), figsize=(4.2 * len(pairs), 7), squeeze=False)
    for col, (pair, data) in enumerate(pairs.items()):
        for r, measure_name in enumerate(("gram_left", "sliced_left")):
            ax = axes[r][col]
            for loss in sorted({x["loss"] for x in data["rows"]}, key=STYLE_LOSSES.index):
                rows = [x for x in data["rows"] if x["loss"] == loss]
                ax.plot([x["content"] for x in rows], [x[measure_name] for x in rows],
                        marker="o", label=loss)
                for x in rows:
                    ax.annotate(f"{x['strength']:g}", (x["content"], x[measure_name]),
                                fontsize=7)
            ax.set_xlabel("content distance (lower keeps more of the photo)")
            ax.set_ylabel(f"{measure_name.split('_')[0]} style distance left")
            ax.set_title(pair.replace(":", " x "), fontsize=9)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(DOCS / "images" / "style_losses_frontier.png", dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("time")
    t.add_argument("--sizes", default="256,512")
    t.add_argument("--whole-sizes", default="256,512", help="sizes timed whole too")
    t.add_argument("--reps", type=int, default=3)
    w = sub.add_parser("sweep")
    w.add_argument("--size", type=int, default=256)
    w.add_argument("--strengths", default="0.4,0.7,1")
    w.add_argument("--pairs", default="astronaut:starry_night,chelsea_cat:great_wave")
    w.add_argument("--out", type=Path, default=Path("/tmp/style_losses"))
    w.add_argument("--losses", default=",".join(STYLE_LOSSES))
    w.add_argument("--iterations", type=int, help="at the final scale (default: Settings')")
    w.add_argument("--no-paint", action="store_true",
                   help="measure and show only the pictures already under --out")
    args = parser.parse_args()
    if args.command == "time":
        result = cmd_time([int(v) for v in args.sizes.split(",")],
                          [int(v) for v in args.whole_sizes.split(",") if v], args.reps)
        (DOCS / "style_losses_time.json").write_text(json.dumps(result, indent=1) + "\n")
    else:
        result = cmd_sweep(args.pairs.split(","), [float(v) for v in args.strengths.split(",")],
                           args.size, args.out, tuple(args.losses.split(",")),
                           args.iterations, not args.no_paint)
        (DOCS / "style_losses.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
