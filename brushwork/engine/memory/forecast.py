"""What a run will need: its peak memory and wall time on this device, before it starts.

:func:`estimate` adds to the calibrated cost of an evaluation (brushwork.engine.memory.
calibration) what the run keeps between evaluations (the image, its gradient, the L-BFGS
history, the content targets) and sums the time over the pyramid's scales and, for tiled
scales (brushwork.engine.tiling), over the tiles.  :func:`plan` picks, from a memory
budget, whether each scale is tiled, the tile size and the L-BFGS history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from brushwork.engine.memory.calibration import (
    FLOAT,
    PEAK_RATIOS,
    Calibration,
    box_pixels,
    record,
    tiled_cost,
)
from brushwork.engine.network import FeatureExtractor
from brushwork.engine.pyramid import Scale
from brushwork.engine.settings import Settings
from brushwork.engine.tiling import plan_tiles, strides, tile_geometry
from brushwork.errors import BrushworkError

PLAN_MARGIN = 0.9  # plans use this share of the budget, leaving room for the estimate's error


MIN_HISTORY = 5  # the fewest L-BFGS pairs a budget may shrink the history to




# A shorter L-BFGS history is chosen only when its larger tiles make the scale this much
# quicker than the longest history that fits (the time model does not count what a
# shorter history costs in convergence).
HISTORY_TIME_SLACK = 1.25


GB = 1e9
# Runs whose predicted peak above the process's start is smaller than this are not
# recorded: their peaks are mostly the allocator's noise.
PEAK_OBSERVED_FROM = 256 * 2**20


@dataclass(frozen=True)
class ScalePlan:
    """How one scale is painted: whole, or in tiles of ``tile`` pixels."""

    scale: Scale
    tile: int | None
    history: int


@dataclass(frozen=True)
class Estimate:
    """A run's predicted peak memory and wall time, and the plan they assume."""

    peak_bytes: float
    seconds: float
    budget_bytes: float
    scales: tuple[ScalePlan, ...]
    step_seconds: tuple[float, ...] = ()  # one evaluation at each scale
    resident_bytes: float = 0.0  # the process when the run starts, part of peak_bytes
    peak_share: float = 1.0  # the calibration's, by which the evaluation's part is scaled
    peak_tiled: bool = False  # whether the scale with the peak is tiled
    # The peak scale's picture and L-BFGS vectors, part of peak_bytes: known exactly, so
    # not scaled by the share.
    kept_bytes: float = 0.0

    @property
    def tiled(self) -> bool:
        return any(p.tile is not None for p in self.scales)

    def describe(self) -> str:
        """One line for the log, e.g. ``estimate: peak 1.46 GB of a 15.2 GB budget,
        about 1 min 40 s``."""
        text = (f"estimate: peak {self.peak_bytes / GB:.2f} GB of a "
                f"{self.budget_bytes / GB:.1f} GB budget, about {format_seconds(self.seconds)}")
        tiles = list(dict.fromkeys(p.tile for p in self.scales if p.tile is not None))
        if tiles:
            sizes = " and ".join(map(str, tiles))
            text += f"; tiles of {sizes} px at the scales that need them, in that order"
        histories = {p.history for p in self.scales}
        if len(histories) == 1:
            (history,) = histories
            text += f"; L-BFGS history {history}"
        return text


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h} h {m:02d} min"
    if m:
        return f"{m} min {s:02d} s"
    return f"{s} s"


def kept_bytes(pixels: int, settings: Settings, history: int, net: FeatureExtractor) -> float:
    """What a scale keeps between evaluations: image-sized vectors (the image, its gradient,
    the photo, the optimiser's state) and the content targets."""
    image = 3 * pixels * FLOAT
    # L-BFGS: g, g_new, the direction and y, and the history's pairs (s, y); Adam: its two
    # moments and scratch; SGD: scratch.
    vectors = 4 + 2 * history if settings.optimizer == "lbfgs" else 3
    vectors += 3  # x, x.grad, the photo
    vectors += 3  # a checkpoint's snapshot: the picture, and the pair L-BFGS has let go
    content = sum(_channels(net, name) * pixels / _stride(net, name) ** 2 * FLOAT
                  for name in settings.content_layers)
    return vectors * image + content


def _channels(net: FeatureExtractor, name: str) -> int:
    """The channels of ``net``'s features at ``name`` (those of the convolution before it)."""
    steps = net.steps[: net.steps.index(name) + 1]
    last = [s for s in steps if s.startswith("conv")][-1]
    conv = net.convs[last]
    assert isinstance(conv, torch.nn.Conv2d)
    return conv.out_channels


def _stride(net: FeatureExtractor, name: str) -> int:
    return strides(net.steps)[name]


def scale_cost(plan: ScalePlan, settings: Settings, calibration: Calibration,
               net: FeatureExtractor, coarse: bool = False
               ) -> tuple[float, float, float, float]:
    """``(peak bytes, seconds, seconds per evaluation, kept bytes)`` of one scale (a
    ``coarse`` one may stop before its last step).  The peak is what the process holds
    at the start, the kept vectors (exact) and an evaluation's peak as the probe's lines
    predict it, scaled by what runs' peaks showed (the calibration's share)."""
    w, h = plan.scale.size
    # A scale of n steps stores at most n - 1 pairs: a short run never fills its history.
    kept = kept_bytes(w * h, settings, min(plan.history, max(0, plan.scale.iterations - 1)),
                      net)
    if plan.tile is None:
        peak = calibration.eval_bytes(w * h)
        per_eval = calibration.eval_seconds(w * h)
        setup = calibration.forward_share * per_eval
    else:
        halo, align = tile_geometry(net)
        tiles = plan_tiles(h, w, plan.tile, halo, align, wrap=settings.tileable)
        peak, per_eval = tiled_cost(calibration, box_pixels(tiles), w * h)
        # The content targets and the style targets: a forward pass over the tiles each.
        setup = 2 * calibration.forward_share / (1 + calibration.forward_share) * per_eval
    iterations: float = plan.scale.iterations
    if coarse and settings.coarse_tolerance > 0 and calibration.coarse_steps is not None:
        iterations = min(iterations, calibration.coarse_steps)
    share = calibration.peak_share if plan.tile is None else calibration.tiled_peak_share
    return (calibration.resident_bytes + kept + share * peak,
            setup + iterations * per_eval, per_eval, kept)


def estimate(scales: Sequence[ScalePlan], settings: Settings, calibration: Calibration,
             net: FeatureExtractor, budget: float) -> Estimate:
    costs = [scale_cost(p, settings, calibration, net, coarse=i < len(scales) - 1)
             for i, p in enumerate(scales)]
    at = max(range(len(costs)), key=lambda i: costs[i][0]) if scales else None
    top = scales[at] if at is not None else None
    tiled = top is not None and top.tile is not None
    return Estimate(peak_bytes=max(c[0] for c in costs), seconds=sum(c[1] for c in costs),
                    budget_bytes=budget, scales=tuple(scales),
                    step_seconds=tuple(c[2] for c in costs),
                    resident_bytes=calibration.resident_bytes,
                    peak_share=calibration.tiled_peak_share if tiled
                    else calibration.peak_share, peak_tiled=tiled,
                    kept_bytes=costs[at][3] if at is not None else 0.0)


def tile_sizes(long_side: int, halo: int, align: int) -> list[int]:
    """Candidate tile sizes, largest first: multiples of ``align`` from the picture's long
    side down to the halo."""
    top = -(-long_side // align) * align
    return list(range(top - align, max(halo, align) - 1, -align))


def plan(scales: Sequence[Scale], settings: Settings, calibration: Calibration,
         net: FeatureExtractor, budget: float, tile: int | None = None) -> Estimate:
    """Each scale whole when it fits ``budget``; otherwise in the largest tiles that fit
    (or ``tile`` when given), with the L-BFGS history shrunk if even the smallest tile
    does not.  Raises BrushworkError, naming what would fit, when nothing does."""
    halo, align = tile_geometry(net)
    if tile is not None and (tile < halo or tile % align):
        raise BrushworkError(f"--tile-size {tile} must be a multiple of {align} px and at "
                             f"least the network's halo, {halo} px")
    chosen = []
    for scale in scales:
        chosen.append(_plan_scale(scale, settings, calibration, net, budget, tile, halo,
                                  align))
    return estimate(chosen, settings, calibration, net, budget)


def _plan_scale(scale: Scale, settings: Settings, calibration: Calibration,
                net: FeatureExtractor, budget: float, tile: int | None, halo: int,
                align: int) -> ScalePlan:
    def fits(p: ScalePlan) -> bool:
        return scale_cost(p, settings, calibration, net)[0] <= PLAN_MARGIN * budget

    long_side = max(scale.size)
    histories = [settings.history_size]
    if settings.optimizer == "lbfgs":
        histories += list(range(settings.history_size - 1, MIN_HISTORY - 1, -1))
    tiled: list[ScalePlan] = []  # per history, the largest tiles that fit
    for history in histories:
        whole = ScalePlan(scale, None, history)
        if tile is not None:
            candidate = replace(whole, tile=tile) if long_side > tile else whole
            if fits(candidate):
                return candidate
            continue
        if fits(whole):
            return whole
        # A tile's peak grows with its size: the largest that fits, by bisection over
        # the sizes (largest first), of which the ones past the answer all fit.
        sizes = tile_sizes(long_side, halo, align)
        lo, hi = 0, len(sizes)
        while lo < hi:
            mid = (lo + hi) // 2
            if fits(ScalePlan(scale, sizes[mid], history)):
                hi = mid
            else:
                lo = mid + 1
        if lo < len(sizes):
            tiled.append(ScalePlan(scale, sizes[lo], history))
    if tiled:
        return _quick_enough(tiled, settings, calibration, net)
    smallest = ScalePlan(scale, tile or max(halo, align), min(histories))
    need = scale_cost(smallest, settings, calibration, net)[0] / PLAN_MARGIN
    raise BrushworkError(
        f"a {scale.size[0]}x{scale.size[1]} scale needs at least {need / GB:.1f} GB, more "
        f"than the {budget / GB:.1f} GB budget; raise --max-memory or lower --size")


def _quick_enough(plans: Sequence[ScalePlan], settings: Settings, calibration: Calibration,
                  net: FeatureExtractor) -> ScalePlan:
    """Of tiled plans with ever shorter L-BFGS histories (each with the largest tiles
    that fit), the one with the longest history that takes at most
    :data:`HISTORY_TIME_SLACK` times the quickest one's time: a shorter history frees
    memory for larger tiles, and tiles near the halo's size cost several times more per
    evaluation (each box reads its halo), which a few pairs of history do not repay."""
    seconds = [scale_cost(p, settings, calibration, net)[1] for p in plans]
    quickest = min(seconds)
    return next(p for p, t in zip(plans, seconds, strict=True)
                if t <= HISTORY_TIME_SLACK * quickest)


def observe_peak(net: FeatureExtractor, settings: Settings, device: torch.device,
                 forecast: Estimate, peak_above_start: float) -> None:
    """Record a finished run's peak memory above the process's start, less its kept
    vectors, as a ratio to the evaluation's peak the probe's lines predicted (large runs
    only: :data:`PEAK_OBSERVED_FROM`)."""
    kept = forecast.kept_bytes
    evaluation = (forecast.peak_bytes - forecast.resident_bytes - kept) / forecast.peak_share
    if evaluation > 0 and evaluation + kept >= PEAK_OBSERVED_FROM and peak_above_start > 0:
        record(net, settings, device, PEAK_RATIOS,
                [(peak_above_start - kept) / evaluation, int(forecast.peak_tiled)])
