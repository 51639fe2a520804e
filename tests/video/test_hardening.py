"""Video inputs and outputs held to the pictures' promises (issue 29): only real video
containers, the pixel limits on the stream and on every frame, timestamps rather than
packets in memory, audio tried before painting, bounded --fps, checked frames on resume,
the pictures' file mode, the source's timing, and no frames folder left by a run that
painted nothing."""

from __future__ import annotations

import os
import stat
import weakref

import numpy as np
import pytest
from PIL import Image
from video_support import (
    audio_rate,
    frame_times,
    need_video_packages,
    read_video,
    write_clip,
)

from brushwork.commands import main
from brushwork.errors import BrushworkError

FAST = dict(size=64, iterations=4, frame_iterations=2, multiscale="off", seed=1)
CLI_FAST = ["--size", "64", "--iterations", "4", "--frame-iterations", "2", "--multiscale",
            "off", "--seed", "1", "--quiet"]


@pytest.fixture
def packages():
    need_video_packages()


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> None:
    assert code == 1, err
    assert err.count("\n") == 1 and err.startswith("brushwork: error: "), err


# Only real video containers (item 2) ------------------------------------------------------

def _picture(path, size=(64, 48)):
    Image.new("RGB", size, (90, 120, 150)).save(path, format="PNG")
    return path


@pytest.mark.parametrize("case", ["png-named-mp4", "m3u8-playlist", "ffconcat", "image2-pattern",
                                  "gif"])
def test_only_real_video_containers_are_opened(packages, capsys, tiny_model_file, tmp_path,
                                               painting_path, case):
    """A picture named like a video, a playlist or a concat list (which pull in other
    local files), an image sequence: refused before FFmpeg reads past the probe."""
    write_clip(tmp_path / "other.mkv", frames=3)
    if case == "png-named-mp4":
        source = _picture(tmp_path / "clip.mp4")
    elif case == "m3u8-playlist":
        source = tmp_path / "list.m3u8"
        source.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1,\nother.mkv\n"
                          "#EXT-X-ENDLIST\n")
    elif case == "ffconcat":
        source = tmp_path / "list.mp4"
        source.write_text("ffconcat version 1.0\nfile other.mkv\n")
    elif case == "image2-pattern":
        _picture(tmp_path / "shot001.png")
        source = _picture(tmp_path / "shot%03d.png")
    else:  # an animated picture is a picture: `stylize` paints its first frame
        source = tmp_path / "moving.gif"
        frames = [Image.new("RGB", (64, 48), (k * 40, 0, 0)) for k in range(3)]
        frames[0].save(source, save_all=True, append_images=frames[1:])
    out = tmp_path / "out.mp4"
    code, _, err = run(capsys, "video", source, painting_path, "-o", out, "--model",
                       tiny_model_file, *CLI_FAST)
    one_line_error(code, err)
    assert "is not a video file brushwork reads" in err, err
    assert "accepted: MP4/MOV, Matroska/WebM, AVI, MPEG-TS, MPEG-PS, FLV, Ogg, ASF/WMV" in err
    assert not out.exists() and not (tmp_path / "out.mp4.frames").exists()


def test_the_usual_containers_are_accepted(packages, tmp_path):
    """Each accepted demuxer name opens a file written in that container."""
    from brushwork.video.clip import DEMUXERS, open_clip
    from brushwork.video.settings import VideoSettings

    assert not {"hls", "concat", "image2", "png_pipe", "gif"} & set(DEMUXERS)
    for name, codec in [("a.mkv", "ffv1"), ("a.mp4", "libx264"), ("a.avi", "ffv1")]:
        clip = open_clip(write_clip(tmp_path / name, frames=2, codec=codec), VideoSettings())
        assert clip.frames == 2


# The picture limits (item 2) --------------------------------------------------------------

def test_a_stream_over_the_pixel_limit_is_refused_before_decoding(packages, capsys,
                                                                  tiny_model_file, tmp_path,
                                                                  painting_path, monkeypatch):
    import av

    clip = write_clip(tmp_path / "in.mkv", frames=3)
    decoded: list[object] = []
    real_decode = av.container.InputContainer.decode

    def spy(self, *args, **kwargs):
        decoded.append(args)
        return real_decode(self, *args, **kwargs)

    monkeypatch.setattr(av.container.InputContainer, "decode", spy)
    out = tmp_path / "out.mp4"
    code, _, err = run(capsys, "video", clip, painting_path, "-o", out, "--model",
                       tiny_model_file, *CLI_FAST, "--max-pixels", "3000")
    one_line_error(code, err)
    assert "video '" in err and "is 64x48 = 0.00307 megapixels, over the limit of 0.003 " \
        "(max_pixels)" in err, err
    assert not decoded and not out.exists() and not (tmp_path / "out.mp4.frames").exists()


def test_a_stream_under_the_smallest_side_is_refused(packages, capsys, tiny_model_file,
                                                     tmp_path, painting_path):
    """`stylize` refuses a 64x12 photo; a 64x12 video, scaled up by --size, too."""
    clip = write_clip(tmp_path / "thin.mkv", frames=2, size=(64, 12))
    code, _, err = run(capsys, "video", clip, painting_path, "-o", tmp_path / "out.mp4",
                       "--model", tiny_model_file, *CLI_FAST, "--size", "256")
    one_line_error(code, err)
    assert "is 64x12 pixels; at least 16 pixels are needed on each side" in err


def test_every_decoded_frame_is_held_to_the_pixel_limit(packages, tmp_path):
    """An MPEG-TS stream that declares 64x48 and then changes to 128x96 (two files end to
    end): the bigger frames are refused by the decoder itself, before their memory is
    taken, with the pixel limit's one line."""
    from brushwork.video.clip import open_clip, read_frames
    from brushwork.video.settings import VideoSettings

    small = write_clip(tmp_path / "small.ts", frames=3, codec="libx264")
    big = write_clip(tmp_path / "big.ts", frames=3, size=(128, 96), codec="libx264")
    both = tmp_path / "both.ts"
    both.write_bytes(small.read_bytes() + big.read_bytes())
    clip = open_clip(both, VideoSettings(), max_pixels=64 * 48)
    assert clip.size == (64, 48)
    with pytest.raises(BrushworkError) as e:
        list(read_frames(clip, (64, 48)))
    assert str(e.value) == (f"a frame of video '{both}' is 128x96 = 0.0123 megapixels, over "
                            f"the limit of 0.00307 (max_pixels)")


# Timestamps, not packets (item 3) ---------------------------------------------------------

def test_opening_a_clip_keeps_timestamps_not_packets(packages, tmp_path, monkeypatch):
    """While the clip is looked at, each packet is dropped before the next is read."""
    import av

    from brushwork.video.clip import open_clip
    from brushwork.video.settings import VideoSettings

    clip = write_clip(tmp_path / "in.mkv", frames=12)
    real_demux = av.container.InputContainer.demux
    alive: list[weakref.ref] = []
    most = [0]

    class Held:
        """A packet that can be watched (PyAV's packets take no weak references)."""

        def __init__(self, packet):
            self._packet = packet

        def __getattr__(self, name):
            return getattr(self._packet, name)

    def watched(self, *args, **kwargs):
        for packet in real_demux(self, *args, **kwargs):
            held = Held(packet)
            alive.append(weakref.ref(held))
            most[0] = max(most[0], sum(r() is not None for r in alive))
            yield held
            del held

    monkeypatch.setattr(av.container.InputContainer, "demux", watched)
    assert open_clip(clip, VideoSettings()).frames == 12
    assert len(alive) >= 12
    assert most[0] <= 2, f"{most[0]} packets held at once"


# Audio tried before painting (item 4) -----------------------------------------------------

def test_audio_the_encoder_cannot_take_is_resampled_before_painting(packages, use_tiny,
                                                                    tmp_path, painting_path):
    """192 kHz PCM: AAC takes at most 96 kHz; the audio is resampled to 48 kHz and the
    video is written with sound (it used to fail after every frame was painted)."""
    from brushwork.video import stylize_video

    clip = write_clip(tmp_path / "in.mkv", frames=4, audio=True, audio_rate=192000,
                      audio_codec="pcm_s16le")
    assert audio_rate(clip) == 192000
    result = stylize_video(clip, painting_path, tmp_path / "out.mp4", **FAST)
    frames, has_audio, seconds = read_video(tmp_path / "out.mp4")
    assert result.frames == 4 and len(frames) == 4
    assert has_audio and audio_rate(tmp_path / "out.mp4") == 48000
    assert seconds == pytest.approx(4 / 12, abs=0.06)


def test_audio_that_cannot_be_written_is_dropped_with_a_warning_before_painting(
        packages, use_tiny, tmp_path, painting_path, monkeypatch):
    from brushwork.video import encode, stylize_video

    clip = write_clip(tmp_path / "in.mkv", frames=3, audio=True)
    monkeypatch.setattr(encode, "AUDIO_CODEC", "no-such-audio-encoder")
    events: list[str] = []
    out = tmp_path / "out.mp4"
    result = stylize_video(clip, painting_path, out, log=events.append,
                           on_frame=lambda k, n, r: events.append(f"frame {k}"), **FAST)
    warnings = [e for e in events if "without sound" in e]
    assert len(warnings) == 1 and events.index(warnings[0]) < events.index("frame 0")
    assert "\n" not in warnings[0] and "audio of video" in warnings[0]
    frames, has_audio, _ = read_video(out)
    assert result.frames == 3 and len(frames) == 3 and not has_audio


# --fps bounds and resumed frames (item 7) -------------------------------------------------

@pytest.mark.parametrize("fps", ["0.0004", "1e8", "0.009", "241"])
def test_fps_outside_its_bounds_is_one_line(packages, capsys, tiny_model_file, tmp_path,
                                            painting_path, fps):
    clip = write_clip(tmp_path / "in.mkv", frames=3)
    code, _, err = run(capsys, "video", clip, painting_path, "-o", tmp_path / "out.mp4",
                       "--model", tiny_model_file, *CLI_FAST, "--fps", fps)
    one_line_error(code, err)
    assert "fps must be from 0.01 to 240 frames per second" in err


def test_fps_at_its_bounds_is_accepted():
    from brushwork.video.settings import VideoSettings

    assert VideoSettings(fps=0.01).fps == 0.01 and VideoSettings(fps=240).fps == 240
    with pytest.raises(BrushworkError, match="not 0.0004"):
        VideoSettings(fps=0.0004)


def test_a_resumed_frame_of_another_size_is_refused_undecoded(packages, use_tiny, tmp_path,
                                                              painting_path, monkeypatch):
    """A finished frame replaced by a (huge) picture: one line naming it, from its header
    alone, before any network is loaded or frame decoded."""
    from PIL import ImageFile

    from brushwork.video import stylize_video

    clip = write_clip(tmp_path / "in.mkv", frames=3)
    out = tmp_path / "frames"

    def crash(k, n, result):
        if k == 1:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        stylize_video(clip, painting_path, out, on_frame=crash, **FAST)
    Image.new("L", (4000, 4000)).save(out / "frame_00001.png")  # 16 Mpx, 16 kB
    loads: list[object] = []
    real_load = ImageFile.ImageFile.load

    def spy(self):
        if self.size == (4000, 4000):
            loads.append(self)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    with pytest.raises(BrushworkError) as e:
        stylize_video(clip, painting_path, out, resume=True, **FAST)
    text = str(e.value)
    assert "\n" not in text and "frame_00001.png" in text
    assert "is 4000x4000, not the run's 64x48 frames" in text
    assert not loads


# Output mode, timing, the frames folder (item 10) ------------------------------------------

def test_a_video_file_gets_the_pictures_mode(packages, use_tiny, tmp_path, painting_path):
    from brushwork.io.images import save_image
    from brushwork.video import stylize_video

    clip = write_clip(tmp_path / "in.mkv", frames=2)
    old = os.umask(0o022)
    try:
        stylize_video(clip, painting_path, tmp_path / "out.mp4", **FAST)
        picture = save_image(Image.new("RGB", (16, 16)), tmp_path / "picture.png")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "out.mp4").st_mode)
    assert mode == stat.S_IMODE(os.stat(picture).st_mode) == 0o644


def test_a_variable_frame_rate_keeps_the_sources_timing(packages, use_tiny, tmp_path,
                                                       painting_path):
    """Frames at 0, 0.1, 0.2, 1.0, 2.0 and 3.0 s (an average of 2 fps): the painted video
    shows each at its time, as the source does."""
    from brushwork.video import stylize_video

    times = [0.0, 0.1, 0.2, 1.0, 2.0, 3.0]
    clip = write_clip(tmp_path / "vfr.mkv", times=times)
    assert frame_times(clip) == pytest.approx(times)
    stylize_video(clip, painting_path, tmp_path / "out.mp4", **FAST)
    assert frame_times(tmp_path / "out.mp4") == pytest.approx(times, abs=1e-3)
    # A range of it starts at its first frame.
    stylize_video(clip, painting_path, tmp_path / "part.mkv", frames="2:5", **FAST)
    assert frame_times(tmp_path / "part.mkv") == pytest.approx([0.0, 0.8, 1.8], abs=1e-3)
    # --fps asks for a constant rate.
    stylize_video(clip, painting_path, tmp_path / "even.mp4", fps=2, end=2.0, **FAST)
    even = frame_times(tmp_path / "even.mp4")
    assert len(even) == 4 and np.allclose(np.diff(even), 0.5)


@pytest.mark.parametrize("output", ["out.mp4", "folder", "empty-folder"])
def test_a_run_that_fails_before_its_first_frame_leaves_no_frames_folder(
        packages, use_tiny, tmp_path, painting_path, output):
    from brushwork.video import stylize_video

    clip = write_clip(tmp_path / "in.mkv", frames=3)
    out = tmp_path / ("out.mp4" if output == "out.mp4" else "frames")
    if output == "empty-folder":
        out.mkdir()

    def fail(step):
        raise RuntimeError("the first frame failed")

    with pytest.raises(RuntimeError, match="first frame failed"):
        stylize_video(clip, painting_path, out, callback=fail, **FAST)
    folder = tmp_path / "out.mp4.frames" if output == "out.mp4" else out
    if output == "empty-folder":  # the user's own folder stays, as it was
        assert folder.is_dir() and not any(folder.iterdir())
    else:
        assert not folder.exists()
    # Nothing to resume, nothing in the way of a new run.
    result = stylize_video(clip, painting_path, out, **FAST)
    assert result.frames == 3
