"""Video (brushwork.video): flow, warping, the reliability check and the temporal loss on
tiny synthetic clips; the run, resume, Ctrl-C and bad input, with the tiny network."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from video_support import (
    SQUARE,
    SQUARE_Y,
    clip_frame,
    need_video_packages,
    read_video,
    square_x,
    write_clip,
)

from brushwork.commands import main
from brushwork.errors import BrushworkError
from brushwork.video.flow import reliability, warp
from brushwork.video.temporal import TemporalTerms, long_term_weights, temporal_loss

STEP = 3  # the square's motion, px per frame
FAST = dict(size=64, iterations=4, frame_iterations=2, multiscale="off", seed=1)
CLI_FAST = ["--size", "64", "--iterations", "4", "--frame-iterations", "2", "--multiscale",
            "off", "--seed", "1", "--quiet"]


def shifted(dx: float, dy: float, h: int = 20, w: int = 24) -> torch.Tensor:
    return torch.stack([torch.full((h, w), float(dx)), torch.full((h, w), float(dy))])[None]


# Pure functions -------------------------------------------------------------------------

def test_warp_fetches_from_the_displaced_point():
    picture = torch.arange(2 * 20 * 24, dtype=torch.float32).view(1, 2, 20, 24)
    out = warp(picture, shifted(2, 1))
    assert torch.allclose(out[..., :-1, :-2], picture[..., 1:, 2:])
    # Half a pixel is the mean of the two neighbours (bilinear).
    half = warp(picture, shifted(0.5, 0))
    assert torch.allclose(half[..., :-1], (picture[..., :-1] + picture[..., 1:]) / 2)


def test_reliability_is_one_where_flows_agree_and_zero_where_they_leave_or_disagree():
    backward, forward = shifted(-2, 0), shifted(2, 0)
    c = reliability(backward, forward, smooth=0)
    assert (c[..., 2:] == 1).all()  # p - 2 stays in the frame
    assert (c[..., :2] == 0).all()  # leaves it on the left
    bad = forward.clone()
    bad[..., 5:10, 10:14] = torch.tensor([-2.0, 3.0]).view(1, 2, 1, 1)
    c = reliability(backward, bad, smooth=0)
    assert (c[..., 5:10, 12:16] == 0).all()  # p - 2 lands on the inconsistent patch
    assert (c[..., 14:, 4:] == 1).all()
    # A motion boundary: one half still, one half moving fast.
    split = torch.zeros(1, 2, 20, 24)
    split[:, 0, :, 12:] = -4.0
    fwd = warp(-split, split)
    c = reliability(split, fwd, smooth=0)
    assert (c[..., 11:13] == 0).all() and (c[..., 2:10] == 1).all()


def test_temporal_loss_is_zero_for_a_perfect_warp_and_its_gradient_only_touches_reliable_pixels():
    g = torch.Generator().manual_seed(0)
    warped = torch.rand(1, 3, 8, 10, generator=g) * 255
    weights = torch.zeros(1, 1, 8, 10)
    weights[..., :, :5] = 1.0
    assert float(temporal_loss(warped.clone(), warped, weights)) == 0.0
    x = (warped + torch.randn(1, 3, 8, 10, generator=g) * 10).requires_grad_(True)
    loss = temporal_loss(x, warped, weights)
    loss.backward()
    assert loss > 0
    assert x.grad is not None
    assert (x.grad[..., 5:] == 0).all() and (x.grad[..., :5] != 0).all()
    # (1/D) sum c (x - w)^2, by hand
    expected = ((x.detach() - warped)[..., :5] ** 2).sum() / x.numel()
    assert torch.isclose(loss.detach(), expected)


def test_long_term_weights_count_each_pixel_from_the_nearest_reliable_frame():
    c1 = torch.tensor([1.0, 0.0, 0.5, 0.0])
    c2 = torch.tensor([1.0, 1.0, 1.0, 0.0])
    c4 = torch.tensor([1.0, 1.0, 1.0, 1.0])
    out = long_term_weights([c1, c2, c4])
    assert torch.equal(out[0], c1)
    assert torch.equal(out[1], torch.tensor([0.0, 1.0, 0.5, 0.0]))
    assert torch.equal(out[2], torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_temporal_terms_resize_to_a_coarser_picture_and_add_the_frames():
    from brushwork.video.temporal import Earlier

    w = torch.full((1, 3, 8, 8), 100.0)
    terms = TemporalTerms([Earlier(2, w + 10, torch.ones(1, 1, 8, 8)),
                           Earlier(1, w, torch.ones(1, 1, 8, 8))], weight=3.0)
    assert float(terms(w)["temporal"]) == 0.0  # the nearest frame counts everywhere
    small = terms(torch.full((1, 3, 4, 4), 102.0))["temporal"]
    assert float(small) == pytest.approx(3.0 * 4.0)


def test_engine_starts_from_a_given_picture_and_adds_extra_terms(use_tiny, photo_path,
                                                                 painting_path):
    from brushwork import stylize

    seen: list[torch.Tensor] = []

    def pull(x):
        seen.append(x.detach().clone())
        return {"pull": 1e-3 * (x - 128).pow(2).mean()}

    start = torch.full((1, 3, 26, 32), 77.0)
    result = stylize(photo_path, painting_path, start=start, terms=pull, size=32,
                     iterations=3, multiscale="off", seed=1)
    assert torch.equal(seen[0], start)
    first = result.history[0]
    assert first["pull"] == pytest.approx(1e-3 * 51**2)
    assert first["total"] == pytest.approx(first["content"] + first["style"] + first["tv"]
                                           + first["pull"], rel=1e-5)
    assert result.pixels is not None and result.pixels.shape == (1, 3, 26, 32)
    with pytest.raises(BrushworkError, match="start must be"):
        stylize(photo_path, painting_path, start=torch.zeros(3, 26, 32), size=32)


def test_engine_paints_a_fresh_region_on_its_own(use_tiny, photo_path, painting_path,
                                                 tmp_path):
    from brushwork import stylize

    run = dict(size=32, iterations=4, multiscale="off", seed=1)
    plain = stylize(photo_path, painting_path, **run)
    nothing_new = stylize(photo_path, painting_path, fresh=torch.zeros(1, 1, 13, 16), **run)
    torch.testing.assert_close(nothing_new.pixels, plain.pixels, rtol=0, atol=0.05)
    fresh = torch.zeros(1, 1, 26, 32)
    fresh[..., 8:20, 10:24] = 1.0
    split = stylize(photo_path, painting_path, fresh=fresh, **run)
    assert split.pixels is not None and plain.pixels is not None
    assert float((split.pixels - plain.pixels).abs().max()) > 1.0
    with pytest.raises(BrushworkError, match="fresh must be"):
        stylize(photo_path, painting_path, fresh=torch.zeros(26, 32), **run)
    with pytest.raises(BrushworkError, match="fresh regions"):
        stylize(photo_path, painting_path, fresh=fresh, checkpoint=tmp_path / "c.pt", **run)


# Flow on a real (synthetic) clip ----------------------------------------------------------

@pytest.fixture
def packages():
    need_video_packages()


def test_flow_recovers_the_motion_and_warping_moves_the_previous_frame_by_it(packages):
    from brushwork.video.flow import grey, optical_flow

    a, b = clip_frame(1, step=STEP), clip_frame(2, step=STEP)
    backward = optical_flow(grey(b), grey(a))  # frame 2 -> frame 1
    forward = optical_flow(grey(a), grey(b))
    sx = square_x(2, STEP)
    inside = (slice(SQUARE_Y + 2, SQUARE_Y + SQUARE - 2), slice(sx + 2, sx + SQUARE - 2))
    dx = backward[0, 0][inside].median()
    dy = backward[0, 1][inside].median()
    assert abs(float(dx) + STEP) < 0.5 and abs(float(dy)) < 0.5
    assert float(backward[0, :, 36:, :].abs().max()) < 0.5  # the still background
    # The square vacated x in [sx - STEP, sx) of frame 1: disoccluded, unreliable.
    c = reliability(backward, forward)
    vacated = c[0, 0, SQUARE_Y + 2:SQUARE_Y + SQUARE - 2, sx - STEP:sx]
    assert float(vacated.mean()) < 0.3
    assert float(c[0, 0, 36:, 4:-4].mean()) > 0.95  # (at the border the flow may leave)
    # Warped along the flow, frame 1 matches frame 2 where reliable.
    pa, pb = (torch.from_numpy(f).permute(2, 0, 1)[None].float() for f in (a, b))
    moved = warp(pa, backward)
    err_warped = float((c * (moved - pb).abs()).sum() / c.sum())
    err_still = float((c * (pa - pb).abs()).sum() / c.sum())
    assert err_warped < 4 and err_warped < err_still / 3


def test_only_wide_new_parts_are_painted_on_their_own(packages):
    from brushwork.video.temporal import Earlier

    h, w = 64, 96
    weights = torch.ones(1, 1, h, w)
    weights[..., 10:50, 5:9] = 0  # a strip 4 px wide: what a moving edge uncovers
    weights[..., 20:56, 40:80] = 0  # a wide new part: an object that came into view
    terms = TemporalTerms([Earlier(1, torch.zeros(1, 3, h, w), weights)], 1e5)
    fresh = terms.fresh()  # parts narrower than 1/8 of the short side (8 px) dropped
    assert float(fresh[..., 10:50, 5:9].max()) == 0
    assert float(fresh[..., 20:56, 40:80].mean()) > 0.95  # (its corners rounded)
    assert float(fresh.sum()) == pytest.approx(36 * 40, rel=0.05)


def test_a_fast_object_is_found_from_the_last_motion_and_a_wrong_guess_loses_nothing(
        packages):
    from brushwork.video.flow import grey, motion

    step = 12  # a 12 px square moving 12 px a frame: DIS from nothing loses it here
    a, b = grey(clip_frame(1, step=step)), grey(clip_frame(2, step=step))
    sx = square_x(2, step)
    inside = (0, 0, slice(SQUARE_Y + 2, SQUARE_Y + SQUARE - 2), slice(sx + 2, sx + SQUARE - 2))
    unguided = motion(b, a)
    assert float(unguided.weights[inside].mean()) < 0.5
    last = torch.zeros(1, 2, 48, 64)
    last[:, 0] = -step  # the motion of the frame pair before (all of it, for simplicity)
    guided = motion(b, a, last)
    assert abs(float(guided.backward[inside].median()) + step) < 0.5
    assert float(guided.weights[inside].mean()) > 0.95
    assert float(guided.backward[0, :, 36:, :].abs().max()) < 0.5  # the still background
    # A guess that fits nothing: each pixel keeps the unguided flow's check, or better.
    wrong = motion(b, a, -last)
    assert bool((wrong.weights >= unguided.weights).all())
    assert float(wrong.weights[0, 0, 36:, 4:-4].mean()) > 0.95


def test_decoded_frames_are_matched_by_time_when_the_decoder_skips_one(packages, tmp_path,
                                                                       monkeypatch):
    from brushwork.video import clip as clips
    from brushwork.video.settings import VideoSettings

    path = write_clip(tmp_path / "in.mkv", frames=5)  # lossless
    clip = clips.open_clip(path, VideoSettings())
    opened = clips._open

    class Skipping:
        """The file's container, whose decoder loses the third frame."""

        def __init__(self, container):
            self.container = container
            self.streams = container.streams

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.container.close()

        def decode(self, stream):
            for n, frame in enumerate(self.container.decode(stream)):
                if n != 2:
                    yield frame

    monkeypatch.setattr(clips, "_open", lambda p: Skipping(opened(p)))
    got = list(clips.read_frames(clip, (64, 48)))
    assert [k for k, _ in got] == [0, 1, 2, 3, 4]
    shown = [int(np.argmin([np.abs(np.asarray(picture, float) - clip_frame(j)).mean()
                            for j in range(5)])) for _, picture in got]
    assert shown == [0, 1, 3, 3, 4]  # each frame in its place; the lost one shows the next


def test_a_guided_flow_that_agrees_with_itself_but_fetches_the_wrong_pixels_is_refused(
        monkeypatch):
    from brushwork.video import flow

    # A still, textured scene; the unguided flows find it still except in columns 10-19,
    # where the forward flow is off (so the check fails there).  The guided pair carries
    # those columns 6 px along, consistently, as it would carry on an object that has
    # left: it passes the check, but fetches pixels 6 px away.
    earlier = np.random.default_rng(0).integers(0, 256, (24, 32), dtype=np.uint8)
    frame = earlier.copy()
    zero = torch.zeros(1, 2, 24, 32)
    unguided_forward, guided_backward, guided_forward = zero.clone(), zero.clone(), zero.clone()
    unguided_forward[:, 0, :, 10:20] = 6
    guided_backward[:, 0, :, 10:20] = -6
    guided_forward[:, 0, :, 4:14] = 6

    def scripted(a, b, guess=None):
        backward = a is frame
        if guess is None:
            return zero.clone() if backward else unguided_forward
        return guided_backward if backward else guided_forward

    monkeypatch.setattr(flow, "optical_flow", scripted)
    band = (0, 0, slice(None), slice(12, 18))
    assert float(flow.reliability(guided_backward, guided_forward)[band].mean()) > 0.9
    m = flow.motion(frame, earlier, torch.full((1, 2, 24, 32), -6.0))
    assert float(m.weights[band].mean()) < 0.2  # left to the unguided flow, unreliable
    assert float(m.backward[0, 0][band[2:]].abs().max()) == 0
    assert float(m.weights[0, 0, :, 24:].mean()) > 0.9  # elsewhere both agree: still


# The run ----------------------------------------------------------------------------------

def test_video_run_writes_every_frame_with_audio(packages, use_tiny, tmp_path, painting_path):
    from brushwork.video import stylize_video

    clip = write_clip(tmp_path / "in.mkv", frames=6, audio=True)
    steps: list[tuple[int, int, bool]] = []
    result = stylize_video(
        clip, painting_path, tmp_path / "out.mp4",
        callback=lambda s: steps.append((s.frame, s.iterate.step, "temporal" in s.iterate.losses)),
        **FAST)
    frames, has_audio, seconds = read_video(tmp_path / "out.mp4")
    assert result.frames == result.painted == 6 and len(frames) == 6
    assert frames[0].shape == (48, 64, 3)
    assert has_audio and seconds == pytest.approx(0.5, abs=0.15)  # 6 frames at 12 fps
    assert not (tmp_path / "out.mp4.frames").exists()
    # The first frame takes --iterations, the later ones --frame-iterations.
    per_frame = {k: max(s for f, s, _ in steps if f == k) for k in range(6)}
    assert per_frame[0] == 4 and all(per_frame[k] == 2 for k in range(1, 6))
    # The temporal loss is part of every frame's objective but the first's.
    assert {f for f, _, temporal in steps if temporal} == {1, 2, 3, 4, 5}


def test_png_frames_output_and_frame_range(packages, use_tiny, tmp_path, painting_path):
    from brushwork.video import stylize_video

    clip = write_clip(tmp_path / "in.mkv", frames=6)
    out = tmp_path / "frames"
    result = stylize_video(clip, painting_path, out, frames="2:5", **FAST)
    names = sorted(p.name for p in out.glob("frame_*.png"))
    assert result.frames == 3 and names == ["frame_00001.png", "frame_00002.png",
                                            "frame_00003.png"]
    assert (out / "brushwork-video.json").is_file()


def test_killed_run_resumes_from_the_next_frame(packages, use_tiny, tmp_path, painting_path):
    from brushwork.video import stylize_video

    clip = write_clip(tmp_path / "in.mkv", frames=5)
    out = tmp_path / "out.mp4"

    def crash(k, n, result):
        if k == 1:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        stylize_video(clip, painting_path, out, on_frame=crash, **FAST)
    folder = tmp_path / "out.mp4.frames"
    kept = {p.name: p.read_bytes() for p in folder.glob("frame_*.png")}
    assert sorted(kept) == ["frame_00001.png", "frame_00002.png"] and not out.exists()
    painted: list[int] = []
    result = stylize_video(clip, painting_path, out, resume=True,
                           on_frame=lambda k, n, r: painted.append(k), **FAST)
    assert painted == [2, 3, 4] and result.frames == 5 and result.painted == 3
    assert len(read_video(out)[0]) == 5


@pytest.mark.parametrize("colors", ["none", "luminance"])
def test_resumed_frames_are_the_uninterrupted_runs(packages, use_tiny, tmp_path, painting_path,
                                                   colors):
    """What the resumed frames are compared with (the earlier paintings, before any colour
    change, and the motion the flows are guessed from) is rebuilt exactly."""
    from PIL import Image

    from brushwork.video import stylize_video

    clip = write_clip(tmp_path / "in.mkv", frames=4, step=6)
    run = {**FAST, "preserve_colors": colors}

    def crash(k, n, result):
        if k == 1:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        stylize_video(clip, painting_path, tmp_path / "resumed", on_frame=crash, **run)
    kept = sorted(p.name for p in (tmp_path / "resumed").glob("painting_*.png"))
    assert kept == ([] if colors == "none" else ["painting_00001.png", "painting_00002.png"])
    stylize_video(clip, painting_path, tmp_path / "resumed", resume=True, **run)
    stylize_video(clip, painting_path, tmp_path / "whole", **run)
    assert not list((tmp_path / "resumed").glob("painting_*.png"))  # gone when finished
    for k in range(1, 5):
        resumed, whole = (np.asarray(Image.open(tmp_path / f / f"frame_{k:05d}.png"))
                          for f in ("resumed", "whole"))
        assert np.array_equal(resumed, whole), k


def test_ctrl_c_leaves_a_playable_video_and_resume_finishes_it(packages, use_tiny, tmp_path,
                                                               painting_path):
    from brushwork.video import VideoInterrupted, stylize_video

    clip = write_clip(tmp_path / "in.mkv", frames=5)
    out = tmp_path / "out.mp4"

    def interrupt(s):
        if s.frame == 2:
            raise KeyboardInterrupt

    with pytest.raises(VideoInterrupted) as stop:
        stylize_video(clip, painting_path, out, callback=interrupt, **FAST)
    assert stop.value.result.frames == 2
    assert len(read_video(out)[0]) == 2
    with pytest.raises(BrushworkError, match="unfinished run"):
        stylize_video(clip, painting_path, out, force=False, **FAST)
    with pytest.raises(BrushworkError, match="other settings: iterations"):
        stylize_video(clip, painting_path, out, resume=True, **{**FAST, "iterations": 5})
    assert len(list((tmp_path / "out.mp4.frames").glob("frame_*.png"))) == 2
    stylize_video(clip, painting_path, out, resume=True, **FAST)
    assert len(read_video(out)[0]) == 5


def test_an_encoder_failure_at_the_end_keeps_the_finished_frames(packages, use_tiny, tmp_path,
                                                                 painting_path, monkeypatch):
    from brushwork.errors import OutputError
    from brushwork.video import paint, stylize_video

    clip = write_clip(tmp_path / "in.mkv", frames=3)
    out = tmp_path / "out.mp4"

    def fail(*args, **kwargs):
        raise OutputError("output 'out.mp4' could not be written (disk full)")

    monkeypatch.setattr(paint, "write_video", fail)
    with pytest.raises(OutputError):
        stylize_video(clip, painting_path, out, **FAST)
    assert len(list((tmp_path / "out.mp4.frames").glob("frame_*.png"))) == 3
    monkeypatch.undo()
    result = stylize_video(clip, painting_path, out, resume=True, **FAST)
    assert result.painted == 0 and len(read_video(out)[0]) == 3


# The command line -------------------------------------------------------------------------

def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_paints_a_video(packages, capsys, tiny_model_file, tmp_path, painting_path):
    clip = write_clip(tmp_path / "in.mkv", frames=3)
    code, _, err = run(capsys, "video", clip, painting_path, "-o", tmp_path / "out.mp4",
                       "--model", tiny_model_file, *CLI_FAST)
    assert code == 0, err
    assert len(read_video(tmp_path / "out.mp4")[0]) == 3


def test_cli_help_lists_the_video_options(capsys):
    assert main(["video", "--help"]) == 0
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    for needle in ["--frame-iterations", "--temporal-weight", "--temporal-frames",
                   "(default: 1,2,4)", "--fps", "--start", "--end", "--frames", "--resume",
                   "(default: prev-warped)", "--preserve-colors", "--seed"]:
        assert needle in text, needle


def _audio_only(path):
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=8000)
        af = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp",
                                        layout="stereo")
        af.sample_rate, af.pts = 8000, 0
        out.mux(s.encode(af))
        out.mux(s.encode(None))
    return path


def _no_frames(path):
    """A video stream with no frames (beside a little sound, so that the file is written)."""
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=12)
        s.width, s.height, s.pix_fmt = 64, 48, "bgr0"
        sound = out.add_stream("aac", rate=8000)
        af = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp",
                                        layout="stereo")
        af.sample_rate, af.pts = 8000, 0
        out.mux(sound.encode(af))
        out.mux(sound.encode(None))
    return path


@pytest.mark.parametrize("case, message", [
    ("not-a-video", "cannot be read as a video"),
    ("no-video-stream", "has no video stream"),
    ("zero-frames", "has no frames"),
    ("text-named-png", "is not a video file brushwork reads"),
    ("range", "--frames 10:20 is outside the clip, which has 3 frames"),
    ("past-the-end", "--start 9 s is past the end"),
    ("extension", "has extension '.avi'"),
    ("no-folder", "does not exist"),
    ("missing", "does not exist"),
])
def test_bad_input_is_one_line(packages, capsys, tiny_model_file, tmp_path, painting_path,
                               case, message):
    clip = write_clip(tmp_path / "in.mkv", frames=3)
    out = tmp_path / "out.mp4"
    extra: list[str] = []
    if case == "not-a-video":
        clip = tmp_path / "notes.mp4"
        clip.write_text("not a video")
    elif case == "text-named-png":  # FFmpeg's image reader would take it by its name
        clip = tmp_path / "notimg.png"
        clip.write_text("not a picture either")
    elif case == "no-video-stream":
        clip = _audio_only(tmp_path / "sound.m4a")
    elif case == "zero-frames":
        clip = _no_frames(tmp_path / "empty.mkv")
    elif case == "range":
        extra = ["--frames", "10:20"]
    elif case == "past-the-end":
        extra = ["--start", "9"]
    elif case == "extension":
        out = tmp_path / "out.avi"
    elif case == "no-folder":
        out = tmp_path / "nowhere" / "out.mp4"
    elif case == "missing":
        clip = tmp_path / "absent.mp4"
    code, _, err = run(capsys, "video", clip, painting_path, "-o", out, "--model",
                       tiny_model_file, *CLI_FAST, *extra)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("brushwork: error: "), err
    assert message in err
    assert not out.exists()


def test_missing_packages_say_how_to_install(capsys, monkeypatch, tmp_path, painting_path):
    import importlib

    real = importlib.import_module

    def no_av(name, *args):
        if name in ("av", "cv2"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_av)
    code, _, err = run(capsys, "video", tmp_path / "in.mp4", painting_path, "-o",
                       tmp_path / "out.mp4")
    assert code == 1 and err.count("\n") == 1
    assert "pip install 'brushwork[video]'" in err
