"""One scale's optimisation: the chosen optimiser over the image's pixels.

:func:`optimise` is a generator: it yields after every evaluation of the objective, so
the caller reports progress and applies the stopping rule between evaluations, and
stops the run by leaving its loop.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch

from brushwork.engine.lbfgs import LBFGS
from brushwork.engine.settings import DEFAULT_LR, Settings
from brushwork.errors import DivergedError

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
    yield from Optimiser(x, objective, settings, history_size).steps(iterations)


class Optimiser:
    """One scale's optimiser and everything it carries between evaluations.

    Whenever :meth:`steps` yields, :meth:`state_dict` describes the run so far
    completely: loaded into a new Optimiser over the same ``x`` (brushwork.io.checkpoint),
    the run goes on as if it had never stopped.
    """

    def __init__(self, x: torch.Tensor, objective: Callable[[torch.Tensor], Terms],
                 settings: Settings, history_size: int | None = None) -> None:
        self.x = x
        self.objective = objective
        self.settings = settings
        self.scale = GradientScale(settings.normalize_gradients)
        self.evaluations = 0
        self.first: float | None = None  # Adam and SGD: the first loss, for divergence
        self.pending = False  # Adam and SGD: an evaluated gradient not yet stepped on
        self.lr = settings.learning_rate or DEFAULT_LR.get(settings.optimizer, 1.0)
        self.lbfgs: LBFGS | None = None
        self.opt: torch.optim.Optimizer | None = None
        self.sched: torch.optim.lr_scheduler.LRScheduler | None = None
        if settings.optimizer == "lbfgs":
            # One evaluation per iteration and no line search, like neural-style.
            self.lbfgs = LBFGS(history_size or settings.history_size)
        elif settings.optimizer == "adam":
            self.opt = torch.optim.Adam([x], lr=self.lr)
        else:
            # lr * decay^(step / decay_steps), the Keras example's ExponentialDecay.
            self.opt = torch.optim.SGD([x], lr=self.lr)
            self.sched = torch.optim.lr_scheduler.LambdaLR(
                self.opt, lambda k: settings.lr_decay ** (k / settings.lr_decay_steps))

    def evaluate(self) -> dict[str, float]:
        x = self.x
        x.grad = None
        terms = self.objective(x)
        terms["total"].backward()
        self.scale.apply(x)
        self.evaluations += 1
        return {name: float(value.detach()) for name, value in terms.items()}

    def steps(self, iterations: int) -> Iterator[dict[str, float]]:
        """At most ``iterations`` more evaluations, each yielded as its terms."""
        if self.lbfgs is not None:
            yield from self.lbfgs.steps(self.x, self.evaluate, iterations)
            return
        for _ in range(iterations):
            if self.pending:
                self._step()
            terms = self.evaluate()
            self.pending = True
            value = terms["total"]
            self.first = value if self.first is None else self.first
            yield terms
            if self.evaluations > EXPLODE_AFTER and value > EXPLODE * max(self.first, 1e-30):
                raise DivergedError(f"the loss exploded from {self.first:.4g} to {value:.4g}; "
                                    f"lower --lr (now {self.lr}) or --style-weight")
        if self.pending:
            self._step()  # the last gradient moves the picture too

    def _step(self) -> None:
        assert self.opt is not None
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        with torch.no_grad():
            self.x.clamp_(0, 255)
        self.pending = False

    def state_dict(self) -> dict[str, Any]:
        """The state after the latest evaluation; later steps do not change what it holds
        (L-BFGS replaces its tensors rather than writing into them)."""
        state: dict[str, Any] = {"factor": self.scale.factor, "evaluations": self.evaluations,
                                 "first": self.first, "pending": self.pending}
        if self.lbfgs is not None:
            state["lbfgs"] = self.lbfgs.state_dict()
        if self.opt is not None:
            state["opt"] = copy.deepcopy(self.opt.state_dict())  # stepped in place later
            state["grad"] = None if self.x.grad is None else self.x.grad.detach().clone()
        if self.sched is not None:
            state["sched"] = self.sched.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale.factor = state["factor"]
        self.evaluations = int(state["evaluations"])
        self.first = state["first"]
        self.pending = bool(state["pending"])
        if self.lbfgs is not None:
            self.lbfgs.load_state_dict(state["lbfgs"])
        if self.opt is not None:
            self.opt.load_state_dict(state["opt"])
            self.x.grad = state["grad"]
        if self.sched is not None:
            self.sched.load_state_dict(state["sched"])
