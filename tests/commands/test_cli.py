"""The command line: happy paths, and one clear line for every bad input."""

from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from brushwork.commands import main
from brushwork.engine.result import Interrupted, Result
from brushwork.engine.settings import option_fields
from brushwork.io.images import read_metadata

FAST = ["--size", "32", "--iterations", "3", "--multiscale", "off", "--quiet"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def stylize(capsys, tiny_model_file, content, style, output, *extra):
    return run(capsys, "stylize", content, style, "-o", output, "--model", tiny_model_file,
               *FAST, *extra)


def test_help_shows_every_option_and_default(capsys):
    assert main(["stylize", "--help"]) == 0
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    for f in option_fields():
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        assert flag in text, flag
    for needle in ["(default: 512)", "(default: 150)", "(default: vgg16-hed)", "(default: lbfgs)",
                   "(default: relu3_2,relu4_2)",
                   "(default: relu1_1,relu2_1,relu3_1,relu4_1,relu5_1)",
                   "--force", "--print-every", "--save-every", "--preserve-colors"]:
        assert needle in text, needle


def test_stylize_writes_png_with_settings(capsys, tiny_model_file, photo_path, painting_path,
                                          tmp_path):
    out = tmp_path / "out.png"
    code, _, err = stylize(capsys, tiny_model_file, photo_path, painting_path, out,
                           "--style-weight", "123")
    assert code == 0, err
    assert Image.open(out).size == (32, 26)
    meta = read_metadata(out)
    assert meta["settings"]["style_weight"] == 123.0
    assert meta["settings"]["model"] == str(tiny_model_file)


def test_refuses_to_overwrite_without_force(capsys, tiny_model_file, photo_path, painting_path,
                                            tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    code, _, err = stylize(capsys, tiny_model_file, photo_path, painting_path, out)
    assert code == 1
    assert "exists" in err and "--force" in err
    assert out.read_bytes() == b"precious"
    code, _, err = stylize(capsys, tiny_model_file, photo_path, painting_path, out, "--force")
    assert code == 0, err
    assert Image.open(out).size == (32, 26)


def test_two_styles_with_blend_weights(capsys, tiny_model_file, photo_path, painting_path,
                                       tmp_path):
    out = tmp_path / "out.jpg"
    code, _, err = run(capsys, "stylize", photo_path, painting_path, photo_path, "-o", out,
                       "--model", tiny_model_file, "--style-weights", "3,1", *FAST)
    assert code == 0, err
    assert read_metadata(out)["settings"]["style_weights"] == [3.0, 1.0]


def test_progress_print_and_snapshots(capsys, tiny_model_file, photo_path, painting_path,
                                      tmp_path):
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "stylize", photo_path, painting_path, "-o", out, "--model",
                       tiny_model_file, "--size", "32", "--iterations", "4", "--multiscale",
                       "off", "--print-every", "2", "--save-every", "2")
    assert code == 0, err
    assert "step     2" in err and "step     4" in err and "style" in err
    assert (tmp_path / "out_step00002.png").exists() and (tmp_path / "out_step00004.png").exists()
    assert "wrote" in err
    # A second run must not silently overwrite the snapshots.
    os.remove(out)
    code, _, err = run(capsys, "stylize", photo_path, painting_path, "-o", out, "--model",
                       tiny_model_file, "--size", "32", "--iterations", "4", "--multiscale",
                       "off", "--save-every", "2", "--quiet")
    assert code == 1 and "out_step00002.png' exists" in err and not out.exists()


def test_ctrl_c_writes_latest_result(capsys, monkeypatch, photo_path, painting_path, tmp_path):
    import brushwork.commands.stylize as run_module

    def interrupted(*args, **kwargs):
        image = Image.new("RGB", (20, 20), (10, 200, 30))
        raise Interrupted(Result(image, {}, {}, [{"step": 1}], 1.0, {}, "cpu", interrupted=True))

    monkeypatch.setattr(run_module, "stylize", interrupted)
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "stylize", photo_path, painting_path, "-o", out, "--quiet")
    assert code == 130
    assert "interrupted" in err
    assert Image.open(out).getpixel((0, 0)) == (10, 200, 30)
    assert read_metadata(out)["interrupted"] is True


def test_models_lists_sources(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path))
    code, out, _ = run(capsys, "models")
    assert code == 0
    for name in ["vgg16-hed", "vgg19", "vgg16", "vgg19-caffe", "vgg16-caffe"]:
        assert name in out
    assert str(tmp_path) in out


def test_demo_paints_grace_hopper(capsys, tiny_model_file, tmp_path):
    out = tmp_path / "demo.png"
    code, _, err = run(capsys, "demo", "-o", out, "--model", tiny_model_file, *FAST)
    assert code == 0, err
    assert Image.open(out).size[0] == 32 or Image.open(out).size[1] == 32
    style = Image.open(tmp_path / "demo_style.png")
    assert np.asarray(style).std() > 30  # a real picture, not a flat fill
    assert read_metadata(out)["inputs"]["content"].endswith("grace_hopper.jpg")


# ---------------------------------------------------------------- bad input


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def png_bytes(w=40, h=32, mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, (w, h), 128).save(buf, "PNG")
    return buf.getvalue()


BAD_CONTENT = {
    "missing": (lambda d: d / "nope.jpg", "does not exist"),
    "directory": (lambda d: d, "directory"),
    "empty": (lambda d: write(d / "empty.png", b""), "empty"),
    "truncated": (lambda d: write(d / "cut.png", png_bytes(64, 64)[:60]), "truncated|cannot"),
    "text": (lambda d: write(d / "notes.png", b"hello, not a picture\n" * 20), "not an image"),
    "tiny": (lambda d: write(d / "tiny.png", png_bytes(8, 12)), "at least 16"),
    "eps named jpg": (lambda d: eps_named_jpg(d / "photo.jpg"),
                      "'.*photo.jpg' is in EPS format, which is not accepted"),
}


def eps_named_jpg(path):
    Image.new("RGB", (40, 32)).save(path, format="EPS")
    return path


@pytest.mark.parametrize("case", sorted(BAD_CONTENT))
def test_bad_content_image(capsys, tiny_model_file, painting_path, tmp_path, case):
    make, pattern = BAD_CONTENT[case]
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    out = tmp_path / "out.png"
    code, _, err = stylize(capsys, tiny_model_file, make(bad_dir), painting_path, out)
    assert_one_line_error(code, err, pattern)
    assert not out.exists()


def test_bad_style_image_names_style(capsys, tiny_model_file, photo_path, tmp_path):
    out = tmp_path / "out.png"
    code, _, err = stylize(capsys, tiny_model_file, photo_path, write(tmp_path / "s.png", b""), out)
    assert_one_line_error(code, err, "style image")


def test_decompression_bomb(capsys, tiny_model_file, painting_path, tmp_path):
    big = tmp_path / "big.png"
    Image.new("L", (400, 400)).save(big)
    out = tmp_path / "out.png"
    code, _, err = stylize(capsys, tiny_model_file, big, painting_path, out, "--max-pixels", "1000")
    assert_one_line_error(code, err, "over the limit")
    assert not out.exists()


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P", "RGBA", "LA", "L", "1"])
def test_unusual_modes_are_handled(capsys, tiny_model_file, painting_path, tmp_path, mode):
    path = tmp_path / ("in.tif" if mode == "CMYK" else "in.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 40, 3), np.uint8)) \
        .convert("RGBA" if mode in ("RGBA", "LA") else "RGB").convert(mode).save(path)
    out = tmp_path / "out.png"
    code, _, err = stylize(capsys, tiny_model_file, path, painting_path, out)
    assert code == 0, err
    assert out.exists()


def test_animated_gif_uses_first_frame(capsys, tiny_model_file, painting_path, tmp_path):
    frames = [Image.new("RGB", (40, 32), c) for c in [(200, 0, 0), (0, 200, 0)]]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    out = tmp_path / "out.png"
    with pytest.warns(UserWarning, match="frames"):
        code, _, err = stylize(capsys, tiny_model_file, gif, painting_path, out)
    assert code == 0, err


BAD_OPTIONS = {
    "negative size": (["--size", "-5"], "size must be a positive integer"),
    "zero iterations": (["--iterations", "0"], "iterations must be a positive integer"),
    "nan weight": (["--style-weight", "nan"], "style_weight must be"),
    "negative weight": (["--content-weight", "-1"], "content_weight must be"),
    "unknown layer": (["--style-layers", "relu1_1,relu9_9"], "unknown style layer 'relu9_9'"),
    "unknown model": (["--model", "vgg99"], "neither a source"),
    "unknown device": (["--device", "tpu"], "device"),
    "bad init": (["--init", "/no/such.png"], "init image .*/no/such.png. does not exist"),
    "bad list": (["--style-weights", "a,b"], "comma-separated"),
    "bad choice": (["--optimizer", "rmsprop"], "invalid choice"),
    "unknown style loss": (["--style-loss", "w3"], "invalid choice"),
    "sliced in tiles": (["--style-loss", "sliced", "--size", "272", "--tile-size", "80"],
                        "style_loss sliced cannot be painted in tiles .* the 272x218 scale"),
    "too many blend weights": (["--style-weights", "1,2"], "style_weights has 2 values"),
    "huge history": (["--history-size", str(10**12)], "history_size must be at most 1000"),
    "huge style scale": (["--style-scale", "100"], "style_scale must be at most 4"),
    "huge seed": (["--seed", str(2**100)], "seed must be an integer from 0 to"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_options(capsys, tiny_model_file, photo_path, painting_path, tmp_path, case):
    extra, pattern = BAD_OPTIONS[case]
    out = tmp_path / "out.png"
    argv = ["stylize", photo_path, painting_path, "-o", out, *FAST, *extra]
    if "--model" not in extra:
        argv += ["--model", tiny_model_file]
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, pattern)
    assert not out.exists()


def test_corrupt_and_mismatched_weights(capsys, photo_path, painting_path, tmp_path):
    import torch

    corrupt = write(tmp_path / "bad.pth", os.urandom(2000))
    code, _, err = run(capsys, "stylize", photo_path, painting_path, "-o", tmp_path / "a.png",
                       "--model", corrupt, *FAST)
    assert_one_line_error(code, err, "cannot read weights file")
    mismatched = tmp_path / "resnet.pth"
    torch.save({"layer1.0.conv1.weight": torch.zeros(4, 3, 3, 3)}, mismatched)
    code, _, err = run(capsys, "stylize", photo_path, painting_path, "-o", tmp_path / "b.png",
                       "--model", mismatched, *FAST)
    assert_one_line_error(code, err, "no VGG convolution weights")


@pytest.mark.parametrize("target,pattern", [
    ("missing_dir/out.png", "does not exist"),
    ("out.xyz", "extension|format"),
])
def test_unwritable_output(capsys, tiny_model_file, photo_path, painting_path, tmp_path, target,
                           pattern):
    code, _, err = stylize(capsys, tiny_model_file, photo_path, painting_path, tmp_path / target)
    assert_one_line_error(code, err, pattern)


def test_nan_during_run_writes_nothing(capsys, monkeypatch, tiny_model_file, photo_path,
                                       painting_path, tmp_path):
    import brushwork.engine.objective as objective_module

    monkeypatch.setattr(objective_module, "tv_loss",
                        lambda x, p, wrap=False: x.sum() * float("nan"))
    out = tmp_path / "out.png"
    code, _, err = stylize(capsys, tiny_model_file, photo_path, painting_path, out,
                           "--tv-weight", "1")
    assert_one_line_error(code, err, "loss became nan")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["painting.png", "photo.png",
                                                          "tiny_vgg16.safetensors"]


def assert_one_line_error(code, err, pattern):
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("brushwork") and "error" in lines[0], err
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), lines[0]


def test_docs_document_every_option():
    """The option list (docs/options.md) must not drift from the code."""
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "docs" / "options.md").read_text()
    for f in option_fields():
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        if str(f.type) == "bool":
            flag = "--[no-]" + f.name.replace("_", "-")
        assert f"`{flag}" in readme, flag
    for flag in ["--force", "--print-every", "--save-every", "--quiet", "--output"]:
        assert flag in readme, flag


def test_error_is_one_line_even_with_progress_bar(capsys, tiny_model_file, photo_path,
                                                  painting_path, tmp_path):
    code, _, err = run(capsys, "stylize", photo_path, painting_path, "-o", tmp_path / "o.png",
                       "--model", tiny_model_file, "--style-layers", "relu7_1")
    assert_one_line_error(code, err, "unknown style layer 'relu7_1'")


# ---------------------------------------------------------------- symlinked outputs


@pytest.fixture
def no_run(monkeypatch):
    """Fail the test if the run starts: every output check comes before any network."""
    import brushwork.commands.stylize as run_module

    def started(*args, **kwargs):
        raise AssertionError("the run started before the outputs were checked")

    monkeypatch.setattr(run_module, "stylize", started)


def test_output_link_written_through(capsys, tiny_model_file, photo_path, painting_path,
                                     tmp_path):
    real = tmp_path / "real" / "picture.png"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "out" / "link.png"
    link.parent.mkdir()
    link.symlink_to(real)
    code, _, err = stylize(capsys, tiny_model_file, photo_path, painting_path, link, "--force")
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert read_metadata(real)["settings"]["size"] == 32
    assert os.listdir(link.parent) == ["link.png"]
    assert os.listdir(real.parent) == ["picture.png"]


def link_cases(d):
    notes = d / "notes.txt"
    notes.write_text("precious")
    (d / "to_text.png").symlink_to(notes)
    (d / "dangling.png").symlink_to(d / "gone" / "x.png")
    (d / "snap_step00002.png").symlink_to(notes)
    (d / "side.jpg.json").symlink_to(d / "gone.json")
    (d / "ckpt.png.checkpoint").symlink_to(d / "gone" / "ckpt")
    (d / "dir.png").symlink_to(d)


LINKS = {
    "to_text.png": ([], "is a link to '.*notes.txt', whose extension does not name the PNG"),
    "dangling.png": ([], "output '.*dangling.png' is a link to '.*gone/x.png', which does not "
                         "exist; remove the link"),
    "snap.png": (["--save-every", "2"], "snapshot '.*snap_step00002.png' is a link to "
                                        "'.*notes.txt', whose extension does not name"),
    "side.jpg": ([], "metadata file '.*side.jpg.json' is a link to '.*gone.json', which does "
                     "not exist"),
    "ckpt.png": ([], "checkpoint '.*ckpt.png.checkpoint' is a link to '.*gone/ckpt', which "
                     "does not exist"),
    "dir.png": ([], "output '.*dir.png' is a directory"),
}


@pytest.mark.parametrize("name", sorted(LINKS))
def test_bad_output_links_refused_before_the_run(capsys, no_run, tiny_model_file, photo_path,
                                                 painting_path, tmp_path, name):
    link_cases(tmp_path)
    before = {p: (p.is_symlink(), p.lstat().st_mtime_ns) for p in tmp_path.iterdir()}
    extra, pattern = LINKS[name]
    code, _, err = stylize(capsys, tiny_model_file, photo_path, painting_path,
                           tmp_path / name, "--force", *extra)
    assert_one_line_error(code, err, pattern)
    assert {p: (p.is_symlink(), p.lstat().st_mtime_ns) for p in tmp_path.iterdir()} == before
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_existing_sidecar_refused_before_the_run(capsys, no_run, tiny_model_file, photo_path,
                                                 painting_path, tmp_path):
    (tmp_path / "out.jpg.json").write_text("{}")
    code, _, err = stylize(capsys, tiny_model_file, photo_path, painting_path,
                           tmp_path / "out.jpg")
    assert_one_line_error(code, err, "metadata file '.*out.jpg.json' exists; pass --force")


# The allocators' own words, as PyTorch 2.x raises them.
CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
           "memory: you tried to allocate 40000000000 bytes. Error code 12 (Cannot allocate "
           "memory)")
CUDA_OOM = ("CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has a total capacity of "
            "7.79 GiB of which 1.12 GiB is free.")


@pytest.mark.parametrize("error, pattern", [
    (RuntimeError(CPU_OOM), r"out of memory \(it asked for 37\.25 GiB more in RAM\); try a "
                            r"smaller --size, a --max-memory"),
    (RuntimeError(CUDA_OOM), r"out of memory \(it asked for 2\.50 GiB more on the GPU\)"),
    (MemoryError(), r"out of memory in RAM; try a smaller --size"),
])
def test_out_of_memory_is_one_line_with_what_to_try(capsys, monkeypatch, photo_path,
                                                    painting_path, tmp_path, error, pattern):
    import brushwork.commands.stylize as run_module

    def exhausted(*args, **kwargs):
        raise error

    monkeypatch.setattr(run_module, "stylize", exhausted)
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "stylize", photo_path, painting_path, "-o", out, "--quiet")
    assert_one_line_error(code, err, pattern)
    assert not out.exists()


def test_other_runtime_errors_are_not_taken_for_out_of_memory():
    from brushwork.errors import out_of_memory

    assert out_of_memory(RuntimeError("Given groups=1, weight of size [4, 3, 3, 3]")) is None
    assert out_of_memory(ValueError("out of memory")) is None
    assert "GiB" not in str(out_of_memory(RuntimeError("MPS backend out of memory")))
