"""``brushwork texture``: a picture written as stylize writes one, and the photo's
options absent."""

from __future__ import annotations

import argparse

import pytest
from PIL import Image

from brushwork.commands import main
from brushwork.commands.texture import parse_size
from brushwork.io.images import read_metadata, to_tensor
from brushwork.maths.torus import seam_ratio

FAST = ["--iterations", "3", "--multiscale", "off", "--quiet", "--seed", "2"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_texture_writes_the_size_asked_with_its_settings(capsys, tiny_model_file,
                                                         painting_path, tmp_path):
    out = tmp_path / "wall.png"
    code, _, err = run(capsys, "texture", painting_path, "-o", out, "--size", "48x32",
                       "--model", tiny_model_file, *FAST)
    assert code == 0, err
    assert Image.open(out).size == (48, 32)
    meta = read_metadata(out)
    assert meta["inputs"] == {"texture": [48, 32], "style": [str(painting_path)]}
    assert meta["settings"]["content_weight"] == 0.0 and meta["settings"]["init"] == "noise"
    # Same output rules as stylize: no overwrite without --force.
    code, _, err = run(capsys, "texture", painting_path, "-o", out, "--size", "48x32",
                       "--model", tiny_model_file, *FAST)
    assert code != 0 and "exists" in err and len(err.strip().splitlines()) == 1


def test_tileable_texture_from_the_command_line(capsys, tiny_model_file, painting_path,
                                                tmp_path):
    out = tmp_path / "tile.png"
    code, _, err = run(capsys, "texture", painting_path, "-o", out, "--size", "40",
                       "--tileable", "--model", tiny_model_file, *FAST)
    assert code == 0, err
    picture = Image.open(out)
    assert picture.size == (48, 48)
    assert read_metadata(out)["settings"]["tileable"] is True
    assert seam_ratio(to_tensor(picture)) < 2  # 3 steps: smoke, not the seam test


def test_texture_has_no_photo_options(capsys, painting_path, tmp_path):
    code, _, err = run(capsys, "texture", painting_path, "-o", tmp_path / "t.png",
                       "--preserve-colors", "luminance")
    assert code != 0 and "unrecognized arguments: --preserve-colors" in err
    assert main(["texture", "--help"]) == 0
    text = capsys.readouterr().out
    for absent in ("--strength", "--content-weight", "--style-masks", "--photo-detail"):
        assert absent not in text
    assert "--tileable" in text and "W[xH]" in text


@pytest.mark.parametrize(("size", "message"), [("8", "at least 16 px a side, not 8x8")])
def test_bad_sizes_are_one_line(capsys, painting_path, tmp_path, size, message):
    out = tmp_path / "t.png"
    code, _, err = run(capsys, "texture", painting_path, "-o", out, "--size", size)
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_parse_size():
    assert parse_size("512") == (512, 512)
    assert parse_size("640x480") == (640, 480) == parse_size(" 640 X 480 ")
    with pytest.raises(argparse.ArgumentTypeError, match="expected W or WxH"):
        parse_size("640x")


def test_estimate_prints_the_plan(capsys, tiny_model_file, painting_path):
    code, out, err = run(capsys, "texture", painting_path, "--estimate", "--size", "320x160",
                         "--model", tiny_model_file, "--tile-size", "80", "--min-size", "80",
                         "--iterations", "3")
    assert code == 0, err
    assert "scale 3/3: 320x160, 3 steps, tiles of 80 px" in out
