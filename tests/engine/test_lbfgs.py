"""brushwork.engine.lbfgs: the first step's size, the evaluation count, and convergence."""

from __future__ import annotations

import pytest
import torch

from brushwork.engine.lbfgs import lbfgs


def quadratic(n: int = 50, condition: float = 100.0, seed: int = 0,
              device: torch.device | None = None):
    """f(x) = 1/2 (x - a)' D (x - a) with D diagonal, eigenvalues 1..condition."""
    g = torch.Generator().manual_seed(seed)
    a = (torch.randn(n, dtype=torch.float64, generator=g) * 10).to(device)
    diag = torch.logspace(0, torch.log10(torch.tensor(condition)).item(), n,
                          dtype=torch.float64).to(device)
    x = torch.zeros(n, dtype=torch.float64, device=device, requires_grad=True)
    calls = []

    def closure() -> float:
        x.grad = None
        loss = 0.5 * ((x - a) ** 2 * diag).sum()
        loss.backward()
        calls.append(x.detach().clone())
        return loss.item()

    return x, a, closure, calls


def test_first_step_moves_values_by_the_asked_mean(float64_device):
    x, _, closure, calls = quadratic(device=float64_device)
    lbfgs(x, closure, iterations=2, history_size=5, first_step=0.5)
    assert len(calls) == 2
    assert float((calls[1] - calls[0]).abs().mean()) == pytest.approx(0.5)


def test_first_step_does_not_depend_on_the_gradients_scale():
    steps = []
    for scale in (1e-6, 1e6):
        x, a, _, calls = quadratic()

        def closure(x=x, a=a, calls=calls, scale=scale) -> float:
            x.grad = None
            loss = scale * 0.5 * ((x - a) ** 2).sum()
            loss.backward()
            calls.append(x.detach().clone())
            return loss.item()

        lbfgs(x, closure, iterations=2, history_size=5, first_step=2.0)
        steps.append(float((calls[1] - calls[0]).abs().mean()))
    assert steps == pytest.approx([2.0, 2.0])


@pytest.mark.parametrize("history", [3, 20])
def test_converges_on_an_ill_conditioned_quadratic(history, float64_device):
    x, a, closure, calls = quadratic(condition=1e3, device=float64_device)
    start = float((a ** 2).sum())
    lbfgs(x, closure, iterations=250, history_size=history, first_step=1.0)
    assert len(calls) == 250  # one evaluation per iteration, never more
    assert float(((x.detach() - a) ** 2).sum()) < 1e-6 * start


def test_a_step_with_no_curvature_is_not_kept():
    """On a linear function (y = 0, no curvature) no pair is stored: every step stays a
    plain gradient step of the first step's size instead of dividing by zero."""
    x = torch.zeros(10, requires_grad=True)
    w = torch.arange(1.0, 11.0)
    calls = []

    def closure() -> float:
        x.grad = None
        loss = (w * x).sum()
        loss.backward()
        calls.append(x.detach().clone())
        return loss.item()

    lbfgs(x, closure, iterations=4, history_size=5, first_step=1.0)
    moves = [float((b - a).abs().mean()) for a, b in zip(calls, calls[1:], strict=False)]
    assert moves == pytest.approx([1.0, 1.0, 1.0])
    assert torch.isfinite(x).all()
