"""The run: Gatys et al.'s style transfer, coarse to fine.

Only the generated image is optimised; the network is frozen.  The image lives in
pixel space (RGB, 0..255, float32) so that step sizes mean the same for every network.
:func:`stylize` puts together the rooms that each hold one part: the schedule
(brushwork.engine.pyramid), the objective (brushwork.engine.objective), one scale's optimisation
(brushwork.engine.optimise), the stopping rule (brushwork.engine.stopping), shared work
(brushwork.engine.cache) and the device (brushwork.engine.device).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from brushwork.engine.cache import Cache, load_network
from brushwork.engine.device import resolve_device
from brushwork.engine.memory import calibration as calibrations
from brushwork.engine.memory import forecast as forecasts
from brushwork.engine.memory import probe
from brushwork.engine.memory.allocator import kept_copy
from brushwork.engine.network import FeatureExtractor
from brushwork.engine.objective import ExtraTerms, Objective, WithTerms, style_targets
from brushwork.engine.optimise import Optimiser
from brushwork.engine.precision import name_of, resolve_precision
from brushwork.engine.pyramid import Scale, scales
from brushwork.engine.result import Interrupted, Iterate, Result
from brushwork.engine.settings import Settings
from brushwork.engine.stopping import StopRule
from brushwork.engine.style_terms import refuse_sliced, style_statistics
from brushwork.engine.tiling import TiledObjective, tiled_style_grams
from brushwork.errors import BrushworkError, DivergedError
from brushwork.io import checkpoint as checkpoints
from brushwork.io.faces import detect_faces
from brushwork.io.images import load_image, resize_to, scaled_size, to_image, to_tensor
from brushwork.io.masks import load_masks
from brushwork.maths.color import luminance_transfer, match_color
from brushwork.maths.faces import Box, face_map
from brushwork.maths.photoreal import guided_filter
from brushwork.maths.regions import recolour_by_region, resize_masks
from brushwork.maths.torus import resize_wrapped

ImageInput = Any  # a path, a PIL image or a numpy array
Callback = Callable[[Iterate], None]
Log = Callable[[str], None]
NOISE_STD = 16.0  # pixel units
OBSERVE_AFTER = 3  # a scale's evaluations before its time per evaluation is worth keeping


def stylize(content: ImageInput, style: ImageInput | Sequence[ImageInput], *,
            callback: Callback | None = None, log: Log | None = None,
            cache: Cache | None = None, checkpoint: str | os.PathLike[str] | None = None,
            checkpoint_every: float = checkpoints.EVERY, resume: bool = False,
            start: torch.Tensor | None = None, terms: ExtraTerms | None = None,
            fresh: torch.Tensor | None = None, **options: Any) -> Result:
    """Paint ``content`` in the style of ``style`` (one image or several, blended).

    ``options`` are the fields of :class:`brushwork.engine.settings.Settings`. ``callback`` is
    called with an :class:`Iterate` after every evaluation. Raises BrushworkError for
    bad input, DivergedError if the loss becomes NaN or explodes, and Interrupted
    (a KeyboardInterrupt carrying the result so far) on Ctrl-C; any other exception a
    callback raises (to cancel a run, say) propagates unchanged.  Pass the same
    :class:`Cache` to several calls to load each network and style target once.

    ``checkpoint``: a file where the run's state is saved every ``checkpoint_every``
    seconds and on Ctrl-C (brushwork.io.checkpoint), and removed when the run ends;
    ``resume=True`` continues the run saved there, which must have the same settings and
    input images, and ends where the uninterrupted run would have.

    ``start``: the picture to begin from, (1, 3, H, W) in 0..255 at any size (resized to
    the first scale), instead of ``init``.  ``terms``: more loss terms, a callable from the
    picture to named weighted terms that are added to the objective's total at every
    scale (brushwork.video's temporal loss).  ``fresh``: (1, 1, H, W) in 0..1 at any size,
    where the picture is new (a video frame's disocclusions, which the temporal terms do
    not reach): there the style is matched by Gram matrices of its own
    (:func:`brushwork.maths.regions.split_regions`), so a small new part is painted as fully as
    a whole picture would be.  A checkpoint records none of these, so none goes with
    ``checkpoint``.
    """
    run_began = time.perf_counter()
    _check_extras(checkpoint, start, terms, fresh)
    settings = Settings.from_options(options)
    device = resolve_device(settings.device)
    inputs = _Inputs.load(content, style, settings)
    if log is not None:
        for note in inputs.notes:
            log(note)
    saver, resumed = _checkpointing(checkpoint, checkpoint_every, resume, settings, inputs)
    net = cache.network(settings, device, log) if cache else load_network(settings, device, log)
    # A resumed checkpoint's vectors are already resident, and become the state the
    # forecast counts as kept: counted once.
    held = checkpoints.tensor_bytes(resumed) if resumed is not None else 0
    forecast = _forecast(net, settings, device, inputs.content.size, held=held)
    _check_sliced(settings, forecast, inputs.masks is not None or fresh is not None)
    if log is not None:
        log(forecast.describe())
        log(resolve_precision(settings.precision, device).describe())
    # A whole run's peak, recorded so that later estimates follow this machine (a resumed
    # run began in another process).
    meter = probe.PeakMeter(device) if resumed is None else None
    if meter is not None and meter.works:
        meter.start()
    progress = _Progress([p.scale for p in forecast.scales], run_began, callback,
                         list(forecast.step_seconds))
    if resumed is not None:
        progress.restore(resumed)
    run = _Run(settings, device, inputs, net, cache, log, saver, progress, _generator(settings),
               len(forecast.scales), start, terms, fresh, resumed)
    del resumed  # the run drops it once restored: its vectors must not stay for the whole run
    x: torch.Tensor | None = None
    prev_photo: torch.Tensor | None = None
    for level, scale_plan in enumerate(forecast.scales):
        if run.resumed is not None and level < run.resumed.level:
            continue
        x, prev_photo = run.paint_scale(level, scale_plan, x, prev_photo)
    assert x is not None
    if meter is not None and meter.works and not run.guided:
        forecasts.observe_peak(net, settings, device, forecast, meter.peak())
    if saver is not None:
        saver.finished()
    return _result(x, inputs, settings, progress, device, run.precision, interrupted=False)


def _check_sliced(settings: Settings, forecast: forecasts.Estimate, regions: bool) -> None:
    """Refuse, before anything is painted, a sliced style loss the run cannot evaluate:
    a scale its plan paints in tiles, or regions."""
    tiled = [p.scale for p in forecast.scales if p.tile is not None]
    refuse_sliced(settings, regions=regions,
                  tiled=f"{tiled[0].size[0]}x{tiled[0].size[1]}" if tiled else None)


def _check_extras(checkpoint: str | os.PathLike[str] | None, start: torch.Tensor | None,
                  terms: ExtraTerms | None, fresh: torch.Tensor | None) -> None:
    """stylize's video-only arguments: their shapes, and never with a checkpoint."""
    if checkpoint is not None and (start is not None or terms is not None
                                   or fresh is not None):
        raise BrushworkError("a checkpointed run cannot take a start picture, extra terms "
                             "or fresh regions")
    if fresh is not None and (fresh.dim() != 4 or tuple(fresh.shape[:2]) != (1, 1)):
        raise BrushworkError(f"fresh must be a (1, 1, H, W) mask, not {tuple(fresh.shape)}")
    if start is not None and (start.dim() != 4 or tuple(start.shape[:2]) != (1, 3)):
        raise BrushworkError(f"start must be a (1, 3, H, W) picture, not {tuple(start.shape)}")


def _generator(settings: Settings) -> torch.Generator:
    """A private generator: the library does not touch the caller's global RNG state."""
    generator = torch.Generator()
    if settings.seed is not None:
        generator.manual_seed(settings.seed)
    else:
        generator.seed()
    return generator


@dataclass
class _Run:
    """What every scale of one run shares, and how one scale is painted."""

    settings: Settings
    device: torch.device
    inputs: _Inputs
    net: FeatureExtractor
    cache: Cache | None
    log: Log | None
    saver: checkpoints.Saver | None
    progress: _Progress
    generator: torch.Generator
    scales: int
    start: torch.Tensor | None
    terms: ExtraTerms | None
    fresh: torch.Tensor | None
    resumed: checkpoints.Checkpoint | None  # until its scale has been restored

    @property
    def precision(self) -> str:
        return name_of(self.net.dtype)

    @property
    def guided(self) -> bool:
        """Evaluated by regions (masks, or a video frame's new parts)."""
        return self.inputs.masks is not None or self.fresh is not None

    def paint_scale(self, level: int, scale_plan: forecasts.ScalePlan, x: torch.Tensor | None,
                    prev_photo: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Paint one scale from the last one's picture (or the start); the picture and
        this scale's photo, for the next."""
        settings, device, scale = self.settings, self.device, scale_plan.scale
        objective: Objective | TiledObjective | WithTerms = _scale_objective(
            self.inputs, settings, scale, self.net, device, self.cache, scale_plan.tile,
            self.fresh)
        photo = objective.photo
        if self.terms is not None:
            objective = WithTerms(objective, self.terms)
        here = self.resumed if self.resumed is not None and level == self.resumed.level \
            else None
        if here is not None:
            x = here.image.to(device)
        elif x is None or prev_photo is None:
            x = _first_image(settings, self.inputs, photo, self.generator) \
                if self.start is None else _resized(self.start.to(device, torch.float32), photo)
        else:
            x = enlarge(x, prev_photo, photo, settings.knob("photo_detail"),
                        wrap=settings.tileable)
        x = x.contiguous().requires_grad_(True)
        last = level == self.scales - 1
        painter = _ScalePainter(x, Optimiser(x, objective, settings, scale_plan.history),
                                StopRule(settings.stop_tolerance if last
                                         else settings.coarse_tolerance),
                                level, scale.iterations)
        if here is not None:
            painter.restore(here, device)
            # The painter holds what it needs; the checkpoint's picture and L-BFGS pairs
            # (2 * history image-sized vectors) would otherwise stay for the whole run.
            here = self.resumed = None
        began, before = time.perf_counter(), painter.taken
        try:
            painter.paint(self.progress, self.saver)
        except KeyboardInterrupt:
            if self.saver is not None and self.saver.write() and self.log is not None:
                self.log(f"saved a checkpoint at {self.saver.path}")
            raise Interrupted(_result(x.detach().clamp(0, 255), self.inputs, settings,
                                      self.progress, device, self.precision,
                                      interrupted=True)) from None
        self._observe(level, scale_plan, painter.taken, before, time.perf_counter() - began)
        return x.detach().clamp(0, 255), photo

    def _observe(self, level: int, scale_plan: forecasts.ScalePlan, steps: int, before: int,
                 seconds: float) -> None:
        """Say when a scale stopped early, and record what its steps cost, so that later
        estimates follow this machine."""
        scale, settings = scale_plan.scale, self.settings
        if steps < scale.iterations and self.log is not None:
            self.log(f"scale {level + 1}/{self.scales}: the picture stopped changing after "
                     f"{steps} of {scale.iterations} steps; moving on")
        if level < self.scales - 1 and before == 0 and steps < scale.iterations:
            calibrations.observe_coarse(self.net, settings, self.device, steps)
        # A masked run's evaluations cost more (a Gram matrix per region) than the plain
        # ones the estimate predicts: it is not recorded as one of them.
        if scale_plan.tile is None and steps - before >= OBSERVE_AFTER and not self.guided:
            calibrations.observe(self.net, settings, self.device, scale.pixels,
                                 seconds / (steps - before))


def _checkpointing(path: str | os.PathLike[str] | None, every: float, resume: bool,
                   settings: Settings, inputs: _Inputs
                   ) -> tuple[checkpoints.Saver | None, checkpoints.Checkpoint | None]:
    """The run's checkpoint saver, and the checkpoint it resumes (validated)."""
    if path is None:
        if resume:
            raise BrushworkError("resume needs the checkpoint to continue from")
        return None, None
    fingerprint = checkpoints.fingerprint(
        [inputs.content, *inputs.styles, *([inputs.init] if inputs.init else [])], inputs.blend,
        inputs.masks)
    saver = checkpoints.Saver(Path(path), every, settings.to_dict(), fingerprint)
    if not resume:
        return saver, None
    resumed = checkpoints.load(saver.path)
    checkpoints.check(resumed, saver.settings, fingerprint, saver.path,
                      [(s.size, s.iterations) for s in scales(settings, inputs.content.size)])
    return saver, resumed


def estimate(content: ImageInput, style: ImageInput | Sequence[ImageInput], *,
             log: Log | None = None, cache: Cache | None = None, measure: bool = True,
             **options: Any) -> forecasts.Estimate:
    """What :func:`stylize` with the same arguments would need: its peak memory and wall
    time on this device, and its plan (which scales are painted in tiles).  Measures the
    device once (a few seconds; then cached); with ``measure=False`` raises
    :class:`~brushwork.engine.memory.calibration.NotMeasured` instead.  Raises
    BrushworkError when the run would not fit its memory budget, naming what would."""
    settings = Settings.from_options(options)
    inputs = _Inputs.load(content, style, settings)
    return estimate_size(inputs.content.size, log=log, cache=cache, measure=measure,
                         **options)


def estimate_size(content_size: tuple[int, int], *, log: Log | None = None,
                  cache: Cache | None = None, measure: bool = True,
                  **options: Any) -> forecasts.Estimate:
    """:func:`estimate` for a photo of ``content_size`` (width, height), reading no
    image: the plan needs only the photo's size, so a caller that knows it (the studio
    records it at upload) need not decode any picture to size a run."""
    settings = Settings.from_options(options)
    device = resolve_device(settings.device)
    net = cache.network(settings, device, log) if cache else load_network(settings, device, log)
    forecast = _forecast(net, settings, device, content_size, measure=measure)
    _check_sliced(settings, forecast, regions=False)  # the run would refuse it
    return forecast


def _forecast(net: FeatureExtractor, settings: Settings, device: torch.device,
              content_size: tuple[int, int], measure: bool = True,
              held: int = 0) -> forecasts.Estimate:
    """The run's plan; ``held``: bytes now resident in the CPU's memory that the plan
    counts as its own state (a resumed checkpoint's)."""
    budget = (settings.max_memory * forecasts.GB if settings.max_memory is not None
              else probe.default_budget(device))
    calibration = calibrations.calibration_for(net, settings, device, measure=measure)
    if held and device.type == "cpu":  # a checkpoint is loaded into the CPU's memory
        calibration = replace(calibration,
                              resident_bytes=max(0.0, calibration.resident_bytes - held))
    return forecasts.plan(scales(settings, content_size), settings, calibration, net, budget,
                       settings.tile_size)


def enlarge(x: torch.Tensor, coarse_photo: torch.Tensor, photo: torch.Tensor,
            photo_detail: float, wrap: bool = False) -> torch.Tensor:
    """The start of a finer scale: the coarse picture ``x``, enlarged to ``photo``'s size,
    plus ``photo_detail`` times the detail this scale's photo has and the coarse one
    lacks.  1 enlarges only what the coarse scale added to the photo (the photo's edges
    stay sharp); 0 enlarges the coarse painting as it is.  ``wrap``: both enlarged as
    tori (a tileable run), so the edges stay each other's neighbours."""
    h, w = photo.shape[-2:]
    if wrap:
        coarse, x = resize_wrapped(coarse_photo, (h, w)), resize_wrapped(x, (h, w))
        return (x + photo_detail * (photo - coarse)).clamp(0, 255)
    coarse = F.interpolate(coarse_photo, size=(h, w), mode="bicubic", align_corners=False)
    x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
    return (x + photo_detail * (photo - coarse)).clamp(0, 255)


@dataclass
class _Inputs:
    """The run's images, decoded once, and the styles' blend weights (summing to 1)."""

    content: Image.Image
    styles: list[Image.Image]
    init: Image.Image | None
    blend: list[float]
    described: dict[str, Any]
    # The styles' regions (R, 1, H, W) in 0..1, one per style, at the masks' own size or
    # the photo's where they are larger (shrunk while decoding: brushwork.io.masks.load_masks).
    masks: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)  # worth telling the user
    faces: list[Box] | None = None  # with keep_faces: the photo's, as fractions of it

    @classmethod
    def load(cls, content: ImageInput, style: ImageInput | Sequence[ImageInput],
             settings: Settings) -> _Inputs:
        styles_in: list[ImageInput] = list(style) if isinstance(style, (list, tuple)) else [style]
        if not styles_in:
            raise BrushworkError("at least one style image is needed")
        blend = list(settings.style_weights or [1.0] * len(styles_in))
        if len(blend) != len(styles_in):
            raise BrushworkError(f"style_weights has {len(blend)} values for "
                                 f"{len(styles_in)} style images")
        limit = settings.max_pixels
        content_img = load_image(content, role="content", max_pixels=limit)
        style_imgs = [load_image(s, role="style", max_pixels=limit) for s in styles_in]
        init = None
        if settings.init not in ("content", "noise"):
            init = load_image(settings.init, role="init", max_pixels=limit)
        masks, notes = load_masks(settings, content_img, len(style_imgs))
        faces = None
        if settings.keep_faces:
            faces = detect_faces(content_img)
            notes.append(f"keep_faces: found {len(faces)} face{'' if len(faces) == 1 else 's'}"
                         + ("" if faces else "; the picture is painted as without it"))
        return cls(content=content_img, styles=style_imgs, init=init,
                   blend=[b / sum(blend) for b in blend],
                   described={"content": _describe(content),
                              "style": [_describe(s) for s in styles_in]},
                   masks=masks, notes=notes, faces=faces)


def _scale_objective(inputs: _Inputs, settings: Settings, scale: Scale, net: FeatureExtractor,
                     device: torch.device, cache: Cache | None, tile: int | None,
                     fresh: torch.Tensor | None = None) -> Objective | TiledObjective:
    """The objective at this scale: its photo, and the styles at the size
    ``style_scale`` asks for (recoloured if asked); evaluated in tiles of ``tile`` px
    when given.  ``fresh``: where the picture is new (:func:`stylize`), its own region."""
    w, h = scale.size
    photo = to_tensor(resize_to(inputs.content, (w, h))).to(device)
    style_long = max(1, round(settings.style_scale * max(w, h)))
    style_ts = [to_tensor(resize_to(im, scaled_size(im.size, style_long))).to(device)
                for im in inputs.styles]
    masks = None if inputs.masks is None else resize_masks(inputs.masks, (w, h)).to(device)
    if settings.preserve_colors == "histogram":
        style_ts = [match_color(t, photo) for t in style_ts]
    elif settings.preserve_colors == "histogram-to-style" and masks is not None:
        photo = recolour_by_region(photo, style_ts, masks, match_color)
    elif settings.preserve_colors == "histogram-to-style":
        main = max(range(len(inputs.blend)), key=inputs.blend.__getitem__)
        photo = match_color(photo, style_ts[main])
    layers = settings.style_layers
    if tile is not None:
        stats = [tiled_style_grams(net, t, layers, tile, settings.style_loss)
                 if max(t.shape[-2:]) > tile else style_statistics(net, t, settings)
                 for t in style_ts]
    else:
        stats = [cache.style_statistics(net, t, settings) if cache
                 else style_statistics(net, t, settings) for t in style_ts]
    fresh_here = None if fresh is None else resize_masks(fresh.to(device, torch.float32), (w, h))
    targets, masks, weights = style_targets(stats, inputs.blend, masks, fresh_here,
                                            settings.style_loss)
    faces = face_map(inputs.faces, (h, w)).to(device) if inputs.faces else None
    if tile is None:
        return Objective(net, settings, photo, targets, masks, weights, faces)
    return TiledObjective(net, settings, photo, targets, tile, masks, weights, faces)


def _resized(picture: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """``picture`` at ``photo``'s size."""
    if picture.shape[-2:] == photo.shape[-2:]:
        return picture.clone()
    return F.interpolate(picture, size=photo.shape[-2:], mode="bicubic",
                         align_corners=False).clamp(0, 255)


def _first_image(settings: Settings, inputs: _Inputs, photo: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
    """The coarsest scale's starting picture."""
    if settings.init == "content":
        return photo.clone()
    if settings.init == "noise":
        # White noise around mid-grey, small like Gatys's code (randn in input space);
        # full-range noise gives relu1_1 Gram errors L-BFGS crawls out of.
        noise = torch.randn(photo.shape, generator=generator) * NOISE_STD
        return (noise + 127.5).clamp(0, 255).to(photo.device)
    assert inputs.init is not None
    return to_tensor(resize_to(inputs.init, (photo.shape[-1], photo.shape[-2]))).to(photo.device)


@dataclass
class _Progress:
    """The run's step count, work done, loss history and callback."""

    plan: list[Scale]
    start: float
    callback: Callback | None
    step_seconds: list[float] = field(default_factory=list)
    step: int = 0
    work_done: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    losses: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.total = sum(s.iterations for s in self.plan)
        # A step's share of the work: the estimate's time per evaluation at its scale
        # (tiles included), else its pixels, relative to a step at the final scale.
        costs = self.step_seconds if len(self.step_seconds) == len(self.plan) and \
            self.step_seconds[-1] > 0 else [float(s.pixels) for s in self.plan]
        self.step_cost = [c / costs[-1] for c in costs]
        self.work_total = sum(cost * s.iterations
                              for cost, s in zip(self.step_cost, self.plan, strict=True))

    def restore(self, saved: checkpoints.Checkpoint) -> None:
        """Continue from a checkpoint's count, work and history (and its elapsed time)."""
        self.step, self.work_done = saved.step, saved.work_done
        self.history, self.losses = list(saved.history), dict(saved.losses)
        self.start -= saved.elapsed

    def record(self, level: int, losses: dict[str, float], x: torch.Tensor,
               skipped: int = 0) -> None:
        """One evaluation at ``level`` done (and ``skipped`` of its steps given up)."""
        self.step += 1
        self.work_done += self.step_cost[level] * (1 + skipped)
        self.losses = losses
        self.history.append({"step": self.step, "scale": level, **losses})
        if self.callback is not None:
            self.callback(Iterate(self.step, self.total, level, len(self.plan),
                                  self.plan[level].size, losses,
                                  time.perf_counter() - self.start,
                                  min(1.0, self.work_done / self.work_total),
                                  x.detach().clone()))


class _ScalePainter:
    """One scale's optimisation, its stopping rule and its step count, which together
    with the picture are what a checkpoint of the scale holds."""

    def __init__(self, x: torch.Tensor, optimiser: Optimiser, rule: StopRule, level: int,
                 iterations: int) -> None:
        self.x, self.optimiser, self.rule = x, optimiser, rule
        self.level, self.iterations = level, iterations
        self.taken = 0

    def restore(self, saved: checkpoints.Checkpoint, device: torch.device) -> None:
        self.taken = saved.taken
        self.optimiser.load_state_dict(checkpoints.to_device(saved.optimiser, device))
        self.rule.load_state_dict(saved.stop_rule, self.x)

    def paint(self, progress: _Progress, saver: checkpoints.Saver | None) -> None:
        """Optimise ``x`` in place until the scale's steps are done or the stopping rule
        ends it, recording each evaluation in ``progress`` and the state in ``saver``."""
        left = self.iterations - self.taken
        for losses in self.optimiser.steps(left):
            self.taken += 1
            if not math.isfinite(losses["total"]):
                raise DivergedError(
                    f"the loss became {losses['total']} at step {progress.step + 1}; lower "
                    f"--style-weight or --lr, or use --optimizer lbfgs")
            stop = self.rule.update(self.x) and self.taken < self.iterations
            progress.record(self.level, losses, self.x,
                            skipped=self.iterations - self.taken if stop else 0)
            if stop:
                break
            if saver is not None:
                saver.capture(self.snapshot(progress, saver))

    def snapshot(self, progress: _Progress,
                 saver: checkpoints.Saver) -> checkpoints.Checkpoint:
        """The state now, between two evaluations."""
        return checkpoints.Checkpoint(
            settings=saver.settings, inputs=saver.inputs, level=self.level, taken=self.taken,
            step=progress.step, work_done=progress.work_done,
            elapsed=time.perf_counter() - progress.start, image=kept_copy(self.x.detach()),
            optimiser=self.optimiser.state_dict(), stop_rule=self.rule.state_dict(),
            history=list(progress.history), losses=dict(progress.losses))


def _result(pixels: torch.Tensor, inputs: _Inputs, settings: Settings, progress: _Progress,
            device: torch.device, precision: str, *, interrupted: bool) -> Result:
    out = pixels.detach()
    if settings.photoreal in ("filter", "both") or settings.preserve_colors == "luminance":
        photo = to_tensor(resize_to(inputs.content, (out.shape[-1], out.shape[-2]))).to(out)
        if settings.photoreal in ("filter", "both"):
            # FastPhotoStyle's smoothing: locally affine in the photo, so its edges and grain.
            out = guided_filter(out, photo).clamp(0, 255)
        if settings.preserve_colors == "luminance":
            out = luminance_transfer(out, photo)
    return Result(image=to_image(out), settings=settings.to_dict(), losses=dict(progress.losses),
                  history=progress.history, elapsed=time.perf_counter() - progress.start,
                  inputs=inputs.described, device=str(device), precision=precision,
                  interrupted=interrupted,
                  pixels=pixels.detach().to("cpu", torch.float32),
                  deep=out.to("cpu", torch.float32) if settings.bit_depth == 16 else None)


def _describe(source: ImageInput) -> Any:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"<{type(source).__name__}>"

