"""Checkpoints: a long run saved between evaluations, to go on after a stop, a kill or a crash.

A checkpoint holds the picture, the optimiser's state (brushwork.engine.optimise.Optimiser), the
stopping rule's, the scale and step, the loss history and the settings, with a fingerprint
of the input images.  Everything in it describes one moment between two evaluations, so a
run resumed from it goes on as the uninterrupted run would have.  It is written
atomically (a temporary file renamed into place): a kill while saving leaves the previous
checkpoint whole.  With L-BFGS it holds ``2 * history + 2`` image-sized vectors.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from brushwork.errors import BrushworkError

FORMAT = 1
SUFFIX = ".checkpoint"
EVERY = 300.0  # seconds between checkpoints, by default
# Options that change how a run is computed, not what it paints: a run may resume with
# other values of these (on another device, or with another memory budget).
NOT_COMPARED = ("device", "max_memory", "tile_size")


def path_for(output: str | os.PathLike[str]) -> Path:
    """Where the checkpoint of a run writing ``output`` lives: beside it."""
    out = Path(output)
    return out.with_name(out.name + SUFFIX)


def fingerprint(images: Sequence[Image.Image], blend: Sequence[float],
                masks: torch.Tensor | None = None) -> str:
    """A digest of the decoded input images (and the styles' blend and regions), so that a
    checkpoint is refused for other pictures even under the same file names."""
    h = hashlib.sha256()
    for im in images:
        h.update(f"{im.mode} {im.size}".encode())
        h.update(im.tobytes())
    h.update(repr([round(b, 12) for b in blend]).encode())
    if masks is not None:
        h.update(f"masks {tuple(masks.shape)}".encode())
        h.update(masks.to(torch.float32).cpu().numpy().tobytes())
    return h.hexdigest()


@dataclass
class Checkpoint:
    settings: dict[str, Any]
    inputs: str  # fingerprint()
    level: int  # the pyramid level being painted
    taken: int  # evaluations done at that level
    step: int  # evaluations done over the run
    work_done: float
    elapsed: float  # seconds of painting before the stop
    image: torch.Tensor  # the picture at the last evaluation, on the CPU
    optimiser: dict[str, Any]
    stop_rule: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    losses: dict[str, float] = field(default_factory=dict)


def tensor_bytes(checkpoint: Checkpoint) -> int:
    """The bytes of the tensors ``checkpoint`` holds (its picture and the optimiser's
    vectors), each storage once."""
    storages: dict[int, int] = {}

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk([checkpoint.image, checkpoint.optimiser, checkpoint.stop_rule])
    return sum(storages.values())


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically (tensors moved to the CPU)."""
    data = {"format": FORMAT, **asdict(checkpoint)}
    data = _to_cpu(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> Checkpoint:
    """Read a checkpoint; BrushworkError when it is missing, damaged or not one."""
    if not path.exists():
        raise BrushworkError(f"no checkpoint at '{path}' to resume")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file makes the unpickler raise nearly anything
        raise BrushworkError(f"checkpoint '{path}' is damaged or not a brushwork checkpoint "
                             f"({type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BrushworkError(f"checkpoint '{path}' is not a brushwork checkpoint of "
                             f"format {FORMAT}")
    data.pop("format")
    try:
        checkpoint = Checkpoint(**data)
    except TypeError:
        raise BrushworkError(f"checkpoint '{path}' is damaged: its fields do not match "
                             f"format {FORMAT}") from None
    if not isinstance(checkpoint.image, torch.Tensor) or checkpoint.image.dim() != 4:
        raise BrushworkError(f"checkpoint '{path}' is damaged: it holds no picture")
    return checkpoint


def check(checkpoint: Checkpoint, settings: dict[str, Any], inputs: str, path: Path) -> None:
    """Refuse a checkpoint made with other settings or other input images."""
    if checkpoint.inputs != inputs:
        raise BrushworkError(f"checkpoint '{path}' was made from other input images; give "
                             f"the same photo and paintings, or start over with --force")
    differ = [name for name in sorted(set(settings) | set(checkpoint.settings))
              if name not in NOT_COMPARED
              and settings.get(name) != checkpoint.settings.get(name)]
    if differ:
        name = differ[0]
        raise BrushworkError(
            f"checkpoint '{path}' was made with other settings: {name} "
            f"{checkpoint.settings.get(name)!r}, now {settings.get(name)!r}"
            + (f" (and {len(differ) - 1} more)" if len(differ) > 1 else "")
            + "; resume with the same options, or start over with --force")


class Saver:
    """Keeps the latest consistent state of a run and writes it every ``every`` seconds,
    and on demand (at Ctrl-C)."""

    def __init__(self, path: Path, every: float, settings: dict[str, Any], inputs: str) -> None:
        self.path = path
        self.every = every
        self.settings = settings
        self.inputs = inputs
        self.latest: Checkpoint | None = None
        self.saved_at = time.monotonic()

    def capture(self, checkpoint: Checkpoint) -> None:
        """The state after an evaluation; written when ``every`` seconds have passed."""
        self.latest = checkpoint
        if self.every > 0 and time.monotonic() - self.saved_at >= self.every:
            self.write()

    def write(self) -> bool:
        """Write the latest state; False when there is none yet."""
        if self.latest is None:
            return False
        save(self.path, self.latest)
        self.saved_at = time.monotonic()
        return True

    def finished(self) -> None:
        """The run ended: its checkpoint is no longer needed."""
        self.path.unlink(missing_ok=True)


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` (nested dicts, lists and tuples) with every tensor moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_device(v, device) for v in obj)
    return obj


def _to_cpu(obj: Any) -> Any:
    return to_device(obj, torch.device("cpu"))
