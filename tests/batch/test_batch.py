"""`brushwork batch` on the local backend: plans, the check before anything runs, reruns,
failures that stay in their row, Ctrl-C, the index and the sheet.  The Ray backend's own
tests are in test_batch_ray.py."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from batch_support import FAST, FAST_OPTIONS, cli_run
from PIL import Image

import brushwork.batch.painting as painting_module
import brushwork.engine.cache as cache_module
from brushwork.batch import (
    LocalBackend,
    PlanError,
    check,
    from_plan_file,
    grid,
    image_files,
    output_name,
    run,
)
from brushwork.batch.ray import parse_address, probe
from brushwork.engine.result import Interrupted, Result
from brushwork.errors import BrushworkError
from brushwork.io.images import read_metadata
from conftest import painting_array, photo_array


@pytest.fixture
def folders(tmp_path):
    """photos/ with two photos (and a text file that is not taken), paintings/ with two."""
    photos, paintings = tmp_path / "photos", tmp_path / "paintings"
    photos.mkdir()
    paintings.mkdir()
    Image.fromarray(photo_array(40, 32)).save(photos / "a.png")
    Image.fromarray(photo_array(32, 40)).save(photos / "b.jpg")
    (photos / "notes.txt").write_text("not a photo")
    Image.fromarray(painting_array(seed=2)).save(paintings / "x.png")
    Image.fromarray(painting_array(seed=5)).save(paintings / "y.png")
    return photos, paintings


@pytest.fixture
def loads(monkeypatch, use_tiny):
    """Count the times weights are read (the tiny network's)."""
    calls = []
    real = cache_module.load_weights

    def counting(*a, **k):
        calls.append(a)
        return real(*a, **k)

    monkeypatch.setattr(cache_module, "load_weights", counting)
    return calls


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_grid_paints_every_pair_once_with_settings_index_and_sheet(capsys, loads, folders,
                                                                   use_tiny, tmp_path):
    photos, paintings = folders
    out = tmp_path / "out"
    code, _, err = cli_run(capsys, "batch", "--content", photos, "--style", paintings, "-o", out,
                           *FAST, "--sheet")
    assert code == 0, err
    names = ["a__x.png", "a__y.png", "b__x.png", "b__y.png"]
    assert sorted(p.name for p in out.glob("*__*.png")) == names
    assert len(loads) == 1  # one network for the four pictures
    assert pixels(out / "a__x.png").shape == (26, 32, 3)
    assert pixels(out / "b__x.png").shape == (32, 26, 3)
    assert not np.array_equal(pixels(out / "a__x.png"), pixels(out / "a__y.png"))
    meta = read_metadata(out / "b__y.png")
    assert meta["settings"]["size"] == 32 and meta["settings"]["seed"] == 3
    assert meta["inputs"] == {"content": str(photos / "b.jpg"), "style": [str(paintings / "y.png")]}
    index = json.loads((out / "index.json").read_text())
    assert index["counts"] == {"done": 4}
    assert [r["output"] for r in index["rows"]] == names
    row = index["rows"][0]
    assert row["state"] == "done" and row["losses"]["style"] > 0 and row["elapsed_s"] > 0
    assert row["ran_on"]["host"] == socket.gethostname() and row["ran_on"]["device"] == "cpu"
    # One line per picture as it finishes, and the bar over all four.
    assert sum(f"/4 {n}:" in err for n in names) == 4
    sheet = Image.open(out / "sheet.png")
    assert sheet.width > 2 * 150 and sheet.height > 2 * 150
    assert "brushwork_batch" in read_metadata(out / "sheet.png")


def test_a_rerun_skips_what_is_done_and_force_paints_again(capsys, folders, use_tiny,
                                                           tmp_path, monkeypatch):
    photos, paintings = folders
    out = tmp_path / "out"
    args = ["batch", "--content", photos / "a.png", "--style", paintings, "-o", out, *FAST]
    assert cli_run(capsys, *args)[0] == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    calls = []
    real = painting_module.stylize
    monkeypatch.setattr(painting_module, "stylize",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    code, _, err = cli_run(capsys, *args)
    assert code == 0 and calls == [] and "2 already in" in err
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == before
    assert json.loads((out / "index.json").read_text())["counts"] == {"skipped": 2}
    # Other settings over the same outputs: refused before anything runs.
    code, _, err = cli_run(capsys, *args, "--tv-weight", "1")
    assert code == 1 and calls == []
    assert "exists with other settings or inputs; pass --force" in err
    assert err.count("\n") == 3  # a heading and one line per row
    code, _, err = cli_run(capsys, *args, "--tv-weight", "1", "--force")
    assert code == 0 and len(calls) == 2
    assert read_metadata(out / "a__x.png")["settings"]["tv_weight"] == 1.0
    # A changed photo is a changed input, even under the same name.
    Image.fromarray(photo_array(40, 32)[::-1].copy()).save(photos / "a.png")
    code, _, err = cli_run(capsys, *args, "--tv-weight", "1")
    assert code == 1 and "exists with other settings or inputs" in err


def test_a_row_with_a_bad_image_fails_alone(use_tiny, folders, tmp_path):
    photos, paintings = folders
    batch = grid([photos], [paintings], tmp_path / "out", **FAST_OPTIONS)
    check(batch)
    # The photo is damaged after the check (as a file can be, during a long batch).
    (photos / "b.jpg").write_bytes(b"\xff\xd8 not a jpeg any more")
    seen = []
    run(batch, on_row=seen.append)
    assert [r.state for r in batch.rows] == ["done", "done", "failed", "failed"]
    assert len(seen) == 4
    assert "content image" in batch.rows[2].error and "b.jpg" in batch.rows[2].error
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["counts"] == {"done": 2, "failed": 2}
    assert index["rows"][3]["error"] == batch.rows[3].error
    assert not (tmp_path / "out" / "b__x.png").exists()


def test_plan_files_csv_and_jsonl_with_row_options(capsys, folders, use_tiny, tmp_path):
    photos, paintings = folders
    plan = tmp_path / "plan.csv"
    plan.write_text("content,styles,output,size,style-weight,preserve_colors\n"
                    "photos/a.png,paintings/x.png,small/a.png,24,,\n"
                    "photos/b.jpg,paintings/x.png;paintings/y.png,,,100,luminance\n"
                    "\n")
    out = tmp_path / "out"
    code, _, err = cli_run(capsys, "batch", "--plan", plan, "-o", out, *FAST)
    assert code == 0, err
    assert pixels(out / "small" / "a.png").shape == (19, 24, 3)  # the row's own size
    blend = read_metadata(out / "b__x+y.png")
    assert blend["settings"]["size"] == 32 and blend["settings"]["style_weight"] == 100
    assert blend["settings"]["preserve_colors"] == "luminance"
    assert len(blend["inputs"]["style"]) == 2
    jsonl = tmp_path / "plan.jsonl"
    jsonl.write_text(json.dumps({"content": "photos/a.png", "style": "paintings/y.png",
                                 "style_layers": ["relu1_1", "relu2_1"], "seed": 9}) + "\n")
    batch = from_plan_file(jsonl, tmp_path / "out2")
    assert batch.rows[0].options == {"style_layers": ("relu1_1", "relu2_1"), "seed": 9}
    assert batch.rows[0].content == str(tmp_path / "photos" / "a.png")
    assert batch.rows[0].output == "a__y.png"


@pytest.mark.parametrize("plan_text, messages", [
    ("content,styles,sise\nphotos/a.png,paintings/x.png,24\n",
     ["plan.csv line 2", "unknown option 'sise' (did you mean 'size'?)"]),
    ("content,styles\nphotos/a.png,paintings/missing.png\n",
     ["plan.csv line 2", "style image", "missing.png' does not exist"]),
    ("content,styles,output\nphotos/a.png,paintings/x.png,same.png\n"
     "photos/b.jpg,paintings/y.png,same.png\n",
     ["plan.csv line 3", "writes 'same.png', as plan.csv line 2"]),
    ("content,styles,size,output\nphotos/a.png,paintings/x.png,-3,a.png\n"
     "photos/a.png,paintings/y.png,x,b.png\nphotos/b.jpg,paintings/x.png,,../up.png\n",
     ["the batch has 3 problems", "line 2 (a.png x x.png): size must be a positive integer",
      "line 3 (a.png x y.png): size: expected a whole number, got 'x'",
      "line 4 (b.jpg x x.png): output '../up.png' must be a file name inside"]),
    ("content,styles,style_layers\nphotos/a.png,paintings/x.png,relu9_9\n",
     ["unknown style layer 'relu9_9'"]),
    ("content\nphotos/a.png\n", ["plan.csv line 2: no style image"]),
])
def test_a_bad_plan_is_refused_whole_before_anything_runs(capsys, folders, use_tiny,
                                                          tmp_path, plan_text, messages):
    plan = tmp_path / "plan.csv"
    plan.write_text(plan_text)
    out = tmp_path / "out"
    code, _, err = cli_run(capsys, "batch", "--plan", plan, "-o", out, *FAST)
    assert code == 1 and "Traceback" not in err
    for message in messages:
        assert message in err, err
    assert not out.exists()


@pytest.mark.parametrize("make, message", [
    (lambda p: (p / "empty").mkdir(), "content folder '{tmp}/empty' holds no images"),
    (lambda p: None, "content '{tmp}/nowhere' does not exist"),
])
def test_bad_content_paths(capsys, folders, use_tiny, tmp_path, make, message):
    make(tmp_path)
    name = "empty" if "empty" in message else "nowhere"
    code, _, err = cli_run(capsys, "batch", "--content", tmp_path / name, "--style", folders[1],
                           "-o", tmp_path / "out", *FAST)
    assert code == 1 and err.startswith("brushwork: error: " + message.format(tmp=tmp_path))
    assert err.count("\n") == 1


def test_usage_mistakes_are_one_line(capsys, folders, use_tiny, tmp_path):
    photos, paintings = folders
    code, _, err = cli_run(capsys, "batch", "--content", photos, "-o", tmp_path / "o")
    assert code == 1 and "batch needs --content and --style" in err
    code, _, err = cli_run(capsys, "batch", "--content", photos, "--style", paintings,
                           "--plan", tmp_path / "p.csv", "-o", tmp_path / "o")
    assert code == 1 and "not both" in err
    code, _, err = cli_run(capsys, "batch", "--content", photos, "--style", paintings,
                           "--cpus-per-task", "2", "-o", tmp_path / "o")
    assert code == 1 and "needs --ray" in err
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "index.json").write_text('{"mine": 1}')
    code, _, err = cli_run(capsys, "batch", "--content", photos, "--style", paintings,
                           "-o", tmp_path / "o2", *FAST)
    assert code == 1 and "is not a batch's index; pass --force" in err
    assert err.count("\n") == 1


def test_ctrl_c_stops_cleanly_and_a_rerun_continues(capsys, monkeypatch, folders,
                                                    use_tiny, tmp_path):
    photos, paintings = folders
    real = painting_module.stylize
    calls = []

    def second_interrupted(*a, **options):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted(Result(Image.new("RGB", (4, 4)), {}, {}, [], 0, {}, "cpu"))
        return real(*a, **options)

    monkeypatch.setattr(painting_module, "stylize", second_interrupted)
    out = tmp_path / "out"
    args = ["batch", "--content", photos, "--style", paintings, "-o", out, *FAST, "--sheet"]
    code, _, err = cli_run(capsys, *args)
    assert code == 130 and "interrupted: 1 pictures painted, 3 left" in err
    index = json.loads((out / "index.json").read_text())
    assert index["interrupted"] is True
    assert [r["state"] for r in index["rows"]] == ["done", "interrupted", "pending", "pending"]
    assert sorted(p.name for p in out.glob("*__*.png")) == ["a__x.png"]  # nothing half-made
    assert (out / "sheet.png").exists()
    code, _, err = cli_run(capsys, *args)
    assert code == 0 and len(calls) == 2 + 3  # the three left, not the first again
    assert json.loads((out / "index.json").read_text())["counts"] == {"skipped": 1, "done": 3}


def test_one_worker_per_device_gives_the_same_pictures(use_tiny, folders, tmp_path):
    photos, paintings = folders
    one = grid([photos], [paintings], tmp_path / "one", **FAST_OPTIONS)
    two = grid([photos], [paintings], tmp_path / "two", **FAST_OPTIONS)
    check(one)
    check(two)
    run(one, LocalBackend())
    run(two, LocalBackend(devices=["cpu", "cpu"]))  # two workers, as on a two-GPU machine
    assert [r.state for r in two.rows] == ["done"] * 4
    for row in one.rows:
        assert np.array_equal(pixels(one.path_of(row)), pixels(tmp_path / "two" / row.output))


def test_ray_missing_says_how_to_install(capsys, monkeypatch, folders, use_tiny,
                                         tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as when not installed
    photos, paintings = folders
    code, _, err = cli_run(capsys, "batch", "--content", photos, "--style", paintings, "-o",
                           tmp_path / "out", *FAST, "--ray")
    assert code == 1
    assert err == ("brushwork: error: --ray needs Ray, which is not installed here; install it "
                   "with: pip install 'brushwork[ray]'\n")
    assert not (tmp_path / "out").exists()


def test_ray_addresses_are_checked_before_joining():
    assert parse_address("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert parse_address("ray://head:10001") == ("head", 10001)
    assert parse_address("[::1]:6379") == ("::1", 6379)
    assert parse_address("auto") is None
    for bad in ("head", "head:port", ":6379", "head:0"):
        with pytest.raises(BrushworkError, match="must be HOST:PORT"):
            parse_address(bad)
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BrushworkError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        probe(f"127.0.0.1:{port}")


def test_plan_helpers(folders, tmp_path):
    photos, _ = folders
    assert [p.name for p in image_files(photos, "content")] == ["a.png", "b.jpg"]
    assert output_name("dir/cat.jpg", ["s/a.png", "s/b.png"]) == "cat__a+b.png"
    with pytest.raises(BrushworkError, match="must be a .csv or .jsonl"):
        from_plan_file(tmp_path / "plan.txt", tmp_path)
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"content": "photos/a.png", "styles": ["x.png"]}\n[1]\n{oops\n')
    batch = from_plan_file(bad, tmp_path / "o")
    assert batch.rows[1].problems == ["p.jsonl line 2: is not a JSON object"]
    assert batch.rows[2].problems[0].startswith("p.jsonl line 3: is not valid JSON")
    many = PlanError([f"row {i}: bad" for i in range(30)])
    assert str(many).splitlines()[0] == "the batch has 30 problems; nothing was painted:"
    assert str(many).splitlines()[-1] == "  ... and 10 more"
