"""Measure STYLE_LOSS_SCALES: how much each style loss is multiplied by so that one
strength means a like balance of photo and painting whatever the statistic.

    python docs/scripts/style_loss_scales.py [--images ../shared/images] [--size 256]
        [--pairs N]

For the photo x painting pairs in ``IMAGES/content`` x ``IMAGES/style`` (all, or ``N``
of them, each photo with paintings in turn so that every painting comes up), at the photo
(where every run starts), the norm of the style term's gradient with respect to the
picture, for each loss with the scales now in brushwork/maths/strength.py.  The scale a
loss needs is its current scale times the median over the pairs of gram's gradient norm
over its own: the gradient is what the optimiser feels against the content term's.
Writes docs/style_loss_scales.json (the ratios per pair, the medians and the scales)
and prints the scales to put in STYLE_LOSS_SCALES.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from brushwork.engine.cache import load_network
from brushwork.engine.device import resolve_device
from brushwork.engine.objective import Objective
from brushwork.engine.settings import Settings
from brushwork.io.images import load_image, resize_to, scaled_size, to_tensor
from brushwork.maths.distributions import STYLE_LOSSES
from brushwork.maths.strength import STYLE_LOSS_SCALES

OUT = Path(__file__).resolve().parents[1] / "style_loss_scales.json"


def picture(path: Path, size: int) -> torch.Tensor:
    image = load_image(path)
    return to_tensor(resize_to(image, scaled_size(image.size, size)))


def style_gradient_norm(objective: Objective, photo: torch.Tensor) -> float:
    x = photo.clone().requires_grad_(True)
    objective(x)["style"].backward()
    assert x.grad is not None
    return float(x.grad.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path,
                        default=Path(__file__).resolve().parents[3] / "shared" / "images")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=0, help="how many pairs (0 = all)")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = resolve_device("cpu")
    base = Settings(precision="fp32", device="cpu", seed=0)
    net = load_network(base, device)
    photos = sorted((args.images / "content").glob("*.jpg"))
    paintings = sorted((args.images / "style").glob("*.jpg"))
    ratios: dict[str, dict[str, float]] = {loss: {} for loss in STYLE_LOSSES if loss != "gram"}
    began = time.perf_counter()
    every = [(p, paintings[(i + k) % len(paintings)]) for k in range(len(paintings))
             for i, p in enumerate(photos)]
    chosen = every[:args.pairs] if args.pairs else every
    for photo_path, painting_path in chosen:
        photo, style = picture(photo_path, args.size), picture(painting_path, args.size)
        norms = {}
        for loss in STYLE_LOSSES:
            s = Settings(precision="fp32", device="cpu", seed=0, style_loss=loss)
            norms[loss] = style_gradient_norm(
                Objective.for_styles(net, s, photo, [style]), photo)
        pair = f"{photo_path.stem} x {painting_path.stem}"
        for loss in ratios:
            ratios[loss][pair] = norms["gram"] / norms[loss]
        print(pair, {k: f"{v:.4g}" for k, v in norms.items()}, flush=True)
    medians = {loss: statistics.median(r.values()) for loss, r in ratios.items()}
    scales = {"gram": 1.0, **{loss: STYLE_LOSS_SCALES[loss] * m for loss, m in medians.items()}}
    record = {"size": args.size, "pairs": len(chosen),
              "scales_measured_with": STYLE_LOSS_SCALES,
              "gram_over_loss_gradient_norm": ratios, "medians": medians,
              "spread": {loss: [min(r.values()), max(r.values())] for loss, r in ratios.items()},
              "scales": scales, "seconds": round(time.perf_counter() - began)}
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({"medians": medians, "scales": scales}))


if __name__ == "__main__":
    main()
