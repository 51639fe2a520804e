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
from typing import TypeVar

import torch

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
    """:func:`lbfgs`, yielding what each call of ``closure`` returns as soon as it returns
    (before the step it informs), so that the caller may stop the run by leaving the loop."""
    yield closure()
    g = _gradient(x).clone()
    pairs: deque[tuple[torch.Tensor, torch.Tensor, float]] = deque(maxlen=history_size)
    h0 = 1.0
    for _ in range(iterations - 1):
        d = _direction(g, pairs, h0)
        # Unit steps once curvature is known; the first step, or one after every pair was
        # refused, is a plain gradient step of first_step grey levels on average.
        t = 1.0 if pairs else first_step / max(float(d.abs().mean()), 1e-30)
        with torch.no_grad():
            x.add_(d.view_as(x), alpha=t)
        yield closure()
        g_new = _gradient(x)
        s = d.mul_(t)
        y = g_new - g
        ys, yy = float(y @ s), float(y @ y)
        if ys > CURVATURE_EPS * yy and yy > 0:
            pairs.append((s, y, 1.0 / ys))
            h0 = ys / yy
        g = g_new.clone()


def _gradient(x: torch.Tensor) -> torch.Tensor:
    if x.grad is None:
        raise ValueError("the closure must leave the objective's gradient in x.grad")
    return x.grad.detach().reshape(-1)


def _direction(g: torch.Tensor, pairs: deque, h0: float) -> torch.Tensor:
    """``-H g`` by the two-loop recursion over the stored ``(s, y, 1/s.y)`` pairs."""
    q = g.neg()
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
