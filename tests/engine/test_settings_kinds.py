"""Options of the wrong type (a plan row's or a library caller's) are one line naming the
option, before anything iterates them or opens a file by them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from brushwork.engine.painter import estimate
from brushwork.engine.settings import Settings, option_specs
from brushwork.errors import BrushworkError

WRONG = {"int": ["12", [1], {"a": 1}], "float": ["1.0", [1.0], {"a": 1}],
         "bool": ["yes", [True], 1], "str": [5, [1], {"a": 1}, True],
         "strs": [5, "relu1_1", {"a": 1}, [5]], "floats": [5, "1,2", {"a": 1}, ["1"]]}


@pytest.mark.parametrize("spec", option_specs(), ids=lambda s: s.name)
def test_every_option_of_the_wrong_type_is_one_line_naming_it(spec):
    for value in WRONG[spec.kind]:
        with pytest.raises(BrushworkError) as caught:
            Settings.from_options({spec.name: value})
        message = str(caught.value)
        assert spec.name in message and "\n" not in message, (value, message)


@pytest.mark.parametrize("options, message", [
    ({"model": 5}, "model must be a string, not 5"),
    ({"device": 5}, "device must be a string, not 5"),
    ({"style_layers": 5}, "style_layers must be a list of strings, not 5"),
    ({"content_layers": {"relu4_2": 1}}, "content_layers must be a list of strings, not {"),
    ({"style_weights": 2}, "style_weights must be a list of numbers, not 2"),
])
def test_the_library_refuses_a_wrong_type_before_loading_anything(options, message):
    picture = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(BrushworkError) as caught:
        estimate(picture, picture, size=8, **options)
    assert str(caught.value).startswith(message)
