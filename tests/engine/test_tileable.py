"""--tileable: the network on a torus, its sizes, and its tiles."""

from __future__ import annotations

import pytest
import torch

from brushwork.engine.network import FeatureExtractor
from brushwork.engine.objective import Objective, style_grams
from brushwork.engine.pyramid import scales, tileable_size
from brushwork.engine.settings import Settings
from brushwork.engine.tiling import TiledObjective, plan_tiles, tile_geometry
from brushwork.errors import BrushworkError
from conftest import tiny_weights

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_on_a_torus_rolling_the_picture_rolls_every_layer(pooling):
    """Shift by whole strides: relu5_1's features shift by one position per 16 px,
    exactly.  With zero padding the edges differ."""
    net = FeatureExtractor(tiny_weights(), LAYERS, pooling)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 64, 80, generator=g) * 255
    shifted = x.roll((16, 32), (-2, -1))
    a, b = net(x, wrap=True), net(shifted, wrap=True)
    strides = {"relu1_1": 1, "relu2_1": 2, "relu3_1": 4, "relu4_1": 8, "relu5_1": 16}
    for name, stride in strides.items():
        want = a[name].roll((16 // stride, 32 // stride), (-2, -1))
        assert torch.allclose(b[name], want, atol=1e-4 * float(want.abs().max())), name
    flat_a, flat_b = net(x), net(shifted)
    want = flat_a["relu5_1"].roll((1, 2), (-2, -1))
    assert not torch.allclose(flat_b["relu5_1"], want, atol=1e-3 * float(want.abs().max()))


def test_a_torus_needs_sides_on_the_deepest_stride():
    net = FeatureExtractor(tiny_weights(), LAYERS)
    assert net.stride() == 16
    with pytest.raises(BrushworkError, match="multiple of 16 px on each side, not 40x32"):
        net(torch.zeros(1, 3, 32, 40), wrap=True)
    shallow = FeatureExtractor(tiny_weights(), ("relu2_1",))
    assert shallow(torch.zeros(1, 3, 6, 10), wrap=True)["relu2_1"].shape[-2:] == (3, 5)


def test_tileable_sizes_are_rounded_at_every_scale():
    assert tileable_size((300, 200)) == (304, 208)
    assert tileable_size((5, 90)) == (16, 96)
    s = Settings(size=300, tileable=True, multiscale="on", min_size=70)
    sizes = [sc.size for sc in scales(s, (300, 200))]
    assert sizes == [(80, 48), (144, 96), (304, 208)]
    assert all(w % 16 == 0 and h % 16 == 0 for w, h in sizes)
    flat = [sc.size for sc in scales(Settings(size=300, multiscale="on", min_size=70),
                                     (300, 200))]
    assert flat == [(75, 50), (150, 100), (300, 200)]


def test_tileable_refuses_regions():
    with pytest.raises(BrushworkError, match="tileable takes no style_masks or region_map"):
        Settings(tileable=True, style_masks=("a.png",))
    with pytest.raises(BrushworkError, match="tileable must be True or False"):
        Settings(tileable="yes")


def test_wrapped_tiles_cover_the_torus_once_with_boxes_of_one_shape():
    tiles = plan_tiles(96, 64, 32, 16, 16, wrap=True)
    assert sorted({(t.y0, t.y1, t.by0, t.by1) for t in tiles}) == [
        (0, 32, -16, 48), (32, 64, 16, 80), (64, 96, 48, 112)]
    assert sorted({(t.x0, t.x1, t.bx0, t.bx1) for t in tiles}) == [
        (0, 32, -16, 48), (32, 64, 16, 80)]
    # 90 px in 3 tiles: 30 rounded up to the grid, 32 + 32 + 26, boxes of one length.
    assert sorted({(t.y0, t.y1, t.by1 - t.by0) for t in plan_tiles(90, 64, 32, 16, 16, wrap=True)}
                  ) == [(0, 32, 64), (32, 64, 64), (64, 90, 64)]
    x = torch.arange(96.0).view(1, 1, 96, 1).expand(1, 1, 96, 64)
    assert tiles[0].box(x)[0, 0, :16, 0].tolist() == list(range(80, 96))  # from the bottom


@pytest.mark.parametrize("tv_weight", [0.0, 0.5])
def test_wrapped_tiles_give_the_whole_torus_objective(tv_weight):
    s = Settings(tileable=True, tv_weight=tv_weight)
    net = FeatureExtractor(tiny_weights(), s.content_layers + s.style_layers)
    halo, _ = tile_geometry(net)
    g = torch.Generator().manual_seed(4)
    photo = torch.rand(1, 3, 96, 128, generator=g) * 255
    targets = style_grams(net, torch.rand(1, 3, 64, 64, generator=g) * 255, s.style_layers)
    whole = Objective(net, s, photo, targets)
    tiled = TiledObjective(net, s, photo, targets, tile=48)
    assert len(tiled.tiles) == 6 and halo == 80  # every box reaches past two edges
    x = torch.rand(1, 3, 96, 128, generator=g) * 255
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    want, got = whole(a), tiled(b)
    (want["total"] + 2 * want["content"]).backward()
    (got["total"] + 2 * got["content"]).backward()
    for key in ("content", "style", "tv", "total"):
        assert got[key].item() == pytest.approx(want[key].item(), rel=1e-4)
    assert float((a.grad - b.grad).abs().max()) < 1e-4 * float(a.grad.abs().max())
    # The flat objective differs at the same picture: the torus is really in use.
    flat = Objective(net, Settings(tv_weight=tv_weight), photo, targets)(x)
    assert flat["style"].item() != pytest.approx(want["style"].item(), rel=1e-3)


def test_stylize_paints_a_tileable_picture_on_the_grid(use_tiny, photo_path, painting_path):
    import brushwork

    result = brushwork.stylize(photo_path, painting_path, size=48, iterations=3,
                               multiscale="on", min_size=24, tileable=True, seed=1)
    # The 40x32 photo at 48 px is 48x38, rounded to 48x32; the coarse scale's 24x19 to
    # 32x16 (the nearest multiples of 16).
    assert result.image.size == (48, 32)
    assert {(h["scale"]) for h in result.history} == {0, 1}
    assert result.settings["tileable"] is True
