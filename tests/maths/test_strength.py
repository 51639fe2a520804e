"""The strength knob: what it sets, how it is checked, and what it does to a picture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import brushwork
from brushwork.commands import main
from brushwork.engine.pyramid import scales
from brushwork.engine.settings import Settings, to_cli_args
from brushwork.errors import BrushworkError
from brushwork.io.images import load_image, resize_to, to_tensor
from brushwork.maths.strength import DEFAULT_STRENGTH, knobs
from brushwork.sweep import plan


def test_the_ends_of_the_range():
    assert knobs(0.0) == {"content_weight": pytest.approx(3000.0), "style_weight": 1e4,
                          "min_size": 128, "photo_detail": 1.0}
    assert knobs(1.0) == {"content_weight": pytest.approx(0.003), "style_weight": 1e4,
                          "min_size": 64, "photo_detail": 0.0}
    # Log-linear: the middle is the geometric mean of the ends (sqrt(128 * 64) = 90.5).
    assert knobs(0.5)["content_weight"] == pytest.approx(3.0)
    assert knobs(0.5)["min_size"] == 91
    assert knobs(0.5)["photo_detail"] == 0.5


@given(st.floats(0, 1), st.floats(0, 1))
def test_more_strength_never_keeps_more_of_the_photo(a, b):
    lo, hi = knobs(min(a, b)), knobs(max(a, b))
    assert hi["content_weight"] <= lo["content_weight"]
    assert hi["min_size"] <= lo["min_size"]
    assert hi["photo_detail"] <= lo["photo_detail"]


def test_defaults_are_the_default_strength():
    s = Settings()
    assert s.strength == DEFAULT_STRENGTH
    assert {k: getattr(s, k) for k in knobs(0)} == knobs(DEFAULT_STRENGTH)


def test_a_knob_given_alone_overrides_the_default_strength():
    s = Settings(content_weight=3.0)
    assert s.strength is None  # the picture is no longer a strength's
    assert s.content_weight == 3.0
    assert s.min_size == knobs(DEFAULT_STRENGTH)["min_size"]
    assert s.photo_detail == knobs(DEFAULT_STRENGTH)["photo_detail"]


def test_strength_with_agreeing_knobs_is_accepted_and_round_trips():
    s = Settings(strength=0.3)
    recorded = {k: tuple(v) if isinstance(v, list) else v for k, v in s.to_dict().items()}
    assert Settings(**recorded) == s  # a recorded run loads back
    assert Settings(strength=0.3, min_size=knobs(0.3)["min_size"]) == s
    assert to_cli_args(s.to_dict()) == ["--strength", "0.3"]
    assert to_cli_args(Settings().to_dict()) == []


@pytest.mark.parametrize("options, needle", [
    ({"strength": -0.01}, "strength must be a number from 0 to 1, not -0.01"),
    ({"strength": 1.5}, "strength must be a number from 0 to 1, not 1.5"),
    ({"strength": float("nan")}, "strength must be a number from 0 to 1"),
    ({"strength": "0.5"}, "strength must be a number from 0 to 1"),
    ({"strength": True}, "strength must be a number from 0 to 1"),
    ({"photo_detail": 2}, "photo_detail must be a number from 0 to 1"),
    ({"strength": 0.5, "content_weight": 5.0}, "contradicts"),
    ({"strength": 0.5, "style_weight": 1e5}, "style_weight 100000.0 contradicts"),
    ({"strength": 0.5, "min_size": 160}, "strength 0.5 sets min_size to 91"),
    ({"strength": 0.5, "photo_detail": 1.0}, "give strength or photo_detail, not both"),
])
def test_bad_strength_is_one_clear_error(options, needle):
    with pytest.raises(BrushworkError) as e:
        Settings(**options)
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("argv, code, needle", [
    (["--strength", "2"], 1, "strength must be a number from 0 to 1, not 2.0"),
    (["--strength", "strong"], 2, "argument --strength: invalid float value: 'strong'"),
    (["--strength", "0.4", "--content-weight", "5"], 1, "contradicts"),
])
def test_cli_refuses_bad_strength_and_writes_nothing(capsys, tmp_path, photo_path, painting_path,
                                                      argv, code, needle):
    out = tmp_path / "out.png"
    got = main(["stylize", str(photo_path), str(painting_path), "-o", str(out), *argv])
    err = capsys.readouterr().err
    assert got == code
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_pyramid_starts_smaller_as_strength_grows():
    longs = {s: [max(sc.size) for sc in scales(Settings(size=512, strength=s), (512, 384))]
             for s in (0.0, 0.5, 1.0)}
    assert longs == {0.0: [128, 256, 512], 0.5: [128, 256, 512], 1.0: [64, 128, 256, 512]}
    # The coarsest scale is in pixels: 2048 px starts where 512 px does.
    assert scales(Settings(size=2048, strength=1.0), (2048, 2048))[0].size == (64, 64)


@pytest.mark.parametrize("detail", [0.0, 0.5, 1.0])
def test_photo_detail_sets_how_much_of_the_photo_a_finer_scale_starts_with(
        use_tiny, photo_path, painting_path, detail):
    seen = []
    brushwork.stylize(photo_path, painting_path, size=40, min_size=20, iterations=3,
                      multiscale="on", photo_detail=detail, seed=0, callback=seen.append)
    coarse_end = seen[5]._pixels  # the last picture of the coarse scale (2 x 3 steps)
    fine_start = seen[6]._pixels  # what the fine scale's first evaluation saw
    assert seen[5].scale == 0 and seen[6].scale == 1
    photo = load_image(photo_path)
    fine, coarse = (to_tensor(resize_to(photo, size)) for size in ((40, 32), (20, 16)))

    def up(t):
        return F.interpolate(t, size=(32, 40), mode="bicubic", align_corners=False)
    # L-BFGS ends on an evaluation, so the coarse scale's result is its last iterate.
    expected = (up(coarse_end.clamp(0, 255)) + detail * (fine - up(coarse))).clamp(0, 255)
    assert torch.allclose(fine_start, expected, atol=1e-3)


def test_more_strength_moves_the_picture_further_from_the_photo(use_tiny, photo_path,
                                                                 painting_path):
    photo = np.asarray(load_image(photo_path).resize((48, 38)), dtype=np.float64)
    distance = {}
    for s in (0.0, 1.0):
        r = brushwork.stylize(photo_path, painting_path, size=48, iterations=20, strength=s,
                              seed=0)
        distance[s] = np.abs(np.asarray(r.image, dtype=np.float64) - photo).mean()
    assert distance[1.0] > 1.5 * distance[0.0]


def test_sweep_over_strength_plans_one_cell_per_value_and_checks_contradictions():
    grid = plan({"strength": [0.1, 0.5, 1.0]}, size=64, seed=1)
    assert [c.values for c in grid.cells[0]] == [{"strength": 0.1}, {"strength": 0.5},
                                                 {"strength": 1.0}]
    with pytest.raises(BrushworkError, match="contradicts"):
        plan({"strength": [0.1, 0.5]}, content_weight=2.0, size=64, seed=1)


def test_each_style_loss_has_the_scale_its_measurement_recorded():
    """STYLE_LOSS_SCALES are docs/style_loss_scales.json's, rounded (docs/style-losses.md)."""
    import json
    from pathlib import Path

    from brushwork.maths.distributions import STYLE_LOSSES
    from brushwork.maths.strength import STYLE_LOSS_SCALES

    measured = json.loads((Path(__file__).resolve().parents[2] / "docs" /
                           "style_loss_scales.json").read_text())["scales"]
    assert set(STYLE_LOSS_SCALES) == set(STYLE_LOSSES) == set(measured)
    for loss, scale in STYLE_LOSS_SCALES.items():
        assert scale == pytest.approx(measured[loss], rel=0.05), loss
