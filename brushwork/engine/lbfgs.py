"""L-BFGS for one image, one evaluation per iteration and no line search (as neural-style).

Why not ``torch.optim.LBFGS``: its first step is ``lr * min(1, 1/|g|_1) * g``.  On an
image of N values whose gradient averages 1 (brushwork normalises it so), that moves
each pixel by about 1/N of a grey level: the first evaluations stand still, and the
curvature estimated from such a tiny step sends the next one far off.  Here the first
step moves the pixels by ``first_step`` grey levels on average, whatever the
gradient's scale; every later step is the textbook two-loop recursion (Nocedal &
Wright, Algorithm 7.4) with ``H0 = (s.y / y.y) I`` and unit step length.  What that
first step buys is measured in docs/benchmarks.md ("Fewer evaluations").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from brushwork.engine.memory.allocator import kept_copy, kept_empty

# A curvature pair is kept only when s.y > CURVATURE_EPS * y.y: the inverse Hessian
# estimate stays positive definite, and H0 = s.y / y.y stays meaningful.
CURVATURE_EPS = 1e-10

T = TypeVar("T")


def lbfgs(x: torch.Tensor, closure: Callable[[], object], iterations: int, history_size: int,
          first_step: float = 4.0) -> None:
    """Minimise in place over ``x`` with ``iterations`` calls of ``closure``.

    ``closure()`` evaluates the objective at ``x`` and leaves its gradient in ``x.grad``;
    what it returns is not used (the method needs only gradients).  ``first_step``: the
    mean absolute change per value of the first step, in ``x``'s units (grey levels for
    brushwork's images).
    """
    for _ in lbfgs_steps(x, closure, iterations, history_size, first_step):
        pass


def lbfgs_steps(x: torch.Tensor, closure: Callable[[], T], iterations: int,
                history_size: int, first_step: float = 4.0) -> Iterator[T]:
    """:func:`lbfgs`, yielding what each call of ``closure`` returns, so that the caller
    may stop the run by leaving the loop."""
    yield from LBFGS(history_size, first_step).steps(x, closure, iterations)


class LBFGS:
    """The method's state between evaluations: the gradient at the current point, the
    curvature pairs and the initial Hessian's scale.  Whenever :meth:`steps` yields, the
    state describes the point just evaluated, so :meth:`state_dict` taken then and loaded
    into a new instance continues the run exactly where it was."""

    def __init__(self, history_size: int, first_step: float = 4.0) -> None:
        self.first_step = first_step
        self.g: torch.Tensor | None = None  # the gradient at the current point, flattened
        self.pairs: deque[tuple[torch.Tensor, torch.Tensor, float]] = deque(maxlen=history_size)
        self.h0 = 1.0

    def steps(self, x: torch.Tensor, closure: Callable[[], T], iterations: int) -> Iterator[T]:
        """``iterations`` evaluations from the current state, moving ``x`` in place."""
        for _ in range(iterations):
            if self.g is None:
                out = closure()
                self.g = kept_copy(_gradient(x))
                yield out
                continue
            d = _direction(self.g, self.pairs, self.h0)
            # Unit steps once curvature is known; the first step, or one after every pair
            # was refused, is a plain gradient step of first_step grey levels on average.
            t = 1.0 if self.pairs else self.first_step / max(float(d.abs().mean()), 1e-30)
            with torch.no_grad():
                x.add_(d.view_as(x), alpha=t)
            out = closure()
            g_new = _gradient(x)
            s = d.mul_(t)
            y = torch.sub(g_new, self.g, out=kept_empty(g_new))
            ys, yy = float(y @ s), float(y @ y)
            if ys > CURVATURE_EPS * yy and yy > 0:
                self.pairs.append((s, y, 1.0 / ys))
                self.h0 = ys / yy
            self.g = kept_copy(g_new)
            yield out

    def state_dict(self) -> dict[str, Any]:
        return {"g": self.g, "s": [p[0] for p in self.pairs], "y": [p[1] for p in self.pairs],
                "rho": [p[2] for p in self.pairs], "h0": self.h0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.g = state["g"]
        self.pairs.clear()
        for s, y, rho in zip(state["s"], state["y"], state["rho"], strict=True):
            self.pairs.append((s, y, float(rho)))
        self.h0 = float(state["h0"])


def _gradient(x: torch.Tensor) -> torch.Tensor:
    if x.grad is None:
        raise ValueError("the closure must leave the objective's gradient in x.grad")
    return x.grad.detach().reshape(-1)


def _direction(g: torch.Tensor, pairs: deque, h0: float) -> torch.Tensor:
    """``-H g`` by the two-loop recursion over the stored ``(s, y, 1/s.y)`` pairs."""
    q = torch.neg(g, out=kept_empty(g))
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * float(s @ q)
        alphas.append(a)
        q.add_(y, alpha=-a)
    q.mul_(h0)
    for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
        b = rho * float(y @ q)
        q.add_(s, alpha=a - b)
    return q
