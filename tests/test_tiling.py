"""Tiled evaluation equals the whole picture's objective and gradient."""

from __future__ import annotations

import pytest
import torch

from brushwork.errors import BrushworkError
from brushwork.layers import layer_names
from brushwork.objective import Objective, style_grams
from brushwork.settings import Settings
from brushwork.tiling import (
    TiledObjective,
    plan_tiles,
    receptive_radius,
    strides,
    tile_geometry,
    tiled_style_grams,
)
from brushwork.vgg import FeatureExtractor
from conftest import tiny_weights


def test_receptive_radius_and_strides_of_vgg16_by_hand():
    steps = layer_names("vgg16")
    upto = steps[: steps.index("relu5_1") + 1]
    # convs: 2 at stride 1, 2 at 2, 3 at 4, 3 at 8, 1 at 16 = 58; pools: 1+2+4+8 = 15.
    assert receptive_radius(upto) == 73
    assert strides(upto)["relu5_1"] == 16 and strides(upto)["pool1"] == 2
    assert strides(upto)["relu1_1"] == 1
    net = FeatureExtractor(tiny_weights(), ["relu5_1"])
    assert tile_geometry(net) == (80, 16)  # 73 rounded up to the stride


def test_tiles_cover_the_picture_once_and_start_on_the_grid():
    tiles = plan_tiles(100, 70, 32, 16, 16)
    owned = torch.zeros(100, 70, dtype=torch.int32)
    for t in tiles:
        owned[t.y0:t.y1, t.x0:t.x1] += 1
        assert t.by0 % 16 == 0 and t.bx0 % 16 == 0
        assert t.by0 == max(0, t.y0 - 16) and t.by1 == min(100, t.y1 + 16)
    assert bool((owned == 1).all())
    assert len(tiles) == 4 * 3
    with pytest.raises(BrushworkError, match="multiples of 16"):
        plan_tiles(100, 70, 40, 16, 16)


CASES = [
    {},
    {"content_norm": "mean", "style_norm": "mean", "pooling": "avg"},
    {"style_layers": ("relu1_1", "pool3", "conv4_1"), "content_layers": ("relu2_1",),
     "style_norm": "keras", "tv_weight": 1.0, "content_norm": "sum"},
]


@pytest.mark.parametrize("options", CASES, ids=["defaults", "mean-avg", "pooled-keras"])
def test_tiled_objective_equals_the_whole_one(options, device):
    """Odd sizes, so tile edges do not divide the picture evenly."""
    s = Settings(**options)
    net = FeatureExtractor(tiny_weights(), s.content_layers + s.style_layers,
                           s.pooling).to(device)
    g = torch.Generator().manual_seed(4)
    photo = (torch.rand(1, 3, 197, 230, generator=g) * 255).to(device)
    style = (torch.rand(1, 3, 120, 100, generator=g) * 255).to(device)
    targets = style_grams(net, style, s.style_layers)
    whole = Objective(net, s, photo, targets)
    tiled = TiledObjective(net, s, photo, targets, tile=48)
    assert len(tiled.tiles) == 5 * 5
    x = (torch.rand(1, 3, 197, 230, generator=g) * 255).to(device)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    want, got = whole(a), tiled(b)
    (want["total"] + 2 * want["content"]).backward()
    (got["total"] + 2 * got["content"]).backward()
    for key in ("content", "style", "tv", "total"):
        assert got[key].item() == pytest.approx(want[key].item(), rel=1e-4)
    assert float((a.grad - b.grad).abs().max()) < 1e-4 * float(a.grad.abs().max())


def test_tiled_style_targets_equal_whole_ones():
    s = Settings()
    net = FeatureExtractor(tiny_weights(), s.content_layers + s.style_layers)
    style = torch.rand(1, 3, 150, 131, generator=torch.Generator().manual_seed(5)) * 255
    whole = style_grams(net, style, s.style_layers)
    tiled = tiled_style_grams(net, style, s.style_layers, tile=32)
    for w, t in zip(whole, tiled, strict=True):
        torch.testing.assert_close(t, w, rtol=1e-4, atol=1e-4 * float(w.abs().max()))
