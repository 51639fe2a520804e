"""`brushwork batch` keeps its promises for every input and output a plan names: masks and
region maps are checked, found and digested like photos; a plan's bad cells, lines and
names are refused whole, before painting, one line naming the row; outputs are compared
where they land, links followed.  (The Ray worker's own folder: the end of this file.)"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
from batch_support import FAST, FAST_OPTIONS, cli_run
from PIL import Image

import brushwork.batch.painting as painting_module
from brushwork.batch import FAILED, Outcome, check, from_plan_file, grid, run
from brushwork.errors import BrushworkError
from brushwork.io.images import read_metadata
from conftest import painting_array, photo_array


def half_mask(w: int = 40, h: int = 32, left: bool = True) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[:, : w // 2] = 255
    return m if left else 255 - m


@pytest.fixture
def project(tmp_path):
    """A plan's folder: photos/a.png (40x32), paintings/x.png and y.png, masks/left.png and
    right.png (the photo's shape), masks/map.png (red left, blue right)."""
    root = tmp_path / "project"
    for d in ("photos", "paintings", "masks"):
        (root / d).mkdir(parents=True)
    Image.fromarray(photo_array(40, 32)).save(root / "photos" / "a.png")
    Image.fromarray(painting_array(seed=2)).save(root / "paintings" / "x.png")
    Image.fromarray(painting_array(seed=5)).save(root / "paintings" / "y.png")
    Image.fromarray(half_mask()).save(root / "masks" / "left.png")
    Image.fromarray(half_mask(left=False)).save(root / "masks" / "right.png")
    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[:, :20] = (255, 0, 0)
    rgb[:, 20:] = (0, 0, 255)
    Image.fromarray(rgb).save(root / "masks" / "map.png")
    return root


def write_plan(path: Path, *rows: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


MASKED = {"content": "photos/a.png", "styles": ["paintings/x.png", "paintings/y.png"],
          "style_masks": ["masks/left.png", "masks/right.png"], "output": "masked.png"}
MAPPED = {"content": "photos/a.png", "styles": ["paintings/x.png", "paintings/y.png"],
          "region_map": "masks/map.png", "region_colors": ["#ff0000", "#0000ff"],
          "output": "mapped.png"}


@pytest.fixture
def painted(monkeypatch):
    """Count the pictures painted."""
    calls: list[int] = []
    real = painting_module.stylize
    monkeypatch.setattr(painting_module, "stylize",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


# ---------------------------------------------------------------- masks and region maps

def test_a_plans_masks_are_found_from_its_folder_and_an_edit_is_a_changed_input(
        capsys, project, use_tiny, painted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the plan's folder: its relative paths are its own
    plan = write_plan(project / "plan.jsonl", MASKED, MAPPED)
    out = tmp_path / "out"
    code, _, err = cli_run(capsys, "batch", "--plan", plan, "-o", out, *FAST)
    assert code == 0, err
    assert len(painted) == 2
    meta = read_metadata(out / "masked.png")
    assert meta["settings"]["style_masks"] == [str(project / "masks" / "left.png"),
                                               str(project / "masks" / "right.png")]
    assert len(meta["batch"]["digests"]["style_masks"]) == 2
    mapped = read_metadata(out / "mapped.png")
    assert mapped["settings"]["region_map"] == str(project / "masks" / "map.png")
    assert len(mapped["batch"]["digests"]["region_map"]) == 64
    before = (out / "masked.png").read_bytes()
    # Unchanged masks: both skipped.
    code, _, err = cli_run(capsys, "batch", "--plan", plan, "-o", out, *FAST)
    assert code == 0 and len(painted) == 2 and "2 already in" in err
    # The same file names, other regions: not "already there" any more.
    Image.fromarray(half_mask()[:, ::-1].copy()).save(project / "masks" / "left.png")
    rgb = np.asarray(Image.open(project / "masks" / "map.png"))[:, ::-1].copy()
    Image.fromarray(rgb).save(project / "masks" / "map.png")
    code, _, err = cli_run(capsys, "batch", "--plan", plan, "-o", out, *FAST)
    assert code == 1 and len(painted) == 2  # as for a changed photo: refused, not skipped
    assert "line 1 (a.png x x.png+y.png): output 'masked.png' exists with other settings or " \
           "inputs; pass --force" in err
    assert "line 2 (a.png x x.png+y.png): output 'mapped.png' exists with other" in err
    code, _, err = cli_run(capsys, "batch", "--plan", plan, "-o", out, *FAST, "--force")
    assert code == 0 and len(painted) == 4, err
    assert (out / "masked.png").read_bytes() != before
    code, _, err = cli_run(capsys, "batch", "--plan", plan, "-o", out, *FAST)
    assert code == 0 and len(painted) == 4 and "2 already in" in err


@pytest.mark.parametrize("change, message", [
    ({"style_masks": ["masks/left.png", "masks/gone.png"]},
     "style mask 2 image '{root}/masks/gone.png' does not exist"),
    ({"style_masks": ["masks/left.png"]}, "--style-masks has 1 mask for 2 style images"),
    ({"style_masks": ["masks/left.png", "masks/tall.png"]},
     "style mask 2 '{root}/masks/tall.png' is 32x40 (aspect 0.800) but the photo is 40x32"),
    ({"style_masks": ["masks/left.png", "masks/black.png"]}, "is all black"),
    ({"region_map": "masks/map.png", "region_colors": ["#ff0000", "#00ff00"],
      "style_masks": None}, "region colour #00ff00 (style 2) is nowhere in the region map"),
    ({"region_map": "masks/text.png", "region_colors": ["#ff0000", "#0000ff"],
      "style_masks": None}, "region map image '{root}/masks/text.png' is not an image file"),
])
def test_bad_masks_are_refused_before_anything_is_painted(capsys, project, use_tiny, painted,
                                                          tmp_path, change, message):
    Image.fromarray(half_mask(32, 40)).save(project / "masks" / "tall.png")
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(project / "masks" / "black.png")
    (project / "masks" / "text.png").write_text("not a picture")
    row = {k: v for k, v in {**MASKED, **change}.items() if v is not None}
    plan = write_plan(project / "plan.jsonl", {**MASKED, "output": "fine.png"}, row)
    out = tmp_path / "out"
    code, _, err = cli_run(capsys, "batch", "--plan", plan, "-o", out, *FAST)
    assert code == 1 and painted == [] and "Traceback" not in err
    assert err.startswith("brushwork: error: plan.jsonl line 2 (a.png x x.png+y.png): ")
    assert message.format(root=project) in err
    assert err.count("\n") == 1
    assert not out.exists()


def test_a_grids_masks_are_checked_against_each_photo(use_tiny, project, tmp_path):
    Image.fromarray(photo_array(32, 40)).save(project / "photos" / "tall.png")
    masks = (str(project / "masks" / "left.png"), str(project / "masks" / "right.png"))
    batch = grid([project / "photos"], [project / "paintings" / "x.png"], tmp_path / "out",
                 **FAST_OPTIONS, style_masks=masks[:1])
    with pytest.raises(BrushworkError) as e:
        check(batch)
    assert str(e.value).startswith("row 2 (tall.png x x.png): style mask 1 '")
    assert "is 40x32 (aspect 1.250) but the photo is 32x40" in str(e.value)


def test_plan_paths_of_init_and_masks_are_the_plans_own(project, tmp_path):
    (project / "sub").mkdir()
    plan = project / "sub" / "plan.csv"
    plan.write_text("content,styles,init,style_masks\n"
                    "../photos/a.png,../paintings/x.png,../photos/a.png,../masks/left.png\n"
                    f"../photos/a.png,../paintings/x.png,noise,{project}/masks/left.png\n")
    rows = from_plan_file(plan, tmp_path / "out").rows
    here = project / "sub"
    assert rows[0].options["init"] == str(here / "../photos/a.png")
    assert rows[0].options["style_masks"] == (str(here / "../masks/left.png"),)
    assert rows[1].options["init"] == "noise"
    assert rows[1].options["style_masks"] == (f"{project}/masks/left.png",)


# ---------------------------------------------------------------- a plan's bad lines

@pytest.mark.parametrize("name, text, message", [
    ("plan.csv",
     "content,styles,output\nphotos/a.png,paintings/x.png,a.png\n"
     "photos/a.png,paintings/y.png," + "b" * 140_000 + ".png\n",
     "plan.csv line 3: cannot be read as CSV (field larger than field limit (131072))"),
    ("plan.jsonl",
     json.dumps({"content": "photos/a.png", "styles": ["paintings/x.png"]}) + "\n"
     '{"content": "photos/a.png", "seed": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
     "plan.jsonl line 2: is JSON nested too deeply"),
    ("plan.jsonl",
     json.dumps({"content": "photos/a.png", "styles": ["paintings/x.png"], "model": 5}) + "\n",
     "plan.jsonl line 1 (a.png x x.png): model: expected text, got 5"),
    ("plan.jsonl",
     json.dumps({"content": "photos/a.png", "styles": ["paintings/x.png"],
                 "style_layers": [1, 2]}) + "\n",
     "plan.jsonl line 1 (a.png x x.png): style_layers: expected a list of texts, got [1, 2]"),
    ("plan.jsonl",
     json.dumps({"content": "photos/a.png", "styles": ["paintings/x.png"], "size": True}) + "\n",
     "plan.jsonl line 1 (a.png x x.png): size: expected a whole number, got true"),
    ("plan.jsonl",
     json.dumps({"content": "photos/a.png", "styles": ["paintings/x.png"],
                 "output": "a\u0000b.png"}) + "\n",
     "plan.jsonl line 1 (a.png x x.png): output 'a\\x00b.png' holds a control character "
     "(\\x00), which a file name cannot hold"),
    ("plan.jsonl",
     json.dumps({"content": "photos/a.png", "styles": ["paintings/x.png"],
                 "output": "line\nbreak.png"}) + "\n",
     "output 'line\\nbreak.png' holds a control character (\\n)"),
    ("plan.jsonl",
     json.dumps({"content": "photos/a.png", "styles": ["paintings/x.png"],
                 "output": "a" * 296 + ".png"}) + "\n",
     "plan.jsonl line 1 (a.png x x.png): output '" + "a" * 57 + "...' has a name of 300 "
     "bytes; a file or folder name is at most 200"),
    ("plan.jsonl",
     json.dumps({"content": "photos/a.png", "styles": ["paintings/x.png"],
                 "output": "d/" * 600 + "a.png"}) + "\n",
     "is 1205 bytes long; at most 1024"),
])
def test_bad_lines_cells_and_names_are_one_line_before_painting(capsys, project, use_tiny,
                                                                painted, tmp_path, name, text,
                                                                message):
    plan = project / name
    plan.write_text(text)
    out = tmp_path / "out"
    code, _, err = cli_run(capsys, "batch", "--plan", plan, "-o", out, *FAST)
    assert code == 1 and painted == [] and "Traceback" not in err
    assert message in err
    assert err.count("\n") == 1
    assert not out.exists()


def test_a_row_that_cannot_be_written_never_stays_running(use_tiny, project, tmp_path):
    """A backend that stops with an unexpected error: the index says which rows failed."""
    batch = grid([project / "photos"], [project / "paintings"], tmp_path / "out",
                 **FAST_OPTIONS)
    check(batch)

    class Broken:
        def describe(self):
            return {"name": "broken"}

        def paint(self, batch, rows, progress):
            rows[0].state = "running"
            raise RuntimeError("lost the cluster")

    with pytest.raises(RuntimeError):
        run(batch, Broken())
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert [r["state"] for r in index["rows"]] == ["failed", "pending"]
    assert index["rows"][0]["error"] == "the batch stopped: RuntimeError: lost the cluster"


# ---------------------------------------------------------------- outputs, links followed

def test_two_rows_cannot_write_one_file_through_a_linked_folder(capsys, project, use_tiny,
                                                                painted, tmp_path):
    out = tmp_path / "out"
    (out / "real").mkdir(parents=True)
    (out / "alias").symlink_to("real")
    plan = write_plan(project / "plan.jsonl",
                      {"content": "photos/a.png", "styles": ["paintings/x.png"],
                       "output": "real/a.png"},
                      {"content": "photos/a.png", "styles": ["paintings/y.png"],
                       "output": "alias/a.png"},
                      {"content": "photos/a.png", "styles": ["paintings/y.png"],
                       "output": "alias/index.json/../b.png"})
    code, _, err = cli_run(capsys, "batch", "--plan", plan, "-o", out, *FAST)
    assert code == 1 and painted == []
    assert "plan.jsonl line 2 (a.png x y.png): writes 'alias/a.png', as plan.jsonl line 1 " \
           "(a.png x x.png) does (as 'real/a.png', links followed)" in err
    assert "line 3 (a.png x y.png): output 'alias/index.json/../b.png' must be a file name " \
           "inside" in err
    assert list((out / "real").iterdir()) == []


@pytest.mark.parametrize("make", ["folder", "file", "own"])
def test_a_picture_never_lands_outside_the_output_folder(capsys, project, use_tiny, painted,
                                                         tmp_path, make):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    if make == "folder":  # a subfolder that is a link out of the folder
        (out / "sub").symlink_to(elsewhere)
        output, message = "sub/a.png", f"leads outside the output folder, to '{elsewhere}/a.png'"
    elif make == "file":  # the picture itself a link out of it (to be replaced with --force)
        Image.new("RGB", (4, 4)).save(elsewhere / "keep.png")
        (out / "a.png").symlink_to(elsewhere / "keep.png")
        output, message = "a.png", f"leads outside the output folder, to '{elsewhere}/keep.png'"
    else:  # a link inside the folder, to the folder: the batch's own sheet
        (out / "same").symlink_to(".")
        output, message = "same/sheet.png", "is the batch's own file"
    before = sorted(os.listdir(elsewhere))
    plan = write_plan(project / "plan.jsonl", {"content": "photos/a.png",
                                               "styles": ["paintings/x.png"], "output": output})
    code, _, err = cli_run(capsys, "batch", "--plan", plan, "-o", out, *FAST, "--force")
    assert code == 1 and painted == []
    assert f"plan.jsonl line 1 (a.png x x.png): output '{output}' {message}" in err
    assert err.count("\n") == 1
    assert sorted(os.listdir(elsewhere)) == before


def test_a_link_made_during_the_batch_is_not_written_through(use_tiny, project, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    batch = grid([project / "photos"], [project / "paintings" / "x.png"], out, **FAST_OPTIONS)
    batch.rows[0].output = "sub/a.png"
    check(batch)
    out.mkdir()
    (out / "sub").symlink_to(elsewhere)  # after the check, before the picture is written
    run(batch)
    assert batch.rows[0].state == FAILED
    assert "now leads outside the output folder" in batch.rows[0].error
    assert list(elsewhere.iterdir()) == []


def test_record_never_raises_on_a_name_the_file_system_refuses(use_tiny, project, tmp_path):
    from brushwork.batch import record

    batch = grid([project / "photos"], [project / "paintings" / "x.png"], tmp_path / "out",
                 **FAST_OPTIONS)
    check(batch)
    row = batch.rows[0]
    row.output = "a\0.png"  # past the check (a caller's own batch): the row fails alone
    result = painting_module.stylize(row.content, list(row.styles), **FAST_OPTIONS)
    record(batch, row, Outcome(result, None, {}))
    assert row.state == FAILED and "could not write the picture" in (row.error or "")


# ---------------------------------------------------------------- the Ray worker's folder

@pytest.fixture
def worker_tmp(tmp_path, monkeypatch):
    """The worker's temporary folder, and a fresh memory of the files it has checked."""
    pytest.importorskip("ray")
    import brushwork.batch.ray as ray_module

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setattr(ray_module, "_SAME", {})
    return folder


def shipped(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_the_worker_writes_into_its_own_private_folder(worker_tmp, tmp_path):
    from brushwork.batch.ray import _local_file

    data = b"mask bytes"
    copy = _local_file(str(tmp_path / "driver" / "m.png"), shipped(data), data)
    folder = worker_tmp / f"brushwork-ray-{os.getuid()}"
    assert copy == folder / shipped(data) / "m.png" and copy.read_bytes() == data
    for d in (folder, copy.parent):
        st = d.lstat()
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
        assert stat.S_IMODE(st.st_mode) == 0o700


def test_the_worker_checks_a_copy_it_finds_before_using_it(worker_tmp, tmp_path):
    from brushwork.batch.ray import _local_file

    data = b"the real model"
    digest = shipped(data)
    folder = worker_tmp / f"brushwork-ray-{os.getuid()}" / digest
    folder.mkdir(parents=True, mode=0o700)
    folder.parent.chmod(0o700)
    (folder / "model.pth").write_bytes(b"a planted model")  # the same size would do too
    copy = _local_file(str(tmp_path / "driver" / "model.pth"), digest, data)
    assert copy.read_bytes() == data
    # A link left in its place is replaced, its target untouched.
    target = tmp_path / "target.pth"
    target.write_bytes(b"x" * len(data))
    copy.unlink()
    copy.symlink_to(target)
    again = _local_file(str(tmp_path / "driver" / "model.pth"), digest, data)
    assert not again.is_symlink() and again.read_bytes() == data
    assert target.read_bytes() == b"x" * len(data)


@pytest.mark.parametrize("plant", ["link", "open", "inner link"])
def test_the_worker_refuses_a_planted_folder(worker_tmp, tmp_path, plant):
    from brushwork.batch.ray import _local_file

    data = b"mask bytes"
    digest = shipped(data)
    folder = worker_tmp / f"brushwork-ray-{os.getuid()}"
    trap = tmp_path / "trap"
    trap.mkdir(mode=0o700)
    if plant == "link":
        folder.symlink_to(trap, target_is_directory=True)
        problem = "is a link"
    elif plant == "open":
        folder.mkdir()
        folder.chmod(0o777)
        problem = "is open to others (mode 777)"
    else:
        folder.mkdir(mode=0o700)
        (folder / digest).symlink_to(trap, target_is_directory=True)
        folder, problem = folder / digest, "is a link"
    with pytest.raises(BrushworkError) as e:
        _local_file(str(tmp_path / "driver" / "m.png"), digest, data)
    assert str(e.value).endswith(f"'{folder}' {problem}; remove it, and the worker makes "
                                 "its own")
    assert list(trap.iterdir()) == []


def test_the_worker_ships_masks_and_maps(project, use_tiny, tmp_path):
    """Which files a row's task carries (without Ray): its pictures, then its masks, map,
    init picture and model file, each with its place in its option."""
    pytest.importorskip("ray")
    from brushwork.batch.ray import _files_of, _shipped

    plan = write_plan(project / "plan.jsonl", MASKED,
                      {**MAPPED, "init": "photos/a.png"})
    batch = from_plan_file(plan, tmp_path / "out", **FAST_OPTIONS)
    check(batch)
    masks = [str(project / "masks" / n) for n in ("left.png", "right.png")]
    assert _shipped(batch.rows[0]) == [("style_masks", 0, masks[0]),
                                       ("style_masks", 1, masks[1])]
    assert _shipped(batch.rows[1]) == [("init", None, str(project / "photos" / "a.png")),
                                       ("region_map", None, str(project / "masks" / "map.png"))]
    assert _files_of(batch.rows[0])[-2:] == masks


def test_a_task_paints_with_the_masks_it_was_shipped(project, use_tiny, worker_tmp, tmp_path,
                                                     monkeypatch):
    """paint_task, called here as a worker would run it, on a machine without the driver's
    files: the masks come as bytes, are written to the private folder, and paint the
    picture the local backend paints."""
    import torch

    import brushwork.batch.ray as ray_module

    monkeypatch.setattr(ray_module, "_CACHE", None)
    threads = torch.get_num_threads()
    plan = write_plan(project / "plan.jsonl", MASKED)
    batch = from_plan_file(plan, tmp_path / "out", **FAST_OPTIONS)
    check(batch)
    row = batch.rows[0]
    run(batch)
    gone = tmp_path / "driver"  # where the driver has them: not on this "worker"
    files = [("style_masks", i, str(gone / Path(p).name),
              shipped(Path(p).read_bytes())) for i, p in enumerate(row.settings["style_masks"])]
    job = {"content": row.content, "styles": list(row.styles), "files": files,
           "options": {**FAST_OPTIONS, **row.options}, "threads": threads}
    blobs = [Path(p).read_bytes() for p in (row.content, *row.styles,
                                            *row.settings["style_masks"])]
    try:
        out = ray_module.paint_task(job, *blobs)
    finally:
        torch.set_num_threads(threads)
    assert out["error"] is None
    copies = sorted(p.name for p in (worker_tmp / f"brushwork-ray-{os.getuid()}").glob("*/*"))
    assert copies == ["left.png", "right.png"]
    assert np.array_equal(np.asarray(out["result"].image),
                          np.asarray(Image.open(batch.path_of(row))))
