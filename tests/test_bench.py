"""The benchmark's arithmetic and plumbing (its figures are printed, never asserted)."""

from __future__ import annotations

import json

import pytest

from brushwork import bench
from brushwork.settings import Settings
from brushwork.vgg import FeatureExtractor


def test_evaluation_flops_from_layer_shapes(tiny):
    s = Settings(content_layers=("relu1_2",), style_layers=("relu1_1", "relu2_1"))
    net = FeatureExtractor(tiny, ["relu1_2", "relu1_1", "relu2_1"])
    h, w = 8, 6
    c1, c2 = tiny.convs["conv1_1"][0].shape[0], tiny.convs["conv2_1"][0].shape[0]
    convs = 2 * 2 * 9 * (3 * c1 * h * w + c1 * c1 * h * w + c1 * c2 * (h // 2) * (w // 2))
    grams = 2 * 2 * (c1 * c1 * h * w + c2 * c2 * (h // 2) * (w // 2))
    assert bench.evaluation_flops(net, s, h, w) == convs + grams


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


def test_table_and_json_name_every_key():
    report = {
        "mode": "quick", "machine": {"device_name": "cpu"}, "torch": "2", "threads": 2,
        "eval_ratio_256": 0.5, "eval_ratio_256_detail": {
            "size": "10x10", "seconds": 1, "gflop": 2, "gflop_per_s": 3, "dense_gflop_per_s": 6},
        "time_to_quality_ratio": None, "time_to_quality_detail": {
            "default_seconds_to_reference_loss": None, "reference_seconds": 10.0,
            "reference_final_loss": 5.0, "default_seconds": 3.0, "default_final_loss": 6.0},
        "peak_rss_mb_512": 700.0, "peak_rss_mb_512_detail": {"size": "5x5",
                                                             "lbfgs_history_mb": 1.0},
    }
    table = bench.format_table(report)
    for key in ["eval_ratio_256", "time_to_quality_ratio", "never reached", "peak_rss_mb_512"]:
        assert key in table
    assert json.loads(json.dumps(report)) == report


def test_eval_ablation_measures_every_variant(tiny):
    import torch

    s = Settings()
    photo = torch.rand(1, 3, 20, 16) * 255
    style = torch.rand(1, 3, 18, 18) * 255
    result = bench.eval_ablation(tiny, s, photo, style, torch.device("cpu"), reps=1, dense_size=(64, 8))
    assert set(result) == set(bench.ABLATION)
    assert result["stock"]["speedup"] == 1.0
    assert all(v["seconds"] > 0 and v["ratio"] > 0 for v in result.values())
    table = bench.format_table({
        "mode": "quick", "machine": {"device_name": "cpu"}, "torch": "2", "threads": 2,
        "eval_ablation": {"size": "20x16", **result},
        "time_to_quality_ratio": 0.2, "time_to_quality_detail": {
            "default_seconds_to_reference_loss": 1.0, "reference_seconds": 5.0,
            "reference_final_loss": 5.0, "default_seconds": 3.0, "default_final_loss": 4.0}})
    assert "+gram+nhwc" in table and "at 20x16" in table


def test_allocator_effect_runs_both_modes_in_fresh_processes(tiny_model_file, photo_path,
                                                             painting_path):
    result = bench.allocator_effect(photo_path, painting_path, 32, "cpu", reps=1, rounds=1,
                                    model=str(tiny_model_file))
    for mode in ("malloc_default", "reuse_freed_memory"):
        assert result[mode]["seconds"] > 0 and result[mode]["page_faults"] >= 0
    assert result["speedup"] == pytest.approx(
        result["malloc_default"]["seconds"] / result["reuse_freed_memory"]["seconds"])


def test_eval_ratio_is_best_against_best_and_the_median_beside_it(tiny):
    import torch

    s = Settings()
    net = FeatureExtractor(tiny, s.content_layers + s.style_layers)
    photo = torch.rand(1, 3, 20, 16) * 255
    r = bench.measure_eval(net, s, photo, photo.clone(), torch.device("cpu"), reps=3,
                           dense_size=(64, 8))
    assert r["seconds"] <= r["median_seconds"]
    assert r["median_ratio"] <= r["ratio"]
    assert r["dense_gflop_per_s"] == max(r["matmul_gflop_per_s"], r["conv_gflop_per_s"])
    assert r["ratio"] == pytest.approx(r["gflop_per_s"] / r["dense_gflop_per_s"])


@pytest.mark.parametrize("reached", [1.5, None])
def test_loss_plot_is_written(tmp_path, reached):
    from PIL import Image

    path = tmp_path / "loss.png"
    curves = {"reference": [(0.5, 100.0), (1.0, 10.0), (2.0, 5.0)],
              "default": [(0.2, 50.0), (1.5, 5.0)]}
    bench._plot(curves, path, 64, 5.0, reached)
    with Image.open(path) as im:
        assert im.size[0] > 300 and im.size[1] > 200
