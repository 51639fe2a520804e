"""`brushwork bench --print`: print-size runs against their estimates, and the memory of a
4096 px run with a full L-BFGS history.

Each run is a fresh process that first asks :func:`brushwork.estimate` what the run will
need (as every `brushwork stylize` does before it starts), then paints; the parent reads
the child's peak resident memory from ``wait4``.  The keys:

- ``estimate_time_ratio_N`` and ``estimate_memory_ratio_N``: what happened over what was
  estimated, painting time and peak memory, at a long side of N px (1 is exact).
- ``peak_rss_mb_N`` at the largest size: a tiled run under ``--max-memory``, whose
  L-BFGS history is full from its first step.  Filling it honestly takes as many
  evaluations as the history holds (hours at 4096 px on a CPU), so the run resumes a
  made checkpoint that holds that many curvature pairs (random ones: the picture it
  paints is not the point, its memory is) and takes a few steps, in the tiles and with
  the history that a long run under that budget is planned with.  Its
  ``estimate_memory_ratio_N`` is against that long run's estimate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from brushwork.engine.memory.allocator import reuse_freed_memory
from brushwork.engine.memory.probe import maxrss_bytes
from brushwork.engine.painter import _Inputs, estimate, stylize
from brushwork.engine.pyramid import scales
from brushwork.engine.settings import Settings
from brushwork.io import checkpoint as checkpoints
from brushwork.io.images import resize_to, to_tensor

MB = 2 ** 20
LONG_RUN = 500  # steps: enough to fill any L-BFGS history


@dataclass(frozen=True)
class PrintSizes:
    """What `bench --print` runs: ``(long side, options)`` checked against their estimates,
    and the full-history run's long side, budget (GB) and iterations."""

    estimated: tuple[tuple[int, dict[str, Any]], ...]
    full_history_size: int
    full_history_budget: float
    full_history_iterations: int = 3


FULL = PrintSizes(
    estimated=((512, {}),  # the default run
               (1024, {"iterations": 30}),
               (2048, {"multiscale": "off", "iterations": 4, "max_memory": 6.0})),
    full_history_size=4096, full_history_budget=16.0)
QUICK = PrintSizes(
    estimated=((128, {}), (256, {"iterations": 30}),
               (384, {"multiscale": "off", "iterations": 4, "max_memory": 1.0})),
    full_history_size=512, full_history_budget=2.0)


def run(photo: Path, style: Path, device: str, sizes: PrintSizes = FULL,
        model: str | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {"commands": {}}
    extra = {"device": device, "seed": 0, **({"model": model} if model else {})}
    for size, options in sizes.estimated:
        got = measure(photo, style, {"size": size, **options, **extra})
        report[f"estimate_time_ratio_{size}"] = round(got["seconds"] / got["predicted_seconds"],
                                                      3)
        report[f"estimate_memory_ratio_{size}"] = round(
            got["peak_bytes"] / got["predicted_peak_bytes"], 3)
        report[f"estimate_{size}_detail"] = got
        report["commands"][f"estimate_{size}"] = got["command"]
    size = sizes.full_history_size
    options = full_history_options(photo, style, {
        "size": size, "multiscale": "off", "max_memory": sizes.full_history_budget, **extra},
        sizes.full_history_iterations)
    got = measure(photo, style, options, full_history=True)
    report[f"peak_rss_mb_{size}"] = round(got["peak_bytes"] / MB, 1)
    report[f"estimate_memory_ratio_{size}"] = round(
        got["peak_bytes"] / got["predicted_peak_bytes"], 3)
    report[f"peak_rss_mb_{size}_detail"] = got
    report["commands"][f"peak_rss_mb_{size}"] = got["command"] + " (history made full)"
    return report


def full_history_options(photo: Path, style: Path, options: dict[str, Any],
                         iterations: int) -> dict[str, Any]:
    """``options`` for a few ``iterations`` with the tile size and L-BFGS history that a
    long run (one that fills its history) gets under the same budget: a short run's own
    plan counts only the pairs its few steps can store."""
    long_run = estimate(photo, style, **options, iterations=LONG_RUN).scales[-1]
    return {**options, "iterations": iterations, "tile_size": long_run.tile,
            "history_size": long_run.history}


def measure(photo: Path, style: Path, options: dict[str, Any],
            full_history: bool = False) -> dict[str, Any]:
    """One run in a fresh process: its estimate, its painting time and its peak memory."""
    with tempfile.TemporaryDirectory(prefix="brushwork-print-") as tmp:
        spec = {"photo": str(photo), "style": str(style), "options": options,
                "checkpoint": os.path.join(tmp, "run.checkpoint"), "full_history": full_history}
        if full_history:
            _child("make_checkpoint", spec)
        out = _child("paint", spec)
    return out


def _child(task: str, spec: dict[str, Any]) -> dict[str, Any]:
    argv = [sys.executable, "-c",
            "import sys; from brushwork.bench.print_size import main; main(sys.argv[1:])",
            task, json.dumps(spec)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    printed = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"bench --print: the {task} process failed ({status})")
    got: dict[str, Any] = json.loads(printed)
    got["peak_bytes"] = maxrss_bytes(usage.ru_maxrss)
    return got


def main(argv: list[str]) -> None:
    """The child processes: ``make_checkpoint SPEC`` or ``paint SPEC``."""
    task, spec = argv[0], json.loads(argv[1])
    if task == "make_checkpoint":
        _make_full_checkpoint(spec)
        print(json.dumps({}))
        return
    reuse_freed_memory()  # as `brushwork stylize` does
    photo, style, options = spec["photo"], spec["style"], spec["options"]
    # A full history's run holds the pairs of a long run, and is estimated as one.
    est = estimate(photo, style, **{**options, "iterations": LONG_RUN}
                   if spec["full_history"] else options)
    t = time.perf_counter()
    result = stylize(photo, style, **options, checkpoint=spec["checkpoint"],
                     resume=spec["full_history"],
                     checkpoint_every=0 if spec["full_history"] else checkpoints.EVERY)
    seconds = time.perf_counter() - t
    last = est.scales[-1]
    print(json.dumps({
        "predicted_seconds": est.seconds, "predicted_peak_bytes": est.peak_bytes,
        "budget_bytes": est.budget_bytes, "seconds": seconds,
        "size": "x".join(map(str, last.scale.size)), "tile": last.tile,
        "history": last.history, "evaluations": len(result.history),
        "command": "stylize(photo, style, " + ", ".join(
            f"{k}={v!r}" for k, v in options.items()) + ")"}))


def _make_full_checkpoint(spec: dict[str, Any]) -> None:
    """A checkpoint one evaluation into the final scale, whose L-BFGS history holds as
    many pairs as the run's plan keeps (the gradient zero, so the first step stays put)."""
    options = spec["options"]
    settings = Settings(**options)
    inputs = _Inputs.load(spec["photo"], spec["style"], settings)
    plan = estimate(spec["photo"], spec["style"], **options).scales[-1]
    image = to_tensor(resize_to(inputs.content, plan.scale.size))
    g = torch.Generator().manual_seed(0)
    s = [torch.randn(image.numel(), generator=g) for _ in range(plan.history)]
    y = [v.clone() for v in s]
    state = {"factor": None, "evaluations": 1, "first": None, "pending": False,
             "lbfgs": {"g": torch.zeros(image.numel()), "s": s, "y": y,
                       "rho": [1.0 / float(v @ v) for v in s], "h0": 1.0}}
    fingerprint = checkpoints.fingerprint([inputs.content, *inputs.styles], inputs.blend)
    checkpoints.save(Path(spec["checkpoint"]), checkpoints.Checkpoint(
        settings=settings.to_dict(), inputs=fingerprint,
        level=len(scales(settings, inputs.content.size)) - 1, taken=1, step=1, work_done=0.0,
        elapsed=0.0, image=image, optimiser=state, stop_rule={"changes": []}))
