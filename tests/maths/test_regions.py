"""Which style goes where: guided Gram matrices, masks per layer, and reading masks."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from brushwork.commands import main
from brushwork.engine.network import FeatureExtractor
from brushwork.engine.objective import Objective, style_grams, style_targets
from brushwork.engine.settings import Settings
from brushwork.engine.tiling import receptive_radius
from brushwork.errors import BrushworkError
from brushwork.io.images import read_metadata
from brushwork.io.masks import check_aspect, parse_color, regions_of_map
from brushwork.maths.losses import gram
from brushwork.maths.regions import guided_grams, layer_masks, recolour_by_region, split_regions
from conftest import tiny_weights

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def _net(s: Settings) -> FeatureExtractor:
    return FeatureExtractor(tiny_weights(), s.content_layers + s.style_layers, s.pooling)


def _halves(h: int, w: int, cut: int) -> torch.Tensor:
    left = torch.zeros(1, 1, h, w)
    left[..., :cut] = 1.0
    return torch.cat([left, 1 - left])


# -- the maths -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["resize", "inside"])
def test_masks_reach_each_layer_on_its_grid(mode):
    net = _net(Settings())
    x = torch.rand(1, 3, 37, 53) * 255
    feats = net(x)
    ones = layer_masks(torch.ones(1, 1, 37, 53), net.steps, LAYERS, mode)
    for name, m in zip(LAYERS, ones, strict=True):
        assert m.shape[-2:] == feats[name].shape[-2:]
        assert torch.equal(m, torch.ones_like(m))  # the picture's border erodes nothing


def test_resized_masks_average_and_inside_masks_erode_by_hand():
    steps = ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1", "relu2_1"]
    mask = torch.zeros(1, 1, 8, 12)
    mask[..., :7] = 1.0  # columns 0-6
    resized = layer_masks(mask, steps, ["relu1_1", "relu2_1"], "resize")
    assert torch.equal(resized[0], mask)
    # After the 2x2 pooling: pooled columns 0-2 whole, 3 half (6 in, 7 out), the rest out.
    assert resized[1][0, 0, 0].tolist() == [1, 1, 1, 0.5, 0, 0]
    inside = layer_masks(mask, steps, ["relu1_1", "relu2_1"], "inside")
    # conv1_1 sees one column further: column 6 sees column 7.
    assert inside[0][0, 0, 0].tolist() == [1] * 6 + [0] * 6
    # conv1_2 leaves columns 0-4; pool1 keeps pooled columns 0 and 1 (2 reads column 5);
    # conv2_1 takes pooled column 1 (it sees 2), and erodes nothing at the picture's edge.
    assert inside[1][0, 0, 0].tolist() == [1, 0, 0, 0, 0, 0]


def test_guided_gram_is_the_gram_of_the_region_and_soft_masks_split_it():
    f = torch.rand(1, 4, 6, 10)
    roots = _halves(6, 10, 3)
    g = guided_grams(f, roots)
    assert g.shape == (2, 4, 4)
    torch.testing.assert_close(g[0], gram(f[..., :3].contiguous())[0])
    torch.testing.assert_close(g[1], gram(f[..., 3:].contiguous())[0])
    # Soft masks that add up to 1: the regions' Gram matrices add up to the whole one.
    soft = torch.rand(1, 1, 6, 10)
    parts = guided_grams(f, torch.cat([soft, 1 - soft]).sqrt())
    torch.testing.assert_close(parts.sum(0), gram(f)[0])
    # An empty region: zeros, not NaN.
    assert torch.equal(guided_grams(f, torch.zeros(1, 1, 6, 10))[0], torch.zeros(4, 4))


def test_one_region_over_everything_is_the_unmasked_objective():
    s = Settings(content_weight=1.0, style_weight=1e4)
    net = _net(s)
    g = torch.Generator().manual_seed(0)
    photo, style = torch.rand(1, 3, 40, 33, generator=g) * 255, torch.rand(
        1, 3, 30, 30, generator=g) * 255
    plain = Objective.for_styles(net, s, photo, [style])
    masked = Objective.for_styles(net, s, photo, [style], masks=torch.ones(1, 1, 40, 33))
    x = torch.rand(1, 3, 40, 33, generator=g) * 255
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    want, got = plain(a), masked(b)
    want["total"].backward()
    got["total"].backward()
    assert got["style"].item() == pytest.approx(want["style"].item(), rel=1e-5)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-4 * float(a.grad.abs().max()))


def test_split_regions_cover_each_region_twice_with_its_target():
    masks = _halves(6, 8, 3)
    fresh = torch.zeros(1, 1, 6, 8)
    fresh[..., 2:5, 1:6] = 0.75
    targets = [torch.arange(8.0).view(2, 2, 2)]
    out, got, weights = split_regions(masks, targets, [2.0, 0.5], fresh)
    assert out.shape == (4, 1, 6, 8) and weights == [2.0, 0.5, 2.0, 0.5]
    torch.testing.assert_close(out[:2] + out[2:], masks)  # each region, split in two
    torch.testing.assert_close(out[2:], masks * fresh)
    torch.testing.assert_close(got[0], torch.cat([targets[0], targets[0]]))


def _one_region(s, net, photo, style, fresh):
    """The whole picture as one region, split by ``fresh``, as the engine builds it."""
    grams = [style_grams(net, style, s.style_layers)]
    return Objective(net, s, photo, *style_targets(grams, [1.0], fresh=fresh))


def test_nothing_fresh_is_the_plain_objective_and_a_fresh_patch_is_pulled_harder():
    s = Settings(content_weight=0.0, style_weight=1e4)
    net = _net(s)
    g = torch.Generator().manual_seed(3)
    h, w = 64, 64
    photo, style = torch.rand(1, 3, h, w, generator=g) * 255, torch.rand(
        1, 3, 48, 48, generator=g) * 255
    x = torch.rand(1, 3, h, w, generator=g) * 255

    def grad(objective):
        y = x.clone().requires_grad_(True)
        objective(y)["style"].backward()
        return y.grad

    plain = grad(Objective.for_styles(net, s, photo, [style]))
    none = grad(_one_region(s, net, photo, style, torch.zeros(1, 1, h, w)))
    torch.testing.assert_close(none, plain, rtol=1e-4, atol=1e-4 * float(plain.abs().max()))
    # A patch of 1/16 of the picture, new: its Gram matrices are its own, so its pixels
    # are pulled towards the painting several times harder than through the whole
    # picture's (where its mismatch counts by its share); the rest about as before.
    fresh = torch.zeros(1, 1, h, w)
    fresh[..., 24:40, 24:40] = 1.0
    split = grad(_one_region(s, net, photo, style, fresh))
    inside = (..., slice(28, 36), slice(28, 36))
    ratio = float(split[inside].abs().mean() / plain[inside].abs().mean())
    assert ratio > 2.5, ratio
    outside = (..., slice(0, 16), slice(0, 64))
    far = float(split[outside].abs().mean() / plain[outside].abs().mean())
    assert 0.5 < far < 2, far


def _style_grad(s, photo, styles, masks, x, weights=None):
    net = _net(s)
    objective = Objective.for_styles(net, s, photo, styles, weights, masks=masks)
    x = x.clone().requires_grad_(True)
    objective(x)["style"].backward()
    return x.grad


def test_a_region_gets_style_gradient_only_from_its_own_painting():
    s = Settings(mask_mode="inside")
    g = torch.Generator().manual_seed(1)
    h, w, cut = 40, 200, 100
    photo = torch.rand(1, 3, h, w, generator=g) * 255
    a, b, c = (torch.rand(1, 3, 36, 36, generator=g) * 255 for _ in range(3))
    x = torch.rand(1, 3, h, w, generator=g) * 255
    masks = _halves(h, w, cut)
    # Only style a's term (style b's region weighted 0): no gradient at all in b's half,
    # since each position of a's guided Gram sees only pixels of a's half.
    only_a = _style_grad(s, photo, [a, b], masks, x, weights=[1.0, 0.0])
    assert float(only_a[..., :cut].abs().max()) > 0
    assert float(only_a[..., cut:].abs().max()) == 0.0
    # So the left half's gradient is the same whatever the right half's painting is.
    with_b = _style_grad(s, photo, [a, b], masks, x)
    with_c = _style_grad(s, photo, [a, c], masks, x)
    torch.testing.assert_close(with_b[..., :cut], with_c[..., :cut])
    assert not torch.allclose(with_b[..., cut:], with_c[..., cut:])


def test_resized_masks_leak_only_within_the_receptive_field():
    s = Settings()
    net = _net(s)
    radius = receptive_radius(net.steps)
    g = torch.Generator().manual_seed(2)
    h, w, cut = 24, 260, 90
    photo = torch.rand(1, 3, h, w, generator=g) * 255
    a, b = (torch.rand(1, 3, 30, 30, generator=g) * 255 for _ in range(2))
    x = torch.rand(1, 3, h, w, generator=g) * 255
    only_a = _style_grad(s, photo, [a, b], _halves(h, w, cut), x, weights=[1.0, 0.0])
    # Positions of the first region see up to the deepest layer's radius, plus the
    # grid cell a border position is averaged over, into the other.
    assert float(only_a[..., cut + radius + 16:].abs().max()) == 0.0
    assert float(only_a[..., :cut].abs().max()) > 0


def test_a_zero_mask_gives_no_style_gradient_there():
    s = Settings(mask_mode="inside")
    g = torch.Generator().manual_seed(3)
    photo = torch.rand(1, 3, 48, 64, generator=g) * 255
    style = torch.rand(1, 3, 30, 30, generator=g) * 255
    mask = torch.zeros(1, 1, 48, 64)
    mask[..., 10:40, 8:30] = 1.0
    grad = _style_grad(s, photo, [style], mask, torch.rand(1, 3, 48, 64, generator=g) * 255)
    outside = grad.clone()
    outside[..., 10:40, 8:30] = 0
    assert float(outside.abs().max()) == 0.0
    assert float(grad[..., 10:40, 8:30].abs().max()) > 0


def test_region_weights_follow_the_style_weights():
    s = Settings()
    net = _net(s)
    g = torch.Generator().manual_seed(4)
    photo = torch.rand(1, 3, 32, 32, generator=g) * 255
    styles = [torch.rand(1, 3, 30, 30, generator=g) * 255 for _ in range(2)]
    masks = _halves(32, 32, 16)
    equal = Objective.for_styles(net, s, photo, styles, masks=masks)
    tilted = Objective.for_styles(net, s, photo, styles, [3.0, 1.0], masks=masks)
    assert equal.region_weights == [1.0, 1.0]
    assert tilted.region_weights == [1.5, 0.5]
    torch.testing.assert_close(equal.gram_0[1], style_grams(net, styles[1], s.style_layers)[0])


def test_each_region_is_recoloured_to_its_own_painting():
    photo = torch.full((1, 3, 4, 6), 100.0)
    red, blue = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    red[:, 0], blue[:, 2] = 200.0, 200.0
    masks = _halves(4, 6, 2)
    masks[1, ..., 5] = 0  # the last column is in no region

    def paint(source, target):  # a stand-in colour transfer: the target's mean colour
        return target.mean(dim=(2, 3), keepdim=True).expand_as(source)

    out = recolour_by_region(photo, [red, blue], masks, paint)
    assert out[0, :, 0, 0].tolist() == [200, 0, 0]
    assert out[0, :, 0, 3].tolist() == [0, 0, 200]
    assert out[0, :, 0, 5].tolist() == [100, 100, 100]


# -- reading masks -------------------------------------------------------------------------


def test_colours_parse_and_map_regions_take_the_nearest_listed_colour():
    assert parse_color("#FF0080") == (255, 0, 128) and parse_color("00ff00") == (0, 255, 0)
    with pytest.raises(BrushworkError, match="not a colour like #ff0000"):
        parse_color("red")
    rgb = np.array([[[250, 5, 0], [0, 0, 255], [128, 0, 128], [255, 255, 255]]], np.float32)
    regions = regions_of_map(rgb, np.array([[255, 0, 0], [0, 0, 255]], np.float32))
    # JPEG-ish red is red; purple is within reach of neither; white keeps the photo.
    assert regions[0, 0].tolist() == [True, False, False, False]
    assert regions[1, 0].tolist() == [False, True, False, False]


def test_aspect_check_says_what_was_expected():
    check_aspect((320, 240), (640, 480), "m")
    check_aspect((321, 240), (640, 480), "m")  # a pixel of rounding
    with pytest.raises(BrushworkError, match=r"m is 300x300 .* photo is 640x480 .* e\.g\. "
                                             r"300x225 or 640x480"):
        check_aspect((300, 300), (640, 480), "m")


def test_settings_check_the_region_options():
    with pytest.raises(BrushworkError, match="not both"):
        Settings(style_masks=("a.png",), region_map="m.png", region_colors=("#ff0000",))
    with pytest.raises(BrushworkError, match="region_colors needs region_map"):
        Settings(region_colors=("#ff0000",))
    with pytest.raises(BrushworkError, match="region_map needs region_colors"):
        Settings(region_map="m.png")
    with pytest.raises(BrushworkError, match="'blue' is not a colour"):
        Settings(region_map="m.png", region_colors=("blue",))
    with pytest.raises(BrushworkError, match="mask_mode must be one of resize, inside"):
        Settings(mask_mode="erode")


# -- the run and the command line ----------------------------------------------------------


@pytest.fixture(autouse=True)
def calibrated(monkeypatch):
    """A fixed calibration: measuring this machine for each test's network takes half a
    minute, and no test here is about the plan."""
    from brushwork.engine.memory import calibration

    known = calibration.Calibration(device="cpu", resident_bytes=0.0,
                               eval_bytes=calibration.Line(0.0, 1000.0),
                               eval_seconds=calibration.Line(0.0, 1e-6), forward_share=0.3)
    monkeypatch.setattr(calibration, "calibration_for", lambda *a, **k: known)

FAST = ["--size", "32", "--iterations", "3", "--multiscale", "off", "--quiet"]


def _save(path, array):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def split(tmp_path):
    """Masks for the 40x32 photo: the left 16 columns and the rest."""
    left = np.zeros((32, 40), np.uint8)
    left[:, :16] = 255
    return _save(tmp_path / "left.png", left), _save(tmp_path / "right.png", 255 - left)


def _stylize(capsys, model, *argv):
    code = main(["stylize", *map(str, argv), "--model", str(model), *FAST])
    _, err = capsys.readouterr()
    return code, err


def test_stylize_with_masks_records_them(capsys, tiny_model_file, photo_path, painting_path,
                                         split, tmp_path):
    out = tmp_path / "out.png"
    code, err = _stylize(capsys, tiny_model_file, photo_path, painting_path, painting_path,
                         "-o", out, "--style-masks", f"{split[0]},{split[1]}")
    assert code == 0, err
    assert read_metadata(out)["settings"]["style_masks"] == [str(split[0]), str(split[1])]


@pytest.mark.parametrize("options", [
    {"tile_size": 80, "multiscale": "on", "min_size": 160, "size": 320},
    {"preserve_colors": "histogram-to-style", "mask_mode": "inside"},
    {"preserve_colors": "luminance", "style_weights": (2.0, 1.0)},
], ids=["tiled-multiscale", "histogram-inside", "luminance-weights"])
def test_masked_runs_with_the_other_options(use_tiny, photo_path, painting_path, split, options):
    from brushwork import stylize

    options = {"size": 40, **options}
    result = stylize(photo_path, [painting_path, painting_path], iterations=2,
                     style_masks=[str(p) for p in split], seed=0, **options)
    assert result.image.size == (options["size"], options["size"] * 4 // 5)
    assert np.isfinite(result.losses["total"])


def test_a_colour_map_paints_like_the_masks_it_codes(use_tiny, photo_path, painting_path,
                                                      split, tmp_path):
    from brushwork import stylize

    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[:, :16] = (255, 0, 0)
    rgb[:, 16:] = (0, 0, 255)
    region_map = _save(tmp_path / "map.png", rgb)
    common = {"size": 40, "iterations": 3, "seed": 0, "multiscale": "off"}
    by_map = stylize(photo_path, [painting_path, photo_path], region_map=str(region_map),
                     region_colors=["#ff0000", "#0000ff"], **common)
    by_masks = stylize(photo_path, [painting_path, photo_path],
                       style_masks=[str(p) for p in split], **common)
    assert np.array_equal(np.asarray(by_map.image), np.asarray(by_masks.image))


def test_mask_notes_are_logged(use_tiny, photo_path, painting_path, tmp_path):
    from brushwork import stylize

    white = _save(tmp_path / "white.png", np.full((16, 20), 255))
    said: list[str] = []
    stylize(photo_path, painting_path, size=32, iterations=1, multiscale="off",
            style_masks=[str(white)], log=said.append)
    assert any("is all white: style 1 paints the whole picture" in m for m in said)


def _bad_inputs(tmp_path, split):
    left, right = split
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    square = _save(tmp_path / "square.png", np.zeros((40, 40)))
    black = _save(tmp_path / "black.png", np.zeros((32, 40)))
    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[:, :16] = (255, 0, 0)
    region_map = _save(tmp_path / "map.png", rgb)
    return [
        (["--style-masks", f"{left},{text}"], r"style mask 2 image .*notes\.txt' is not an image"),
        (["--style-masks", str(left)], "--style-masks has 1 mask for 2 style images"),
        (["--style-masks", f"{left},{square}"],
         r"style mask 2 .* is 40x40 .* photo is 40x32 .* e\.g\. 40x32"),
        (["--style-masks", f"{left},{black}"], "style mask 2 .* is all black"),
        (["--region-map", str(region_map), "--region-colors", "#ff0000,#00ff00"],
         r"region colour #00ff00 \(style 2\) is nowhere in the region map .*#000000 \(60%\), "
         r"#ff0000 \(40%\)"),
        (["--region-map", str(region_map), "--region-colors", "#ff0000"],
         "--region-colors has 1 colour for 2 style images"),
        (["--region-map", str(region_map)], "region_map needs region_colors"),
        (["--style-masks", f"{left},{right}", "--region-map", str(region_map),
          "--region-colors", "#ff0000,#0000ff"], "not both"),
    ]


def test_bad_masks_are_one_line_errors_and_nothing_is_written(capsys, tiny_model_file,
                                                               photo_path, painting_path,
                                                               split, tmp_path):
    out = tmp_path / "out.png"
    for extra, pattern in _bad_inputs(tmp_path, split):
        before = sorted(p.name for p in tmp_path.iterdir())
        code, err = _stylize(capsys, tiny_model_file, photo_path, painting_path, painting_path,
                             "-o", out, *extra)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1, err
        assert lines[0].startswith("brushwork: error: "), err
        assert re.search(pattern, lines[0]), lines[0]
        assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_sweep_checks_the_masks_before_its_first_cell(capsys, tiny_model_file, photo_path,
                                                         painting_path, split, tmp_path):
    sheet = tmp_path / "sheet.png"
    code = main(["sweep", str(photo_path), str(painting_path), str(painting_path), "-o",
                     str(sheet), "--model", str(tiny_model_file), "--style-weight", "1e3,1e4",
                     "--style-masks", str(split[0]), *FAST[:4], "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "--style-masks has 1 mask for 2 style images" in err
    assert not sheet.exists()

