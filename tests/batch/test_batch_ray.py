"""`brushwork batch --ray`: the same pictures as the local backend, reruns, a failed row, a
worker killed mid-picture, a cluster that cannot be reached.

One Ray cluster with 2 CPUs is started for the module (a few seconds) and shut down
after it; the tasks import brushwork from this checkout (PYTHONPATH or the editable
install) and use the tiny network through --model FILE, which the driver ships to them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from brushwork.batch import check, from_plan_file, grid, run
from brushwork.commands import main
from brushwork.io.images import read_metadata
from conftest import painting_array, photo_array

ray = pytest.importorskip("ray")
from brushwork.batch.ray import RayBackend  # noqa: E402  (after the skip: it needs ray)

pytestmark = pytest.mark.slow  # starts a Ray cluster; each test runs real tasks on it

FAST = {"size": 32, "iterations": 4, "multiscale": "off", "seed": 3}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A 2-CPU Ray cluster for the module.  Its workers inherit this process's
    environment (the test session's BRUSHWORK_CACHE among it)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=80 * 1024 * 1024, logging_level="warning")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory):
    """The tiny VGG16 as a file, one for the module: a device is measured once per model
    file (brushwork.engine.memory), and the workers, finding the same file here, use it in place."""
    from safetensors.torch import save_file

    from conftest import tiny_weights

    path = tmp_path_factory.mktemp("model") / "tiny_vgg16.safetensors"
    save_file({f"{n}.{k}": t.contiguous() for n, (w, b) in tiny_weights().convs.items()
               for k, t in (("weight", w), ("bias", b))}, str(path),
              metadata={"preprocess": "caffe"})
    return path


@pytest.fixture
def one_thread():
    """The local backend on one thread, as each Ray task of one CPU runs: float sums then
    add up in the same order, so the two can be compared pixel for pixel."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def folders(tmp_path):
    photos, paintings = tmp_path / "photos", tmp_path / "paintings"
    photos.mkdir()
    paintings.mkdir()
    Image.fromarray(photo_array(40, 32)).save(photos / "a.png")
    Image.fromarray(photo_array(32, 40)).save(photos / "b.jpg")
    Image.fromarray(painting_array(seed=2)).save(paintings / "x.png")
    Image.fromarray(painting_array(seed=5)).save(paintings / "y.png")
    return photos, paintings


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_ray_paints_the_local_backends_pictures_pixel_for_pixel(cluster, one_thread, folders,
                                                                tiny_model_file, tmp_path):
    photos, paintings = folders
    options = {**FAST, "model": str(tiny_model_file)}
    here = grid([photos], [paintings], tmp_path / "here", **options)
    there = grid([photos], [paintings], tmp_path / "there", **options)
    check(here)
    backend = RayBackend(cpus_per_task=1)
    check(there, backend=backend)
    run(here)
    run(there, backend)
    assert [r.state for r in there.rows] == ["done"] * 4
    for row in here.rows:
        assert np.array_equal(pixels(here.path_of(row)), pixels(there.path_of(row)))
        # The same record inside, whoever painted it (paths, settings, inputs' digests).
        a, b = read_metadata(here.path_of(row)), read_metadata(there.path_of(row))
        assert a["settings"] == b["settings"] and a["inputs"] == b["inputs"]
        assert a["batch"]["digests"] == b["batch"]["digests"]
    ran = [r.ran_on for r in there.rows]
    assert all(r["pid"] != os.getpid() for r in ran)  # painted in the workers
    assert all(r["network_loads"] == 1 for r in ran)  # each worker read the network once
    index = json.loads((tmp_path / "there" / "index.json").read_text())
    assert index["backend"]["name"] == "ray" and index["backend"]["tasks_at_once"] == 2


def test_cli_ray_rerun_skips_and_a_bad_row_fails_alone(capsys, cluster, folders,
                                                       tiny_model_file, tmp_path):
    photos, paintings = folders
    out = tmp_path / "out"
    argv = ["batch", "--content", str(photos), "--style", str(paintings), "-o", str(out),
            "--model", str(tiny_model_file), "--size", "32", "--iterations", "4",
            "--multiscale", "off", "--ray", "--cpus-per-task", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(argv) == 0
    assert "4 already in" in capsys.readouterr().err
    # A photo damaged after the check: its rows fail, the others are painted.
    batch = grid([photos], [paintings], tmp_path / "again", **FAST, model=str(tiny_model_file))
    backend = RayBackend(cpus_per_task=1)
    check(batch, backend=backend)
    (photos / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    run(batch, backend)
    assert [r.state for r in batch.rows] == ["failed", "failed", "done", "done"]
    assert "content image" in batch.rows[0].error and "a.png" in batch.rows[0].error


def _task_pids() -> list[int]:
    """Ray workers painting a picture now (their process title names the task)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if title.startswith(b"ray::") and (b"paint_task" in title or b"brushwork" in title):
            found.append(int(entry.name))
    return found


def test_a_worker_killed_mid_picture_is_retried(cluster, one_thread, folders, tiny_model_file,
                                                tmp_path):
    photos, paintings = folders
    options = {**FAST, "iterations": 150, "size": 48, "model": str(tiny_model_file)}
    batch = grid([photos / "a.png"], [paintings], tmp_path / "out", **options)
    backend = RayBackend(cpus_per_task=1)
    check(batch, backend=backend)
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            pids = _task_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one)
    killer.start()
    run(batch, backend)
    killer.join()
    assert killed, "no task was seen running"
    assert [r.state for r in batch.rows] == ["done", "done"]
    assert killed[0] not in [r.ran_on["pid"] for r in batch.rows]  # painted again elsewhere
    # And the picture is the one a run that was never killed paints.
    alone = grid([photos / "a.png"], [paintings], tmp_path / "alone", **options)
    check(alone)
    run(alone)
    for row in alone.rows:
        assert np.array_equal(pixels(alone.path_of(row)), pixels(batch.path_of(row)))


def test_an_unreachable_cluster_is_one_line_before_anything_runs(capsys, folders,
                                                                 tiny_model_file, tmp_path):
    photos, paintings = folders
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["batch", "--content", str(photos), "--style", str(paintings), "-o",
                     str(tmp_path / "out"), "--model", str(tiny_model_file), "--size", "32",
                     "--ray", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"brushwork: error: cannot reach the Ray cluster at 127.0.0.1:{port} (")
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_task_larger_than_any_node_is_refused(cluster, folders, tiny_model_file, tmp_path):
    photos, paintings = folders
    batch = grid([photos], [paintings], tmp_path / "out", **FAST, model=str(tiny_model_file))
    with pytest.raises(Exception, match="cpus per task 3: no node of the Ray cluster has that"):
        check(batch, backend=RayBackend(cpus_per_task=3))


def test_ray_ships_a_plans_masks_and_map(cluster, one_thread, folders, tiny_model_file,
                                         tmp_path):
    """Masks and a region map (relative to the plan's folder) reach the workers, and the
    pictures are the local backend's."""
    photos, paintings = folders
    for name, left in (("left.png", True), ("right.png", False)):
        m = np.zeros((32, 40), np.uint8)
        m[:, :20] = 255
        Image.fromarray(m if left else 255 - m).save(tmp_path / name)
    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[:, :20] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "map.png")
    styles = ["paintings/x.png", "paintings/y.png"]
    plan = tmp_path / "plan.jsonl"
    plan.write_text(json.dumps({"content": "photos/a.png", "styles": styles, "output": "m.png",
                                "style_masks": ["left.png", "right.png"]}) + "\n"
                    + json.dumps({"content": "photos/a.png", "styles": styles,
                                  "output": "r.png", "region_map": "map.png",
                                  "region_colors": ["#ff0000", "#000000"]}) + "\n")
    options = {**FAST, "model": str(tiny_model_file)}
    here = from_plan_file(plan, tmp_path / "here", **options)
    there = from_plan_file(plan, tmp_path / "there", **options)
    check(here)
    backend = RayBackend(cpus_per_task=1)
    check(there, backend=backend)
    run(here)
    run(there, backend)
    assert [r.state for r in there.rows] == ["done", "done"], [r.error for r in there.rows]
    for row in here.rows:
        assert np.array_equal(pixels(here.path_of(row)), pixels(there.path_of(row)))
        a, b = read_metadata(here.path_of(row)), read_metadata(there.path_of(row))
        assert a["batch"]["digests"] == b["batch"]["digests"]
    assert "style_masks" in there.rows[0].digests and "region_map" in there.rows[1].digests
