"""What a run will need: its peak memory and wall time on this device, before it starts.

One evaluation of the objective (forward and backward through the network) costs memory
and time in proportion to its pixels, plus a constant.  :func:`calibrate` measures both
on the device at two small sizes and fits the line; :func:`estimate` adds what the run
keeps between evaluations (the image, its gradient, the L-BFGS history, the content
targets) and sums the time over the pyramid's scales and, for tiled scales
(brushwork.tiling), over the tiles.  :func:`plan` picks, from a memory budget, whether
each scale is tiled, the tile size and the L-BFGS history.

Memory is the process's resident set on the CPU (Linux: its high-water mark, reset
before each probe) and the caching allocator's peak on CUDA.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .allocator import trim_heap
from .cache import model_key
from .errors import BrushworkError
from .objective import Objective, style_grams
from .pyramid import Scale
from .settings import Settings
from .tiling import Tile, TiledObjective, plan_tiles, strides, tile_geometry
from .vgg import FeatureExtractor
from .weights import cache_dir, write_cache_json

PROBE_SIZES = (128, 256)  # square probes; small enough to take a second or two on a CPU
BUDGET_SHARE = 0.8  # of the memory available when the run starts, by default
PLAN_MARGIN = 0.9  # plans use this share of the budget, leaving room for the estimate's error
OBSERVATIONS_KEPT = 8  # the latest runs' evaluation times that estimates follow
FIT_SPAN = 4.0  # observations this far apart in pixels get a line of their own
MIN_HISTORY = 5  # the fewest L-BFGS pairs a budget may shrink the history to
FLOAT = 4  # bytes per image value (float32)
# Runs whose predicted peak above the process's start is smaller than this are not
# recorded: their peaks are mostly the allocator's noise.
PEAK_OBSERVED_FROM = 256 * 2**20
# A shorter L-BFGS history is chosen only when its larger tiles make the scale this much
# quicker than the longest history that fits (the time model does not count what a
# shorter history costs in convergence).
HISTORY_TIME_SLACK = 1.25
PEAK_SHARE_RANGE = (0.5, 2.0)  # how far runs' peaks may move the probe's prediction
# Where runs' peaks are recorded, as ratios to the evaluation's predicted peak.  (Until
# 2026-11-30 "peak_ratios" held ratios to the evaluation and kept vectors together,
# which scaled the exactly known vectors by what the evaluations showed; those are not
# read.)
PEAK_RATIOS = "eval_peak_ratios"
GB = 1e9


@dataclass(frozen=True)
class Line:
    """``intercept + slope * pixels``."""

    intercept: float
    slope: float

    def __call__(self, pixels: float) -> float:
        return self.intercept + self.slope * pixels

    @classmethod
    def through(cls, p0: tuple[float, float], p1: tuple[float, float]) -> Line:
        (x0, y0), (x1, y1) = p0, p1
        slope = max(0.0, (y1 - y0) / (x1 - x0))
        return cls(max(0.0, y0 - slope * x0), slope)


@dataclass(frozen=True)
class Calibration:
    """One evaluation's cost on a device, as lines in its pixels."""

    device: str
    resident_bytes: float  # the process when the run starts (torch, the network's weights)
    eval_bytes: Line  # one evaluation's peak above ``resident_bytes``
    eval_seconds: Line  # one evaluation, forward and backward
    forward_share: float  # a forward pass alone, as a share of an evaluation's time
    # A tiled evaluation against what its boxes' whole evaluations predict: its peak
    # (pass 1's features, the owned slices' copies, the allocator's holes between tiles)
    # and its time (two passes, the slices).
    tiled_bytes: float = 1.0
    tiled_seconds: float = 1.0
    # The steps after which a coarse scale's picture stopped changing, in the latest runs
    # whose coarse scales stopped early (the median; None until one has).  The rule fires
    # on how much the picture still changes per step, so it fires after about as many
    # steps whatever the scale's budget: a scale is expected to take the smaller of the two.
    coarse_steps: float | None = None
    # What the latest runs' peaks above the process's start were, over what the probe's
    # lines predicted for them (the median; 1.0 until a large enough run has been seen):
    # what the probes do not see (the allocator's holes between scales, the targets'
    # set-up) scales the prediction.  Runs whose peak was a tiled scale have their own
    # (the whole runs' until one has been seen: whole runs' shares are the larger).
    peak_share: float = 1.0
    tiled_peak_share: float = 1.0


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


# -- measuring -----------------------------------------------------------------------------


class PeakMeter:
    """The peak memory of a stretch of work on ``device``, or None where it cannot be read."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._base = 0

    @property
    def works(self) -> bool:
        if self.device.type == "cuda":
            return True
        return self.device.type == "cpu" and _can_reset_rss_peak()

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            trim_heap()
            _reset_rss_peak()
            self._base = _proc_status("VmRSS")

    def peak(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return float(torch.cuda.max_memory_allocated(self.device) - self._base)
        return float(_proc_status("VmHWM") - self._base)


def resident_bytes(device: torch.device) -> float:
    """What the process holds now on ``device``."""
    if device.type == "cuda":
        return float(torch.cuda.memory_allocated(device))
    try:
        return float(_proc_status("VmRSS"))
    except OSError:  # no /proc: the peak so far is the nearest figure
        import resource
        return maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def maxrss_bytes(ru_maxrss: int, system: str = sys.platform) -> float:
    """``getrusage``'s ``ru_maxrss`` in bytes: macOS reports bytes, Linux KiB."""
    return float(ru_maxrss if system == "darwin" else ru_maxrss * 1024)


def available_bytes(device: torch.device) -> float:
    """Memory this process could still take on ``device``: the GPU's free memory, or the
    system's available memory within any cgroup limit."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free)
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            candidates.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
        except (ValueError, OSError, AttributeError):
            candidates.append(8 * 1024 ** 3)
    return float(max(0, min(candidates)))


def default_budget(device: torch.device) -> float:
    """A safe share of what is available, plus what the process already holds."""
    return resident_bytes(device) + BUDGET_SHARE * available_bytes(device)


class NotMeasured(BrushworkError):
    """No calibration for this device and network yet, and measuring was not allowed."""


def calibration_for(net: FeatureExtractor, settings: Settings, device: torch.device,
                    *, refresh: bool = False, measure: bool = True) -> Calibration:
    """This device's :class:`Calibration` for ``net`` and ``settings``' objective: measured
    once (a few seconds) and kept in the cache directory; its time line is refitted to
    the evaluations later runs :func:`observe`.  With ``measure=False`` (a server whose
    device is busy painting, which would spoil a measurement) a missing calibration
    raises :class:`NotMeasured` instead."""
    key = _calibration_key(net, settings, device)
    known = _read_calibrations()
    entry = known.get(key)
    if refresh or not _valid(entry):
        if not measure:
            raise NotMeasured("this device has not been measured for this network yet")
        measured = calibrate(net, _objective_factory(net, settings, device), device,
                             tiled_at=_tiled_factory(net, settings, device))
        entry = {"device": measured.device,
                 "eval_bytes": [measured.eval_bytes.intercept, measured.eval_bytes.slope],
                 "eval_seconds": [measured.eval_seconds.intercept,
                                  measured.eval_seconds.slope],
                 "forward_share": measured.forward_share,
                 "tiled_bytes": measured.tiled_bytes, "tiled_seconds": measured.tiled_seconds,
                 "observed": []}
        known[key] = entry
        _write_calibrations(known)
    assert isinstance(entry, dict)
    seconds = Line(*entry["eval_seconds"])
    if entry.get("observed"):
        seconds = refit(seconds, [(float(p), float(t)) for p, t in entry["observed"]])
    stopped = [float(v) for v in entry.get("coarse_stopped", [])]
    whole, tiled = _peak_ratios(entry)
    low, high = PEAK_SHARE_RANGE
    whole_share = min(high, max(low, _median(whole))) if whole else 1.0
    return Calibration(device=str(entry["device"]), resident_bytes=resident_bytes(device),
                       eval_bytes=Line(*entry["eval_bytes"]), eval_seconds=seconds,
                       forward_share=float(entry["forward_share"]),
                       tiled_bytes=float(entry["tiled_bytes"]),
                       tiled_seconds=float(entry["tiled_seconds"]),
                       coarse_steps=_median(stopped) if stopped else None,
                       peak_share=whole_share,
                       tiled_peak_share=min(high, max(low, _median(tiled))) if tiled
                       else whole_share)


def _peak_ratios(entry: dict) -> tuple[list[float], list[float]]:
    """The recorded peak ratios of whole runs and of runs whose peak scale was tiled."""
    whole: list[float] = []
    tiled: list[float] = []
    for v in entry.get(PEAK_RATIOS, []):
        ratio, was_tiled = (v, False) if isinstance(v, (int, float)) else (v[0], bool(v[1]))
        (tiled if was_tiled else whole).append(float(ratio))
    return whole, tiled


def observe(net: FeatureExtractor, settings: Settings, device: torch.device, pixels: int,
            seconds: float) -> None:
    """Record what one whole-picture evaluation of ``pixels`` took in a real run (the
    optimiser's own work included), so that later estimates follow this machine."""
    _record(net, settings, device, "observed", [pixels, seconds])


def observe_peak(net: FeatureExtractor, settings: Settings, device: torch.device,
                 forecast: Estimate, peak_above_start: float) -> None:
    """Record a finished run's peak memory above the process's start, less its kept
    vectors, as a ratio to the evaluation's peak the probe's lines predicted (large runs
    only: :data:`PEAK_OBSERVED_FROM`)."""
    kept = forecast.kept_bytes
    evaluation = (forecast.peak_bytes - forecast.resident_bytes - kept) / forecast.peak_share
    if evaluation > 0 and evaluation + kept >= PEAK_OBSERVED_FROM and peak_above_start > 0:
        _record(net, settings, device, PEAK_RATIOS,
                [(peak_above_start - kept) / evaluation, int(forecast.peak_tiled)])


def observe_coarse(net: FeatureExtractor, settings: Settings, device: torch.device,
                   steps: int) -> None:
    """Record the steps after which a coarse scale stopped changing (before its last)."""
    _record(net, settings, device, "coarse_stopped", steps)


def _record(net: FeatureExtractor, settings: Settings, device: torch.device, name: str,
            value: object) -> None:
    key = _calibration_key(net, settings, device)
    known = _read_calibrations()
    entry = known.get(key)
    if not _valid(entry):
        return
    assert isinstance(entry, dict)
    entry[name] = [*entry.get(name, []), value][-OBSERVATIONS_KEPT:]
    _write_calibrations(known)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def refit(probe: Line, observed: Sequence[tuple[float, float]]) -> Line:
    """The time line from runs' observations ``(pixels, seconds)``.

    Observations that span a factor of :data:`FIT_SPAN` in pixels (a pyramid's scales
    do) get their own least-squares line, since a probe taken on a busy machine can be
    off in shape, not only in scale; otherwise the probe's line is scaled by the median
    of observed over predicted, so that one odd run cannot tilt it."""
    sizes = [p for p, _ in observed]
    if sizes and max(sizes) >= FIT_SPAN * max(min(sizes), 1.0):
        n = len(observed)
        mp = sum(sizes) / n
        mt = sum(t for _, t in observed) / n
        var = sum((p - mp) ** 2 for p in sizes)
        slope = max(0.0, sum((p - mp) * (t - mt) for p, t in observed) / var)
        return Line(max(0.0, mt - slope * mp), slope)
    ratio = _median([t / max(probe(p), 1e-9) for p, t in observed])
    return Line(probe.intercept * ratio, probe.slope * ratio)


def _valid(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    try:
        Line(*entry["eval_bytes"])
        Line(*entry["eval_seconds"])
        float(entry["forward_share"])
        float(entry["tiled_bytes"])
        float(entry["tiled_seconds"])
        [float(v) for v in entry.get("coarse_stopped", [])]
        _peak_ratios(entry)
        return all(len(o) == 2 for o in entry.get("observed", []))
    except (KeyError, TypeError, ValueError):
        return False


def _calibration_file() -> Path:
    return cache_dir() / "calibration.json"


def _read_calibrations() -> dict[str, object]:
    try:
        known = json.loads(_calibration_file().read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _write_calibrations(known: dict[str, object]) -> None:
    write_cache_json(_calibration_file(), known)


def _calibration_key(net: FeatureExtractor, settings: Settings, device: torch.device) -> str:
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = f"{platform.machine()} x{os.cpu_count()}"
    return "|".join(map(str, (device, hardware, torch.__version__, torch.get_num_threads(),
                              model_key(settings.model), net.pooling, settings.content_layers,
                              settings.style_layers)))


def _objective_factory(net: FeatureExtractor, settings: Settings,
                       device: torch.device) -> Callable[[int], torch.nn.Module]:
    g = torch.Generator().manual_seed(0)
    style = (torch.rand(1, 3, 64, 64, generator=g) * 255).to(device)

    def at(n: int) -> torch.nn.Module:
        photo = (torch.rand(1, 3, n, n, generator=g) * 255).to(device)
        return Objective.for_styles(net, settings, photo, [style])

    return at


def _tiled_factory(net: FeatureExtractor, settings: Settings,
                   device: torch.device) -> Callable[[], TiledObjective]:
    """The run's objective in 2 x 2 tiles of the smallest size a plan may choose."""
    halo, align = tile_geometry(net)
    tile = max(halo, align)
    n = 2 * (tile + halo)

    def tiled() -> TiledObjective:
        g = torch.Generator().manual_seed(1)
        photo = (torch.rand(1, 3, n, n, generator=g) * 255).to(device)
        style = (torch.rand(1, 3, 64, 64, generator=g) * 255).to(device)
        return TiledObjective(net, settings, photo, style_grams(net, style,
                                                                settings.style_layers), tile)

    return tiled


def calibrate(net: FeatureExtractor, objective_at: Callable[[int], torch.nn.Module],
              device: torch.device, sizes: Sequence[int] = PROBE_SIZES,
              tiled_at: Callable[[], TiledObjective] | None = None) -> Calibration:
    """Measure one evaluation at two square sizes on ``device`` and fit lines, and with
    ``tiled_at`` one tiled evaluation against what those lines predict for its tiles.

    ``objective_at(n)`` builds the run's objective for an ``n`` x ``n`` photo.  At each
    size the first evaluation sets up the kernels for its shape (oneDNN, cuDNN), so the
    second is timed; memory is the larger of the two.
    """
    meter = PeakMeter(device)
    resident = resident_bytes(device)
    points_bytes, points_seconds, shares = [], [], []
    for n in sizes:
        objective = objective_at(n)
        if meter.works:
            meter.start()
        _evaluate(objective, device)
        seconds = _evaluate(objective, device)
        used = meter.peak() if meter.works else _saved_bytes(objective, device)
        forward = _forward(objective, device)
        points_bytes.append((n * n, used))
        points_seconds.append((n * n, seconds))
        shares.append(forward / max(seconds, 1e-9))
        del objective
    cal = Calibration(str(device), resident, Line.through(*points_bytes),
                      Line.through(*points_seconds), min(1.0, sum(shares) / len(shares)))
    if tiled_at is None:
        return cal
    tiled = tiled_at()
    if meter.works:
        meter.start()
    _evaluate(tiled, device)
    seconds = _evaluate(tiled, device)
    peak = meter.peak() if meter.works else None
    predicted = tiled_cost(cal, _box_pixels(tiled.tiles), tiled.image_pixels)
    return replace(cal, tiled_bytes=1.0 if peak is None else max(1.0, peak / predicted[0]),
                   tiled_seconds=seconds / predicted[1])


def _box_pixels(tiles: Sequence[Tile]) -> list[int]:
    return [(t.by1 - t.by0) * (t.bx1 - t.bx0) for t in tiles]


def tiled_cost(calibration: Calibration, boxes: Sequence[int], pixels: int
               ) -> tuple[float, float]:
    """``(peak bytes, seconds)`` of one tiled evaluation of a ``pixels`` picture whose
    tiles read ``boxes`` pixels each: the largest box's whole evaluation plus the image
    gradient's sum, and every box's evaluation plus pass 1's forward passes; times the
    calibration's tiled factors."""
    peak = calibration.eval_bytes(max(boxes)) + 3 * pixels * FLOAT
    seconds = sum(calibration.eval_seconds(b) for b in boxes) * (1 + calibration.forward_share)
    return peak * calibration.tiled_bytes, seconds * calibration.tiled_seconds


def _image(objective: torch.nn.Module) -> torch.Tensor:
    photo: torch.Tensor = objective.photo  # type: ignore[assignment]
    return photo.clone().requires_grad_(True)


def _evaluate(objective: torch.nn.Module, device: torch.device) -> float:
    x = _image(objective)
    _sync(device)
    t = time.perf_counter()
    objective(x)["total"].backward()
    _sync(device)
    return time.perf_counter() - t


@torch.no_grad()
def _forward(objective: torch.nn.Module, device: torch.device) -> float:
    net = objective.net
    assert isinstance(net, FeatureExtractor)
    photo = _image(objective).detach()
    _sync(device)
    t = time.perf_counter()
    net(photo)
    _sync(device)
    return time.perf_counter() - t


def _saved_bytes(objective: torch.nn.Module, device: torch.device) -> float:
    """Where no peak can be read: the bytes autograd keeps for the backward pass, counted
    as they are saved (each storage once)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = _image(objective)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        objective(x)
    return float(sum(storages.values()))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- predicting ----------------------------------------------------------------------------


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
        peak, per_eval = tiled_cost(calibration, _box_pixels(plan_tiles(h, w, plan.tile, halo,
                                                                         align)), w * h)
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


# -- Linux process memory ------------------------------------------------------------------


def _proc_status(key: str) -> int:
    """A ``/proc/self/status`` figure in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"{key} is not in /proc/self/status")


def _can_reset_rss_peak() -> bool:
    return os.access("/proc/self/clear_refs", os.W_OK) and Path("/proc/self/status").exists()


def _reset_rss_peak() -> None:
    """Set the high-water mark VmHWM to the current resident set (Linux 4.0 and later)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
