"""`brushwork sweep`, contact sheets, `--plot`, and the commands that reproduce each cell."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
from PIL import Image

import brushwork.engine.cache as cache_module
from brushwork.commands import main
from brushwork.commands.options import settings_from_args
from brushwork.commands.parser import build_parser
from brushwork.engine.result import Interrupted, Result
from brushwork.engine.settings import Settings, to_cli_args
from brushwork.errors import BrushworkError, DivergedError
from brushwork.io.images import read_metadata
from brushwork.sweep import SweepInterrupted, contact_sheet, make_axes, plan, sweep

FAST = ["--size", "32", "--iterations", "4", "--multiscale", "off", "--quiet"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def loads(monkeypatch):
    """Count the times weights are actually read."""
    calls = []
    real = cache_module.load_weights

    def counting(*a, **k):
        calls.append(a)
        return real(*a, **k)

    monkeypatch.setattr(cache_module, "load_weights", counting)
    return calls


def test_sweep_writes_sheet_cells_and_reproducible_commands(capsys, loads, tiny_model_file,
                                                            photo_path, painting_path, tmp_path,
                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    sheet = tmp_path / "sheet.png"
    code, _, err = run(capsys, "sweep", photo_path, painting_path, "-o", sheet, "--model",
                       tiny_model_file, *FAST, "--style-weight", "1e3,1e5", "--content-weight",
                       "0.5,5", "--seed", "7")
    assert code == 0, err
    assert len(loads) == 1  # the network is read once for all four cells
    cells = sorted((tmp_path / "sheet_cells").glob("r*c*.png"))
    assert [c.name[:4] for c in cells] == ["r1c1", "r1c2", "r2c1", "r2c2"]
    pictures = [np.asarray(Image.open(c)) for c in cells]
    assert all(p.shape == (26, 32, 3) for p in pictures)
    assert not np.array_equal(pictures[0], pictures[1])  # the swept value shows
    sheet_img = Image.open(sheet)
    assert sheet_img.width > 2 * 192 and sheet_img.height > 2 * 150  # small cells shown larger
    index = json.loads((tmp_path / "sheet_cells" / "index.json").read_text())
    assert index["columns"]["name"] == "style_weight" and index["columns"]["values"] == [1e3, 1e5]
    assert index["rows"] == [{"name": "content_weight", "values": [0.5, 5.0]}]
    assert read_metadata(sheet)["brushwork_sweep"]["options"]["seed"] == 7
    script = (tmp_path / "sheet_cells" / "commands.sh").read_text().splitlines()
    assert sum(line.startswith("brushwork stylize") for line in script) == 4

    # Each cell's own command, run alone, paints the same picture.
    meta = read_metadata(cells[3])
    assert meta["settings"]["content_weight"] == 5.0 and meta["settings"]["style_weight"] == 1e5
    argv = shlex.split(meta["command"])
    assert argv[:2] == ["brushwork", "stylize"] and meta["command"] in script
    out = tmp_path / "again.png"
    argv[argv.index("-o") + 1] = str(out)
    assert main(argv[1:] + ["--quiet"]) == 0
    assert np.array_equal(np.asarray(Image.open(out)), pictures[3])


def test_sweep_over_layers_and_plot(capsys, tiny_model_file, photo_path, painting_path, tmp_path):
    sheet, plot = tmp_path / "s.png", tmp_path / "p.png"
    code, _, err = run(capsys, "sweep", photo_path, painting_path, "-o", sheet, "--model",
                       tiny_model_file, *FAST, "--style-layers", "relu1_1,relu2_1",
                       "--style-layers", "relu3_1", "--plot", plot)
    assert code == 0, err
    index = json.loads((tmp_path / "s_cells" / "index.json").read_text())
    assert index["columns"]["values"] == [["relu1_1", "relu2_1"], ["relu3_1"]]
    assert Image.open(plot).size[0] > 400


@pytest.mark.parametrize("extra, message", [
    (["--style-weight", "1"], "nothing to sweep"),
    (["--style-weight", "1,1"], "repeats a value"),
    (["--style-weight", "1,-2"], "style_weight must be a non-negative"),
    (["--style-weight", "1,x"], "expected comma-separated numbers"),
    (["--style-weight", "1,2", "--style-layers", "relu1_1", "--style-layers", "relu9_9"],
     "unknown style layer 'relu9_9'"),
    (["--style-weight", ",".join(str(i) for i in range(1, 66))], "at most 64"),
    (["--style-loss", "gram,w3"], "style_loss must be one of gram, w2, sliced; got 'w3'"),
    (["--photoreal", "off,paint"], "photoreal must be one of off, matting, filter, both"),
])
def test_bad_sweeps_fail_before_writing_anything(capsys, tiny_model_file, photo_path,
                                                 painting_path, tmp_path, extra, message):
    sheet = tmp_path / "s.png"
    code, _, err = run(capsys, "sweep", photo_path, painting_path, "-o", sheet, "--model",
                       tiny_model_file, *FAST, *extra)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["painting.png", "photo.png",
                                                          "tiny_vgg16.safetensors"]


def test_sweep_refuses_a_used_cells_folder(capsys, tiny_model_file, photo_path, painting_path,
                                           tmp_path):
    (tmp_path / "s_cells").mkdir()
    (tmp_path / "s_cells" / "keep.png").write_bytes(b"precious")
    code, _, err = run(capsys, "sweep", photo_path, painting_path, "-o", tmp_path / "s.png",
                       "--model", tiny_model_file, *FAST, "--tv-weight", "0,1")
    assert code == 1 and "not empty; pass --force" in err
    assert not (tmp_path / "s.png").exists()
    assert (tmp_path / "s_cells" / "keep.png").read_bytes() == b"precious"


def test_a_diverged_cell_is_shown_and_the_sweep_goes_on(monkeypatch, use_tiny, photo_path,
                                                        painting_path):
    import brushwork.sweep as sweep_module

    real = sweep_module.stylize

    def flaky(*a, **options):
        if options["style_weight"] == 1e9:
            raise DivergedError("the loss became nan at step 3")
        return real(*a, **options)

    monkeypatch.setattr(sweep_module, "stylize", flaky)
    result = sweep(photo_path, painting_path, {"style_weight": [1e3, 1e9, 1e4]}, size=32,
                   iterations=3, multiscale="off")
    row = result.cells[0]
    assert [c.error is None for c in row] == [True, False, True]
    assert "nan" in row[1].error and row[2].result is not None
    sheet = np.asarray(contact_sheet(result))
    # The failed cell is a light grey box with the error written in it.
    assert (np.abs(sheet.astype(int) - 235).sum(axis=2) == 0).sum() > 1000


def test_ctrl_c_keeps_the_finished_cells(capsys, monkeypatch, tiny_model_file, photo_path,
                                         painting_path, tmp_path):
    import brushwork.sweep as sweep_module

    real = sweep_module.stylize
    calls = []

    def second_interrupted(*a, **options):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted(Result(Image.new("RGB", (4, 4)), {}, {}, [], 0, {}, "cpu"))
        return real(*a, **options)

    monkeypatch.setattr(sweep_module, "stylize", second_interrupted)
    sheet = tmp_path / "s.png"
    code, _, err = run(capsys, "sweep", photo_path, painting_path, "-o", sheet, "--model",
                       tiny_model_file, *FAST, "--tv-weight", "0,1,2")
    assert code == 130 and "interrupted" in err
    info = read_metadata(sheet)["brushwork_sweep"]
    assert info["interrupted"] is True
    assert [c["file"] is not None for c in info["cells"]] == [True, False, False]


def test_axes_layout_and_validation():
    columns, rows = make_axes({"content_weight": [1, 2], "style_weight": [1, 2, 3]})
    assert columns.name == "style_weight" and [a.name for a in rows] == ["content_weight"]
    with pytest.raises(BrushworkError, match="cannot sweep 'size'"):
        make_axes({"size": [1, 2]})
    with pytest.raises(BrushworkError, match="both swept and fixed"):
        plan({"style_weight": [1, 2]}, style_weight=3.0)
    planned = plan({"tv_weight": [0, 1]})
    assert isinstance(planned.options["seed"], int)  # one seed shared by every cell
    planned = plan({"style_loss": ["gram", "w2", "sliced"], "strength": [0.5, 1.0]})
    assert [c.values["style_loss"] for c in planned.cells[0]] == ["gram", "w2", "sliced"]
    planned = plan({"photoreal": ["off", "filter", "both"], "matting_weight": [1.0, 3.0]})
    assert [c.values["photoreal"] for c in planned.cells[0]] == ["off", "filter", "both"]


def test_library_sweep_interrupted_carries_finished_cells(use_tiny, photo_path, painting_path):
    def stop_in_second_cell(cell, it):
        if cell.col == 1:
            raise KeyboardInterrupt

    with pytest.raises(SweepInterrupted) as caught:
        sweep(photo_path, painting_path, {"tv_weight": [0.0, 1.0, 2.0]}, size=32, iterations=3,
              multiscale="off", callback=stop_in_second_cell)
    cells = caught.value.result.cells[0]
    assert caught.value.result.interrupted
    assert [c.result is not None for c in cells] == [True, False, False]


@pytest.mark.parametrize("options", [
    {"style_weight": 1e-7, "content_weight": 3.25},
    {"size_invariant": False, "normalize_gradients": False, "seed": 0},
    {"style_layers": ("relu1_1", "relu3_1"), "style_layer_weights": (0.25, 0.75)},
    {"learning_rate": 0.1, "optimizer": "adam", "preserve_colors": "histogram-to-style"},
    {"tv_weight": 1 / 3, "style_scale": 0.7, "model": "some dir/w.pth", "iterations": 7},
])
def test_cli_args_round_trip(options):
    argv = ["stylize", "c.png", "s.png", "-o", "o.png", *to_cli_args(options)]
    args = build_parser().parse_args(argv)
    given = settings_from_args(args)
    assert given == {k: v for k, v in options.items()}
    assert to_cli_args(Settings().to_dict()) == []  # defaults are left out


def test_stylize_plot(capsys, tiny_model_file, photo_path, painting_path, tmp_path):
    out, plot = tmp_path / "o.png", tmp_path / "loss.png"
    code, _, err = run(capsys, "stylize", photo_path, painting_path, "-o", out, "--model",
                       tiny_model_file, "--size", "48", "--min-size", "24", "--iterations", "3",
                       "--quiet", "--plot", plot)
    assert code == 0, err
    picture = np.asarray(Image.open(plot))
    assert picture.shape[1] >= 600
    # The total (black) and style (red) lines are drawn.
    assert (picture.sum(axis=2) < 60).sum() > 200
    assert ((picture[..., 0] > 180) & (picture[..., 1] < 80) & (picture[..., 2] < 80)).sum() > 50
    code, _, err = run(capsys, "stylize", photo_path, painting_path, "-o", tmp_path / "p.png",
                       "--model", tiny_model_file, *FAST, "--plot", plot)
    assert code == 1 and "exists; pass --force" in err
    assert not (tmp_path / "p.png").exists()


def test_sweep_over_models_reads_each_once(capsys, loads, tiny_model_file, photo_path,
                                           painting_path, tmp_path):
    from safetensors.torch import save_file

    from conftest import tiny_weights

    other = tmp_path / "other_vgg16.safetensors"
    w = tiny_weights(seed=5)
    save_file({f"{n}.{k}": t.contiguous() for n, (wt, b) in w.convs.items()
               for k, t in (("weight", wt), ("bias", b))}, str(other),
              metadata={"preprocess": "caffe"})
    sheet = tmp_path / "m.png"
    code, _, err = run(capsys, "sweep", photo_path, painting_path, "-o", sheet, *FAST,
                       "--model", f"{tiny_model_file},{other}", "--tv-weight", "0,1")
    assert code == 0, err
    assert len(loads) == 2  # two models, four cells
    index = json.loads((tmp_path / "m_cells" / "index.json").read_text())
    assert index["columns"]["name"] == "model" or index["rows"][0]["name"] == "model"
    pictures = [np.asarray(Image.open(c["file"])) for c in index["cells"]]
    assert len(pictures) == 4
    assert not np.array_equal(pictures[0], pictures[2])  # another network, another picture
    assert "other_vgg16.safetensors" in (tmp_path / "m_cells" / "commands.sh").read_text()
