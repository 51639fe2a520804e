"""The optimisation: Gatys et al.'s style transfer, coarse to fine.

Only the generated image is optimised; the network is frozen.  The image lives in
pixel space (RGB, 0..255, float32) so that step sizes mean the same for every network.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from . import __version__
from .color import luminance_transfer, match_color
from .errors import BrushworkError, DivergedError
from .fused import network_losses
from .imageio import load_image, resize_to, save_image, scaled_size, to_image, to_tensor
from .lbfgs import lbfgs
from .losses import content_loss, gram, style_layer_loss, tv_loss
from .pyramid import scales
from .settings import DEFAULT_LR, Settings
from .vgg import FeatureExtractor, check_layers
from .weights import VGGWeights, load_weights

ImageInput = Any  # a path, a PIL image or a numpy array
NOISE_STD = 16.0  # pixel units
REFERENCE_LONG_SIDE = 256  # the size at which content_weight applies as given
STOP_WINDOW = 10  # steps over which the stopping rule averages the picture's change


@dataclass
class Iterate:
    """What a callback receives after every evaluation of the objective."""

    step: int  # evaluations so far, over all scales
    total: int  # evaluations planned, over all scales
    scale: int  # pyramid level, 0 = coarsest
    scales: int
    size: tuple[int, int]  # (width, height) at this scale
    losses: dict[str, float]  # weighted terms: content, style, tv, total
    elapsed: float  # seconds since the run started
    progress: float  # fraction of the run's work done, weighting each step by its pixels
    _pixels: torch.Tensor = field(repr=False)

    def image(self) -> Image.Image:
        """The current picture (converted only when asked for)."""
        return to_image(self._pixels)


@dataclass
class Result:
    image: Image.Image
    settings: dict[str, Any]
    losses: dict[str, float]
    history: list[dict[str, float]]
    elapsed: float
    inputs: dict[str, Any]
    device: str
    interrupted: bool = False

    def metadata(self) -> dict[str, Any]:
        """Everything needed to reproduce the picture; stored inside the saved file."""
        return {"brushwork": __version__, "inputs": self.inputs, "settings": self.settings,
                "device": self.device, "final_losses": self.losses,
                "elapsed_s": round(self.elapsed, 2), "interrupted": self.interrupted}

    def save(self, path: str | os.PathLike, *, force: bool = False,
             extra: dict[str, Any] | None = None) -> Path:
        """Write atomically, refusing to overwrite unless ``force``; settings go in the file,
        with ``extra`` (for example the command that reproduces the picture)."""
        return save_image(self.image, path, force=force, metadata={**self.metadata(), **(extra or {})})


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``.result`` holds the picture so far."""

    def __init__(self, result: Result) -> None:
        super().__init__("interrupted")
        self.result = result


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise BrushworkError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") \
            from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BrushworkError(f"device {name!r} asked for but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BrushworkError(f"device {name!r} does not exist; this machine has "
                                 f"{torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise BrushworkError(f"device {name!r} asked for but MPS is not available here")
    elif device.type != "cpu":
        raise BrushworkError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


class _LRU:
    """A bounded mapping that forgets the least recently used entry first; thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: tuple, value: Any) -> Any:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


class Cache:
    """Work that repeated runs share: loaded networks and style Gram targets.

    Pass one to several :func:`stylize` calls (a sweep, the studio's job queue) and the
    weights are read once per model and each style image's Gram matrices are computed
    once per size, instead of once per run.  Style targets are keyed by the bytes of
    the resized (and colour-matched) style image, so a changed file is never served
    stale.  Bounded (least recently used entries go first) and thread-safe.
    """

    def __init__(self, max_networks: int = 2, max_targets: int = 64) -> None:
        self._weights = _LRU(max_networks)
        self._networks = _LRU(max_networks)
        self._targets = _LRU(max_targets)
        self.network_loads = 0  # how many times weights were actually read
        self.target_hits = 0
        self.target_misses = 0

    def weights(self, model: str, log: Callable[[str], None] | None = None) -> VGGWeights:
        """The weights of ``model`` (a source name or a file), read once."""
        key = _model_key(model)
        weights = self._weights.get(key)
        if weights is None:
            weights = self._weights.put(key, load_weights(model, **({"log": log} if log else {})))
            self.network_loads += 1
        return weights

    def network(self, settings: Settings, device: torch.device,
                log: Callable[[str], None] | None = None) -> FeatureExtractor:
        """A feature extractor for these settings' model, layers, pooling and device."""
        key = (_model_key(settings.model), settings.pooling, str(device),
               tuple(dict.fromkeys(settings.content_layers + settings.style_layers)))
        net = self._networks.get(key)
        if net is None:
            net = _build_network(self.weights(settings.model, log), settings, device)
            net.cache_key = key  # style targets are keyed by it, never by id() (ids are reused)
            self._networks.put(key, net)
        return net

    def style_grams(self, net: FeatureExtractor, style: torch.Tensor,
                    layers: Sequence[str]) -> list[torch.Tensor]:
        net_key = getattr(net, "cache_key", None)
        if net_key is None:  # not one of ours: nothing to key it by safely
            return style_grams(net, style, layers)
        digest = hashlib.sha1(style.detach().cpu().numpy().tobytes()).hexdigest()
        key = (net_key, tuple(style.shape), tuple(layers), digest)
        grams = self._targets.get(key)
        if grams is None:
            grams = self._targets.put(key, style_grams(net, style, layers))
            self.target_misses += 1
        else:
            self.target_hits += 1
        return grams


def _model_key(model: str) -> tuple:
    """A weights file is known by its path and modification time; a source by its name."""
    path = Path(model).expanduser()
    if path.is_file():
        st = path.stat()
        return (str(path.resolve()), st.st_mtime_ns, st.st_size)
    return (model,)


def _load_network(settings: Settings, device: torch.device,
                  log: Callable[[str], None] | None) -> FeatureExtractor:
    return _build_network(load_weights(settings.model, **({"log": log} if log else {})),
                          settings, device)


def _build_network(weights: VGGWeights, settings: Settings, device: torch.device) -> FeatureExtractor:
    check_layers(weights.arch, settings.content_layers, "content")
    check_layers(weights.arch, settings.style_layers, "style")
    return FeatureExtractor(weights, settings.content_layers + settings.style_layers,
                            settings.pooling).to(device)


@torch.no_grad()
def style_grams(net: FeatureExtractor, style: torch.Tensor,
                layers: Sequence[str]) -> list[torch.Tensor]:
    """Gram matrices of ``style`` at ``layers``, divided by each layer's positions.

    Stored per position so a target fits the output's size, not the style's.
    """
    feats = net(style)
    return [gram(feats[n])[0] / (feats[n].shape[-1] * feats[n].shape[-2]) for n in layers]


class Objective(nn.Module):
    """``L_total = alpha * L_content + beta * L_style + tv_weight * L_tv`` for one scale.

    Targets (content features, blended Gram matrices) are computed once and kept as
    buffers.  Blending the Gram targets by the style weights gives the same optimum as
    a weighted sum of per-style losses (they differ by a constant), at the cost of one.
    """

    gram = staticmethod(gram)  # the benchmark's baseline swaps in losses.gram_autograd
    fused = True  # the hand-written backward where it applies; the benchmark's baseline turns it off

    def __init__(self, net: FeatureExtractor, settings: Settings, content: torch.Tensor,
                 styles: Sequence[torch.Tensor], blend: Sequence[float],
                 cache: Cache | None = None) -> None:
        super().__init__()
        self.net = net
        self.s = settings
        self.image_pixels = content.shape[-1] * content.shape[-2]
        self.content_weight = settings.content_weight
        if settings.size_invariant:
            # The paper's content loss is a sum over positions (it grows with the pixel
            # count) while its style loss is normalised by M^2 (it does not), so one
            # alpha paints a 512 px picture more photo-like than a 256 px preview.
            # alpha is therefore taken as given at a long side of 256 px.
            long_side = max(content.shape[-1], content.shape[-2])
            self.content_weight *= (REFERENCE_LONG_SIDE / long_side) ** 2
        n = len(settings.style_layers)
        self.layer_weights = list(settings.style_layer_weights or [1.0 / n] * n)
        with torch.no_grad():
            feats = net(content)
            for i, name in enumerate(settings.content_layers):
                self.register_buffer(f"content_{i}", feats[name].detach().clone())
            blended: list[torch.Tensor | None] = [None] * n
            for style, b in zip(styles, blend):
                grams = (cache.style_grams(net, style, settings.style_layers) if cache
                         else style_grams(net, style, settings.style_layers))
                for i, g in enumerate(grams):
                    blended[i] = g * b if blended[i] is None else blended[i] + g * b
            for i, g in enumerate(blended):
                self.register_buffer(f"gram_{i}", g)

    def uses_fused(self, x: torch.Tensor) -> bool:
        """Whether this evaluation takes the hand-written backward (brushwork.fused):
        on the CPU, where it was measured, for one image that needs a gradient."""
        return (self.fused and x.device.type == "cpu" and x.shape[0] == 1
                and x.requires_grad and torch.is_grad_enabled())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self.s
        if self.uses_fused(x):
            c, st = network_losses(x, self)
        else:
            feats = self.net(x)
            c = self.content_term(feats)
            st = self.style_term({n: self.gram(feats[n])[0] for n in s.style_layers},
                                 {n: feats[n].shape for n in s.style_layers})
        tv = tv_loss(x, s.tv_power) if s.tv_weight > 0 else x.new_zeros(())
        terms = {"content": self.content_weight * c, "style": s.style_weight * st,
                 "tv": s.tv_weight * tv}
        terms["total"] = terms["content"] + terms["style"] + terms["tv"]
        return terms

    def content_term(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """``sum_l L_content`` over the content layers, before alpha."""
        c = _zero(feats)
        for i, name in enumerate(self.s.content_layers):
            c = c + content_loss(feats[name], getattr(self, f"content_{i}"), self.s.content_norm)
        return c

    def style_term(self, grams: dict[str, torch.Tensor],
                   shapes: dict[str, torch.Size]) -> torch.Tensor:
        """``sum_l w_l E_l`` from each style layer's Gram matrix ``(N, N)``, before beta."""
        s = self.s
        st = _zero(grams)
        for i, name in enumerate(s.style_layers):
            channels, positions = shapes[name][1], shapes[name][2] * shapes[name][3]
            target = getattr(self, f"gram_{i}") * positions
            st = st + self.layer_weights[i] * style_layer_loss(
                grams[name], target, channels, positions, s.style_norm, self.image_pixels)
        return st


def _zero(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    return next(iter(tensors.values())).new_zeros(()) if tensors else torch.zeros(())


def _describe(source: ImageInput) -> Any:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"


def stylize(content: ImageInput, style: ImageInput | Sequence[ImageInput], *,
            callback: Callable[[Iterate], None] | None = None, log: Callable[[str], None] | None = None,
            cache: Cache | None = None, **options: Any) -> Result:
    """Paint ``content`` in the style of ``style`` (one image or several, blended).

    ``options`` are the fields of :class:`brushwork.settings.Settings`. ``callback`` is
    called with an :class:`Iterate` after every evaluation. Raises BrushworkError for
    bad input, DivergedError if the loss becomes NaN or explodes, and Interrupted
    (a KeyboardInterrupt carrying the result so far) on Ctrl-C; any other exception a
    callback raises (to cancel a run, say) propagates unchanged.  Pass the same
    :class:`Cache` to several calls to load each network and style target once.
    """
    start = time.perf_counter()
    settings = Settings(**_normalise(options))
    styles_in = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles_in:
        raise BrushworkError("at least one style image is needed")
    blend = list(settings.style_weights or [1.0] * len(styles_in))
    if len(blend) != len(styles_in):
        raise BrushworkError(f"style_weights has {len(blend)} values for {len(styles_in)} "
                             "style images")
    blend = [b / sum(blend) for b in blend]
    device = resolve_device(settings.device)
    content_img = load_image(content, role="content", max_pixels=settings.max_pixels)
    style_imgs = [load_image(s, role="style", max_pixels=settings.max_pixels) for s in styles_in]
    init_img = None
    if settings.init not in ("content", "noise"):
        init_img = load_image(settings.init, role="init", max_pixels=settings.max_pixels)

    net = cache.network(settings, device, log) if cache else _load_network(settings, device, log)

    # A private generator: the library does not touch the caller's global RNG state.
    generator = torch.Generator()
    if settings.seed is not None:
        generator.manual_seed(settings.seed)
    else:
        generator.seed()

    levels = [(sc.size, sc.iterations) for sc in scales(settings, content_img.size)]
    total = sum(it for _, it in levels)
    # A step at a coarse scale costs (its pixels / the final pixels) of a final step.
    final_px = levels[-1][0][0] * levels[-1][0][1]
    step_cost = [w * h / final_px for (w, h), _ in levels]
    work_total = sum(c * it for c, (_, it) in zip(step_cost, levels))
    work_done = 0.0
    history: list[dict[str, float]] = []
    step = 0
    x: torch.Tensor | None = None
    prev_photo: torch.Tensor | None = None
    last_losses: dict[str, float] = {}

    def result(pixels: torch.Tensor, interrupted: bool) -> Result:
        out = pixels.detach()
        if settings.preserve_colors == "luminance":
            photo = to_tensor(resize_to(content_img, (out.shape[-1], out.shape[-2]))).to(out)
            out = luminance_transfer(out, photo)
        return Result(image=to_image(out), settings=settings.to_dict(), losses=dict(last_losses),
                      history=history, elapsed=time.perf_counter() - start,
                      inputs={"content": _describe(content), "style": [_describe(s) for s in styles_in]},
                      device=str(device), interrupted=interrupted)

    for level, ((w, h), iterations) in enumerate(levels):
        photo = to_tensor(resize_to(content_img, (w, h))).to(device)
        style_long = max(1, round(settings.style_scale * max(w, h)))
        style_ts = [to_tensor(resize_to(im, scaled_size(im.size, style_long))).to(device)
                    for im in style_imgs]
        if settings.preserve_colors == "histogram":
            style_ts = [match_color(t, photo) for t in style_ts]
        elif settings.preserve_colors == "histogram-to-style":
            photo = match_color(photo, style_ts[max(range(len(blend)), key=blend.__getitem__)])
        objective = Objective(net, settings, photo, style_ts, blend, cache)
        del style_ts

        if x is None:
            if settings.init == "content":
                x = photo.clone()
            elif settings.init == "noise":
                # White noise around mid-grey, small like Gatys's code (randn in input
                # space); full-range noise gives relu1_1 Gram errors L-BFGS crawls out of.
                noise = torch.randn(photo.shape, generator=generator) * NOISE_STD
                x = (noise + 127.5).clamp(0, 255).to(device)
            else:
                x = to_tensor(resize_to(init_img, (w, h))).to(device)
        else:
            # The coarse picture, enlarged, plus photo_detail times the detail this scale's
            # photo has and the coarse one lacks: 1 upsamples only what the coarse scale
            # added to the photo (the photo's edges stay), 0 enlarges the coarse painting.
            coarse_photo = F.interpolate(prev_photo, size=(h, w), mode="bicubic",
                                         align_corners=False)
            x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
            x = (x + settings.photo_detail * (photo - coarse_photo)).clamp(0, 255)
        prev_photo = photo
        x = x.contiguous().requires_grad_(True)
        changes: deque[float] = deque(maxlen=STOP_WINDOW)
        last_x: torch.Tensor | None = None
        level_steps = 0

        def evaluate() -> torch.Tensor:
            nonlocal step, last_losses, work_done, last_x, level_steps
            terms = objective(x)
            total_loss = terms["total"]
            value = float(total_loss.detach())
            if not math.isfinite(value):
                raise DivergedError(
                    f"the loss became {value} at step {step + 1}; lower --style-weight or "
                    f"--lr, or use --optimizer lbfgs")
            step += 1
            level_steps += 1
            work_done += step_cost[level]
            stop = False
            if settings.stop_tolerance > 0:
                # The stopping rule: mean |change| per pixel between successive iterates.
                current = x.detach()
                if last_x is not None:
                    changes.append(float((current - last_x).abs().mean()))
                last_x = current.clone()
                stop = (len(changes) == STOP_WINDOW and level_steps < iterations
                        and sum(changes) / STOP_WINDOW < settings.stop_tolerance)
                if stop:  # the rest of this scale's work is skipped, not pending
                    work_done += step_cost[level] * (iterations - level_steps)
            last_losses = {k: float(v.detach()) for k, v in terms.items()}
            history.append({"step": step, "scale": level, **last_losses})
            if callback is not None:
                callback(Iterate(step, total, level, len(levels), (w, h), last_losses,
                                 time.perf_counter() - start, min(1.0, work_done / work_total),
                                 x.detach().clone()))
            if stop:
                raise _Converged
            return total_loss

        try:
            _optimise(x, evaluate, settings, iterations)
        except _Converged:
            if log is not None:
                log(f"scale {level + 1}/{len(levels)}: the picture stopped changing after "
                    f"{level_steps} of {iterations} steps; moving on")
        except KeyboardInterrupt:
            raise Interrupted(result(x.detach().clamp(0, 255), True)) from None
        x = x.detach().clamp(0, 255)

    assert x is not None
    return result(x, False)


class _Converged(Exception):
    """Raised from inside the optimiser's closure when the stopping rule fires."""


def _optimise(x: torch.Tensor, evaluate: Callable[[], torch.Tensor], s: Settings,
              iterations: int) -> None:
    """Run ``iterations`` evaluations of the objective with the chosen optimiser."""
    scale: list[float] = []

    def loss_and_grad() -> torch.Tensor:
        loss = evaluate()
        loss.backward()
        if s.normalize_gradients:
            # torch's L-BFGS is not scale-free: its first step is 1/|g|_1 and it drops
            # curvature pairs with s.y < 1e-10. The paper's summed losses give gradients
            # from 1e-3 to 1e8 per pixel depending on size and weights, and it stalls.
            # Scaling the objective by a constant so the first gradient averages 1 per
            # pixel changes no minimum and makes SGD's rate mean pixels per step.
            if not scale:
                scale.append(1.0 / max(float(x.grad.abs().mean()), 1e-30))
            x.grad.mul_(scale[0])
            return loss * scale[0]
        return loss

    if s.optimizer == "lbfgs":
        # One evaluation per iteration: no line search, like neural-style.
        def closure() -> float:
            x.grad = None
            return float(loss_and_grad().detach())

        lbfgs(x, closure, iterations, s.history_size)
        return
    lr = s.learning_rate or DEFAULT_LR[s.optimizer]
    if s.optimizer == "adam":
        opt = torch.optim.Adam([x], lr=lr)
        sched = None
    else:
        # Seed 004: SGD with lr * decay^(step / decay_steps) (Keras ExponentialDecay).
        opt = torch.optim.SGD([x], lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: s.lr_decay ** (k / s.lr_decay_steps))
    first = None
    for i in range(iterations):
        opt.zero_grad(set_to_none=True)
        value = float(loss_and_grad().detach())
        first = value if first is None else first
        if i >= 10 and value > 10 * max(first, 1e-30):
            raise DivergedError(f"the loss exploded from {first:.4g} to {value:.4g}; lower "
                                f"--lr (now {lr}) or --style-weight")
        opt.step()
        if sched is not None:
            sched.step()
        with torch.no_grad():
            x.clamp_(0, 255)


def _normalise(options: dict[str, Any]) -> dict[str, Any]:
    """Accept lists where the settings hold tuples."""
    out = dict(options)
    for k, v in out.items():
        if isinstance(v, list):
            out[k] = tuple(v)
    return out
