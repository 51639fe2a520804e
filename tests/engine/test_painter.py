"""stylize() end to end on a tiny network and tiny pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import brushwork
import brushwork.engine.cache as cache_module
from brushwork.engine.cache import Cache
from brushwork.engine.device import resolve_device
from brushwork.engine.network import FeatureExtractor
from brushwork.engine.objective import Objective, size_invariant_weight
from brushwork.engine.painter import stylize
from brushwork.engine.pyramid import Scale, count_steps, scales
from brushwork.engine.result import Interrupted
from brushwork.engine.settings import Settings
from brushwork.engine.stopping import WINDOW
from brushwork.errors import BrushworkError, DivergedError
from brushwork.io.images import read_metadata, to_tensor
from brushwork.maths.color import rgb_to_yiq
from brushwork.maths.losses import content_loss, gram, style_layer_loss, tv_loss
from conftest import painting_array, photo_array, rtol_on, tiny_weights

FAST = dict(size=32, iterations=15, multiscale="off")


def test_stylize_returns_picture_and_style_loss_falls(use_tiny, photo_path, painting_path,
                                                      device):
    steps = []
    result = brushwork.stylize(photo_path, painting_path, callback=steps.append,
                               device=str(device), **{**FAST, "iterations": 40})
    assert result.image.size == (32, 26)  # 40x32 photo, long side 32
    assert [it.step for it in steps] == list(range(1, 41))
    assert steps[-1].progress == pytest.approx(1.0)
    assert steps[-1].losses["style"] < 0.5 * steps[0].losses["style"]
    assert result.losses == steps[-1].losses
    arr = np.asarray(result.image)
    assert arr.std() > 5  # not a flat grey picture


def test_objective_matches_pure_functions(tiny, device):
    s = Settings(content_layers=("relu3_1",), style_layers=("relu1_1", "relu2_1"),
                 style_layer_weights=(0.3, 0.7), content_weight=2.0, style_weight=5.0,
                 tv_weight=0.1, tv_power=1.25, size_invariant=False)
    net = FeatureExtractor(tiny, ["relu3_1", "relu1_1", "relu2_1"]).to(device)
    photo = to_tensor(Image.fromarray(photo_array(32, 32))).to(device)
    style = to_tensor(Image.fromarray(painting_array(32, 32))).to(device)
    obj = Objective.for_styles(net, s, photo, [style])
    x = torch.rand_like(photo) * 255
    got = obj(x)
    fx, fp, fs = net(x), net(photo), net(style)
    c = content_loss(fx["relu3_1"], fp["relu3_1"])
    st = sum(w * style_layer_loss(gram(fx[n])[0], gram(fs[n])[0], fx[n].shape[1],
                                  fx[n].shape[2] * fx[n].shape[3])
             for w, n in zip((0.3, 0.7), ("relu1_1", "relu2_1"), strict=True))
    want = 2.0 * c + 5.0 * st + 0.1 * tv_loss(x, 1.25)
    assert got["total"].item() == pytest.approx(want.item(), rel=rtol_on(device, 1e-4))
    assert got["style"].item() == pytest.approx(5.0 * st.item(), rel=rtol_on(device, 1e-4))


def test_blended_targets_equal_weighted_grams(tiny):
    s = Settings(style_layers=("relu1_1",), content_layers=("relu2_1",))
    net = FeatureExtractor(tiny, ["relu1_1", "relu2_1"])
    photo = to_tensor(Image.fromarray(photo_array(32, 32)))
    a = to_tensor(Image.fromarray(painting_array(32, 32, seed=3)))
    b = to_tensor(Image.fromarray(photo_array(32, 32)))
    obj = Objective.for_styles(net, s, photo, [a, b], [0.25, 0.75])
    ga, gb = gram(net(a)["relu1_1"])[0], gram(net(b)["relu1_1"])[0]
    assert torch.allclose(obj.gram_0 * 32 * 32, 0.25 * ga + 0.75 * gb, rtol=1e-4)


def test_seed_makes_runs_reproducible(use_tiny, photo_path, painting_path):
    run = lambda seed: np.asarray(brushwork.stylize(  # noqa: E731
        photo_path, painting_path, init="noise", seed=seed, **FAST).image)
    assert np.array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_style_blend_with_zero_weight_equals_single_style(use_tiny, photo_path, painting_path):
    one = brushwork.stylize(photo_path, painting_path, seed=1, **FAST).image
    blend = brushwork.stylize(photo_path, [painting_path, photo_path], style_weights=[1, 0],
                              seed=1, **FAST).image
    assert np.abs(np.asarray(one, float) - np.asarray(blend, float)).max() <= 1
    with pytest.raises(BrushworkError, match="style_weights has 1 values for 2"):
        brushwork.stylize(photo_path, [painting_path, photo_path], style_weights=[1], **FAST)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam", "sgd"])
def test_every_optimiser_lowers_the_loss(use_tiny, photo_path, painting_path, optimizer):
    losses = []
    lr = {"lbfgs": None, "adam": 4.0, "sgd": 1.0}[optimizer]
    brushwork.stylize(photo_path, painting_path, optimizer=optimizer, learning_rate=lr,
                      callback=lambda it: losses.append(it.losses["total"]),
                      **{**FAST, "iterations": 30})
    assert losses[-1] < 0.7 * losses[0]


def test_pyramid_levels():
    s = Settings(size=512, min_size=128, iterations=10)
    assert scales(s, (1000, 500)) == [Scale((128, 64), 20), Scale((256, 128), 20),
                                      Scale((512, 256), 10)]
    assert count_steps(s, (1000, 500)) == 50
    assert brushwork.count_steps is count_steps
    assert len(scales(Settings(size=200, min_size=128), (10, 10))) == 1
    assert len(scales(Settings(size=200, min_size=128, multiscale="on"), (10, 10))) == 1
    assert len(scales(Settings(size=512, multiscale="off"), (10, 10))) == 1


def test_multiscale_run_reports_every_scale(use_tiny, photo_path, painting_path):
    seen = []
    result = brushwork.stylize(photo_path, painting_path, size=40, min_size=20, iterations=4,
                               multiscale="on", callback=seen.append)
    assert sorted({(it.scale, it.size) for it in seen}) == [(0, (20, 16)), (1, (40, 32))]
    progress = [it.progress for it in seen]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)
    assert result.image.size == (40, 32)


def test_luminance_keeps_photo_colours(use_tiny, photo_path, painting_path):
    result = brushwork.stylize(photo_path, painting_path, preserve_colors="luminance",
                               **{**FAST, "size": 40})
    out = rgb_to_yiq(to_tensor(result.image))
    photo = rgb_to_yiq(to_tensor(Image.open(photo_path).convert("RGB")))
    assert (out[:, 1:] - photo[:, 1:]).abs().mean() < 3.0


@pytest.mark.parametrize("mode", ["histogram", "histogram-to-style"])
def test_histogram_modes_run(use_tiny, photo_path, painting_path, mode):
    plain = np.asarray(brushwork.stylize(photo_path, painting_path, seed=0, **FAST).image, float)
    matched = np.asarray(brushwork.stylize(photo_path, painting_path, seed=0,
                                           preserve_colors=mode, **FAST).image, float)
    assert np.abs(plain - matched).mean() > 1.0


def test_init_from_image(use_tiny, photo_path, painting_path):
    result = brushwork.stylize(photo_path, painting_path, init=str(painting_path),
                               **{**FAST, "iterations": 1})
    assert result.image.size == (32, 26)


def test_nan_loss_is_reported_not_saved(use_tiny, photo_path, painting_path, monkeypatch):
    import brushwork.engine.objective as objective_module

    monkeypatch.setattr(objective_module, "tv_loss",
                        lambda x, p, wrap=False: x.sum() * float("nan"))
    with pytest.raises(DivergedError, match="loss became nan at step 1"):
        brushwork.stylize(photo_path, painting_path, tv_weight=1.0, **FAST)


def test_exploding_loss_is_reported(use_tiny, photo_path, painting_path):
    with pytest.raises(DivergedError, match="exploded"):
        brushwork.stylize(photo_path, painting_path, optimizer="sgd", learning_rate=1e6,
                          **{**FAST, "iterations": 40})


def test_ctrl_c_carries_the_picture_so_far(use_tiny, photo_path, painting_path):
    def stop(it):
        if it.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        brushwork.stylize(photo_path, painting_path, callback=stop, **FAST)
    assert info.value.result.interrupted
    assert len(info.value.result.history) == 3
    assert info.value.result.image.size == (32, 26)


def test_result_save_records_settings(use_tiny, photo_path, painting_path, tmp_path):
    result = brushwork.stylize(photo_path, painting_path, **FAST)
    out = result.save(tmp_path / "out.png")
    meta = read_metadata(out)
    assert meta["settings"]["size"] == 32
    assert meta["inputs"]["content"] == str(photo_path)
    with pytest.raises(BrushworkError, match="exists"):
        result.save(out)


def test_devices():
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(BrushworkError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(BrushworkError, match="CUDA is not available"):
            resolve_device("cuda")


def test_unknown_layer_is_an_error_listing_valid_ones(use_tiny, photo_path, painting_path):
    with pytest.raises(BrushworkError, match="unknown style layer 'relu9_1'.*relu5_3"):
        brushwork.stylize(photo_path, painting_path, style_layers=["relu9_1"], **FAST)


def test_raw_sgd_step_is_plain_gradient_descent(tiny, use_tiny, photo_path, painting_path):
    """--no-normalize-gradients: one SGD step is x - lr * dL/dx, as in seed 004."""
    s = Settings(size=32, iterations=1, multiscale="off", optimizer="sgd", learning_rate=0.5,
                 normalize_gradients=False, tv_weight=1e-3, size_invariant=False)
    result = brushwork.stylize(photo_path, painting_path, **{
        k: getattr(s, k) for k in ("size", "iterations", "multiscale", "optimizer",
                                   "learning_rate", "normalize_gradients", "tv_weight",
                                   "size_invariant")})
    net = FeatureExtractor(use_tiny, list(s.content_layers + s.style_layers))
    photo = to_tensor(Image.open(photo_path).convert("RGB").resize((32, 26), Image.LANCZOS))
    style = to_tensor(Image.open(painting_path).convert("RGB").resize((32, 32), Image.LANCZOS))
    objective = Objective.for_styles(net, s, photo, [style])
    x = photo.clone().requires_grad_(True)
    objective(x)["total"].backward()
    expected = (photo - 0.5 * x.grad).clamp(0, 255).round()
    got = to_tensor(result.image)
    assert (got - expected).abs().max() <= 1.0
    assert (expected - photo).abs().max() > 2  # the step did move the picture


def test_size_invariant_weight_at_known_sizes():
    # alpha is given at 256 px and scales with (256 / long side)^2.
    assert size_invariant_weight(2.0, 256) == 2.0
    assert size_invariant_weight(2.0, 512) == 0.5
    assert size_invariant_weight(1.0, 128) == 4.0
    assert size_invariant_weight(3.0, 1024) == pytest.approx(0.1875)


def test_size_invariant_alpha_follows_the_long_side(tiny):
    net = FeatureExtractor(tiny, ["relu4_2", "relu3_2"] + list(Settings().style_layers))
    photo = to_tensor(Image.fromarray(photo_array(64, 48)))
    style = to_tensor(Image.fromarray(painting_array(32, 32)))
    on = Objective.for_styles(net, Settings(content_weight=2.0), photo, [style])
    off = Objective.for_styles(net, Settings(content_weight=2.0, size_invariant=False), photo,
                               [style])
    assert off.content_weight == 2.0
    assert on.content_weight == pytest.approx(32.0)  # 2 at 256 px is 2 * 4^2 at 64 px
    x = torch.rand_like(photo) * 255
    assert on(x)["content"].item() == pytest.approx(16 * off(x)["content"].item(), rel=1e-5)


def _counting_loader(monkeypatch):
    calls = []

    def load(*a, **k):
        calls.append(a)
        return tiny_weights()

    monkeypatch.setattr(cache_module, "load_weights", load)
    return calls


def test_cache_loads_the_network_once_and_gives_the_same_picture(monkeypatch, photo_path,
                                                                  painting_path):
    calls = _counting_loader(monkeypatch)
    opts = dict(size=32, iterations=6, seed=3, multiscale="off")
    plain = stylize(photo_path, painting_path, **opts)
    assert len(calls) == 1
    cache = Cache()
    first = stylize(photo_path, painting_path, cache=cache, **opts)
    second = stylize(photo_path, painting_path, cache=cache, content_weight=3.0, **opts)
    assert len(calls) == 2  # one more load for the two cached runs
    assert cache.network_loads == 1
    assert cache.target_misses == 1 and cache.target_hits == 1
    # Caching changes nothing in the picture.
    assert np.array_equal(np.asarray(plain.image), np.asarray(first.image))
    assert not np.array_equal(np.asarray(first.image), np.asarray(second.image))


def test_cache_misses_when_the_style_or_network_changes(monkeypatch, photo_path, painting_path,
                                                        tmp_path):
    calls = _counting_loader(monkeypatch)
    cache = Cache(max_networks=1)
    opts = dict(size=32, iterations=2, multiscale="off")
    stylize(photo_path, painting_path, cache=cache, **opts)
    other = tmp_path / "other.png"
    Image.fromarray(255 - np.asarray(Image.open(painting_path))).save(other)
    stylize(photo_path, other, cache=cache, **opts)
    assert cache.target_misses == 2 and cache.network_loads == 1
    stylize(photo_path, painting_path, cache=cache, style_scale=0.5, **opts)
    assert cache.target_misses == 3
    stylize(photo_path, painting_path, cache=cache, pooling="avg", **opts)
    assert cache.target_misses == 4  # another network, other targets; the same weights
    stylize(photo_path, painting_path, cache=cache, **opts)  # max pooling's net was evicted
    assert cache.target_misses == 4 and cache.target_hits == 1
    assert cache.network_loads == 1 and len(calls) == 1
    model_b = tmp_path / "b.safetensors"
    monkeypatch.setattr(cache_module, "model_key", lambda model: (model,))
    stylize(photo_path, painting_path, cache=cache, model=str(model_b), **opts)
    stylize(photo_path, painting_path, cache=cache, **opts)  # vgg16-hed's weights were evicted
    assert cache.network_loads == 3 and len(calls) == 3


def test_stopping_rule_ends_each_scale_when_the_picture_stops_changing(
        use_tiny, photo_path, painting_path, monkeypatch, tmp_path):
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path))
    steps, said = [], []
    opts = dict(size=48, min_size=24, multiscale="on", iterations=40, seed=0,
                coarse_tolerance=0.0)
    full = stylize(photo_path, painting_path, **opts)
    assert len(full.history) == 80 + 40
    # Any change is "small" under a huge tolerance: each scale ends after the window fills.
    stopped = stylize(photo_path, painting_path, callback=steps.append, log=said.append,
                      **{**opts, "stop_tolerance": 1e9, "coarse_tolerance": 1e9})
    window = WINDOW
    assert [h["scale"] for h in stopped.history] == [0] * (window + 1) + [1] * (window + 1)
    assert steps[-1].progress == pytest.approx(1.0)
    said = [m for m in said if not m.startswith(("estimate:", "precision "))]
    assert len(said) == 2 and "stopped changing after 11 of 80 steps" in said[0]
    # The coarse tolerance ends only the coarse scale; the last one runs every step.
    coarse_only = stylize(photo_path, painting_path,
                          **{**opts, "coarse_tolerance": 1e9})
    assert [h["scale"] for h in coarse_only.history] == [0] * (window + 1) + [1] * 40
    # Estimates learn when coarse scales stop: after window + 1 steps, twice (the runs
    # whose coarse scale took all its steps recorded nothing).
    (entry,) = json.loads((tmp_path / "calibration.json").read_text()).values()
    assert entry["coarse_stopped"] == [window + 1, window + 1]
    # A tolerance no change can fall under changes nothing.
    tiny_tol = stylize(photo_path, painting_path, stop_tolerance=1e-30, **opts)
    assert np.array_equal(np.asarray(tiny_tol.image), np.asarray(full.image))


def test_stopping_rule_measures_change_per_step(use_tiny, photo_path, painting_path):
    """Between the two extremes: stops once the mean change over 10 steps is under T."""
    changes, prev = [], []

    def record(it):
        px = it._pixels
        if prev:
            changes.append(float((px - prev[0]).abs().mean()))
        prev[:] = [px]

    opts = dict(size=32, multiscale="off", iterations=60, seed=0)
    stylize(photo_path, painting_path, callback=record, **opts)
    window = WINDOW
    means = [sum(changes[i - window:i]) / window for i in range(window, len(changes) + 1)]
    tol = sorted(means)[len(means) // 2]  # a tolerance the run crosses somewhere in the middle
    first = next(i for i, m in enumerate(means) if m < tol)
    result = stylize(photo_path, painting_path, stop_tolerance=tol, **opts)
    assert len(result.history) == first + window + 1
