"""brushwork.texture: the style terms alone, from noise; tileable ones repeat seamlessly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import brushwork
from brushwork.engine.texture import estimate_texture, texture
from brushwork.errors import BrushworkError
from brushwork.maths.torus import seam_ratio

FAST = dict(iterations=20, multiscale="off", seed=1, device="cpu", precision="fp32")


def _stripes() -> Image.Image:
    """Diagonal stripes of two colours: a texture with forms a seam would cut."""
    y, x = np.mgrid[0:64, 0:64]
    stripes = ((x + y) // 8) % 2
    return Image.fromarray(np.where(stripes[..., None] == 1, [230, 200, 40],
                                    [30, 60, 160]).astype(np.uint8))


def test_a_tileable_texture_repeats_without_a_seam_and_a_flat_one_does_not(use_tiny):
    """The issue's target: in a 2x2 repetition the steps across the seams are at most
    1.1x the inside's.  A little TV smooths the tiny network's noise, so that a flat
    texture's seam (its edges painted independently) stands out from its inside."""
    style = _stripes()
    tileable = texture(style, 48, tileable=True, tv_weight=1e-3, **FAST)
    flat = texture(style, 48, tv_weight=1e-3, **FAST)
    assert tileable.image.size == flat.image.size == (48, 48)
    assert seam_ratio(tileable.pixels) <= 1.1
    assert seam_ratio(flat.pixels) > 1.5 * seam_ratio(tileable.pixels)


def test_a_texture_is_the_style_alone_and_its_loss_falls(use_tiny, painting_path):
    seen = []
    result = brushwork.texture([painting_path, painting_path], (48, 32), style_weights=(1, 3),
                               callback=seen.append, **FAST)
    assert result.image.size == (48, 32)
    assert result.settings["content_weight"] == 0.0 and result.settings["init"] == "noise"
    assert {it.losses["content"] for it in seen} == {0.0}
    assert seen[-1].losses["style"] < 0.5 * seen[0].losses["style"]
    assert result.inputs == {"texture": [48, 32], "style": [str(painting_path)] * 2}
    # Seeded noise: the same seed, the same texture.
    again = brushwork.texture([painting_path, painting_path], (48, 32), style_weights=(1, 3),
                              **FAST)
    assert np.array_equal(np.asarray(again.image), np.asarray(result.image))


def test_a_tileable_texture_has_sides_on_the_grid(use_tiny, painting_path):
    result = texture(painting_path, (50, 40), tileable=True, iterations=2,
                     multiscale="off", seed=1)
    assert result.image.size == (48, 48)


@pytest.mark.parametrize(("options", "message"), [
    ({"strength": 0.5}, "a texture has no photo, so texture takes no strength"),
    ({"structure": 1.0, "keep_faces": True}, "takes no structure, keep_faces"),
    ({"preserve_colors": "luminance", "content_weight": 1.0},
     "takes no content_weight, preserve_colors"),
    ({"init": "content"}, "init must be 'noise' or a picture"),
    ({"photoreal": "filter", "structure": 0.0}, "takes no photoreal$"),
])
def test_photo_options_are_refused(painting_path, options, message):
    with pytest.raises(BrushworkError, match=message):
        texture(painting_path, 64, **options)


@pytest.mark.parametrize(("size", "message"), [
    (8, "at least 16 px a side, not 8x8"), ((64, 4), "not 64x4"),
    ("64", "a number of pixels or \\(width, height\\)"), ((1, 2, 3), "not \\(1, 2, 3\\)"),
    ((20000, 20000), "more than max_pixels"),
])
def test_bad_sizes_are_refused(painting_path, size, message):
    with pytest.raises(BrushworkError, match=message):
        texture(painting_path, size)


def test_estimate_texture_plans_the_texture_size(use_tiny):
    plan = estimate_texture((320, 160), iterations=4, min_size=80, tile_size=80)
    assert [p.scale.size for p in plan.scales] == [(80, 40), (160, 80), (320, 160)]
    assert plan.scales[-1].tile == 80
