"""--photoreal in the objective (whole and in tiles), after painting, and end to end."""

from __future__ import annotations

import pytest
import torch

from brushwork.engine.network import FeatureExtractor
from brushwork.engine.objective import Objective, style_grams
from brushwork.engine.settings import Settings
from brushwork.engine.tiling import TiledObjective
from brushwork.errors import BrushworkError
from brushwork.maths.photoreal import MATTING_SCALE, matting_energy
from conftest import tiny_weights


def _setup(size: tuple[int, int] = (97, 110), **options):
    s = Settings(**options)
    net = FeatureExtractor(tiny_weights(), s.content_layers + s.style_layers)
    g = torch.Generator().manual_seed(7)
    photo = torch.rand(1, 3, *size, generator=g) * 255
    style = torch.rand(1, 3, 60, 50, generator=g) * 255
    x = torch.rand(1, 3, *size, generator=g) * 255
    return s, net, photo, style_grams(net, style, s.style_layers), x


@pytest.mark.parametrize("method", ["off", "filter"])
def test_the_term_is_zero_unless_the_method_optimises_it(method):
    s, net, photo, targets, x = _setup(photoreal=method)
    assert float(Objective(net, s, photo, targets)(x)["matting"]) == 0


def test_the_term_is_the_weighted_matting_energy_and_joins_the_total():
    s, net, photo, targets, x = _setup(photoreal="both", matting_weight=0.5)
    terms = Objective(net, s, photo, targets)(x)
    want = 0.5 * MATTING_SCALE * float(matting_energy(x, photo))
    assert float(terms["matting"]) == pytest.approx(want, rel=1e-5)
    parts = sum(float(terms[k]) for k in ("content", "style", "tv", "structure", "matting"))
    assert float(terms["total"]) == pytest.approx(parts, rel=1e-6)


def test_tiled_equals_whole_with_the_matting_term():
    s, net, photo, targets, x = _setup(size=(197, 230), photoreal="matting")
    whole = Objective(net, s, photo, targets)
    tiled = TiledObjective(net, s, photo, targets, tile=16)
    assert len(tiled.tiles) >= 9
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    want, got = whole(a), tiled(b)
    want["total"].backward()
    got["total"].backward()
    assert want["matting"].item() > 0
    for key in ("content", "style", "matting", "total"):
        assert got[key].item() == pytest.approx(want[key].item(), rel=1e-4)
    assert a.grad is not None and b.grad is not None
    assert float((a.grad - b.grad).abs().max()) < 1e-4 * float(a.grad.abs().max())


def test_the_settings_refuse_an_unknown_method_and_a_negative_weight():
    with pytest.raises(BrushworkError, match="photoreal must be one of off, matting, filter"):
        Settings(photoreal="paint")
    with pytest.raises(BrushworkError, match="matting_weight must be a non-negative"):
        Settings(matting_weight=-1.0)


def test_a_bare_flag_means_the_chosen_method():
    from brushwork.commands.options import settings_from_args
    from brushwork.commands.parser import build_parser
    from brushwork.maths.photoreal import PHOTOREAL_BARE

    def parse(*flags: str):
        args = build_parser().parse_args(["stylize", "c.png", "s.png", "-o", "o.png", *flags])
        return settings_from_args(args)

    assert parse("--photoreal") == {"photoreal": PHOTOREAL_BARE}
    assert parse("--photoreal", "filter") == {"photoreal": "filter"}
    assert parse() == {}


@pytest.fixture
def run_inputs(use_tiny, photo_path, painting_path):
    return photo_path, painting_path


def _energy(result, photo_path) -> float:
    from brushwork.io.images import load_image, resize_to, to_tensor

    photo = to_tensor(resize_to(load_image(photo_path), result.image.size))
    return float(matting_energy(to_tensor(result.image), photo))


RUN = {"size": 40, "iterations": 25, "multiscale": "off", "seed": 2}


@pytest.mark.parametrize("method", ["matting", "filter", "both"])
def test_a_photoreal_result_has_far_less_matting_energy(run_inputs, method):
    import brushwork

    photo_path, painting_path = run_inputs
    plain = brushwork.stylize(photo_path, painting_path, **RUN)
    real = brushwork.stylize(photo_path, painting_path, photoreal=method, **RUN)
    assert real.settings["photoreal"] == method
    assert (real.losses["matting"] > 0) == (method != "filter")
    assert _energy(real, photo_path) < 0.1 * _energy(plain, photo_path)


def test_photoreal_follows_the_style_masks(run_inputs, tmp_path):
    """A masked run with --photoreal: the regions still get their own styles, and the
    picture stays close to locally affine in the photo."""
    from PIL import Image

    import brushwork

    photo_path, painting_path = run_inputs
    left = Image.new("L", (40, 32), 0)  # the test photo's shape
    left.paste(255, (0, 0, 20, 32))
    right = Image.eval(left, lambda v: 255 - v)
    masks = []
    for name, image in (("left.png", left), ("right.png", right)):
        image.save(tmp_path / name)
        masks.append(str(tmp_path / name))
    red, blue = Image.new("RGB", (40, 40), (220, 40, 30)), Image.new("RGB", (40, 40),
                                                                       (30, 60, 220))
    options = {**RUN, "iterations": 40, "style_masks": tuple(masks)}
    plain = brushwork.stylize(photo_path, [red, blue], **options)
    real = brushwork.stylize(photo_path, [red, blue], photoreal="matting", **options)
    from brushwork.io.images import load_image, resize_to, to_tensor

    photo = to_tensor(resize_to(load_image(photo_path), real.image.size))
    change = to_tensor(real.image) - photo  # (1, 3, 32, 40)
    redder = change[0, 0, :, :16].mean() - change[0, 2, :, :16].mean()
    bluer = change[0, 2, :, 24:].mean() - change[0, 0, :, 24:].mean()
    assert float(redder) > 1 and float(bluer) > 1, (float(redder), float(bluer))
    assert _energy(real, photo_path) < 0.2 * _energy(plain, photo_path)
