"""The stopping rule: end a scale once the picture has stopped changing."""

from __future__ import annotations

from collections import deque
from typing import Any

import torch

WINDOW = 10  # steps over which the picture's change is averaged


class StopRule:
    """Fires once the mean absolute change per value between successive iterates,
    averaged over the last ``window`` steps, falls under ``tolerance`` (grey levels).

    A tolerance of 0 never fires.  Feed it every iterate with :meth:`update`.
    """

    def __init__(self, tolerance: float, window: int = WINDOW) -> None:
        self.tolerance = tolerance
        self._changes: deque[float] = deque(maxlen=window)
        self._last: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> bool:
        """Record the iterate ``x``; True when the rule says stop."""
        if self.tolerance <= 0:
            return False
        current = x.detach()
        if self._last is not None:
            self._changes.append(float((current - self._last).abs().mean()))
        self._last = current.clone()
        full = len(self._changes) == self._changes.maxlen
        return full and sum(self._changes) / len(self._changes) < self.tolerance

    def state_dict(self) -> dict[str, Any]:
        """The recent changes (the last iterate is the picture, saved beside them)."""
        return {"changes": list(self._changes)}

    def load_state_dict(self, state: dict[str, Any], x: torch.Tensor) -> None:
        """Continue after the iterate ``x``, last fed to the rule that saved ``state``."""
        self._changes.clear()
        self._changes.extend(float(c) for c in state["changes"])
        self._last = x.detach().clone() if self.tolerance > 0 else None
