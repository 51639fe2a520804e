"""One scale's optimisation: the chosen optimiser over the image's pixels.

:func:`optimise` is a generator: it yields after every evaluation of the objective, so
the caller reports progress and applies the stopping rule between evaluations, and
stops the run by leaving its loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from .errors import DivergedError
from .lbfgs import lbfgs_steps
from .settings import DEFAULT_LR, Settings

# Adam and SGD: after EXPLODE_AFTER steps, a loss over EXPLODE times the first is divergence.
EXPLODE_AFTER, EXPLODE = 10, 10.0

Terms = dict[str, torch.Tensor]  # the objective's weighted terms; "total" is minimised


class GradientScale:
    """Scales the objective by a constant so that its first gradient averages 1 per value.

    brushwork's L-BFGS takes curvature from the gradients' differences, and the paper's
    summed losses give gradients from 1e-3 to 1e8 per pixel depending on the size and the
    weights.  A constant factor changes no minimum, keeps the optimisers' arithmetic in a
    sane range and makes SGD's rate mean pixels per step.  It is fixed at the first
    gradient.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.factor: float | None = None

    def apply(self, x: torch.Tensor) -> None:
        """Scale ``x.grad``, the gradient just computed."""
        if not self.enabled or x.grad is None:
            return
        if self.factor is None:
            self.factor = 1.0 / max(float(x.grad.abs().mean()), 1e-30)
        x.grad.mul_(self.factor)


def optimise(x: torch.Tensor, objective: Callable[[torch.Tensor], Terms], settings: Settings,
             iterations: int, history_size: int | None = None) -> Iterator[dict[str, float]]:
    """Minimise ``objective(x)["total"]`` over ``x`` (a leaf that requires grad) in place,
    with at most ``iterations`` evaluations; yields each evaluation's terms as numbers.
    ``history_size``: L-BFGS's pairs, when a memory budget keeps fewer than the settings'."""
    scale = GradientScale(settings.normalize_gradients)

    def evaluate() -> dict[str, float]:
        x.grad = None
        terms = objective(x)
        terms["total"].backward()
        scale.apply(x)
        return {name: float(value.detach()) for name, value in terms.items()}

    if settings.optimizer == "lbfgs":
        # One evaluation per iteration and no line search, like neural-style.
        yield from lbfgs_steps(x, evaluate, iterations,
                               history_size or settings.history_size)
        return
    lr = settings.learning_rate or DEFAULT_LR[settings.optimizer]
    sched = None
    if settings.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam([x], lr=lr)
    else:
        # lr * decay^(step / decay_steps), the Keras example's ExponentialDecay.
        opt = torch.optim.SGD([x], lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: settings.lr_decay ** (k / settings.lr_decay_steps))
    first = None
    for i in range(iterations):
        terms = evaluate()
        yield terms
        value = terms["total"]
        first = value if first is None else first
        if i >= EXPLODE_AFTER and value > EXPLODE * max(first, 1e-30):
            raise DivergedError(f"the loss exploded from {first:.4g} to {value:.4g}; lower "
                                f"--lr (now {lr}) or --style-weight")
        opt.step()
        if sched is not None:
            sched.step()
        with torch.no_grad():
            x.clamp_(0, 255)
