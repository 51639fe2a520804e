"""What one evaluation costs on this device, measured and kept.

One evaluation of the objective (forward and backward through the network) costs memory
and time in proportion to its pixels, plus a constant.  :func:`calibrate` measures both
on the device at two small sizes and fits the line (:class:`Calibration`); runs record
what they observed (:func:`observe`, :func:`record`) in the user's cache, so that later
estimates follow this machine.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from brushwork.engine.cache import model_key
from brushwork.engine.memory.probe import PeakMeter, resident_bytes, sync
from brushwork.engine.network import FeatureExtractor
from brushwork.engine.objective import Objective
from brushwork.engine.settings import Settings
from brushwork.engine.style_terms import style_statistics
from brushwork.engine.tiling import Tile, TiledObjective, tile_geometry
from brushwork.errors import BrushworkError
from brushwork.io.weights import cache_dir, write_cache_json

FLOAT = 4  # bytes per image value (float32)
PROBE_SIZES = (128, 256)  # square probes; small enough to take a second or two on a CPU


OBSERVATIONS_KEPT = 8  # the latest runs' evaluation times that estimates follow


FIT_SPAN = 4.0  # observations this far apart in pixels get a line of their own




PEAK_SHARE_RANGE = (0.5, 2.0)  # how far runs' peaks may move the probe's prediction


# Where runs' peaks are recorded, as ratios to the evaluation's predicted peak.  (Until
# 2026-11-30 "peak_ratios" held ratios to the evaluation and kept vectors together,
# which scaled the exactly known vectors by what the evaluations showed; those are not
# read.)
PEAK_RATIOS = "eval_peak_ratios"


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
    record(net, settings, device, "observed", [pixels, seconds])


def observe_coarse(net: FeatureExtractor, settings: Settings, device: torch.device,
                   steps: int) -> None:
    """Record the steps after which a coarse scale stopped changing (before its last)."""
    record(net, settings, device, "coarse_stopped", steps)


def record(net: FeatureExtractor, settings: Settings, device: torch.device, name: str,
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
    # The network's precision sets both the time and the bytes of saved activations.
    return "|".join(map(str, (device, hardware, torch.__version__, torch.get_num_threads(),
                              model_key(settings.model), net.pooling, settings.content_layers,
                              settings.style_layers, settings.style_loss, net.dtype)))


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
    """The run's objective in 2 x 2 tiles of the smallest size a plan may choose (a
    sliced loss is never tiled: w2's tiles, the dearer of the two that may be, stand in)."""
    tileable = replace(settings, style_loss="w2") if settings.style_loss == "sliced" \
        else settings
    halo, align = tile_geometry(net)
    tile = max(halo, align)
    n = 2 * (tile + halo)

    def tiled() -> TiledObjective:
        g = torch.Generator().manual_seed(1)
        photo = (torch.rand(1, 3, n, n, generator=g) * 255).to(device)
        style = (torch.rand(1, 3, 64, 64, generator=g) * 255).to(device)
        return TiledObjective(net, tileable, photo, style_statistics(net, style, tileable),
                              tile)

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
    predicted = tiled_cost(cal, box_pixels(tiled.tiles), tiled.image_pixels)
    return replace(cal, tiled_bytes=1.0 if peak is None else max(1.0, peak / predicted[0]),
                   tiled_seconds=seconds / predicted[1])


def _image(objective: torch.nn.Module) -> torch.Tensor:
    photo: torch.Tensor = objective.photo  # type: ignore[assignment]
    return photo.clone().requires_grad_(True)


def _evaluate(objective: torch.nn.Module, device: torch.device) -> float:
    x = _image(objective)
    sync(device)
    t = time.perf_counter()
    objective(x)["total"].backward()
    sync(device)
    return time.perf_counter() - t


@torch.no_grad()
def _forward(objective: torch.nn.Module, device: torch.device) -> float:
    net = objective.net
    assert isinstance(net, FeatureExtractor)
    photo = _image(objective).detach()
    sync(device)
    t = time.perf_counter()
    net(photo)
    sync(device)
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


def box_pixels(tiles: Sequence[Tile]) -> list[int]:
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
