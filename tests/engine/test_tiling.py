"""Tiled evaluation equals the whole picture's objective and gradient."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from brushwork.engine.network import FeatureExtractor
from brushwork.engine.objective import Objective, style_grams
from brushwork.engine.settings import Settings
from brushwork.engine.style_terms import style_statistics
from brushwork.engine.tiling import (
    TiledObjective,
    _spans,
    plan_tiles,
    receptive_radius,
    strides,
    tile_geometry,
    tiled_style_grams,
)
from brushwork.errors import BrushworkError
from brushwork.maths.layers import layer_names
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


@given(length=st.integers(1, 3000), tile=st.integers(1, 64), halo=st.integers(0, 8),
       align=st.sampled_from([1, 2, 8, 16]))
@settings(max_examples=300, deadline=None)
def test_spans_cover_each_side_once_with_boxes_of_one_length(length, tile, halo, align):
    tile, halo = tile * align, halo * align
    spans = _spans(length, tile, halo, align)
    assert len({b1 - b0 for _, _, b0, b1 in spans}) == 1
    covered = 0
    for o0, o1, b0, b1 in spans:
        assert o0 == covered < o1  # in order, none empty, none twice
        covered = o1
        assert b0 % align == 0 and o0 % align == 0  # on the pooling grid
        assert 0 <= b0 <= max(0, o0 - halo) and min(length, o1 + halo) <= b1 <= length
        if len(spans) > 1:
            assert b1 - b0 < tile + 2 * halo + align
    assert covered == length


def test_tiles_by_hand():
    tiles = plan_tiles(100, 70, 32, 16, 16)
    # 100 px: 3 tiles owning 48, 32 and 20 px, boxes of 32 + 2 * 16 + 100 % 16 = 68 px;
    # 70 px fits one box of 32 + 2 * 16 (+ 6): one tile across.
    assert [(t.y0, t.y1, t.by0, t.by1) for t in tiles] == [
        (0, 48, 0, 68), (48, 80, 32, 100), (80, 100, 32, 100)]
    assert all((t.x0, t.x1, t.bx0, t.bx1) == (0, 70, 0, 70) for t in tiles)
    with pytest.raises(BrushworkError, match="multiples of 16"):
        plan_tiles(100, 70, 40, 16, 16)


CASES = [
    {},
    {"content_norm": "mean", "style_norm": "mean", "pooling": "avg"},
    {"style_layers": ("relu1_1", "pool3", "conv4_1"), "content_layers": ("relu2_1",),
     "style_norm": "keras", "tv_weight": 1.0, "content_norm": "sum"},
    {"style_loss": "w2"},
    {"style_loss": "w2", "style_layers": ("relu1_1", "pool3", "conv4_1"), "pooling": "avg"},
]


@pytest.mark.parametrize("options", CASES,
                         ids=["defaults", "mean-avg", "pooled-keras", "w2", "w2-pooled-avg"])
def test_tiled_objective_equals_the_whole_one(options, device):
    """Odd sizes, so tile edges do not divide the picture evenly."""
    s = Settings(**options)
    net = FeatureExtractor(tiny_weights(), s.content_layers + s.style_layers,
                           s.pooling).to(device)
    g = torch.Generator().manual_seed(4)
    photo = (torch.rand(1, 3, 197, 230, generator=g) * 255).to(device)
    style = (torch.rand(1, 3, 120, 100, generator=g) * 255).to(device)
    targets = style_statistics(net, style, s)
    whole = Objective(net, s, photo, targets)
    tiled = TiledObjective(net, s, photo, targets, tile=16)
    # Tiles both ways (3 x 5 for relu5_1's 80 px halo, more for shallower layers).
    assert len({t.y0 for t in tiled.tiles}) >= 3 and len({t.x0 for t in tiled.tiles}) >= 5
    x = (torch.rand(1, 3, 197, 230, generator=g) * 255).to(device)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    want, got = whole(a), tiled(b)
    (want["total"] + 2 * want["content"]).backward()
    (got["total"] + 2 * got["content"]).backward()
    for key in ("content", "style", "tv", "total"):
        assert got[key].item() == pytest.approx(want[key].item(), rel=1e-4)
    assert float((a.grad - b.grad).abs().max()) < 1e-4 * float(a.grad.abs().max())


@pytest.mark.parametrize("loss", ["gram", "w2"])
def test_tiled_style_targets_equal_whole_ones(loss):
    s = Settings(style_loss=loss)
    net = FeatureExtractor(tiny_weights(), s.content_layers + s.style_layers)
    style = torch.rand(1, 3, 230, 201, generator=torch.Generator().manual_seed(5)) * 255
    assert len(plan_tiles(230, 201, 16, *tile_geometry(net))) == 5 * 3
    whole = style_statistics(net, style, s)
    tiled = tiled_style_grams(net, style, s.style_layers, tile=16, loss=loss)
    if loss == "gram":
        torch.testing.assert_close(whole[0], style_grams(net, style, s.style_layers)[0])
    for w, t in zip(whole, tiled, strict=True):
        torch.testing.assert_close(t, w, rtol=1e-4, atol=1e-4 * float(w.abs().max()))


@pytest.mark.parametrize(("mode", "loss"), [("resize", "gram"), ("inside", "gram"),
                                           ("resize", "w2")])
def test_tiled_objective_with_regions_equals_the_whole_one(mode, loss, device):
    """Soft masks of two styles (and a corner in neither), each tile taking its slice."""
    s = Settings(mask_mode=mode, style_loss=loss)
    net = FeatureExtractor(tiny_weights(), s.content_layers + s.style_layers).to(device)
    g = torch.Generator().manual_seed(6)
    h, w = 197, 230
    photo = (torch.rand(1, 3, h, w, generator=g) * 255).to(device)
    styles = [(torch.rand(1, 3, 120, 100, generator=g) * 255).to(device) for _ in range(2)]
    ramp = torch.linspace(0, 1, w).clamp(0.3, 0.7).sub(0.3).div(0.4).expand(1, 1, h, w)
    masks = torch.cat([1 - ramp, ramp]).clone()
    masks[:, :, :50, :60] = 0
    masks = masks.to(device)
    whole = Objective.for_styles(net, s, photo, styles, [2.0, 1.0], masks=masks)
    targets = [torch.stack(layer) for layer in zip(
        *[style_statistics(net, t, s) for t in styles], strict=True)]
    tiled = TiledObjective(net, s, photo, targets, tile=16, masks=masks,
                           weights=whole.region_weights)
    x = (torch.rand(1, 3, h, w, generator=g) * 255).to(device)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    want, got = whole(a), tiled(b)
    want["total"].backward()
    got["total"].backward()
    for key in ("content", "style", "total"):
        assert got[key].item() == pytest.approx(want[key].item(), rel=1e-4)
    assert float((a.grad - b.grad).abs().max()) < 1e-4 * float(a.grad.abs().max())


def test_a_sliced_loss_in_tiles_is_refused_with_one_line():
    s = Settings(style_loss="sliced")
    net = FeatureExtractor(tiny_weights(), s.content_layers + s.style_layers)
    g = torch.Generator().manual_seed(7)
    photo = torch.rand(1, 3, 120, 130, generator=g) * 255
    targets = style_statistics(net, torch.rand(1, 3, 64, 64, generator=g) * 255, s)
    with pytest.raises(BrushworkError, match=r"^style_loss sliced cannot be painted in tiles "
                       r".*the 130x120 scale.*use style_loss w2 or gram") as caught:
        TiledObjective(net, s, photo, targets, tile=16)
    assert "\n" not in str(caught.value)
