"""Checkpoints: a stopped run resumed ends where the uninterrupted one does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from brushwork import Interrupted, stylize
from brushwork.commands.entry import main
from brushwork.errors import BrushworkError
from brushwork.io.checkpoint import Checkpoint, fingerprint, load, path_for, save

OPTS = dict(size=48, min_size=24, multiscale="on", iterations=12, seed=5)


class StopAt:
    """A callback that presses Ctrl-C after ``step`` evaluations."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, it) -> None:
        if it.step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("optimizer, stop", [("lbfgs", 7), ("lbfgs", 30), ("adam", 9),
                                             ("sgd", 27)])
def test_a_resumed_run_paints_what_the_uninterrupted_one_paints(
        use_tiny, photo_path, painting_path, tmp_path, optimizer, stop):
    """Stopped in the coarse scale (7, 9) or the fine one (27, 30), of 24 + 12 steps."""
    opts = dict(OPTS, optimizer=optimizer)
    whole = stylize(photo_path, painting_path, **opts)
    ckpt = tmp_path / "run.checkpoint"
    with pytest.raises(Interrupted) as stopped:
        stylize(photo_path, painting_path, checkpoint=ckpt, callback=StopAt(stop), **opts)
    assert ckpt.exists() and len(stopped.value.result.history) == stop
    # Ctrl-C came during step ``stop``'s callback: the checkpoint holds the step before,
    # the last moment between two evaluations, and the resumed run does ``stop`` again.
    saved = load(ckpt)
    assert saved.step == stop - 1 and saved.level == (0 if stop <= 24 else 1)
    steps = []
    resumed = stylize(photo_path, painting_path, checkpoint=ckpt, resume=True,
                      callback=steps.append, **opts)
    assert steps[0].step == stop
    assert [h["total"] for h in resumed.history] == [h["total"] for h in whole.history]
    assert np.array_equal(np.asarray(resumed.image), np.asarray(whole.image))
    assert not ckpt.exists()  # a finished run leaves no checkpoint


def test_a_checkpoint_is_written_every_so_often_and_holds_one_moment(
        use_tiny, photo_path, painting_path, tmp_path):
    ckpt = tmp_path / "run.checkpoint"
    seen = []

    def watch(it):
        if ckpt.exists():
            seen.append(load(ckpt).step)
        if it.step == 20:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        stylize(photo_path, painting_path, checkpoint=ckpt, checkpoint_every=1e-9,
                callback=watch, **OPTS)
    # Saved after every evaluation (each seen by the next step's callback).
    assert seen == list(range(1, 20))
    saved = load(ckpt)
    assert saved.step == 19 and saved.taken == 19 and len(saved.history) == 19
    assert saved.optimiser["lbfgs"]["g"].numel() == saved.image.numel()


def test_other_settings_other_images_and_bad_files_are_refused(
        use_tiny, photo_path, painting_path, tmp_path):
    ckpt = tmp_path / "run.checkpoint"
    with pytest.raises(Interrupted):
        stylize(photo_path, painting_path, checkpoint=ckpt, callback=StopAt(3), **OPTS)
    with pytest.raises(BrushworkError, match="other settings: iterations 12, now 13"):
        stylize(photo_path, painting_path, checkpoint=ckpt, resume=True,
                **dict(OPTS, iterations=13))
    with pytest.raises(BrushworkError, match="other input images"):
        stylize(painting_path, painting_path, checkpoint=ckpt, resume=True, **OPTS)
    # How a run is computed may change: another memory budget is fine.
    stylize(photo_path, painting_path, checkpoint=ckpt, resume=True, max_memory=50.0, **OPTS)
    with pytest.raises(BrushworkError, match="no checkpoint at"):
        stylize(photo_path, painting_path, checkpoint=ckpt, resume=True, **OPTS)
    ckpt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(BrushworkError, match="is damaged or not a brushwork checkpoint"):
        stylize(photo_path, painting_path, checkpoint=ckpt, resume=True, **OPTS)
    torch.save({"format": 99}, ckpt)
    with pytest.raises(BrushworkError, match="not a brushwork checkpoint of format 1"):
        load(ckpt)


def test_saving_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "a.checkpoint"
    good = Checkpoint(settings={}, inputs="x", level=0, taken=1, step=1, work_done=0.1,
                      elapsed=1.0, image=torch.zeros(1, 3, 4, 4), optimiser={}, stop_rule={})
    save(path, good)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        save(path, Checkpoint(**{**good.__dict__, "step": 2}))
    assert load(path).step == 1  # the previous checkpoint is whole
    assert [p.name for p in tmp_path.iterdir()] == ["a.checkpoint"]  # no temporary left


def test_fingerprint_sees_pixels_and_blend():
    from PIL import Image

    a = Image.new("RGB", (4, 4), (10, 20, 30))
    b = Image.new("RGB", (4, 4), (10, 20, 31))
    assert fingerprint([a], [1.0]) == fingerprint([a.copy()], [1.0])
    assert fingerprint([a], [1.0]) != fingerprint([b], [1.0])
    assert fingerprint([a, a], [0.5, 0.5]) != fingerprint([a, a], [0.25, 0.75])


def test_cli_refuses_to_overwrite_a_checkpoint_without_being_asked(
        use_tiny, photo_path, painting_path, tmp_path, capsys):
    out = tmp_path / "out.png"
    path_for(out).write_bytes(b"an unfinished run")
    args = ["stylize", str(photo_path), str(painting_path), "-o", str(out), "--size", "32"]
    assert main(args) == 1
    assert "pass --resume to continue it, or --force to start over" in capsys.readouterr().err
    assert path_for(out).read_bytes() == b"an unfinished run" and not out.exists()
    assert main([*args, "--resume"]) == 1
    assert "is damaged" in capsys.readouterr().err
    assert main([*args, "--force", "--iterations", "3"]) == 0
    assert out.exists() and not path_for(out).exists()


def _stylize_cmd(model: Path, photo: Path, painting: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "brushwork", "stylize", str(photo), str(painting), "-o",
            str(out), "--model", str(model), "--size", "64", "--min-size", "32",
            "--iterations", "40", "--seed", "2", "--quiet", "--stop-tolerance", "0"]


def test_a_run_killed_with_sigkill_resumes_to_the_same_loss(
        tiny_model_file, photo_path, painting_path, tmp_path):
    """A real kill -9 of the CLI mid-run: the checkpoint on disk is whole and resumes."""
    env = {**os.environ, "BRUSHWORK_CACHE": str(tmp_path / "cache")}
    whole = tmp_path / "whole.png"
    subprocess.run(_stylize_cmd(tiny_model_file, photo_path, painting_path, whole),
                   check=True, env=env, timeout=300)
    out = tmp_path / "out.png"
    cmd = [*_stylize_cmd(tiny_model_file, photo_path, painting_path, out),
           "--checkpoint-every", "0.00001"]
    proc = subprocess.Popen(cmd, env=env)
    ckpt = path_for(out)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists() and load(ckpt).step >= 50:  # in the last scale
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not out.exists() and ckpt.exists()
    step = load(ckpt).step
    assert 50 <= step < 120
    subprocess.run([*cmd, "--resume"], check=True, env=env, timeout=300)
    from PIL import Image

    a = np.asarray(Image.open(whole), dtype=float)
    b = np.asarray(Image.open(out), dtype=float)
    assert np.abs(a - b).max() <= 1.0  # the same picture (PNG rounding aside)
    assert not ckpt.exists()


def test_tensor_bytes_counts_each_storage_once():
    from brushwork.io.checkpoint import tensor_bytes

    image = torch.zeros(1, 3, 8, 8)
    s = [torch.zeros(192) for _ in range(3)]
    saved = Checkpoint(settings={}, inputs="", level=0, taken=1, step=1, work_done=0.0,
                       elapsed=0.0, image=image,
                       optimiser={"lbfgs": {"g": torch.zeros(192), "s": s, "y": s,
                                            "rho": [1.0] * 3}}, stop_rule={})
    assert tensor_bytes(saved) == (192 + 192 + 3 * 192) * 4  # y shares s's storages


def test_a_resumed_runs_plan_counts_its_checkpoint_once(
        use_tiny, photo_path, painting_path, tmp_path, monkeypatch):
    """The loaded checkpoint's vectors are resident when the run plans, and are the
    state the plan counts as kept: the resumed run's forecast is the fresh run's."""
    import brushwork.engine.painter as engine
    from brushwork.engine.memory import calibration
    from brushwork.io.checkpoint import tensor_bytes

    resident = {"bytes": 1e9}
    monkeypatch.setattr(calibration, "resident_bytes", lambda device: resident["bytes"])
    forecasts = []
    real = engine._forecast
    monkeypatch.setattr(engine, "_forecast",
                        lambda *a, **k: forecasts.append(real(*a, **k)) or forecasts[-1])
    ckpt = tmp_path / "run.checkpoint"
    with pytest.raises(Interrupted):
        stylize(photo_path, painting_path, checkpoint=ckpt, callback=StopAt(30), **OPTS)
    saved = load(ckpt)
    held = tensor_bytes(saved)
    assert held >= 4 * saved.image.numel() * 4  # the picture, g and at least one pair
    resident["bytes"] = 1e9 + held  # as the process holds it once loaded
    stylize(photo_path, painting_path, checkpoint=ckpt, resume=True, **OPTS)
    fresh, resumed = forecasts
    assert resumed.peak_bytes == pytest.approx(fresh.peak_bytes)
