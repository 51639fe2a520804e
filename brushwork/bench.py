"""`brushwork bench`: how close one evaluation gets to the machine's dense throughput,
how fast the defaults reach the classic recipe's quality, and how much memory a run
takes. Every figure is a ratio or a pair measured side by side in this run, because
shared machines are noisy; the benchmark prints, it does not pass or fail.

Offline: the photo is matplotlib's sample portrait and the painting is drawn by
:func:`brushwork.demo.make_style_image`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .demo import demo_photo, make_style_image
from .engine import Objective, resolve_device, stylize
from .imageio import load_image, resize_to, scaled_size, to_tensor
from .losses import gram_autograd
from .settings import Settings
from .vgg import FeatureExtractor
from .weights import load_weights

FULL = {"eval_sizes": (256, 512), "ttq_size_cpu": 256, "ttq_size_gpu": 512,
        "reference_iterations": 500, "rss_sizes": (512, 1024)}
# --quick: the same keys, measured at smaller sizes (named in the output).
QUICK = {"eval_sizes": (128, 256), "ttq_size_cpu": 128, "ttq_size_gpu": 256,
         "reference_iterations": 150, "rss_sizes": (256, 384)}


def dense_flops_per_s(device: torch.device, n: int = 2048, reps: int = 8) -> float:
    """Best-of float32 matrix-product rate: the machine's dense throughput right now."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


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
            out_c, in_c = net.convs[name].weight.shape[:2]
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_eval(net: FeatureExtractor, settings: Settings, photo: torch.Tensor,
                 style: torch.Tensor, device: torch.device, reps: int) -> dict[str, float]:
    """Seconds per evaluation (median) and its FLOP rate over the dense rate measured
    between the repetitions."""
    objective = Objective(net, settings, photo, [style], [1.0])
    x = photo.clone().requires_grad_(True)
    for _ in range(2):  # warm-up (allocator, cudnn/oneDNN kernel choice)
        x.grad = None
        objective(x)["total"].backward()
    times, dense = [], []
    for _ in range(reps):
        dense.append(dense_flops_per_s(device))
        x.grad = None
        _sync(device)
        t = time.perf_counter()
        objective(x)["total"].backward()
        _sync(device)
        times.append(time.perf_counter() - t)
    flops = evaluation_flops(net, settings, photo.shape[-2], photo.shape[-1])
    seconds = statistics.median(times)
    rate = flops / seconds
    peak = max(dense)
    return {"seconds": seconds, "gflop": flops / 1e9, "gflop_per_s": rate / 1e9,
            "dense_gflop_per_s": peak / 1e9, "ratio": rate / peak}


# What each evaluation speed-up bought, measured side by side (brushwork.fused): the
# extractor's flags, and whether the Gram matrix has its own backward (else autograd's).
ABLATION = {"stock": ({"channels_last": False}, False),
            "+gram": ({"channels_last": False}, True),
            "+gram+nhwc": ({"channels_last": True}, True)}


class _AutogradGramObjective(Objective):
    gram = staticmethod(gram_autograd)


def eval_ablation(weights: Any, settings: Settings, photo: torch.Tensor, style: torch.Tensor,
                  device: torch.device, reps: int, dense_n: int = 2048) -> dict[str, dict[str, float]]:
    """Seconds per evaluation with each variant of the extractor, interleaved round by
    round so that the machine's noise falls on all of them alike; best of ``reps``."""
    objectives, best = {}, {}
    for name, (flags, own_gram) in ABLATION.items():
        net = FeatureExtractor(weights, settings.content_layers + settings.style_layers,
                               settings.pooling, **flags).to(device)
        kind = Objective if own_gram else _AutogradGramObjective
        objectives[name] = kind(net, settings, photo, [style], [1.0])
        best[name] = float("inf")
    flops = evaluation_flops(net, settings, photo.shape[-2], photo.shape[-1])
    dense = 0.0
    for r in range(reps + 1):  # the first round warms up
        for name, objective in objectives.items():
            x = photo.clone().requires_grad_(True)
            _sync(device)
            t = time.perf_counter()
            objective(x)["total"].backward()
            _sync(device)
            if r:
                best[name] = min(best[name], time.perf_counter() - t)
        dense = max(dense, dense_flops_per_s(device, n=dense_n, reps=3))
    return {name: {"seconds": sec, "ratio": flops / sec / dense, "speedup": best["stock"] / sec}
            for name, sec in best.items()}


def time_to_quality(photo: Path, style: Path, size: int, reference_iterations: int,
                    device: str) -> dict[str, Any]:
    """The classic recipe (single scale, L-BFGS, noise init) against the defaults."""
    curves: dict[str, list[tuple[float, float]]] = {"reference": [], "default": []}

    def recorder(key: str):
        def record(it) -> None:
            if it.scale == it.scales - 1:  # only losses measured at full size count
                curves[key].append((it.elapsed, it.losses["total"]))
        return record

    # Warm up first (file cache, allocator, oneDNN/cuDNN kernels) so neither run pays it.
    stylize(photo, style, size=size, multiscale="off", iterations=2, seed=0, device=device)
    ref = stylize(photo, style, size=size, multiscale="off", optimizer="lbfgs",
                  iterations=reference_iterations, init="noise", seed=0, device=device,
                  callback=recorder("reference"))
    target = ref.losses["total"]
    default = stylize(photo, style, size=size, seed=0, device=device,
                      callback=recorder("default"))
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


def peak_rss_mb(photo: Path, style: Path, size: int, device: str, history: int) -> dict:
    """Peak resident memory of a whole `brushwork stylize` in a fresh process.

    Run at one scale with ``history + 1`` iterations, so that the L-BFGS history is full:
    the default pyramid's peak is at its final scale, where the same history fills."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "brushwork", "stylize", str(photo), str(style),
                "-o", os.path.join(tmp, "out.png"), "--size", str(size), "--multiscale", "off",
                "--iterations", str(history + 1), "--device", device, "--quiet"]
        t = time.perf_counter()
        proc = subprocess.Popen(argv)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
    if status != 0:
        raise RuntimeError(f"peak-memory run failed: {' '.join(argv)}")
    return {"size": size, "iterations": history + 1, "peak_rss_mb": usage.ru_maxrss / 1024,
            "seconds": seconds, "command": "python " + " ".join(argv[1:])}


def lbfgs_history_mb(width: int, height: int, history: int) -> float:
    """Memory L-BFGS keeps: ``history`` pairs (s, y) of image-sized float32 vectors."""
    return 2 * history * 3 * width * height * 4 / 2 ** 20


def run(quick: bool, device_name: str, out_dir: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="brushwork-bench-") as tmp:
        return _run(quick, device_name, out_dir, Path(tmp))


def _run(quick: bool, device_name: str, out_dir: Path | None, tmp: Path) -> dict[str, Any]:
    cfg = QUICK if quick else FULL
    device = resolve_device(device_name)
    settings = Settings()
    photo_path = demo_photo()
    style_path = tmp / "style.png"
    make_style_image().save(style_path)
    photo_img = load_image(photo_path)
    style_img = load_image(style_path)

    weights = load_weights(settings.model)
    net = FeatureExtractor(weights, settings.content_layers + settings.style_layers,
                           settings.pooling).to(device)
    report: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "device": str(device),
                    "device_name": torch.cuda.get_device_name(device)
                    if device.type == "cuda" else platform.processor() or "cpu"},
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "commands": {},
    }
    for size in cfg["eval_sizes"]:
        wh = scaled_size(photo_img.size, size)
        photo = to_tensor(resize_to(photo_img, wh)).to(device)
        style = to_tensor(resize_to(style_img, scaled_size(style_img.size, size))).to(device)
        result = measure_eval(net, settings, photo, style, device, reps=5 if size <= 256 else 3)
        key = f"eval_ratio_{FULL['eval_sizes'][cfg['eval_sizes'].index(size)]}"
        report[key] = round(result["ratio"], 3)
        report[f"{key}_detail"] = {"size": f"{wh[0]}x{wh[1]}", **{k: round(v, 3) for k, v in
                                                                   result.items()}}
    report["commands"]["eval_ratio"] = "brushwork.bench.measure_eval (in process)"
    ablation = eval_ablation(weights, settings, photo, style, device, reps=3)
    report["eval_ablation"] = {"size": f"{wh[0]}x{wh[1]}", **{
        name: {"seconds": round(v["seconds"], 3), "ratio": round(v["ratio"], 3),
               "speedup": round(v["speedup"], 2)} for name, v in ablation.items()}}
    report["commands"]["eval_ablation"] = "brushwork.bench.eval_ablation (in process)"

    ttq_size = cfg["ttq_size_gpu"] if device.type == "cuda" else cfg["ttq_size_cpu"]
    ttq = time_to_quality(photo_path, style_path, ttq_size, cfg["reference_iterations"],
                          str(device))
    report["time_to_quality_ratio"] = None if ttq["ratio"] is None else round(ttq["ratio"], 3)
    report["time_to_quality_detail"] = {k: (round(v, 4) if isinstance(v, float) else v)
                                        for k, v in ttq.items() if k not in ("curves", "images")}
    report["commands"]["time_to_quality_ratio"] = (
        f"reference: stylize(photo, style, size={ttq_size}, multiscale='off', optimizer='lbfgs', "
        f"iterations={cfg['reference_iterations']}, init='noise', seed=0); "
        f"default: stylize(photo, style, size={ttq_size}, seed=0)")

    for name, size in zip(FULL["rss_sizes"], cfg["rss_sizes"]):
        rss = peak_rss_mb(photo_path, style_path, size, str(device), settings.history_size)
        wh = scaled_size(photo_img.size, size)
        report[f"peak_rss_mb_{name}"] = round(rss["peak_rss_mb"], 1)
        report[f"peak_rss_mb_{name}_detail"] = {
            "size": f"{wh[0]}x{wh[1]}", "seconds": round(rss["seconds"], 1),
            "lbfgs_history_mb": round(lbfgs_history_mb(*wh, settings.history_size), 1)}
        report["commands"][f"peak_rss_mb_{name}"] = rss["command"]
    if device.type == "cuda":
        report["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        _plot(ttq["curves"], out_dir / "loss_vs_time.png", ttq_size)
        ttq["images"]["reference"].save(out_dir / "reference.png")
        ttq["images"]["default"].save(out_dir / "default.png")
        (out_dir / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _plot(curves: dict[str, list[tuple[float, float]]], path: Path, size: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    labels = {"reference": "classic: single scale, L-BFGS, noise init",
              "default": "brushwork defaults"}
    for key, points in curves.items():
        if points:
            ax.plot([t for t, _ in points], [v for _, v in points], label=labels[key])
    ax.set_yscale("log")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel(f"total loss at {size} px")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_table(report: dict[str, Any]) -> str:
    rows = [("mode", report["mode"]), ("device", report["machine"]["device_name"]),
            ("torch / threads", f"{report['torch']} / {report['threads']}")]
    for key in sorted(k for k in report if k.startswith("eval_ratio_") and "detail" not in k):
        d = report[f"{key}_detail"]
        rows.append((key, f"{report[key]}  ({d['size']}: {d['seconds']} s/eval, "
                          f"{d['gflop']} GFLOP, {d['gflop_per_s']} of {d['dense_gflop_per_s']} "
                          "GFLOP/s dense)"))
    if "eval_ablation" in report:
        ab = report["eval_ablation"]
        rows.append(("eval_ablation", f"at {ab['size']}: " + ", ".join(
            f"{name} {v['seconds']} s ({v['ratio']}, x{v['speedup']})"
            for name, v in ab.items() if name != "size")))
    d = report["time_to_quality_detail"]
    reached = d["default_seconds_to_reference_loss"]
    rows.append(("time_to_quality_ratio",
                 f"{report['time_to_quality_ratio']}  (reference {d['reference_seconds']:.1f} s "
                 f"to {d['reference_final_loss']:.4g}; defaults "
                 + (f"{reached:.1f} s to reach it, " if reached is not None else "never reached it, ")
                 + f"{d['default_seconds']:.1f} s to {d['default_final_loss']:.4g})"))
    for key in sorted(k for k in report if k.startswith("peak_rss_mb_") and "detail" not in k):
        d = report[f"{key}_detail"]
        rows.append((key, f"{report[key]}  ({d['size']}, L-BFGS history {d['lbfgs_history_mb']} MB)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="smaller sizes, same keys (< 3 min)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for bench.json, the loss plot and both final pictures")


def run_cli(args: argparse.Namespace) -> int:
    report = run(args.quick, args.device, args.out)
    print(json.dumps(report) if args.json else format_table(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m brushwork.bench", description=__doc__)
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
