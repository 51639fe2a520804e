"""Checkpoints: a stopped run resumed ends where the uninterrupted one does."""

from __future__ import annotations

import os
import re
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


@pytest.fixture
def calibrated(monkeypatch):
    """A fixed calibration: measuring this machine for the tiny network takes longer than
    these tests, which are not about the plan."""
    from brushwork.engine.memory import calibration

    known = calibration.Calibration(device="cpu", resident_bytes=0.0,
                                    eval_bytes=calibration.Line(0.0, 1000.0),
                                    eval_seconds=calibration.Line(0.0, 1e-6),
                                    forward_share=0.3)
    monkeypatch.setattr(calibration, "calibration_for", lambda *a, **k: known)


# Two scales, 6 + 3 steps; stopped at step 9, the checkpoint is the 2nd step of the 2nd.
SHORT = dict(OPTS, iterations=3)


def _forged(saved: Checkpoint, **fields) -> Checkpoint:
    return Checkpoint(**{**saved.__dict__, **fields})


def _lbfgs_forgeries(saved: Checkpoint) -> list[tuple[str, dict, str]]:
    lbfgs = saved.optimiser["lbfgs"]
    pairs = len(lbfgs["s"])
    return [
        ("level 99", dict(level=99), "level is 99, where this run has 0 to 1"),
        ("level -1", dict(level=-1), "level is -1, where this run has 0 to 1"),
        ("level as text", dict(level="1"), "level is text, not a whole number"),
        ("7x7 image", dict(image=torch.zeros(1, 3, 7, 7)),
         "image is 7x7 but this run paints that scale at 48x38"),
        ("int64 image", dict(image=saved.image.to(torch.int64)),
         "image holds int64, not float32 values"),
        ("float64 image", dict(image=saved.image.double()), "image holds float64"),
        ("NaN image", dict(image=saved.image * float("nan")),
         "image holds NaN or infinite values"),
        ("taken past the scale", dict(taken=10**9), "taken is 1000000000, where this run has "
                                                    "0 to 3"),
        ("step before taken", dict(step=-1), "step is -1, where this run has"),
        ("elapsed NaN", dict(elapsed=float("nan")), "elapsed is nan"),
        ("work as text", dict(work_done="x"), "work_done is text, not a number"),
        ("history of numbers", dict(history=[1, 2]), "history is not a list of named numbers"),
        ("losses of tensors", dict(losses={"total": torch.zeros(3)}),
         "losses are not named numbers"),
        ("settings with a tensor", dict(settings={**saved.settings, "size": torch.zeros(3)}),
         "settings holds a tensor"),
        ("settings as a list", dict(settings=[1]), "settings is not a table of options"),
        ("stop rule without changes", dict(stop_rule={}), "stop_rule lacks changes"),
        ("stop rule of text", dict(stop_rule={"changes": ["a"]}),
         "stop_rule's change 0 is text, not a number"),
        ("no optimiser state", dict(optimiser={}), "optimiser lacks evaluations, factor"),
        ("short gradient", dict(optimiser={**saved.optimiser, "lbfgs": {**lbfgs,
                                                                      "g": torch.zeros(5)}}),
         r"optimiser's gradient has shape \(5,\), not \(5472,\)"),
        ("short pairs", dict(optimiser={**saved.optimiser, "lbfgs": {
            **lbfgs, "s": [torch.zeros(5)] * pairs}}), r"optimiser's lbfgs s 0 has shape"),
        ("too many pairs", dict(optimiser={**saved.optimiser, "lbfgs": {
            **lbfgs, **{k: lbfgs[k] * 30 for k in ("s", "y", "rho")}}}),
         "more than history_size 20"),
        ("rho as text", dict(optimiser={**saved.optimiser, "lbfgs": {**lbfgs,
                                                                   "rho": ["x"] * pairs}}),
         "optimiser's lbfgs rho 0 is text, not a number"),
    ]


def test_forged_checkpoint_fields_are_one_line_errors_before_the_network_loads(
        use_tiny, calibrated, photo_path, painting_path, tmp_path, monkeypatch):
    """Each field is checked against the run that resumes it: its scales' sizes and
    steps, its optimiser's state, the picture's type; nothing fails mid-run."""
    import brushwork.engine.painter as engine

    ckpt = tmp_path / "run.checkpoint"
    with pytest.raises(Interrupted):
        stylize(photo_path, painting_path, checkpoint=ckpt, callback=StopAt(9), **SHORT)
    saved = load(ckpt)
    assert saved.level == 1 and saved.optimiser["lbfgs"]["s"]

    def no_network(*args, **kwargs):
        raise AssertionError("the network was loaded for a damaged checkpoint")

    monkeypatch.setattr(engine, "load_network", no_network)
    for name, fields, message in _lbfgs_forgeries(saved):
        save(ckpt, _forged(saved, **fields))
        with pytest.raises(BrushworkError) as refused:
            stylize(photo_path, painting_path, checkpoint=ckpt, resume=True, **SHORT)
        text = str(refused.value)
        assert text.startswith(f"checkpoint '{ckpt}' is damaged: "), (name, text)
        assert text.endswith("; start over with --force") and "\n" not in text, (name, text)
        assert re.search(message, text), (name, text)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_forged_torch_optimiser_state_is_refused(use_tiny, calibrated, photo_path,
                                                 painting_path, tmp_path, optimizer):
    opts = dict(SHORT, optimizer=optimizer)
    ckpt = tmp_path / "run.checkpoint"
    with pytest.raises(Interrupted):
        stylize(photo_path, painting_path, checkpoint=ckpt, callback=StopAt(9), **opts)
    saved = load(ckpt)
    opt = saved.optimiser["opt"]
    state = {**opt["state"]}
    if state:
        state[0] = {k: v for k, v in state[0].items() if k != "step"}
    else:  # sgd without momentum keeps nothing per value
        state[0] = {"momentum_buffer": torch.zeros(3)}
    forgeries = [
        ({**opt, "state": state}, r"optimiser's opt's state"),
        ({**opt, "param_groups": [{**opt["param_groups"][0], "lr": "fast"}]},
         "optimiser's opt's param_groups 0's lr is text, not a number"),
        ({**opt, "param_groups": [{**opt["param_groups"][0], "params": [7]}]},
         r"optimiser's opt's param_groups 0's params is \[7\], not \[0\]"),
        ({**opt, "param_groups": []}, "optimiser's opt's param_groups is not a list of 1"),
    ]
    if optimizer == "adam":
        exp_avg = state[0]["exp_avg"]
        forgeries.append(({**opt, "state": {0: {**opt["state"][0], "exp_avg": exp_avg[..., :5]}}},
                          r"optimiser's opt's state 0's exp_avg has shape \(1, 3, 38, 5\)"))
    for forged, message in [*forgeries, ({**saved.optimiser, "grad": torch.zeros(2)}, None)]:
        optimiser = {**saved.optimiser, "opt": forged} if message else forged
        save(ckpt, _forged(saved, optimiser=optimiser))
        with pytest.raises(BrushworkError, match=message or r"optimiser's gradient has shape"):
            stylize(photo_path, painting_path, checkpoint=ckpt, resume=True, **opts)
    # The checkpoint as saved still resumes.
    save(ckpt, saved)
    stylize(photo_path, painting_path, checkpoint=ckpt, resume=True, **opts)


def test_cli_resume_of_a_forged_checkpoint_is_one_line(use_tiny, calibrated, photo_path,
                                                       painting_path, tmp_path, capsys):
    out = tmp_path / "out.png"
    args = ["stylize", str(photo_path), str(painting_path), "-o", str(out), "--size", "32",
            "--iterations", "3", "--multiscale", "off", "--quiet"]
    ckpt = path_for(out)
    image = torch.zeros(1, 3, 26, 32)
    # A real run's settings and inputs, so that the fields are what is refused.
    with pytest.raises(Interrupted):
        stylize(photo_path, painting_path, checkpoint=ckpt, callback=StopAt(2), size=32,
                iterations=3, multiscale="off")
    saved = load(ckpt)
    assert saved.image.shape == image.shape
    save(ckpt, _forged(saved, level=99))
    assert main([*args, "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"brushwork: error: checkpoint '{ckpt}' is damaged: level is 99, where this run has "
        f"0 to 0; start over with --force"], err
    assert not out.exists() and ckpt.exists()
