"""`brushwork bench`: how close one evaluation gets to the machine's dense throughput,
how fast the defaults reach the classic recipe's quality, and how much memory a run
takes. Every figure is a ratio or a pair measured side by side in this run, because
shared machines are noisy; the benchmark prints, it does not pass or fail.

Offline: the photo is matplotlib's sample portrait and the painting is drawn by
:func:`brushwork.io.samples.make_style_image`.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from brushwork.bench.precision import default_run, device_precision, precision_speedup
from brushwork.bench.timing import interleaved_best
from brushwork.engine.device import resolve_device
from brushwork.engine.memory.allocator import reuse_freed_memory
from brushwork.engine.memory.probe import maxrss_bytes, sync
from brushwork.engine.network import FeatureExtractor
from brushwork.engine.objective import Objective
from brushwork.engine.painter import stylize
from brushwork.engine.result import Iterate
from brushwork.engine.settings import Settings
from brushwork.errors import BrushworkError
from brushwork.io.images import load_image, resize_to, scaled_size, to_tensor
from brushwork.io.samples import demo_photo, make_style_image
from brushwork.io.weights import VGGWeights, load_weights
from brushwork.maths.losses import gram_autograd
from brushwork.maths.strength import PRE_STRENGTH_DEFAULTS


@dataclass(frozen=True)
class Sizes:
    """The long sides (px) a bench run measures at; each key names the size it measured."""

    eval_sizes: tuple[int, int]
    ttq_size_cpu: int
    ttq_size_gpu: int
    reference_iterations: int
    rss_sizes: tuple[int, int]
    allocator_size: int
    # The dense reference: the matrix product's side and the convolution's map side.
    dense_size: tuple[int, int] = (2048, 128)
    coarse_size: int = 512  # the default run, with and without its coarse scales stopping


FULL = Sizes(eval_sizes=(256, 512), ttq_size_cpu=256, ttq_size_gpu=512,
             reference_iterations=500, rss_sizes=(512, 1024), allocator_size=1024)
QUICK = Sizes(eval_sizes=(128, 256), ttq_size_cpu=128, ttq_size_gpu=256,
              reference_iterations=150, rss_sizes=(256, 384), allocator_size=512,
              coarse_size=256)


def matmul_flops_per_s(device: torch.device, n: int = 2048, reps: int = 8) -> float:
    """Best-of rate of an ``n x n`` float32 matrix product."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    return 2 * n ** 3 / _best_seconds(lambda: a @ b, device, reps)


def conv_flops_per_s(device: torch.device, channels: int = 256, side: int = 128,
                     reps: int = 5) -> float:
    """Best-of rate of a VGG-sized 3x3 float32 convolution (``channels`` in and out on a
    ``side`` x ``side`` map), in the memory layout the extractor uses on ``device``."""
    x = torch.randn(1, channels, side, side, device=device)
    if device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3, device=device)
    flops = 2 * 9 * channels * channels * side * side
    return flops / _best_seconds(lambda: F.conv2d(x, w, padding=1), device, reps)


def dense_rates(device: torch.device, n: int = 2048, conv_side: int = 128) -> dict[str, float]:
    """The machine's dense float32 throughput right now: the better of a large matrix
    product and a large convolution (which one wins depends on the machine's BLAS and
    oneDNN builds; docs/benchmarks.md, "Other machines")."""
    rates = {"matmul": matmul_flops_per_s(device, n),
             "conv": conv_flops_per_s(device, side=conv_side)}
    rates["dense"] = max(rates.values())
    return rates


def _best_seconds(fn: Callable[[], object], device: torch.device, reps: int) -> float:
    fn()  # warm-up: oneDNN picks and builds its kernel on the first call
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def evaluation_flops(net: FeatureExtractor, settings: Settings, height: int, width: int) -> int:
    """FLOPs of one evaluation, from the layer shapes: every convolution forward and its
    gradient with respect to its input (the weights are frozen, so no weight gradients),
    and each style layer's Gram matrix and its gradient. Element-wise work (ReLU, pooling,
    the losses' sums) is left out: it is memory-bound and a few percent at most."""
    flops = 0
    h, w = height, width
    channels: dict[str, int] = {}
    c = 3
    for name in net.steps:
        if name.startswith("conv"):
            conv = net.convs[name]
            assert isinstance(conv, torch.nn.Conv2d)
            out_c, in_c = conv.weight.shape[:2]
            flops += 2 * (2 * in_c * out_c * 9 * h * w)
            c = out_c
        elif name.startswith("pool"):
            h, w = (h + 1) // 2, (w + 1) // 2
        channels[name] = c
        channels[name + "@hw"] = h * w
    for name in settings.style_layers:
        n, m = channels[name], channels[name + "@hw"]
        flops += 2 * n * n * m * 2  # G = F F^T, and dL/dF = (dG + dG^T) F
    return flops


def measure_eval(net: FeatureExtractor, settings: Settings, photo: torch.Tensor,
                 style: torch.Tensor, device: torch.device, reps: int,
                 dense_size: tuple[int, int] = (2048, 128)) -> dict[str, float]:
    """Seconds per evaluation (best and median of ``reps``) and its FLOP rate over the
    dense rate measured between the repetitions (the best of each kind; ``dense_size``:
    the matrix side and the convolution's map side)."""
    objective = Objective.for_styles(net, settings, photo, [style])
    x = photo.clone().requires_grad_(True)
    for _ in range(3):  # warm-up (the heap's growth, cudnn/oneDNN kernel choice)
        x.grad = None
        objective(x)["total"].backward()
    times = []
    dense = {"matmul": 0.0, "conv": 0.0}
    for _ in range(reps):
        for kind, rate in dense_rates(device, *dense_size).items():
            if kind in dense:
                dense[kind] = max(dense[kind], rate)
        x.grad = None
        sync(device)
        t = time.perf_counter()
        objective(x)["total"].backward()
        sync(device)
        times.append(time.perf_counter() - t)
    flops = evaluation_flops(net, settings, photo.shape[-2], photo.shape[-1])
    # Best against best: the dense rate is the best of many products and convolutions,
    # so the evaluation is taken at its best too; neighbours on a shared machine slow
    # the memory-bound parts of an evaluation more than the cache-resident references.
    # The median's ratio is reported beside it.
    seconds = min(times)
    rate = flops / seconds
    peak = max(dense.values())
    median = statistics.median(times)
    return {"seconds": seconds, "median_seconds": median, "gflop": flops / 1e9,
            "gflop_per_s": rate / 1e9, "dense_gflop_per_s": peak / 1e9,
            "matmul_gflop_per_s": dense["matmul"] / 1e9, "conv_gflop_per_s": dense["conv"] / 1e9,
            "ratio": rate / peak, "median_ratio": flops / median / peak}


# What each evaluation speed-up buys, measured side by side: the extractor's flags, and
# whether the Gram matrix has its own one-product backward (losses.gram) or autograd's.
ABLATION: dict[str, tuple[dict[str, Any], bool]] = {
    "stock": ({"channels_last": False}, False),
    "+gram": ({"channels_last": False}, True),
    "+gram+nhwc": ({"channels_last": True}, True)}


class _AutogradGramObjective(Objective):
    gram = staticmethod(gram_autograd)


def eval_ablation(weights: VGGWeights, settings: Settings, photo: torch.Tensor, style: torch.Tensor,
                  device: torch.device, reps: int,
                  dense_size: tuple[int, int] = (2048, 128)) -> dict[str, dict[str, float]]:
    """Seconds per evaluation with each variant of the extractor, interleaved round by
    round so that the machine's noise falls on all of them alike; best of ``reps``."""
    objectives: dict[str, Objective] = {}
    for name, (flags, own_gram) in ABLATION.items():
        net = FeatureExtractor(weights, settings.content_layers + settings.style_layers,
                               settings.pooling, **flags).to(device)
        kind: type[Objective] = Objective if own_gram else _AutogradGramObjective
        objectives[name] = kind.for_styles(net, settings, photo, [style])
    flops = evaluation_flops(net, settings, photo.shape[-2], photo.shape[-1])
    dense = 0.0

    def measure_dense() -> None:
        nonlocal dense
        dense = max(dense, dense_rates(device, *dense_size)["dense"])

    best = interleaved_best(objectives, photo, device, reps, between=measure_dense)
    return {name: {"seconds": sec, "ratio": flops / sec / dense, "speedup": best["stock"] / sec}
            for name, sec in best.items()}


def eval_probe(photo: str, style: str, size: int, device: str, reps: int, reuse: bool,
               model: str | None = None) -> None:
    """Print one JSON line: the best seconds and the mean page faults per evaluation at
    ``size``, in this process, with malloc's defaults or :func:`reuse_freed_memory`.
    Run by :func:`allocator_effect` in fresh processes, since that setting is
    process-wide and cannot be taken back."""
    import resource

    if reuse:
        reuse_freed_memory()
    settings = Settings(model=model) if model else Settings()
    device_t = resolve_device(device)
    net = FeatureExtractor(load_weights(settings.model), settings.content_layers
                           + settings.style_layers, settings.pooling).to(device_t)
    content_img, style_img = load_image(photo), load_image(style)
    x0 = to_tensor(resize_to(content_img, scaled_size(content_img.size, size))).to(device_t)
    s0 = to_tensor(resize_to(style_img, scaled_size(style_img.size, size))).to(device_t)
    objective = Objective.for_styles(net, settings, x0, [s0])
    times, faults = [], []
    for r in range(reps + 2):  # two warm-ups
        x = x0.clone().requires_grad_(True)
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        sync(device_t)
        t = time.perf_counter()
        objective(x)["total"].backward()
        sync(device_t)
        if r >= 2:
            times.append(time.perf_counter() - t)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    print(json.dumps({"seconds": min(times), "page_faults": sum(faults) / len(faults)}))


def allocator_effect(photo: Path, style: Path, size: int, device: str, reps: int,
                     rounds: int = 2, model: str | None = None) -> dict[str, Any]:
    """Seconds and page faults per evaluation with malloc's defaults against
    :func:`reuse_freed_memory`, each in a fresh process, alternating; best of ``rounds``."""
    out: dict[str, Any] = {}
    for _ in range(rounds):
        for mode in ("malloc_default", "reuse_freed_memory"):
            code = ("from brushwork.bench import eval_probe; "
                    f"eval_probe({str(photo)!r}, {str(style)!r}, {size}, {device!r}, {reps}, "
                    f"{mode == 'reuse_freed_memory'}, {model!r})")
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  check=True)
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            if mode not in out or got["seconds"] < out[mode]["seconds"]:
                out[mode] = got
    out["speedup"] = out["malloc_default"]["seconds"] / out["reuse_freed_memory"]["seconds"]
    return out


# One objective for both sides of time_to_quality, and brushwork's schedule as it was
# before --strength: a strength paints a look and the loss it ends at is not its aim
# (the default strength stops a little above the classic recipe's loss, by design).
TTQ_OPTIONS = PRE_STRENGTH_DEFAULTS


def time_to_quality(photo: Path, style: Path, size: int, reference_iterations: int,
                    device: str, model: str | None = None) -> dict[str, Any]:
    """The classic recipe (single scale, L-BFGS, noise init) against brushwork's schedule
    (the pyramid, photo init) on the same objective, TTQ_OPTIONS."""
    options: dict[str, Any] = {**TTQ_OPTIONS, **({"model": model} if model else {})}
    curves: dict[str, list[tuple[float, float]]] = {"reference": [], "default": []}

    def recorder(key: str) -> Callable[[Iterate], None]:
        def record(it: Iterate) -> None:
            if it.scale == it.scales - 1:  # only losses measured at full size count
                curves[key].append((it.elapsed, it.losses["total"]))
        return record

    # Warm up first (file cache, allocator, oneDNN/cuDNN kernels) so neither run pays it.
    stylize(photo, style, size=size, multiscale="off", iterations=2, seed=0, device=device,
            **options)
    ref = stylize(photo, style, size=size, multiscale="off", optimizer="lbfgs",
                  iterations=reference_iterations, init="noise", seed=0, device=device,
                  callback=recorder("reference"), **options)
    target = ref.losses["total"]
    default = stylize(photo, style, size=size, seed=0, device=device,
                      callback=recorder("default"), **options)
    reached = next((t for t, loss in curves["default"] if loss <= target), None)
    return {
        "size": size,
        "reference_iterations": reference_iterations,
        "reference_seconds": ref.elapsed,
        "reference_final_loss": target,
        "default_seconds": default.elapsed,
        "default_final_loss": default.losses["total"],
        "default_seconds_to_reference_loss": reached,
        "ratio": None if reached is None else reached / ref.elapsed,
        "curves": curves,
        "images": {"reference": ref.image, "default": default.image},
    }


def coarse_stop(photo: Path, style: Path, size: int, device: str,
                model: str | None = None) -> dict[str, Any]:
    """A default run at ``size`` with its coarse scales ending once they stop changing
    (the default ``coarse_tolerance``) against one that runs every step, same seed:
    ``time_ratio`` (wall time, stopping / every step) and ``loss_ratio`` (final total)."""
    opts: dict[str, Any] = {"size": size, "seed": 0, "device": device,
                            **({"model": model} if model else {})}
    stylize(photo, style, **{**opts, "size": max(32, size // 4)})  # warm-up
    runs = {}
    variants: list[tuple[str, dict[str, Any]]] = [("every_step", {"coarse_tolerance": 0.0}),
                                                  ("default", {})]
    for name, extra in variants:
        t = time.perf_counter()
        result = stylize(photo, style, **opts, **extra)
        runs[name] = (time.perf_counter() - t, result)
    (t_all, every), (t_stop, stop) = runs["every_step"], runs["default"]
    return {"time_ratio": t_stop / t_all,
            "loss_ratio": stop.losses["total"] / every.losses["total"],
            "seconds_every_step": t_all, "seconds_default": t_stop,
            "steps_every_step": len(every.history), "steps_default": len(stop.history),
            "loss_every_step": every.losses["total"], "loss_default": stop.losses["total"]}


def maxrss_mb(ru_maxrss: int, system: str = sys.platform) -> float:
    """``ru_maxrss`` in MiB (:func:`brushwork.engine.memory.maxrss_bytes`)."""
    return maxrss_bytes(ru_maxrss, system) / 2 ** 20


def peak_rss_mb(photo: Path, style: Path, size: int, device: str, history: int,
                model: str | None = None) -> dict[str, Any]:
    """Peak resident memory of a whole `brushwork stylize` in a fresh process.

    Run at one scale with ``history + 1`` iterations, so that the L-BFGS history is full:
    the default pyramid's peak is at its final scale, where the same history fills."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "brushwork", "stylize", str(photo), str(style),
                "-o", os.path.join(tmp, "out.png"), "--size", str(size), "--multiscale", "off",
                "--iterations", str(history + 1), "--device", device, "--quiet"]
        if model:
            argv += ["--model", model]
        t = time.perf_counter()
        proc = subprocess.Popen(argv)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
    if status != 0:
        raise RuntimeError(f"peak-memory run failed: {' '.join(argv)}")
    return {"size": size, "iterations": history + 1, "peak_rss_mb": maxrss_mb(usage.ru_maxrss),
            "seconds": seconds, "command": "python " + " ".join(argv[1:])}


def lbfgs_history_mb(width: int, height: int, history: int) -> float:
    """Memory L-BFGS keeps: ``history`` pairs (s, y) of image-sized float32 vectors."""
    return 2 * history * 3 * width * height * 4 / 2 ** 20


def run(quick: bool, device_name: str, out_dir: Path | None, *, sizes: Sizes | None = None,
        model: str | None = None) -> dict[str, Any]:
    """The whole benchmark: FULL's sizes (QUICK's with ``quick``, or ``sizes``) on the
    default network (or ``model``, a source name or a weights file)."""
    with tempfile.TemporaryDirectory(prefix="brushwork-bench-") as tmp:
        return _run(quick, device_name, out_dir, Path(tmp), sizes, model)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def halves(height: int, width: int) -> torch.Tensor:
    """Two masks ``(2, 1, H, W)``: the left half of the picture and the right half."""
    left = torch.zeros(1, 1, height, width)
    left[..., : width // 2] = 1.0
    return torch.cat([left, 1 - left])


def mask_cost(net: FeatureExtractor, settings: Settings, photo: torch.Tensor,
              style: torch.Tensor, device: torch.device, reps: int) -> dict[str, float]:
    """Seconds per evaluation (forward and backward) with one style over the whole picture
    and with two styles, each masked to one half (brushwork.maths.regions), interleaved round by
    round, best of ``reps``; ``ratio`` is the masked over the plain."""
    h, w = photo.shape[-2:]
    objectives = {
        "one_style": Objective.for_styles(net, settings, photo, [style]),
        "two_masked_styles": Objective.for_styles(net, settings, photo, [style, style.flip(-1)],
                                                  masks=halves(h, w).to(device)),
    }
    best = dict.fromkeys(objectives, float("inf"))
    for r in range(reps + 1):  # the first round warms up
        for name, objective in objectives.items():
            x = photo.clone().requires_grad_(True)
            sync(device)
            t = time.perf_counter()
            objective(x)["total"].backward()
            sync(device)
            if r:
                best[name] = min(best[name], time.perf_counter() - t)
    return {**best, "ratio": best["two_masked_styles"] / best["one_style"]}


def _run(quick: bool, device_name: str, out_dir: Path | None, tmp: Path,
         sizes: Sizes | None, model: str | None) -> dict[str, Any]:
    b = _Bench.make(quick, device_name, tmp, sizes, model)
    report = _machine(b)
    _evaluations(b, report)
    _allocator_row(b, report)
    ttq, ttq_size = _time_to_quality_row(b, report)
    _coarse_stop_row(b, report)
    images = _default_run_row(b, report)
    _peak_rss_rows(b, report)
    if out_dir is not None:
        _write_outputs(out_dir, report, ttq, ttq_size)
        for name, image in images.items():
            image.save(out_dir / f"default_run_{name}.png")
    return report


@dataclass
class _Bench:
    """What every row of the full bench measures with."""

    quick: bool
    cfg: Sizes
    device: torch.device
    settings: Settings
    model: str | None
    photo_path: Path
    style_path: Path
    photo_img: Image.Image
    style_img: Image.Image
    weights: VGGWeights
    net: FeatureExtractor

    @classmethod
    def make(cls, quick: bool, device_name: str, tmp: Path, sizes: Sizes | None,
             model: str | None) -> _Bench:
        cfg = sizes or (QUICK if quick else FULL)
        # Measured as the `brushwork` command runs (it makes this call too); the
        # allocator_effect row measures what it buys, in separate processes.
        reuse_freed_memory()
        device = resolve_device(device_name)
        settings = Settings(model=model) if model else Settings()
        photo_path = demo_photo()
        style_path = tmp / "style.png"
        make_style_image().save(style_path)
        photo_img = load_image(photo_path)
        style_img = load_image(style_path)

        weights = load_weights(settings.model)
        net = FeatureExtractor(weights, settings.content_layers + settings.style_layers,
                               settings.pooling).to(device)
        return cls(quick, cfg, device, settings, model, photo_path, style_path, photo_img,
                   style_img, weights, net)


def _machine(b: _Bench) -> dict[str, Any]:
    """The report's head: this machine, torch, the network."""
    report: dict[str, Any] = {
        "mode": "quick" if b.quick else "full",
        "machine": {"platform": platform.platform(), "cpu": _cpu_model(),
                    "cpu_count": os.cpu_count(), "device": str(b.device),
                    "device_name": torch.cuda.get_device_name(b.device)
                    if b.device.type == "cuda" else _cpu_model()},
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "model": b.settings.model, "precision": device_precision(b.device), "commands": {},
    }
    return report


def _evaluations(b: _Bench, report: dict[str, Any]) -> None:
    """One evaluation against the machine's dense rate at each size; the ablation and the
    masks' cost at the last."""
    for size in b.cfg.eval_sizes:
        wh = scaled_size(b.photo_img.size, size)
        photo = to_tensor(resize_to(b.photo_img, wh)).to(b.device)
        style_wh = scaled_size(b.style_img.size, size)
        style = to_tensor(resize_to(b.style_img, style_wh)).to(b.device)
        # Odd counts, so the median is one measured evaluation.
        result = measure_eval(b.net, b.settings, photo, style, b.device,
                              reps=7 if size <= 256 else 5, dense_size=b.cfg.dense_size)
        key = f"eval_ratio_{size}"
        report[key] = round(result["ratio"], 3)
        report[f"{key}_detail"] = {"size": f"{wh[0]}x{wh[1]}", **{k: round(v, 3) for k, v in
                                                                   result.items()}}
    report["commands"]["eval_ratio"] = "brushwork.bench.measure_eval (in process)"
    ablation = eval_ablation(b.weights, b.settings, photo, style, b.device, reps=3,
                             dense_size=b.cfg.dense_size)
    report["eval_ablation"] = {"size": f"{wh[0]}x{wh[1]}", **{
        name: {"seconds": round(v["seconds"], 3), "ratio": round(v["ratio"], 3),
               "speedup": round(v["speedup"], 2)} for name, v in ablation.items()}}
    report["commands"]["eval_ablation"] = "brushwork.bench.eval_ablation (in process)"
    _precision_row(b, report, photo, style)
    masks = mask_cost(b.net, b.settings, photo, style, b.device, reps=3)
    report["mask_cost_ratio"] = round(masks["ratio"], 3)
    report["mask_cost_detail"] = {"size": f"{wh[0]}x{wh[1]}",
                                  **{k: round(v, 3) for k, v in masks.items() if k != "ratio"}}
    report["commands"]["mask_cost_ratio"] = (
        "brushwork.bench.mask_cost (in process): one style against two, each masked to one "
        "half, seconds per evaluation, best of 3")


def _precision_row(b: _Bench, report: dict[str, Any], photo: torch.Tensor,
                   style: torch.Tensor) -> None:
    """fp32 against bf16 per evaluation at the largest evaluation size; the speed-up of
    ``auto`` is that where auto picks bf16, and 1 by definition where it picks fp32."""
    size = b.cfg.eval_sizes[-1]
    sp = precision_speedup(b.weights, b.settings, photo, style, b.device, reps=3)
    auto = report["precision"]["auto"]
    report[f"precision_speedup_{size}"] = round(sp["speedup"], 3) if auto == "bf16" else 1.0
    report[f"precision_speedup_{size}_detail"] = {
        "size": f"{photo.shape[-1]}x{photo.shape[-2]}", "auto": auto,
        **{k: round(v, 3) for k, v in sp.items()}}
    report["commands"]["precision_speedup"] = (
        "brushwork.bench.precision.precision_speedup (in process): fp32 and bf16 networks "
        "interleaved, best of 3 after a warm-up round; bf16_speedup is fp32 / bf16 whatever "
        "auto picks")


def _default_run_row(b: _Bench, report: dict[str, Any]) -> dict[str, Image.Image]:
    size = b.cfg.coarse_size
    run = default_run(b.photo_path, b.style_path, size, b.device, b.weights, b.model)
    report[f"default_run_{size}_speedup"] = round(run["speedup"], 3)
    report["precision_loss_ratio"] = round(run["loss_ratio"], 4)
    report[f"default_run_{size}_detail"] = {k: round(v, 4) if isinstance(v, float) else v
                                           for k, v in run.items() if k != "images"}
    report["commands"][f"default_run_{size}"] = (
        f"stylize(photo, style, size={size}, seed=0, precision='fp32') against the same with "
        f"the default precision='auto' (one run where auto is fp32), after a warm-up; "
        f"precision_loss_ratio: both pictures scored by the fp32 final-scale objective")
    return run["images"]


def _allocator_row(b: _Bench, report: dict[str, Any]) -> None:
    # malloc's defaults always mmap blocks over 32 MB, so the effect shows at the larger
    # sizes (docs/benchmarks.md).
    alloc_size = b.cfg.allocator_size
    alloc = allocator_effect(b.photo_path, b.style_path, alloc_size, str(b.device), reps=2,
                             model=b.model)
    alloc_wh = scaled_size(b.photo_img.size, alloc_size)
    report["allocator_effect"] = {"size": f"{alloc_wh[0]}x{alloc_wh[1]}", **{
        k: ({kk: round(vv, 3) for kk, vv in v.items()} if isinstance(v, dict) else round(v, 2))
        for k, v in alloc.items()}}
    report["commands"]["allocator_effect"] = (
        f"python -c 'from brushwork.bench import eval_probe; eval_probe(PHOTO, STYLE, "
        f"{alloc_size}, {str(b.device)!r}, 2, False|True, {b.model!r})', alternating, best of 2")


def _time_to_quality_row(b: _Bench, report: dict[str, Any]) -> tuple[dict[str, Any], int]:
    ttq_size = b.cfg.ttq_size_gpu if b.device.type == "cuda" else b.cfg.ttq_size_cpu
    ttq = time_to_quality(b.photo_path, b.style_path, ttq_size, b.cfg.reference_iterations,
                          str(b.device), b.model)
    report["time_to_quality_ratio"] = None if ttq["ratio"] is None else round(ttq["ratio"], 3)
    report["time_to_quality_detail"] = {k: (round(v, 4) if isinstance(v, float) else v)
                                        for k, v in ttq.items() if k not in ("curves", "images")}
    report["commands"]["time_to_quality_ratio"] = (
        f"reference: stylize(photo, style, size={ttq_size}, multiscale='off', optimizer='lbfgs', "
        f"iterations={b.cfg.reference_iterations}, init='noise', seed=0); "
        f"default: stylize(photo, style, size={ttq_size}, seed=0), both with {TTQ_OPTIONS}")
    return ttq, ttq_size


def _coarse_stop_row(b: _Bench, report: dict[str, Any]) -> None:
    size = b.cfg.coarse_size
    coarse = coarse_stop(b.photo_path, b.style_path, size, str(b.device), b.model)
    report[f"coarse_stop_time_ratio_{size}"] = round(coarse["time_ratio"], 3)
    report[f"coarse_stop_loss_ratio_{size}"] = round(coarse["loss_ratio"], 4)
    report[f"coarse_stop_{size}_detail"] = {k: round(v, 4) if isinstance(v, float) else v
                                           for k, v in coarse.items()}
    report["commands"][f"coarse_stop_{size}"] = (
        f"stylize(photo, style, size={size}, seed=0) against the same with "
        f"coarse_tolerance=0.0, after a warm-up")


def _peak_rss_rows(b: _Bench, report: dict[str, Any]) -> None:
    for size in b.cfg.rss_sizes:
        rss = peak_rss_mb(b.photo_path, b.style_path, size, str(b.device), b.settings.history_size,
                          b.model)
        wh = scaled_size(b.photo_img.size, size)
        report[f"peak_rss_mb_{size}"] = round(rss["peak_rss_mb"], 1)
        report[f"peak_rss_mb_{size}_detail"] = {
            "size": f"{wh[0]}x{wh[1]}", "seconds": round(rss["seconds"], 1),
            "lbfgs_history_mb": round(lbfgs_history_mb(*wh, b.settings.history_size), 1)}
        report["commands"][f"peak_rss_mb_{size}"] = rss["command"]
    if b.device.type == "cuda":
        report["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(b.device) / 2 ** 20, 1)


def _write_outputs(out_dir: Path, report: dict[str, Any], ttq: dict[str, Any],
                   ttq_size: int) -> None:
    """bench.json, the loss-against-time plot and both final pictures, in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot(ttq["curves"], out_dir / "loss_vs_time.png", ttq_size,
          ttq["reference_final_loss"], ttq["default_seconds_to_reference_loss"])
    ttq["images"]["reference"].save(out_dir / "reference.png")
    ttq["images"]["default"].save(out_dir / "default.png")
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2) + "\n")


def _plot(curves: dict[str, list[tuple[float, float]]], path: Path, size: int,
          target: float, reached: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    labels = {"reference": "classic: single scale, L-BFGS, noise init",
              "default": "brushwork defaults"}
    for key, points in curves.items():
        if points:
            ax.plot([t for t, _ in points], [v for _, v in points], label=labels[key])
    ax.axhline(target, color="grey", linestyle=":", linewidth=1,
               label=f"the classic recipe's final loss, {target:.4g}")
    if reached is not None:
        ax.plot([reached], [target], "o", color="C1",
                label=f"the defaults reach it at {reached:.1f} s")
    ax.set_yscale("log")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel(f"total loss at {size} px")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _sized_keys(report: dict[str, Any], prefix: str) -> list[str]:
    """The keys ``prefix + size``, smallest size first."""
    sizes = [k[len(prefix):] for k in report if k.startswith(prefix) and "detail" not in k]
    return [prefix + size for size in sorted(sizes, key=int)]


def format_table(report: dict[str, Any]) -> str:
    rows = [("mode", report["mode"]), ("device", report["machine"]["device_name"]),
            ("torch / threads", f"{report['torch']} / {report['threads']}")]
    if "model" in report:
        rows.append(("model", report["model"]))
    for key in _sized_keys(report, "eval_ratio_"):
        d = report[f"{key}_detail"]
        kinds = (f": matmul {d['matmul_gflop_per_s']}, conv {d['conv_gflop_per_s']}"
                 if "conv_gflop_per_s" in d else "")
        median = (f", median {d['median_seconds']} s: {d['median_ratio']}"
                  if "median_ratio" in d else "")
        rows.append((key, f"{report[key]}  ({d['size']}: {d['seconds']} s/eval{median}, "
                          f"{d['gflop']} GFLOP, {d['gflop_per_s']} of {d['dense_gflop_per_s']} "
                          f"GFLOP/s dense{kinds})"))
    if "eval_ablation" in report:
        ab = report["eval_ablation"]
        rows.append(("eval_ablation", f"at {ab['size']}: " + ", ".join(
            f"{name} {v['seconds']} s ({v['ratio']}, x{v['speedup']})"
            for name, v in ab.items() if name != "size")))
    if "precision" in report:
        p = report["precision"]
        rows.append(("precision", f"auto = {p['auto']} ({p['reason']})"))
    for key in _sized_keys(report, "precision_speedup_"):
        d = report[f"{key}_detail"]
        rows.append((key, f"{report[key]}  (at {d['size']}: fp32 {d['fp32_seconds']} s/eval, "
                          f"bf16 {d['bf16_seconds']} s: bf16 x{d['speedup']})"))
    for key in [k for k in report if k.startswith("default_run_") and k.endswith("_speedup")]:
        d = report[key.replace("_speedup", "_detail")]
        rows.append((key, f"{report[key]}  (fp32 {d['seconds_fp32']:.1f} s, default "
                          f"({d['auto']}) {d['seconds_default']:.1f} s"
                          + ("; the same run" if d["same_run"] else "")
                          + f"); precision_loss_ratio {report['precision_loss_ratio']}"))
    if "mask_cost_ratio" in report:
        d = report["mask_cost_detail"]
        rows.append(("mask_cost_ratio", f"{report['mask_cost_ratio']}  (at {d['size']}: two "
                     f"masked styles {d['two_masked_styles']} s/eval, one style "
                     f"{d['one_style']} s)"))
    if "allocator_effect" in report:
        al = report["allocator_effect"]
        off, on = al["malloc_default"], al["reuse_freed_memory"]
        rows.append(("allocator_effect",
                     f"at {al['size']}: malloc's defaults {off['seconds']} s "
                     f"({off['page_faults']:.0f} page faults), "
                     f"reuse_freed_memory {on['seconds']} s "
                     f"({on['page_faults']:.0f}): x{al['speedup']}"))
    for key in _sized_keys(report, "coarse_stop_time_ratio_"):
        size = key.rsplit("_", 1)[1]
        d = report[f"coarse_stop_{size}_detail"]
        rows.append((key, f"{report[key]}  ({d['seconds_default']:.1f} s, "
                          f"{d['steps_default']} steps against {d['seconds_every_step']:.1f} s, "
                          f"{d['steps_every_step']} steps; final loss x"
                          f"{report[f'coarse_stop_loss_ratio_{size}']})"))
    d = report["time_to_quality_detail"]
    reached = d["default_seconds_to_reference_loss"]
    rows.append(("time_to_quality_ratio",
                 f"{report['time_to_quality_ratio']}  (reference {d['reference_seconds']:.1f} s "
                 f"to {d['reference_final_loss']:.4g}; defaults "
                 + (f"{reached:.1f} s to reach it, " if reached is not None
                    else "never reached it, ")
                 + f"{d['default_seconds']:.1f} s to {d['default_final_loss']:.4g})"))
    for key in _sized_keys(report, "peak_rss_mb_"):
        d = report[f"{key}_detail"]
        rows.append((key, f"{report[key]}  ({d['size']}, "
                          f"L-BFGS history {d['lbfgs_history_mb']} MB)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def compare_with(baseline: Path, sizes: Sequence[int], device: str, reps: int = 5,
                 rounds: int = 3, model: str | None = None) -> dict[str, Any]:
    """One evaluation's time and peak memory with this code and with the brushwork
    checkout at ``baseline`` (a folder holding its ``brushwork`` package, such as a git
    worktree of an earlier commit), each in fresh processes, alternating, best of
    ``rounds``: ``eval_vs_baseline_{size}`` is the baseline's seconds over ours (above 1:
    we are faster)."""
    if not (baseline / "brushwork" / "__init__.py").is_file():
        raise BrushworkError(f"--baseline {str(baseline)!r} holds no brushwork package")
    here = Path(__file__).resolve().parents[2]  # the checkout holding brushwork/
    photo = demo_photo()
    report: dict[str, Any] = {"baseline": str(baseline)}
    with tempfile.TemporaryDirectory(prefix="brushwork-bench-") as tmp:
        style = Path(tmp) / "style.png"
        make_style_image().save(style)
        for size in sizes:
            best: dict[str, dict[str, float]] = {}
            for _ in range(rounds):
                for name, root in (("baseline", baseline), ("current", here)):
                    code = ("from brushwork.bench import eval_probe; "
                            f"eval_probe({str(photo)!r}, {str(style)!r}, {size}, {device!r}, "
                            f"{reps}, True, {model!r})")
                    env = {**os.environ, "PYTHONPATH": str(root)}
                    proc = subprocess.Popen([sys.executable, "-c", code], env=env,
                                            stdout=subprocess.PIPE, text=True)
                    assert proc.stdout is not None
                    out = proc.stdout.read()
                    _, status, usage = os.wait4(proc.pid, 0)
                    if status != 0:
                        raise BrushworkError(f"the {name} evaluation at {size} px failed")
                    got = json.loads(out.strip().splitlines()[-1])
                    seconds, peak = float(got["seconds"]), maxrss_mb(usage.ru_maxrss)
                    was = best.setdefault(name, {"seconds": seconds, "peak_rss_mb": peak})
                    was["seconds"] = min(was["seconds"], seconds)
                    was["peak_rss_mb"] = min(was["peak_rss_mb"], peak)
            report[f"eval_vs_baseline_{size}"] = round(
                best["baseline"]["seconds"] / best["current"]["seconds"], 3)
            report[f"eval_vs_baseline_{size}_detail"] = best
    return report
