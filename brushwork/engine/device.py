"""Which torch device a run uses."""

from __future__ import annotations

import torch

from brushwork.errors import BrushworkError

_DEVICES = "use auto, cpu, cuda, cuda:N or mps"


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise BrushworkError(f"unknown device {name!r}; {_DEVICES}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BrushworkError(f"device {name!r} asked for but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BrushworkError(f"device {name!r} does not exist; this machine has "
                                 f"{torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not mps_available():
            raise BrushworkError(f"device {name!r} asked for but MPS is not available here")
    elif device.type != "cpu":
        raise BrushworkError(f"unsupported device {name!r}; {_DEVICES}")
    return device
