"""What the network's precision buys on this device (``brushwork bench``'s precision rows).

* :func:`device_precision`: which precision ``auto`` picks here and the capabilities it
  read.
* :func:`precision_speedup`: seconds per evaluation in float32 over bfloat16, the two
  interleaved round by round so the machine's noise falls on both alike.
* :func:`default_run`: a default run in float32 (today's way) against the default
  (``precision="auto"``), same images and seed: the wall-time ratio, and the default's
  final picture scored by the float32 objective over the float32 run's picture scored
  the same way (``precision_loss_ratio``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from brushwork.bench.timing import interleaved_best
from brushwork.engine.network import FeatureExtractor
from brushwork.engine.objective import Objective
from brushwork.engine.painter import stylize
from brushwork.engine.precision import NATIVE_BF16_CPU, cpu_capabilities, resolve_precision
from brushwork.engine.result import Result
from brushwork.engine.settings import Settings
from brushwork.io.images import load_image, resize_to, scaled_size, to_tensor
from brushwork.io.weights import VGGWeights

# The CPU capabilities worth printing beside the precision (the rest are cache sizes and
# instruction sets that do not bear on it).
SHOWN_CAPABILITIES = (*NATIVE_BF16_CPU, "amx_tile", "avx512_f", "avx2", "cpu_name")


def device_precision(device: torch.device) -> dict[str, Any]:
    """The precision ``auto`` resolves to on ``device``, why, and what was read."""
    chosen = resolve_precision("auto", device)
    if device.type == "cpu":
        caps = cpu_capabilities()
        shown: dict[str, Any] = {k: caps[k] for k in SHOWN_CAPABILITIES if k in caps}
    elif device.type == "cuda":
        shown = {"bf16_supported": torch.cuda.is_bf16_supported(including_emulation=False),
                 "capability": ".".join(map(str, torch.cuda.get_device_capability(device)))}
    else:
        shown = {}
    return {"auto": chosen.name, "reason": chosen.reason, "capabilities": shown}


def precision_speedup(weights: VGGWeights, settings: Settings, photo: torch.Tensor,
                      style: torch.Tensor, device: torch.device, reps: int = 3
                      ) -> dict[str, float]:
    """Best-of-``reps`` seconds per evaluation with the network in float32 and in
    bfloat16 (after one warm-up round), and their ratio ``fp32 / bf16``."""
    layers = settings.content_layers + settings.style_layers
    objectives = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        net = FeatureExtractor(weights, layers, settings.pooling, dtype=dtype).to(device)
        objectives[name] = Objective.for_styles(net, settings, photo, [style])
    best = interleaved_best(objectives, photo, device, reps)
    return {"fp32_seconds": best["fp32"], "bf16_seconds": best["bf16"],
            "speedup": best["fp32"] / best["bf16"]}


def float32_loss(result: Result, photo: Path, style: Path, settings: Settings,
                 weights: VGGWeights, device: torch.device) -> float:
    """The total loss of ``result``'s picture under the float32 objective of a run's
    final scale (the photo at the picture's size, the painting at its long side)."""
    pixels = result.pixels
    assert pixels is not None
    h, w = pixels.shape[-2:]
    net = FeatureExtractor(weights, settings.content_layers + settings.style_layers,
                           settings.pooling).to(device)
    photo_t = to_tensor(resize_to(load_image(photo), (w, h))).to(device)
    style_img = load_image(style)
    style_t = to_tensor(resize_to(style_img, scaled_size(style_img.size, max(w, h)))).to(device)
    objective = Objective.for_styles(net, settings, photo_t, [style_t])
    with torch.no_grad():
        return float(objective(pixels.to(device))["total"])


def default_run(photo: Path, style: Path, size: int, device: torch.device,
                weights: VGGWeights, model: str | None = None, **options: Any
                ) -> dict[str, Any]:
    """Today's float32 default run against the default, same seed: where ``auto`` is
    float32 on this device the two are one run, painted once.  ``options``: changed from
    the defaults in both runs (the tests' short schedules)."""
    opts: dict[str, Any] = {"size": size, "seed": 0, "device": str(device),
                            **({"model": model} if model else {}), **options}
    stylize(photo, style, **{**opts, "size": max(32, size // 4), "precision": "fp32"})
    auto = resolve_precision("auto", device).name
    runs: dict[str, tuple[float, Result]] = {}
    for name in dict.fromkeys(["fp32", auto]):
        t = time.perf_counter()
        result = stylize(photo, style, **opts, precision=name)
        runs[name] = (time.perf_counter() - t, result)
    settings = Settings(model=model) if model else Settings()
    (t32, r32), (t_auto, r_auto) = runs["fp32"], runs[auto]
    loss32 = float32_loss(r32, photo, style, settings, weights, device)
    loss_auto = loss32 if auto == "fp32" else float32_loss(r_auto, photo, style, settings,
                                                           weights, device)
    return {"auto": auto, "same_run": auto == "fp32", "seconds_fp32": t32,
            "seconds_default": t_auto, "speedup": t32 / t_auto,
            "float32_loss_fp32": loss32, "float32_loss_default": loss_auto,
            "loss_ratio": loss_auto / loss32,
            "images": {"fp32": r32.image, "default": r_auto.image}}
