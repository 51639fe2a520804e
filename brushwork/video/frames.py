"""Where a video run keeps its finished frames: a folder of numbered PNGs and a manifest.

Each frame is written (atomically) as soon as it is painted, so a stop, a kill or a crash
loses at most the frame being painted; ``--resume`` reads the manifest, checks that the
run is the same, and goes on after the last finished frame.  For PNG output the folder
is the output; for a video file it sits beside it (``OUT.mp4.frames``) until the video
is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from brushwork._version import __version__
from brushwork.errors import BrushworkError, OutputError
from brushwork.io.images import check_output_dir, pillow_limit, save_image, save_text
from brushwork.video.clip import Clip

MANIFEST = "brushwork-video.json"
FRAME = re.compile(r"frame_(\d{5,})\.png")
# A frame's painting before --preserve-colors luminance, when that differs from the frame:
# what the next frames' temporal terms compare with, kept until the run is finished.
PAINTING = re.compile(r"painting_(\d{5,})\.png")
FOLDER_SUFFIX = ".frames"


def frame_name(k: int) -> str:
    """Output frame k (from 0) is ``frame_00001.png``: numbered from 1, like FFmpeg's."""
    return f"frame_{k + 1:05d}.png"


def folder_for(output: Path) -> Path:
    """The folder of finished frames of a run writing the video file ``output``."""
    return output.with_name(output.name + FOLDER_SUFFIX)


def fingerprint(clip: Clip, styles: Sequence[Image.Image], blend: Sequence[float]) -> str:
    """A digest of what the frames are painted from: the video file (its size, date and
    first MiB) and the decoded style images with their blend."""
    h = hashlib.sha256()
    st = clip.path.stat()
    h.update(f"{st.st_size} {st.st_mtime_ns}".encode())
    with open(clip.path, "rb") as f:
        h.update(f.read(1 << 20))
    for im in styles:
        h.update(f"{im.mode} {im.size}".encode())
        h.update(im.tobytes())
    h.update(repr([round(b, 12) for b in blend]).encode())
    return h.hexdigest()


class FrameStore:
    """A folder of finished frames and the manifest that says which run they belong to."""

    def __init__(self, folder: Path, record: dict[str, Any]) -> None:
        self.folder = folder
        self.record = {"brushwork": __version__, **record}
        # The frames' (width, height): a file of another size in the folder is not one
        # of this run's frames, and is refused from its header, before it is decoded.
        self.size = tuple(record["size"])
        self.created = False  # start() made the folder
        self.wrote_manifest = False  # start() wrote a new run's manifest

    def path(self, k: int) -> Path:
        return self.folder / frame_name(k)

    def painting_path(self, k: int) -> Path:
        return self.folder / f"painting_{k + 1:05d}.png"

    def check(self, *, resume: bool, force: bool) -> int:
        """How many frames are already finished (only with ``resume``), touching nothing;
        refuse another run's folder, or an unfinished run's without --resume or --force."""
        name = f"frames folder '{self.folder}'"
        manifest = self.folder / MANIFEST
        if resume:
            saved = self._saved(manifest) if manifest.is_file() else {"finished": True}
            if saved.get("finished"):
                raise BrushworkError(f"nothing to resume: {name} holds no unfinished run")
            self._check(saved)
            done = self.finished()
            for k in range(done):  # headers only: nothing is decoded
                self._header(self.path(k))
                if self.painting_path(k).is_file():
                    self._header(self.painting_path(k))
            return done
        if not force and manifest.is_file() and not self._saved(manifest).get("finished"):
            raise OutputError(f"an unfinished run's frames are in {name}: pass --resume to "
                              f"continue it, or --force to start over")
        check_output_dir(self.folder, force=force)
        return 0

    def start(self, *, resume: bool) -> None:
        """Make the folder ready: a new run's manifest, and no other run's frames."""
        if resume:
            return
        self.created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self._frames():  # another run's frames, under --force
            old.unlink()
        save_text(json.dumps(self.record, indent=1) + "\n", self.folder / MANIFEST, force=True)
        self.wrote_manifest = True

    def abandon(self) -> None:
        """The run ends with no frame finished: take back what start() made (the
        manifest, and the folder when the run created it and nothing else is in it), so
        that nothing is left to resume or in the way of the next run."""
        if any(True for _ in self._frames(paintings=False)):
            return
        for painting in self._frames():
            painting.unlink()
        if self.wrote_manifest:
            (self.folder / MANIFEST).unlink(missing_ok=True)
        if self.created:
            with contextlib.suppress(OSError):  # something else is in it: left alone
                os.rmdir(self.folder)

    @staticmethod
    def _saved(manifest: Path) -> dict[str, Any]:
        try:
            saved = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BrushworkError(f"'{manifest}' cannot be read ({e}); start over with "
                                 f"--force") from None
        if not isinstance(saved, dict):
            raise BrushworkError(f"'{manifest}' is not a brushwork video manifest")
        return saved

    def _check(self, saved: dict[str, Any]) -> None:
        if saved.get("inputs") != self.record["inputs"]:
            raise BrushworkError(f"the frames in '{self.folder}' were painted from another "
                                 f"video or other paintings; give the same ones, or start "
                                 f"over with --force")
        for key in ("settings", "video", "frames", "size"):
            mine, theirs = self.record.get(key), saved.get(key)
            if isinstance(mine, dict) and isinstance(theirs, dict):
                differ = sorted(n for n in set(mine) | set(theirs)
                                if n not in ("device", "max_memory", "tile_size")
                                and mine.get(n) != theirs.get(n))
                if differ:
                    n = differ[0]
                    raise BrushworkError(
                        f"the frames in '{self.folder}' were painted with other settings: "
                        f"{n} {theirs.get(n)!r}, now {mine.get(n)!r}; resume with the same "
                        f"options, or start over with --force")
            elif mine != theirs:
                raise BrushworkError(f"the frames in '{self.folder}' were painted with "
                                     f"{key} {theirs!r}, now {mine!r}; resume with the same "
                                     f"options, or start over with --force")

    def _frames(self, paintings: bool = True) -> Iterator[Path]:
        if self.folder.is_dir():
            for entry in self.folder.iterdir():
                if FRAME.fullmatch(entry.name) or (paintings and PAINTING.fullmatch(entry.name)):
                    yield entry

    def finished(self) -> int:
        """How many frames from the first on are written."""
        k = 0
        while self.path(k).is_file():
            k += 1
        return k

    def write(self, k: int, picture: Image.Image, painting: Image.Image | None = None) -> Path:
        """Frame k, and its painting when the frame is not it (written first: a frame on
        disk is a finished one)."""
        if painting is not None:
            save_image(painting, self.painting_path(k), force=True)
        return save_image(picture, self.path(k), force=True)

    def read(self, k: int) -> Image.Image:
        return self._read(self.path(k))

    def read_painting(self, k: int) -> Image.Image:
        """Frame k's painting: its own file when one was kept, else the frame."""
        path = self.painting_path(k)
        return self._read(path if path.is_file() else self.path(k))

    def _header(self, path: Path) -> None:
        """Open ``path``'s header only; BrushworkError unless it is a PNG of the frames'
        size."""
        with self._open(path):
            pass

    @contextlib.contextmanager
    def _open(self, path: Path) -> Iterator[Image.Image]:
        again = "delete it and the frames after it to paint them again"
        try:
            with pillow_limit(None):  # the size is checked here, against the run's
                im = Image.open(path, formats=["PNG"])  # the header alone
        except (OSError, ValueError) as e:
            raise BrushworkError(f"finished frame '{path}' cannot be read ({e}); {again}"
                                 ) from None
        with im:
            if im.size != self.size:
                w, h = self.size
                raise BrushworkError(f"finished frame '{path}' is {im.width}x{im.height}, "
                                     f"not the run's {w}x{h} frames; {again}")
            yield im

    def _read(self, path: Path) -> Image.Image:
        with self._open(path) as im:
            try:
                return im.convert("RGB")
            except (OSError, ValueError) as e:
                raise BrushworkError(f"finished frame '{path}' cannot be read ({e}); "
                                     f"delete it and the frames after it to paint them "
                                     f"again") from None

    def pictures(self, count: int) -> Iterator[Image.Image]:
        for k in range(count):
            yield self.read(k)

    def finish_in_place(self) -> None:
        """The frames are the output: the manifest stays, marked finished, as the record
        of the settings that painted them; the paintings kept for resuming go."""
        for painting in set(self._frames()) - set(self._frames(paintings=False)):
            painting.unlink()
        save_text(json.dumps({**self.record, "finished": True}, indent=1) + "\n",
                  self.folder / MANIFEST, force=True)

    def done(self) -> None:
        """The video is written: the folder's frames and manifest go (nothing else)."""
        for frame in self._frames():
            frame.unlink()
        (self.folder / MANIFEST).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # something else is in it: left alone
            os.rmdir(self.folder)
