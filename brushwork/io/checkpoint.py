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
import math
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


def check(checkpoint: Checkpoint, settings: dict[str, Any], inputs: str, path: Path,
          levels: Sequence[tuple[tuple[int, int], int]]) -> None:
    """Refuse a checkpoint made with other settings or other input images, or one whose
    fields do not fit the run that resumes it: ``settings`` (Settings.to_dict), painted at
    ``levels``, each scale's size (width, height) and iterations, coarsest first.

    Everything the run reads from the checkpoint is checked here, before any network is
    loaded, so that a damaged or forged file is one line, never a failure mid-run."""
    try:
        _check_plain("settings", checkpoint.settings)
        if not isinstance(checkpoint.settings, dict):
            raise _Damaged("settings is not a table of options")
        if not isinstance(checkpoint.inputs, str):
            raise _Damaged("its input fingerprint is not text")
    except _Damaged as e:
        raise BrushworkError(f"checkpoint '{path}' is damaged: {e}; start over with "
                             f"--force") from None
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
    try:
        _check_fields(checkpoint, settings, levels)
    except _Damaged as e:
        raise BrushworkError(f"checkpoint '{path}' is damaged: {e}; start over with "
                             f"--force") from None


class _Damaged(Exception):
    """A field of a checkpoint that does not fit the run (the text says how)."""


def _check_fields(c: Checkpoint, settings: dict[str, Any],
                  levels: Sequence[tuple[tuple[int, int], int]]) -> None:
    level = _count("level", c.level, 0, len(levels) - 1)
    (w, h), iterations = levels[level]
    taken = _count("taken", c.taken, 0, iterations)
    _count("step", c.step, taken, sum(n for _, n in levels[:level]) + taken)
    _number("work_done", c.work_done, low=0.0)
    _number("elapsed", c.elapsed, low=0.0)
    _tensor("image", c.image, (1, 3, h, w))
    _check_plain("history", c.history)
    if not isinstance(c.history, list) or not all(_named_numbers(e) for e in c.history):
        raise _Damaged("history is not a list of named numbers")
    if not _named_numbers(c.losses):
        raise _Damaged("losses are not named numbers")
    _fields("stop_rule", c.stop_rule, {"changes"})
    changes = c.stop_rule["changes"]
    if not isinstance(changes, list):
        raise _Damaged("stop_rule's changes are not a list")
    for k, change in enumerate(changes):
        _number(f"stop_rule's change {k}", change, low=0.0)
    _check_optimiser(c.optimiser, settings, 3 * h * w, (1, 3, h, w))


def _check_optimiser(state: Any, settings: dict[str, Any], n: int,
                     shape: tuple[int, ...]) -> None:
    """The state of brushwork.engine.optimise.Optimiser for ``settings['optimizer']``
    over a picture of ``shape`` (``n`` values)."""
    name = settings.get("optimizer")
    extra = {"lbfgs"} if name == "lbfgs" else {"opt", "grad", "sched"} if name == "sgd" \
        else {"opt", "grad"}
    _fields("optimiser", state, {"factor", "evaluations", "first", "pending", *extra})
    if state["factor"] is not None:
        _number("optimiser's factor", state["factor"], low=0.0)
    _count("optimiser's evaluations", state["evaluations"], 0, None)
    if state["first"] is not None:
        _number("optimiser's first loss", state["first"])
    if not isinstance(state["pending"], bool):
        raise _Damaged("optimiser's pending is not true or false")
    if name == "lbfgs":
        lbfgs = state["lbfgs"]
        _fields("optimiser's lbfgs", lbfgs, {"g", "s", "y", "rho", "h0"})
        if lbfgs["g"] is not None:
            _tensor("optimiser's gradient", lbfgs["g"], (n,))
        pairs = [lbfgs[k] for k in ("s", "y", "rho")]
        if not all(isinstance(p, list) for p in pairs) or len({len(p) for p in pairs}) != 1:
            raise _Damaged("optimiser's lbfgs pairs are not three lists of one length")
        history = settings.get("history_size")
        if isinstance(history, int) and len(lbfgs["s"]) > history:
            raise _Damaged(f"optimiser's lbfgs holds {len(lbfgs['s'])} pairs, more than "
                           f"history_size {history}")
        for k, (s, y, rho) in enumerate(zip(*pairs, strict=True)):
            _tensor(f"optimiser's lbfgs s {k}", s, (n,))
            _tensor(f"optimiser's lbfgs y {k}", y, (n,))
            _number(f"optimiser's lbfgs rho {k}", rho)
        _number("optimiser's lbfgs h0", lbfgs["h0"], low=0.0)
        return
    if state["grad"] is not None:
        _tensor("optimiser's gradient", state["grad"], shape)
    opt, sched = _torch_states(name)
    _like("optimiser's opt", state["opt"], opt, shape)
    if sched is not None:
        _like("optimiser's sched", state["sched"], sched, shape)


def _torch_states(name: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The state dicts that the torch optimiser the engine uses for ``name`` (and its
    learning rate schedule, for sgd) have after a step over one value: the form a
    checkpoint's must have, in this version of torch."""
    x = torch.zeros(1, requires_grad=True)
    opt: torch.optim.Optimizer = torch.optim.Adam([x]) if name == "adam" \
        else torch.optim.SGD([x], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0) if name == "sgd" else None
    x.grad = torch.ones(1)
    opt.step()
    if sched is not None:
        sched.step()
    return opt.state_dict(), None if sched is None else sched.state_dict()


def _like(name: str, value: Any, like: Any, shape: tuple[int, ...]) -> None:
    """``value`` has the form of ``like``: the same keys, lengths and types; a tensor
    over ``like``'s one value is one over the picture (``shape``).  An optimiser's
    per-value state may also be empty (saved before its first step)."""
    if isinstance(like, torch.Tensor):
        _tensor(name, value, () if like.dim() == 0 else shape)
    elif isinstance(like, dict):
        if name.endswith("'s state") and value == {}:
            return
        _fields(name, value, set(like))
        for key, item in like.items():
            _like(f"{name}'s {key}" if isinstance(key, str) else f"{name} {key}",
                  value[key], item, shape)
    elif isinstance(like, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(like):
            raise _Damaged(f"{name} is not a list of {len(like)}")
        if name.endswith("'s params"):
            if value != like:
                raise _Damaged(f"{name} is {value!r}, not {like!r}")
            return
        for k, (v, item) in enumerate(zip(value, like, strict=True)):
            _like(f"{name} {k}", v, item, shape)
    elif isinstance(like, bool) or like is None or isinstance(like, str):
        if type(value) is not type(like):
            raise _Damaged(f"{name} is {_kind(value)}, not {_kind(like)}")
    elif isinstance(like, (int, float)):
        _number(name, value)
    else:  # a form this code does not know: only plain values may stand there
        _check_plain(name, value)


def _fields(name: str, value: Any, keys: set[str]) -> None:
    if not isinstance(value, dict):
        raise _Damaged(f"{name} is {_kind(value)}, not a table")
    missing, extra = sorted(keys - set(value)), sorted(map(str, set(value) - keys))
    if missing:
        raise _Damaged(f"{name} lacks {_few(missing)}")
    if extra:
        raise _Damaged(f"{name} has {_few(extra)}, which this run's does not")


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _count(name: str, value: Any, low: int, high: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Damaged(f"{name} is {_kind(value)}, not a whole number")
    if value < low or (high is not None and value > high):
        span = f"{low} to {high}" if high is not None else f"at least {low}"
        raise _Damaged(f"{name} is {value}, where this run has {span}")
    return value


def _number(name: str, value: Any, low: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Damaged(f"{name} is {_kind(value)}, not a number")
    if not math.isfinite(value) or (low is not None and value < low):
        raise _Damaged(f"{name} is {value!r}" + (f", under {low:g}" if low is not None and
                                                 math.isfinite(value) else ""))


def _tensor(name: str, value: Any, shape: tuple[int, ...]) -> None:
    """``value`` is a dense float32 tensor of ``shape``, all finite."""
    if not isinstance(value, torch.Tensor):
        raise _Damaged(f"{name} is {_kind(value)}, not a tensor")
    if value.layout != torch.strided or value.dtype != torch.float32:
        raise _Damaged(f"{name} holds {str(value.dtype).removeprefix('torch.')}"
                       f"{'' if value.layout == torch.strided else ' ' + str(value.layout)}, "
                       f"not float32 values")
    if tuple(value.shape) != shape:
        if name == "image" and len(shape) == 4:
            raise _Damaged(f"image is {_size(value.shape)} but this run paints that scale "
                           f"at {shape[3]}x{shape[2]}")
        raise _Damaged(f"{name} has shape {tuple(value.shape)}, not {shape}")
    if not bool(torch.isfinite(value).all()):
        raise _Damaged(f"{name} holds NaN or infinite values")


def _size(shape: torch.Size) -> str:
    return f"{shape[-1]}x{shape[-2]}" if len(shape) == 4 and shape[:2] == (1, 3) \
        else str(tuple(shape))


def _named_numbers(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and not isinstance(v, bool) and isinstance(v, (int, float))
        for k, v in value.items())


def _check_plain(name: str, value: Any, depth: int = 0) -> None:
    """``value`` is made of what JSON holds (None, true/false, numbers, text, lists and
    tables named by text), not deeper than a few levels: what settings and histories are."""
    if depth > 8:
        raise _Damaged(f"{name} is nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(name, item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Damaged(f"{name} has a field named by {_kind(key)}")
            _check_plain(name, item, depth + 1)
    else:
        raise _Damaged(f"{name} holds {_kind(value)}")


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "a tensor"
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true or false"
    return {int: "a whole number", float: "a number", str: "text", list: "a list",
            tuple: "a list", dict: "a table"}.get(type(value), type(value).__name__)


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
