"""Seconds per evaluation with the network in float32 and in bfloat16, side by side.

    python docs/scripts/precision.py [--size 512] [--reps 3] [--device cpu]

Prints which precision ``auto`` picks on the device and why, the machine's float32
matmul rate before and after (so a slowed host shows), and
:func:`brushwork.bench.precision.precision_speedup` at ``--size`` (the demo photo and the
built-in painting, as ``brushwork bench`` uses; 437x512 at the default size): both
networks interleaved round by round, best of ``--reps``.  Figures in docs/benchmarks.md,
"Precision".
"""

from __future__ import annotations

import argparse
import json

from brushwork.bench.measure import matmul_flops_per_s
from brushwork.bench.precision import device_precision, precision_speedup
from brushwork.engine.device import resolve_device
from brushwork.engine.settings import Settings
from brushwork.io.images import load_image, resize_to, scaled_size, to_tensor
from brushwork.io.samples import demo_photo, make_style_image
from brushwork.io.weights import load_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    settings = Settings()
    weights = load_weights(settings.model)
    photo_img, style_img = load_image(demo_photo()), make_style_image()
    photo = to_tensor(resize_to(photo_img, scaled_size(photo_img.size, args.size))).to(device)
    style = to_tensor(resize_to(style_img, scaled_size(style_img.size, args.size))).to(device)
    print(json.dumps(device_precision(device)))
    print(f"matmul GFLOP/s before: {matmul_flops_per_s(device) / 1e9:.0f}")
    print(json.dumps(precision_speedup(weights, settings, photo, style, device, args.reps)))
    print(f"matmul GFLOP/s after: {matmul_flops_per_s(device) / 1e9:.0f}")


if __name__ == "__main__":
    main()
