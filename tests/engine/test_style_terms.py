"""The style losses (gram, w2, sliced) in the objective and in stylize()."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from brushwork.engine.cache import Cache
from brushwork.engine.network import FeatureExtractor
from brushwork.engine.objective import Objective
from brushwork.engine.painter import stylize
from brushwork.engine.settings import Settings
from brushwork.engine.style_terms import directions, style_statistics
from brushwork.errors import BrushworkError
from brushwork.io.images import read_metadata, to_tensor
from brushwork.maths.distributions import (
    GaussianTarget,
    moment_matrix,
    resample_sorted,
    sliced_loss,
    sorted_projections,
    w2_squared,
)
from brushwork.maths.strength import STYLE_LOSS_SCALES
from conftest import painting_array, photo_array

FAST = dict(size=32, iterations=15, multiscale="off", seed=1)


@pytest.mark.parametrize("loss", ["w2", "sliced"])
def test_the_objective_is_the_pure_functions(tiny, loss):
    s = Settings(content_layers=("relu3_1",), style_layers=("relu1_1", "relu2_1"),
                 style_layer_weights=(0.3, 0.7), style_weight=5.0, style_loss=loss)
    net = FeatureExtractor(tiny, ["relu3_1", "relu1_1", "relu2_1"])
    photo = to_tensor(Image.fromarray(photo_array(32, 32)))
    style = to_tensor(Image.fromarray(painting_array(24, 40)))
    obj = Objective.for_styles(net, s, photo, [style])
    x = torch.rand_like(photo) * 255
    fx, fs = net(x), net(style)
    want = 0.0
    for i, (w, n) in enumerate(zip((0.3, 0.7), ("relu1_1", "relu2_1"), strict=True)):
        if loss == "w2":
            term = w2_squared(moment_matrix(fx[n]), GaussianTarget.fit(moment_matrix(fs[n])))
        else:  # the painting's 960 positions resampled to the picture's 1024 (or 256)
            d = directions(s, i, fx[n].shape[1])
            target = resample_sorted(sorted_projections(fs[n], d),
                                     fx[n].shape[-1] * fx[n].shape[-2])
            term = sliced_loss(fx[n], d, target)
        want += w * STYLE_LOSS_SCALES[loss] * float(term)
    assert obj(x)["style"].item() == pytest.approx(5.0 * want, rel=1e-4)


def test_sliced_directions_follow_the_seed_and_the_layer():
    a, b = Settings(seed=3, style_loss="sliced"), Settings(seed=4, style_loss="sliced")
    torch.testing.assert_close(directions(a, 0, 8), directions(a, 0, 8))
    assert not torch.equal(directions(a, 0, 8), directions(b, 0, 8))
    assert not torch.equal(directions(a, 0, 8), directions(a, 1, 8))


@pytest.mark.parametrize("loss", ["w2", "sliced"])
def test_stylize_lowers_each_style_loss_and_records_it(use_tiny, photo_path, painting_path,
                                                       tmp_path, loss):
    steps = []
    result = stylize(photo_path, painting_path, callback=steps.append, style_loss=loss,
                     **FAST)
    assert steps[-1].losses["style"] < 0.7 * steps[0].losses["style"]
    assert np.asarray(result.image).std() > 5
    out = tmp_path / "out.png"
    result.save(out)
    assert read_metadata(out)["settings"]["style_loss"] == loss


def test_a_sliced_loss_that_would_be_tiled_is_refused_before_painting(
        use_tiny, photo_path, painting_path):
    called = []
    with pytest.raises(BrushworkError, match=r"^style_loss sliced cannot be painted in tiles "
                       r".*the 272x218 scale to fit its memory budget; use style_loss w2"):
        stylize(photo_path, painting_path, style_loss="sliced", size=272, tile_size=80,
                multiscale="off", iterations=2, callback=called.append)
    assert called == []


def test_a_sliced_loss_takes_no_masks(use_tiny, photo_path, painting_path, tmp_path):
    mask = tmp_path / "m.png"
    Image.new("L", (40, 32), 255).save(mask)
    with pytest.raises(BrushworkError, match="style_loss sliced takes no style masks"):
        stylize(photo_path, painting_path, style_loss="sliced", style_masks=(str(mask),),
                **FAST)


def test_w2_with_a_mask_covering_everything_is_the_unmasked_objective(tiny):
    s = Settings(style_loss="w2")
    net = FeatureExtractor(tiny, s.content_layers + s.style_layers)
    photo = to_tensor(Image.fromarray(photo_array(40, 32)))
    style = to_tensor(Image.fromarray(painting_array(36, 36)))
    whole = Objective.for_styles(net, s, photo, [style])
    masked = Objective.for_styles(net, s, photo, [style], masks=torch.ones(1, 1, 32, 40))
    x = torch.rand_like(photo) * 255
    assert masked(x)["style"].item() == pytest.approx(whole(x)["style"].item(), rel=1e-4)


def test_style_targets_are_cached_per_loss(use_tiny, photo_path, painting_path):
    cache = Cache()
    opts = dict(size=32, iterations=2, multiscale="off")
    stylize(photo_path, painting_path, cache=cache, **opts)
    stylize(photo_path, painting_path, cache=cache, style_loss="w2", **opts)
    stylize(photo_path, painting_path, cache=cache, style_loss="w2", **opts)
    assert cache.target_misses == 2 and cache.target_hits == 1
    stylize(photo_path, painting_path, cache=cache, style_loss="sliced", seed=1, **opts)
    stylize(photo_path, painting_path, cache=cache, style_loss="sliced", seed=2, **opts)
    assert cache.target_misses == 4  # the seed draws the directions


def test_w2_statistics_are_moment_matrices_per_position(tiny):
    s = Settings(style_loss="w2", style_layers=("relu1_1",), content_layers=("relu2_1",))
    net = FeatureExtractor(tiny, ["relu1_1", "relu2_1"])
    style = to_tensor(Image.fromarray(painting_array(20, 10)))
    (stat,) = style_statistics(net, style, s)
    assert stat[-1, -1].item() == pytest.approx(1.0)
    torch.testing.assert_close(stat, moment_matrix(net(style)["relu1_1"]) / 200)
