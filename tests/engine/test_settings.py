"""brushwork.engine.settings.Settings: its defaults, its validation and the CLI's round trip.

Only the public behaviour: what a caller of ``Settings(...)``, ``stylize(**options)`` or
the ``brushwork`` command can see.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from brushwork.commands.options import settings_from_args
from brushwork.commands.parser import build_parser
from brushwork.engine.settings import Settings, to_cli_args
from brushwork.errors import BrushworkError
from brushwork.maths.strength import DEFAULT_STRENGTH, knobs


def test_defaults():
    s = Settings()
    assert (s.size, s.iterations, s.optimizer, s.init, s.multiscale) == (
        512, 150, "lbfgs", "content", "auto")
    assert s.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert s.content_layers == ("relu3_2", "relu4_2")
    assert (s.content_norm, s.style_norm, s.pooling) == ("paper", "paper", "max")
    assert (s.tv_weight, s.history_size, s.stop_tolerance) == (0.0, 20, 0.0)
    assert s.size_invariant is True and s.normalize_gradients is True
    assert (s.model, s.device, s.seed, s.max_pixels) == ("vgg16-hed", "auto", None, 100_000_000)
    # The knobs a strength sets are resolved to the default strength's values.
    assert s.strength == DEFAULT_STRENGTH == 0.7
    assert (s.style_weight, s.min_size) == (1e4, knobs(0.7)["min_size"])
    assert s.content_weight is not None and s.photo_detail is not None


def test_settings_are_frozen_and_compare_by_value():
    assert Settings(size=64) == Settings(size=64) != Settings(size=65)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().size = 3


@pytest.mark.parametrize("options, message", [
    ({"size": 0}, "size must be a positive integer, not 0"),
    ({"size": 12.5}, "size must be a positive integer, not 12.5"),
    ({"size": True}, "size must be a positive integer, not True"),
    ({"iterations": -3}, "iterations must be a positive integer, not -3"),
    ({"history_size": "20"}, "history_size must be a positive integer, not '20'"),
    ({"max_pixels": 0}, "max_pixels must be a positive integer, not 0"),
    ({"tile_size": 0}, "tile_size must be a positive integer, not 0"),
    ({"max_memory": -1.0}, "max_memory must be a positive finite number, not -1.0"),
    ({"min_size": 0}, "min_size must be a positive integer, not 0"),
    ({"tv_weight": -1.0}, "tv_weight must be a non-negative finite number, not -1.0"),
    ({"tv_weight": math.inf}, "tv_weight must be a non-negative finite number, not inf"),
    ({"content_weight": math.nan}, "content_weight must be a non-negative finite number, not nan"),
    ({"style_weight": -5}, "style_weight must be a non-negative finite number, not -5"),
    ({"stop_tolerance": -0.1}, "stop_tolerance must be a non-negative finite number"),
    ({"style_scale": 0.0}, "style_scale must be a positive finite number, not 0.0"),
    ({"tv_power": -1}, "tv_power must be a positive finite number, not -1"),
    ({"learning_rate": 0}, "learning_rate must be a positive finite number, not 0"),
    ({"photo_detail": 1.5}, "photo_detail must be a number from 0 to 1, not 1.5"),
    ({"normalize_gradients": 1}, "normalize_gradients must be True or False, not 1"),
    ({"size_invariant": "no"}, "size_invariant must be True or False, not 'no'"),
    ({"style_weights": ()}, "style_weights must not be empty"),
    ({"style_weights": (0.0, 0.0)}, "style_weights must not all be zero: [0.0, 0.0]"),
    ({"style_weights": (1.0, -1.0)}, "style_weights must be a non-negative finite number"),
    ({"style_layer_weights": (1.0, 2.0)}, "style_layer_weights has 2 values for 5 style layers"),
    ({"content_layers": ()}, "content_layers must name at least one layer"),
    ({"style_layers": ()}, "style_layers must name at least one layer"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of lbfgs, adam, sgd; got 'rmsprop'"),
    ({"pooling": "min"}, "pooling must be one of max, avg; got 'min'"),
    ({"multiscale": "yes"}, "multiscale must be one of auto, on, off; got 'yes'"),
    ({"preserve_colors": "all"}, "preserve_colors must be one of none, luminance, histogram"),
    ({"content_norm": "l1"}, "content_norm must be one of paper, sum, mean; got 'l1'"),
    ({"style_norm": "sum"}, "style_norm must be one of paper, mean, keras; got 'sum'"),
    ({"init": ""}, "init must be 'content', 'noise' or an image file, not ''"),
    ({"seed": -1}, "seed must be an integer from 0 to 9223372036854775807, not -1"),
    ({"seed": 1.0}, "seed must be an integer from 0 to 9223372036854775807, not 1.0"),
    # torch.Generator.manual_seed overflows past 2**64; bounded here, not mid-run.
    ({"seed": 2**100}, "seed must be an integer from 0 to 9223372036854775807, not 1267"),
    # The memory plan would list every smaller history; the style image would be 51200 px.
    ({"history_size": 10**12}, "history_size must be at most 1000, not 1000000000000"),
    ({"style_scale": 100.0}, "style_scale must be at most 4, not 100.0"),
    ({"content_layers": ("relu4_2", "relu4_2")}, "content_layers names 'relu4_2' more than once"),
])
def test_a_bad_value_is_one_line_naming_the_option_and_the_value(options, message):
    with pytest.raises(BrushworkError) as caught:
        Settings(**options)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_good_edge_values_are_accepted():
    s = Settings(size=1, iterations=1, tv_weight=0, style_weight=0.0, photo_detail=0,
                 stop_tolerance=0.5, seed=0, style_weights=(0.0, 2.0))
    assert (s.size, s.style_weight, s.photo_detail, s.seed) == (1, 0.0, 0, 0)
    top = Settings(seed=2**63 - 1, history_size=1000, style_scale=4.0)
    assert (top.seed, top.history_size, top.style_scale) == (2**63 - 1, 1000, 4.0)


def test_knob_gives_each_resolved_strength_knob_as_a_number():
    s = Settings(strength=0.0)
    assert s.knob("content_weight") == pytest.approx(3000.0)
    assert s.knob("style_weight") == 1e4
    assert s.knob("min_size") == 128
    assert s.knob("photo_detail") == 1.0
    assert Settings(content_weight=2.5).knob("content_weight") == 2.5


@pytest.mark.parametrize("name", ["size", "strength", "no_such_field"])
def test_knob_refuses_what_is_not_a_strength_knob(name):
    with pytest.raises(KeyError, match=f"'{name}' is not a resolved strength knob"):
        Settings().knob(name)


def test_to_dict_is_plain_json_and_loads_back():
    import json

    s = Settings(style_layers=("relu1_1", "relu2_1"), style_layer_weights=(0.25, 0.75),
                 seed=4, tv_weight=0.5)
    d = s.to_dict()
    assert d["style_layers"] == ["relu1_1", "relu2_1"]  # tuples become lists
    assert d["style_layer_weights"] == [0.25, 0.75]
    assert json.loads(json.dumps(d)) == d
    assert set(d) == {f.name for f in dataclasses.fields(Settings)}
    loaded = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    assert Settings(**loaded) == s


# A value other than the default for every option (one run each way through the CLI).
NOT_DEFAULT: dict[str, Any] = {
    "size": 300, "iterations": 7, "strength": 0.25, "content_weight": 4.5,
    "size_invariant": False, "style_weight": 2e3, "tv_weight": 1 / 3, "tv_power": 1.25,
    "structure": 0.5, "keep_faces": True, "photoreal": "filter", "matting_weight": 3.0,
    "style_weights": (0.5, 1.5), "style_scale": 0.75, "content_layers": ("relu4_2",),
    "style_layers": ("relu1_1", "relu3_1"), "style_layer_weights": (0.2, 0.8),
    "content_norm": "mean", "style_norm": "keras", "style_loss": "w2", "optimizer": "adam",
    "learning_rate": 0.1,
    "lr_decay": 0.5, "lr_decay_steps": 3, "history_size": 5, "stop_tolerance": 0.25,
    "coarse_tolerance": 0.5,
    "normalize_gradients": False, "init": "noise", "preserve_colors": "histogram-to-style",
    "multiscale": "on", "min_size": 100, "photo_detail": 0.5, "model": "some dir/w.pth",
    "pooling": "avg", "device": "cpu", "precision": "bf16", "seed": 11,
    "max_pixels": 12345, "max_memory": 2.5, "bit_depth": 16, "dpi": 300.0,
    "tile_size": 256, "style_masks": ("sky.png", "the sea.png"), "region_map": "map.png",
    "region_colors": ("#ff0000", "#0000ff"), "mask_mode": "inside",
    "tileable": True,
}


def test_the_table_names_every_option():
    assert set(NOT_DEFAULT) == {f.name for f in dataclasses.fields(Settings)}


def parse_stylize(flags: list[str]) -> dict[str, Any]:
    args = build_parser().parse_args(["stylize", "c.png", "s.png", "-o", "o.png", *flags])
    return settings_from_args(args)


@pytest.mark.parametrize("name", sorted(NOT_DEFAULT))
def test_every_option_round_trips_through_its_flag(name):
    options = {name: NOT_DEFAULT[name]}
    if name in ("style_layer_weights",):  # one weight per layer
        options["style_layers"] = NOT_DEFAULT["style_layers"]
    if name in ("region_map", "region_colors"):  # a map needs its colours
        options.update(region_map=NOT_DEFAULT["region_map"],
                       region_colors=NOT_DEFAULT["region_colors"])
    flags = to_cli_args(options)
    assert flags, f"{name} was left out"
    assert parse_stylize(flags) == options
    assert Settings(**parse_stylize(flags)) == Settings(**options)


def test_defaults_give_no_flags_and_no_flags_give_the_defaults():
    assert to_cli_args(Settings().to_dict()) == []
    assert Settings(**parse_stylize([])) == Settings()


def test_a_bad_flag_value_gets_the_same_error_as_the_api():
    given = parse_stylize(["--tv-weight", "-2"])
    with pytest.raises(BrushworkError, match="tv_weight must be a non-negative finite number"):
        Settings(**given)
