"""The benchmark's arithmetic and plumbing (its figures are printed, never asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from brushwork.bench import measure as bench
from brushwork.engine.network import FeatureExtractor
from brushwork.engine.settings import Settings


def test_evaluation_flops_from_layer_shapes(tiny):
    s = Settings(content_layers=("relu1_2",), style_layers=("relu1_1", "relu2_1"))
    net = FeatureExtractor(tiny, ["relu1_2", "relu1_1", "relu2_1"])
    # By hand, at 8x6 (48 positions), 4x3 (12) after the pool; the tiny net has 4 then 6
    # channels. A 3x3 conv costs 2*cin*cout*9 per position, twice (forward, input gradient):
    # conv1_1 3->4: 4*3*4*9*48 = 20736; conv1_2 4->4: 4*4*4*9*48 = 27648;
    # conv2_1 4->6: 4*4*6*9*12 = 10368. A Gram and its gradient, 4*n*n*m each:
    # relu1_1: 4*4*4*48 = 3072; relu2_1: 4*6*6*12 = 1728.
    assert bench.evaluation_flops(net, s, 8, 6) == 20736 + 27648 + 10368 + 3072 + 1728


def test_lbfgs_history_size():
    # 100 pairs of 3 x 512 x 512 float32 vectors: 600 MiB.
    assert bench.lbfgs_history_mb(512, 512, 100) == pytest.approx(600.0)


def test_dense_rate_is_the_better_of_matmul_and_conv():
    import torch

    rates = bench.dense_rates(torch.device("cpu"), n=64, conv_side=8)
    assert rates["matmul"] > 0 and rates["conv"] > 0
    assert rates["dense"] == max(rates["matmul"], rates["conv"])


def test_time_to_quality_on_tiny_network(use_tiny, photo_path, painting_path):
    result = bench.time_to_quality(photo_path, painting_path, 32, 20, "cpu")
    assert result["reference_iterations"] == 20
    assert len(result["curves"]["reference"]) == 20
    assert result["curves"]["default"]
    if result["default_seconds_to_reference_loss"] is None:
        assert result["ratio"] is None
    else:
        assert result["ratio"] == pytest.approx(
            result["default_seconds_to_reference_loss"] / result["reference_seconds"])


def test_table_lists_sized_keys_smallest_first_and_an_unreached_target():
    report = {
        "mode": "quick", "machine": {"device_name": "cpu"}, "torch": "2", "threads": 2,
        "eval_ratio_256": 0.5, "eval_ratio_256_detail": {
            "size": "10x10", "seconds": 1, "gflop": 2, "gflop_per_s": 3, "dense_gflop_per_s": 6},
        "time_to_quality_ratio": None, "time_to_quality_detail": {
            "default_seconds_to_reference_loss": None, "reference_seconds": 10.0,
            "reference_final_loss": 5.0, "default_seconds": 3.0, "default_final_loss": 6.0},
        "peak_rss_mb_1024": 900.0, "peak_rss_mb_1024_detail": {"size": "9x9",
                                                               "lbfgs_history_mb": 2.0},
        "peak_rss_mb_384": 700.0, "peak_rss_mb_384_detail": {"size": "5x5",
                                                             "lbfgs_history_mb": 1.0},
    }
    lines = bench.format_table(report).splitlines()
    keys = [line.split()[0] for line in lines]
    assert keys.index("peak_rss_mb_384") < keys.index("peak_rss_mb_1024")  # by size, not text
    assert "eval_ratio_256" in keys
    ttq = next(line for line in lines if line.startswith("time_to_quality_ratio"))
    assert "never reached it" in ttq and "10.0 s to 5" in ttq


def test_ru_maxrss_is_bytes_on_macos_and_kib_on_linux():
    assert bench.maxrss_mb(3 * 2 ** 20, "darwin") == 3.0
    assert bench.maxrss_mb(3 * 2 ** 10, "linux") == 3.0


TINY_SIZES = bench.Sizes(eval_sizes=(24, 40), ttq_size_cpu=32, ttq_size_gpu=32,
                         reference_iterations=6, rss_sizes=(24, 40), allocator_size=32,
                         dense_size=(64, 8), coarse_size=48)


def test_the_whole_bench_runs_on_the_tiny_network_and_names_what_it_measured(
        tiny_model_file, tmp_path, monkeypatch):
    from PIL import Image

    from brushwork.io.images import scaled_size
    from brushwork.io.samples import demo_photo

    # The setting is process-wide; the bench's own subprocesses still measure it.
    monkeypatch.setattr(bench, "reuse_freed_memory", lambda: True)
    out = tmp_path / "out"
    report = bench.run(False, "cpu", out, sizes=TINY_SIZES, model=str(tiny_model_file))

    with Image.open(demo_photo()) as photo:
        photo_size = photo.size
    for size in (24, 40):  # each key names the long side it was measured at
        w, h = scaled_size(photo_size, size)
        assert max(w, h) == size
        assert report[f"eval_ratio_{size}_detail"]["size"] == f"{w}x{h}"
        assert report[f"peak_rss_mb_{size}_detail"]["size"] == f"{w}x{h}"
        assert f"--size {size} " in report["commands"][f"peak_rss_mb_{size}"]
        assert str(tiny_model_file) in report["commands"][f"peak_rss_mb_{size}"]
        # A whole Python process with torch: tens to hundreds of MB, so a unit mistake
        # (bytes read as KiB or the reverse) shows as a factor of 1024.
        assert 30 < report[f"peak_rss_mb_{size}"] < 4000
        # Rounded to 3 places, a tiny network's ratio can read 0.0.
        assert 0 <= report[f"eval_ratio_{size}"] < 2
    assert not any(k.endswith(("_512", "_1024")) for k in report)
    assert report["eval_ablation"]["size"] == report["eval_ratio_40_detail"]["size"]
    assert max(map(int, report["allocator_effect"]["size"].split("x"))) == 32
    assert report["mask_cost_detail"]["size"] == report["eval_ratio_40_detail"]["size"]
    assert report["mask_cost_ratio"] > 0
    assert report["model"] == str(tiny_model_file)
    assert report["time_to_quality_detail"]["size"] == 32
    assert report["time_to_quality_detail"]["reference_iterations"] == 6
    coarse = report["coarse_stop_48_detail"]
    # 48 px is under twice the default coarsest scale (79 px): one scale of 150 steps,
    # which the coarse tolerance does not touch.
    assert coarse["steps_every_step"] == coarse["steps_default"] == 150
    # The detail's figures are rounded too, so their ratio agrees with the key's to about
    # one unit of its last place.
    assert report["coarse_stop_time_ratio_48"] == pytest.approx(
        coarse["seconds_default"] / coarse["seconds_every_step"], abs=2e-3)
    assert report["coarse_stop_loss_ratio_48"] == pytest.approx(
        coarse["loss_default"] / coarse["loss_every_step"], abs=2e-4)
    # Precision: what auto picks here, fp32 against bf16 per evaluation, the default run.
    assert report["precision"]["auto"] in ("fp32", "bf16") and report["precision"]["reason"]
    speed = report["precision_speedup_40_detail"]
    assert speed["fp32_seconds"] > 0 and speed["bf16_seconds"] > 0
    if report["precision"]["auto"] == "fp32":
        assert report["precision_speedup_40"] == 1.0
        assert report["default_run_48_detail"]["same_run"]
        assert report["precision_loss_ratio"] == 1.0
    assert report["default_run_48_speedup"] > 0
    for name in ("default_run_fp32.png", "default_run_default.png"):
        with Image.open(out / name) as im:
            assert max(im.size) == 48
    lines = bench.format_table(report)
    assert "precision_speedup_40" in lines and "default_run_48_speedup" in lines
    # What --out writes: the same report, the plot and both pictures at the bench size.
    assert json.loads((out / "bench.json").read_text()) == report
    for name in ("reference.png", "default.png"):
        with Image.open(out / name) as im:
            assert max(im.size) == 32
    assert (out / "loss_vs_time.png").stat().st_size > 0
    table = bench.format_table(report)
    for key in ("eval_ratio_24", "eval_ratio_40", "eval_ablation", "allocator_effect",
                "time_to_quality_ratio", "peak_rss_mb_24", "peak_rss_mb_40",
                "coarse_stop_time_ratio_48", "mask_cost_ratio"):
        assert key in table


class ScriptedClock:
    """Stands in for the ``time`` module: after ``untimed`` starts whose end is never
    read (warm-ups), each timed span lasts the next of ``spans``."""

    def __init__(self, spans: list[float], untimed: int = 0) -> None:
        ticks = [0.0] * untimed
        for i, span in enumerate(spans):
            ticks += [10.0 * i, 10.0 * i + span]
        self.ticks = iter(ticks)

    def perf_counter(self) -> float:
        return next(self.ticks)


FIXED_RATES = {"matmul": 2e9, "conv": 3e9, "dense": 3e9}


def test_eval_ablation_times_every_variant_round_robin(tiny, monkeypatch):
    import torch

    s = Settings()
    photo = torch.rand(1, 3, 20, 16) * 255
    style = torch.rand(1, 3, 18, 18) * 255
    monkeypatch.setattr(bench, "dense_rates", lambda *a: FIXED_RATES)
    # Round 0 warms up; then stock, +gram, +gram+nhwc in turn, each round.
    from brushwork.bench import timing

    monkeypatch.setattr(timing, "time", ScriptedClock([4.0, 2.5, 2.0, 5.0, 2.0, 1.0], untimed=3))
    result = bench.eval_ablation(tiny, s, photo, style, torch.device("cpu"), reps=2,
                                 dense_size=(64, 8))
    assert list(result) == list(bench.ABLATION)
    assert [result[k]["seconds"] for k in result] == [4.0, 2.0, 1.0]  # best of the two rounds
    assert [result[k]["speedup"] for k in result] == [1.0, 2.0, 4.0]
    flops = bench.evaluation_flops(FeatureExtractor(tiny, s.content_layers + s.style_layers),
                                   s, 20, 16)
    assert result["+gram+nhwc"]["ratio"] == pytest.approx(flops / 1.0 / 3e9)
    table = bench.format_table({
        "mode": "quick", "machine": {"device_name": "cpu"}, "torch": "2", "threads": 2,
        "eval_ablation": {"size": "20x16", **result},
        "time_to_quality_ratio": 0.2, "time_to_quality_detail": {
            "default_seconds_to_reference_loss": 1.0, "reference_seconds": 5.0,
            "reference_final_loss": 5.0, "default_seconds": 3.0, "default_final_loss": 4.0}})
    assert "at 20x16: stock 4.0 s" in table and "+gram+nhwc 1.0 s" in table and "x4.0" in table


def test_allocator_effect_runs_both_modes_in_fresh_processes(tiny_model_file, photo_path,
                                                             painting_path):
    result = bench.allocator_effect(photo_path, painting_path, 32, "cpu", reps=1, rounds=1,
                                    model=str(tiny_model_file))
    for mode in ("malloc_default", "reuse_freed_memory"):
        assert result[mode]["seconds"] > 0 and result[mode]["page_faults"] >= 0
    assert result["speedup"] == pytest.approx(
        result["malloc_default"]["seconds"] / result["reuse_freed_memory"]["seconds"])


def test_eval_ratio_is_best_against_best_and_the_median_beside_it(tiny, monkeypatch):
    import torch

    s = Settings()
    net = FeatureExtractor(tiny, s.content_layers + s.style_layers)
    photo = torch.rand(1, 3, 20, 16) * 255
    rates = iter([{"matmul": 2e9, "conv": 1e9, "dense": 2e9},
                  {"matmul": 1e9, "conv": 3e9, "dense": 3e9},
                  {"matmul": 1.5e9, "conv": 1e9, "dense": 1.5e9}])
    monkeypatch.setattr(bench, "dense_rates", lambda *a: next(rates))
    monkeypatch.setattr(bench, "time", ScriptedClock([3.0, 1.0, 2.0]))
    r = bench.measure_eval(net, s, photo, photo.clone(), torch.device("cpu"), reps=3,
                           dense_size=(64, 8))
    flops = bench.evaluation_flops(net, s, 20, 16)
    assert (r["seconds"], r["median_seconds"]) == (1.0, 2.0)
    # The best of each kind over the repetitions, and the better of the two as "dense".
    assert (r["matmul_gflop_per_s"], r["conv_gflop_per_s"], r["dense_gflop_per_s"]) == (
        2.0, 3.0, 3.0)
    assert r["gflop"] == pytest.approx(flops / 1e9)
    assert r["ratio"] == pytest.approx(flops / 1.0 / 3e9)
    assert r["median_ratio"] == pytest.approx(flops / 2.0 / 3e9)


@pytest.mark.parametrize("reached", [1.5, None])
def test_loss_plot_is_written(tmp_path, reached):
    from PIL import Image

    path = tmp_path / "loss.png"
    curves = {"reference": [(0.5, 100.0), (1.0, 10.0), (2.0, 5.0)],
              "default": [(0.2, 50.0), (1.5, 5.0)]}
    bench._plot(curves, path, 64, 5.0, reached)
    with Image.open(path) as im:
        assert im.size[0] > 300 and im.size[1] > 200


def test_side_by_side_with_a_baseline_checkout(tiny_model_file):
    """The same code as its own baseline: a ratio near 1 and both peaks recorded."""
    from pathlib import Path

    from brushwork.errors import BrushworkError

    here = Path(bench.__file__).resolve().parents[2]
    report = bench.compare_with(here, [48], "cpu", reps=1, rounds=1,
                                model=str(tiny_model_file))
    detail = report["eval_vs_baseline_48_detail"]
    assert set(detail) == {"baseline", "current"}
    assert all(30 < row["peak_rss_mb"] < 4000 for row in detail.values())
    assert report["eval_vs_baseline_48"] == round(
        detail["baseline"]["seconds"] / detail["current"]["seconds"], 3)
    with pytest.raises(BrushworkError, match="holds no brushwork package"):
        bench.compare_with(here / "tests", [48], "cpu")


def test_print_bench_compares_runs_with_their_estimates_and_fills_the_history(
        tiny_model_file, photo_path, painting_path):
    from brushwork.bench import print_size as bench_print

    sizes = bench_print.PrintSizes(estimated=((64, {"iterations": 4}),),
                                   full_history_size=96, full_history_budget=4.0)
    report = bench_print.run(photo_path, painting_path, "cpu", sizes, str(tiny_model_file))
    detail = report["estimate_64_detail"]
    assert report["estimate_time_ratio_64"] == round(detail["seconds"]
                                                     / detail["predicted_seconds"], 3)
    assert report["estimate_memory_ratio_64"] == round(detail["peak_bytes"]
                                                       / detail["predicted_peak_bytes"], 3)
    assert 0.2 < report["estimate_memory_ratio_64"] < 5  # a real process's peak, in bytes
    full = report["peak_rss_mb_96_detail"]
    # The made checkpoint was resumed: one of the 3 steps was "done", with every pair of
    # the default history of 20 already there.
    assert full["history"] == 20 and full["evaluations"] == 2
    assert report["peak_rss_mb_96"] == round(full["peak_bytes"] / 2 ** 20, 1) > 50
    assert "history made full" in report["commands"]["peak_rss_mb_96"]


def test_default_run_scores_a_bf16_picture_with_the_fp32_objective(
        use_tiny, photo_path, painting_path, monkeypatch):
    """Where auto is bf16 the two runs differ, and the loss ratio is of the same fp32
    objective at both pictures: near 1, not 1."""
    import brushwork.engine.precision as precision_module
    from brushwork.bench.precision import default_run
    from brushwork.engine.memory import calibration

    known = calibration.Calibration(device="cpu", resident_bytes=0.0,
                                    eval_bytes=calibration.Line(0.0, 1000.0),
                                    eval_seconds=calibration.Line(0.0, 1e-6), forward_share=0.3)
    monkeypatch.setattr(calibration, "calibration_for", lambda *a, **k: known)
    monkeypatch.setattr(precision_module, "cpu_capabilities",
                        lambda: {"cpu_name": "Xeon", "amx_bf16": True})
    run = default_run(photo_path, painting_path, 32, torch.device("cpu"), use_tiny,
                      iterations=10, multiscale="off")
    assert run["auto"] == "bf16" and not run["same_run"]
    assert run["float32_loss_default"] != run["float32_loss_fp32"]
    assert run["loss_ratio"] == pytest.approx(
        run["float32_loss_default"] / run["float32_loss_fp32"])
    assert 0.5 < run["loss_ratio"] < 2
    assert run["images"]["fp32"].size == run["images"]["default"].size
