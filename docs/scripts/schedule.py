"""Where a default run's steps go, and how much each part of each scale still changes.

    python docs/scripts/schedule.py PHOTO PAINTING [--size 512] [--json OUT.json] [OPTION=VALUE ...]

Paints PHOTO in the style of PAINTING with the defaults (plus any OPTION=VALUE, e.g.
``stop_tolerance=0.1``), seed 0, and prints per scale of the pyramid: its size, the steps
taken, the seconds spent (and their share of the run), and at each tenth of the scale's
steps how far the picture then was from the scale's last picture (mean absolute
difference in grey levels of 255, and the share of pixels more than 2 grey levels off)
and how far the total loss was above the scale's last loss. A scale whose last half
moves the picture by a fraction of a grey level is spending steps where they do not show.
Numbers in docs/benchmarks.md, "Steps where they show".
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from brushwork import stylize
from brushwork.engine.result import Iterate

TENTHS = [i / 10 for i in range(11)]


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def measure(photo: str, painting: str, size: int, **options: Any) -> dict[str, Any]:
    """Per scale: steps, seconds and the picture's remaining change at each tenth."""
    pictures: dict[int, list[torch.Tensor]] = {}
    losses: dict[int, list[float]] = {}
    times: dict[int, list[float]] = {}
    began = time.perf_counter()

    def record(it: Iterate) -> None:
        pictures.setdefault(it.scale, []).append(it._pixels.to(torch.float32))
        losses.setdefault(it.scale, []).append(it.losses["total"])
        times.setdefault(it.scale, []).append(time.perf_counter() - began)

    result = stylize(photo, painting, size=size, seed=0, callback=record, **options)
    total = time.perf_counter() - began
    scales = []
    start = 0.0
    for level in sorted(pictures):
        shots, loss, stamps = pictures[level], losses[level], times[level]
        last = shots[-1]
        rows = []
        for tenth in TENTHS:
            i = min(len(shots) - 1, round(tenth * (len(shots) - 1)))
            diff = (shots[i] - last).abs()
            rows.append({"tenth": tenth, "step": i + 1,
                         "mean_grey_levels": round(float(diff.mean()), 3),
                         "share_over_2": round(float((diff > 2).float().mean()), 4),
                         "loss_over_last": round(loss[i] / loss[-1], 4)})
        seconds = stamps[-1] - start
        start = stamps[-1]
        scales.append({"level": level, "size": list(shots[-1].shape[-2:][::-1]),
                       "steps": len(shots), "seconds": round(seconds, 1),
                       "share_of_time": round(seconds / total, 3), "tenths": rows})
    return {"photo": photo, "painting": painting, "size": size, "options": options,
            "seconds": round(total, 1), "final_loss": result.losses["total"],
            "scales": scales}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photo")
    parser.add_argument("painting")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("options", nargs="*", metavar="OPTION=VALUE")
    args = parser.parse_args()
    options = {k: _value(v) for k, v in (o.split("=", 1) for o in args.options)}
    report = measure(args.photo, args.painting, args.size, **options)
    for s in report["scales"]:
        print(f"scale {s['level']} {s['size'][0]}x{s['size'][1]}: {s['steps']} steps, "
              f"{s['seconds']} s ({s['share_of_time']:.0%} of the run)")
        for row in s["tenths"]:
            print(f"  at {row['tenth']:.0%} (step {row['step']:>3}): "
                  f"{row['mean_grey_levels']:7.3f} grey levels from the last, "
                  f"{row['share_over_2']:.1%} of pixels over 2; loss x{row['loss_over_last']}")
    print(f"total {report['seconds']} s, final loss {report['final_loss']:.4g}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
