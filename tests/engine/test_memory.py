"""The estimate before a run, the plan a budget gives, and tiled runs end to end."""

from __future__ import annotations

import dataclasses
import json
import platform

import numpy as np
import pytest
import torch

from brushwork import estimate, stylize
from brushwork.commands.entry import main
from brushwork.engine.memory import calibration, forecast
from brushwork.engine.memory.calibration import Calibration, Line, refit
from brushwork.engine.memory.forecast import plan, tile_sizes
from brushwork.engine.memory.probe import PeakMeter
from brushwork.engine.network import FeatureExtractor
from brushwork.engine.pyramid import Scale
from brushwork.engine.settings import Settings
from brushwork.errors import BrushworkError
from conftest import tiny_weights

MB = 2 ** 20
# One evaluation: 1 MB plus 2 kB per pixel, 0.1 s plus 1 us per pixel; forward a third.
CAL = Calibration("cpu", resident_bytes=100 * MB, eval_bytes=Line(MB, 2048.0),
                  eval_seconds=Line(0.1, 1e-6), forward_share=1 / 3)


def _net(settings: Settings) -> FeatureExtractor:
    return FeatureExtractor(tiny_weights(), settings.content_layers + settings.style_layers)


def test_lines_by_hand():
    line = Line.through((100.0, 3.0), (300.0, 7.0))
    assert (line.intercept, line.slope) == (1.0, 0.02)
    assert line(1000) == 21.0
    # A noisy fall is no negative cost per pixel.
    assert Line.through((100.0, 5.0), (300.0, 4.0)) == Line(5.0, 0.0)
    # Runs: the probe's line scaled by the median of observed over predicted (here the
    # probe predicts 2 s at 100 px; runs took 1, 1.2 and 9 s: the median, 0.6 times).
    assert refit(Line(1.0, 0.01), [(100.0, 1.0)]) == Line(0.5, 0.005)
    fitted = refit(Line(1.0, 0.01), [(100.0, 1.0), (100.0, 1.2), (100.0, 9.0)])
    assert fitted.intercept == pytest.approx(0.6) and fitted.slope == pytest.approx(0.006)
    # An even count takes the mean of the middle two.
    assert refit(Line(0.0, 1.0), [(1.0, 1.0), (1.0, 3.0)]) == Line(0.0, 2.0)
    # Runs at sizes 4x apart or more (a pyramid's scales): their own least-squares line,
    # whatever the probe's shape (here 0.1 s plus 1 us per pixel, exactly).
    own = refit(Line(5.0, 1.0), [(1e5, 0.2), (4e5, 0.5), (1.6e6, 1.7)])
    assert own.slope == pytest.approx(1e-6) and own.intercept == pytest.approx(0.1)


def test_kept_bytes_by_hand():
    s = Settings(content_layers=("relu4_2",), history_size=20)
    net = _net(s)
    # L-BFGS: 4 + 2 * 20 vectors, plus x, its gradient and the photo, plus a checkpoint's
    # picture and the pair it holds: 50 images of 3 float32 per pixel; the content
    # target: relu4_2's channels at stride 8.
    channels = net.convs["conv4_2"].out_channels
    want = 50 * 3 * 4 * 1024 ** 2 + channels * 1024 ** 2 / 64 * 4
    assert forecast.kept_bytes(1024 ** 2, s, 20, net) == pytest.approx(want)


def test_tile_sizes_are_aligned_and_no_smaller_than_the_halo():
    assert tile_sizes(200, 80, 16) == [192, 176, 160, 144, 128, 112, 96, 80]
    assert tile_sizes(80, 80, 16) == []


def test_a_budget_that_fits_paints_whole_and_a_smaller_one_tiles():
    s = Settings(size=1024, multiscale="off", iterations=10)
    net = _net(s)
    scales = [Scale((1024, 1024), 10)]
    whole = plan(scales, s, CAL, net, budget=10e9)
    assert not whole.tiled and whole.scales[0].history == 20
    need = whole.peak_bytes
    tiled = plan(scales, s, CAL, net, budget=need * 0.9)
    assert tiled.tiled and tiled.scales[0].tile is not None
    assert tiled.peak_bytes <= forecast.PLAN_MARGIN * need * 0.9
    assert tiled.peak_bytes < need
    # Tiles cost time: one more forward pass and the halos.
    assert tiled.seconds > whole.seconds
    # A tile size given is used as given.
    given = plan(scales, s, CAL, net, budget=10e9, tile=256)
    assert [p.tile for p in given.scales] == [256]


def test_a_tight_budget_shrinks_the_history_and_an_impossible_one_is_refused():
    s = Settings(size=1024, multiscale="off", iterations=10)
    net = _net(s)
    scales = [Scale((1024, 1024), 10)]
    # The history (2 image vectors per pair) dominates at 1024 px: 120 MB for 20 pairs.
    smallest_tile = plan(scales, s, CAL, net, budget=10e9, tile=80).peak_bytes
    shrunk = plan(scales, s, CAL, net, budget=smallest_tile * 0.95)
    assert shrunk.scales[0].history < 20
    with pytest.raises(BrushworkError, match="raise --max-memory or lower --size"):
        plan(scales, s, CAL, net, budget=200 * MB)
    with pytest.raises(BrushworkError, match="multiple of 16 px and at least"):
        plan(scales, s, CAL, net, budget=10e9, tile=40)


def test_estimate_describes_itself():
    s = Settings(size=1024, multiscale="off", iterations=10)
    est = plan([Scale((1024, 1024), 10)], s, CAL, _net(s), budget=10e9)
    # 10 evaluations of 0.1 + 1.048576 s, and the targets' forward pass.
    assert est.seconds == pytest.approx(11 * 1.148576 / 3 + 10 * 1.148576 * (1 - 1 / 3),
                                        rel=1e-6)
    text = est.describe()
    assert text.startswith("estimate: peak ") and "10.0 GB budget" in text


def test_a_short_scale_keeps_no_more_pairs_than_it_has_steps():
    s = Settings()
    net = _net(s)
    short = forecast.scale_cost(forecast.ScalePlan(Scale((100, 100), 4), None, 20), s, CAL, net)
    full = forecast.scale_cost(forecast.ScalePlan(Scale((100, 100), 40), None, 20), s, CAL, net)
    # 4 steps store 3 pairs, not 20: 17 pairs of two 100 x 100 x 3 float32 vectors fewer.
    assert full[0] - short[0] == pytest.approx(17 * 2 * 3 * 4 * 100 * 100)


def test_the_peak_share_scales_the_evaluation_alone():
    s = Settings(size=512, multiscale="off", iterations=10)
    net = _net(s)
    scales = [Scale((512, 512), 10)]
    base = plan(scales, s, CAL, net, budget=10e9)
    more = plan(scales, s, dataclasses.replace(CAL, peak_share=1.5), net, budget=10e9)
    # The kept vectors (9 pairs of two 512 x 512 x 3 float32 vectors, and the picture's
    # own) are known exactly: neither the process's start nor they are scaled.
    kept = forecast.kept_bytes(512 * 512, s, 9, net)
    assert base.kept_bytes == more.kept_bytes == pytest.approx(kept) and kept > 0
    assert more.peak_bytes - CAL.resident_bytes - kept == pytest.approx(
        1.5 * (base.peak_bytes - CAL.resident_bytes - kept))
    assert (more.resident_bytes, more.peak_share) == (CAL.resident_bytes, 1.5)
    # A tiled scale takes the tiled share.
    tiles = plan(scales, s, dataclasses.replace(CAL, peak_share=3.0, tiled_peak_share=1.5),
                 net, budget=10e9, tile=128)
    lines = plan(scales, s, CAL, net, budget=10e9, tile=128)
    assert tiles.peak_tiled and tiles.peak_share == 1.5
    assert tiles.peak_bytes - CAL.resident_bytes - kept == pytest.approx(
        1.5 * (lines.peak_bytes - CAL.resident_bytes - kept))
    # The plan sees it too: a budget the lines alone fit is now tiled.
    assert plan(scales, s, dataclasses.replace(CAL, peak_share=1.5), net,
                budget=base.peak_bytes / forecast.PLAN_MARGIN * 1.01).tiled


def test_a_shorter_history_is_taken_when_its_larger_tiles_are_much_quicker():
    s = Settings(size=2048, multiscale="off", iterations=10)
    net = _net(s)
    scale = Scale((2048, 2048), 10)
    halo, align = calibration.tile_geometry(net)

    def seconds(p):
        return forecast.scale_cost(p, s, CAL, net)[1]

    tiny = forecast.ScalePlan(scale, halo, 20)  # tiles the size of the halo: slow
    large = forecast.ScalePlan(scale, 1024, 12)
    near = forecast.ScalePlan(scale, 1008, 11)
    assert seconds(tiny) > 2 * seconds(large)
    assert forecast._quick_enough([tiny, large, near], s, CAL, net) is large
    # Within HISTORY_TIME_SLACK of the quickest, the longer history wins.
    assert seconds(large) <= forecast.HISTORY_TIME_SLACK * seconds(near)
    assert forecast._quick_enough([large, near], s, CAL, net) is large
    # The plan itself: a budget that history 20 fits only in small tiles.
    budget = forecast.scale_cost(forecast.ScalePlan(scale, 192, 20), s, CAL, net)[0] / \
        forecast.PLAN_MARGIN
    chosen = plan([scale], s, CAL, net, budget=budget).scales[0]
    assert chosen.history < 20 and chosen.tile is not None and chosen.tile > 192
    assert seconds(chosen) * forecast.HISTORY_TIME_SLACK < seconds(
        forecast.ScalePlan(scale, 192, 20))


def test_a_run_records_its_peak_and_a_resumed_one_does_not(monkeypatch, use_tiny, tmp_path,
                                                           photo_path, painting_path):
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path))
    monkeypatch.setattr(forecast, "PEAK_OBSERVED_FROM", 0)  # the tiny network's runs count
    seen = []
    real = forecast.observe_peak
    monkeypatch.setattr(forecast, "observe_peak",
                        lambda *a: seen.append(a[-1]) or real(*a))
    opts = dict(size=48, multiscale="off", iterations=4, seed=1)
    stylize(photo_path, painting_path, **opts)
    if PeakMeter(torch.device("cpu")).works:
        assert len(seen) == 1 and seen[0] >= 0
    else:
        assert seen == []
    from brushwork import Interrupted

    def stop(it):
        if it.step == 2:
            raise KeyboardInterrupt

    ckpt = tmp_path / "run.checkpoint"
    with pytest.raises(Interrupted):
        stylize(photo_path, painting_path, checkpoint=ckpt, callback=stop, **opts)
    before = len(seen)
    stylize(photo_path, painting_path, checkpoint=ckpt, resume=True, **opts)
    assert len(seen) == before


def test_tiled_cost_by_hand_and_coarse_scales_that_stop():
    cal = dataclasses.replace(CAL, tiled_bytes=1.5, tiled_seconds=2.0, coarse_steps=5)
    # Boxes of 100 and 400 px in a 300 px picture: the largest box's evaluation (1 MB +
    # 400 * 2 kB) plus the gradient's sum (3 float32 per pixel), times 1.5; every box's
    # evaluation (0.1 s + 1 us per pixel) plus pass 1's forward (a third), times 2.
    peak, seconds = calibration.tiled_cost(cal, [100, 400], 300)
    assert peak == pytest.approx(1.5 * (MB + 400 * 2048 + 3 * 300 * 4))
    assert seconds == pytest.approx(2 * (0.2 + 500e-6) * (1 + 1 / 3))
    s = Settings(iterations=10)
    scales = [Scale((64, 64), 10), Scale((128, 128), 10)]
    est = forecast.estimate([forecast.ScalePlan(sc, None, 20) for sc in scales], s, cal, _net(s),
                          budget=1e10)
    per_eval = [CAL.eval_seconds(64 * 64), CAL.eval_seconds(128 * 128)]
    # Coarse scales have stopped after 5 steps: this one is expected to; the last one
    # takes all of its steps.
    assert est.seconds == pytest.approx(sum(p / 3 for p in per_eval) + 5 * per_eval[0]
                                        + 10 * per_eval[1])
    # A coarse scale of 3 steps ends before the rule could fire: all 3 are counted.
    short = [Scale((64, 64), 3), Scale((128, 128), 10)]
    est = forecast.estimate([forecast.ScalePlan(sc, None, 20) for sc in short], s, cal, _net(s),
                          budget=1e10)
    assert est.seconds == pytest.approx(sum(p / 3 for p in per_eval) + 3 * per_eval[0]
                                        + 10 * per_eval[1])
    never = forecast.estimate([forecast.ScalePlan(sc, None, 20) for sc in scales],
                            Settings(iterations=10, coarse_tolerance=0.0), cal, _net(s), 1e10)
    assert never.seconds == pytest.approx(sum(p / 3 for p in per_eval) + 10 * sum(per_eval))


@pytest.mark.skipif(platform.system() != "Linux", reason="the CPU peak is read from /proc")
def test_the_peak_meter_sees_an_allocation():
    meter = PeakMeter(torch.device("cpu"))
    assert meter.works
    meter.start()
    block = torch.ones(64 * MB // 4)  # 64 MB, touched
    assert meter.peak() >= 60 * MB
    del block
    meter.start()
    assert meter.peak() < 60 * MB


def test_calibration_is_measured_once_then_follows_runs(monkeypatch, use_tiny, tmp_path):
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path))
    s = Settings()
    net = _net(s)
    calls = []
    real = calibration.calibrate

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs, sizes=(32, 64))

    monkeypatch.setattr(calibration, "calibrate", counting)
    first = calibration.calibration_for(net, s, torch.device("cpu"))
    again = calibration.calibration_for(net, s, torch.device("cpu"))
    assert len(calls) == 1 and again.eval_bytes == first.eval_bytes
    assert first.eval_seconds.slope >= 0 and 0 < first.forward_share <= 1
    assert first.tiled_bytes >= 1 and first.tiled_seconds > 0 and first.coarse_steps is None
    # Runs report evaluations three times as slow as the probe said: the line follows.
    for pixels in (2000, 3000):
        calibration.observe(net, s, torch.device("cpu"), pixels, 3 * first.eval_seconds(pixels))
    follows = calibration.calibration_for(net, s, torch.device("cpu"))
    assert follows.eval_seconds(2000) == pytest.approx(3 * first.eval_seconds(2000))
    # Coarse scales that stopped after 110, 90 and 120 steps.
    for steps in (110, 90, 120):
        calibration.observe_coarse(net, s, torch.device("cpu"), steps)
    assert calibration.calibration_for(net, s, torch.device("cpu")).coarse_steps == 110
    # Runs' peaks above their start, over what the lines predicted: the median scales
    # later predictions (within PEAK_SHARE_RANGE); small runs are not recorded.
    assert follows.peak_share == 1.0
    big = forecast.Estimate(peak_bytes=100 * MB + 600 * MB, seconds=1.0, budget_bytes=1e10,
                          scales=(), resident_bytes=100 * MB, peak_share=1.0)
    for seen in (1.1, 1.3, 1.2):
        forecast.observe_peak(net, s, torch.device("cpu"), big, seen * 600 * MB)
    small = dataclasses.replace(big, peak_bytes=100 * MB + 100 * MB)
    forecast.observe_peak(net, s, torch.device("cpu"), small, 5 * 100 * MB)
    scaled = calibration.calibration_for(net, s, torch.device("cpu"))
    assert scaled.peak_share == pytest.approx(1.2)
    # An estimate made with that share records what the lines alone predicted.
    forecast.observe_peak(net, s, torch.device("cpu"),
                        dataclasses.replace(big, peak_bytes=100 * MB + 1.2 * 600 * MB,
                                            peak_share=1.2), 2.0 * 600 * MB)
    (entry,) = [e for e in json.loads(calibration._calibration_file().read_text()).values()]
    assert [r for r, _ in entry["eval_peak_ratios"]] == pytest.approx([1.1, 1.3, 1.2, 2.0])
    # Of a run's peak, the kept vectors are taken off before the ratio: 200 MB kept and
    # 400 MB of evaluation predicted, 200 + 1.5 * 400 MB seen.
    held = dataclasses.replace(big, kept_bytes=200 * MB)
    forecast.observe_peak(net, s, torch.device("cpu"), held, 800 * MB)
    (entry,) = [e for e in json.loads(calibration._calibration_file().read_text()).values()]
    assert entry["eval_peak_ratios"][-1][0] == pytest.approx(1.5)
    entry["eval_peak_ratios"].pop()
    key = calibration._calibration_key(net, s, torch.device("cpu"))
    calibration._write_calibrations({key: entry})
    # Runs whose peak scale was tiled have a share of their own; until one has been seen,
    # tiled scales take the whole runs' (the larger, so the safer).
    assert calibration.calibration_for(net, s, torch.device("cpu")).tiled_peak_share == \
        pytest.approx(1.25)
    tiled = dataclasses.replace(big, peak_tiled=True)
    for seen in (1.05, 1.15):
        forecast.observe_peak(net, s, torch.device("cpu"), tiled, seen * 600 * MB)
    both = calibration.calibration_for(net, s, torch.device("cpu"))
    assert both.tiled_peak_share == pytest.approx(1.1)
    assert both.peak_share == pytest.approx(1.25)
    for _ in range(calibration.OBSERVATIONS_KEPT):
        forecast.observe_peak(net, s, torch.device("cpu"), big, 9.0 * 600 * MB)
    assert calibration.calibration_for(net, s, torch.device("cpu")).peak_share == 2.0
    # A damaged cache file is measured anew, not an error.
    (calibration._calibration_file()).write_text("{not json")
    calibration.calibration_for(net, s, torch.device("cpu"))
    assert len(calls) == 2
    assert isinstance(json.loads(calibration._calibration_file().read_text()), dict)


def test_a_tiled_run_paints_the_picture_a_whole_run_paints(use_tiny, photo_path, painting_path):
    opts = dict(size=272, multiscale="off", iterations=6, seed=3)  # 2 x 2 tiles of 80 px
    whole = stylize(photo_path, painting_path, **opts)
    said: list[str] = []
    tiled = stylize(photo_path, painting_path, tile_size=80, log=said.append, **opts)
    assert "tiles of 80 px" in said[0]
    assert tiled.losses["total"] == pytest.approx(whole.losses["total"], rel=1e-3)
    diff = np.abs(np.asarray(tiled.image, dtype=float) - np.asarray(whole.image, dtype=float))
    assert diff.mean() < 0.5


def test_estimate_is_the_plan_of_the_run(use_tiny, photo_path, painting_path):
    est = estimate(photo_path, painting_path, size=112, multiscale="off", iterations=6,
                   tile_size=80)
    assert est.tiled and est.seconds > 0 and est.peak_bytes > 0
    assert [p.scale.iterations for p in est.scales] == [6]


def test_cli_estimate_prints_and_writes_nothing(use_tiny, photo_path, painting_path, tmp_path,
                                                capsys):
    out = tmp_path / "out.png"
    assert main(["stylize", str(photo_path), str(painting_path), "--size", "112",
                 "--estimate"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("estimate: peak") and "scale 1/" in printed
    assert not out.exists()
    # Without --estimate an output is required, as before.
    assert main(["stylize", str(photo_path), str(painting_path)]) == 2
    assert "-o/--output" in capsys.readouterr().err


def test_cli_refuses_a_tile_smaller_than_the_halo(use_tiny, photo_path, painting_path,
                                                  tmp_path, capsys):
    out = tmp_path / "out.png"
    code = main(["stylize", str(photo_path), str(painting_path), "-o", str(out),
                 "--tile-size", "48", "--size", "112"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and not out.exists()
    assert err[-1].startswith("brushwork: error: --tile-size 48 must be a multiple of 16 px")
    code = main(["stylize", str(photo_path), str(painting_path), "-o", str(out),
                 "--max-memory", "0"])
    assert code != 0 and "max_memory" in capsys.readouterr().err
