"""Timing several evaluations side by side, so that a noisy machine slows them alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import torch
from torch import nn

from brushwork.engine.memory.probe import sync


def interleaved_best(objectives: Mapping[str, nn.Module], photo: torch.Tensor,
                     device: torch.device, reps: int,
                     between: Callable[[], None] | None = None) -> dict[str, float]:
    """Best-of-``reps`` seconds for one evaluation (forward and backward from ``photo``)
    of each objective, taken round by round, one of each per round, after one warm-up
    round; ``between`` runs after every round (the dense reference, say)."""
    best = {name: float("inf") for name in objectives}
    for r in range(reps + 1):
        for name, objective in objectives.items():
            x = photo.clone().requires_grad_(True)
            sync(device)
            t = time.perf_counter()
            objective(x)["total"].backward()
            sync(device)
            if r:
                best[name] = min(best[name], time.perf_counter() - t)
        if between is not None:
            between()
    return best
