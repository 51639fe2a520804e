"""The engine's parts, each alone: the stopping rule, the gradient scale, one scale's
optimisation, the enlargement between scales, the cache's LRU."""

from __future__ import annotations

import pytest
import torch

from brushwork.engine.cache import LRU
from brushwork.engine.optimise import GradientScale, optimise
from brushwork.engine.painter import enlarge
from brushwork.engine.settings import Settings
from brushwork.engine.stopping import StopRule
from brushwork.errors import DivergedError


def test_stop_rule_fires_once_the_window_mean_is_under_tolerance():
    rule = StopRule(tolerance=1.5, window=3)
    x = torch.zeros(4)
    # Changes per step: 2, 2, 1, 1, 1 (mean |change| per value).
    fired = [rule.update(x + v) for v in (0, 2, 4, 5, 6, 7)]
    # Windows: [2, 2, 1] -> 1.67 (no), [2, 1, 1] -> 1.33 (yes), [1, 1, 1] -> 1 (yes).
    assert fired == [False, False, False, False, True, True]


def test_stop_rule_with_zero_tolerance_never_fires():
    rule = StopRule(tolerance=0.0, window=2)
    assert not any(rule.update(torch.zeros(3)) for _ in range(10))


def test_gradient_scale_fixes_its_factor_at_the_first_gradient():
    x = torch.zeros(4, requires_grad=True)
    scale = GradientScale(True)
    x.grad = torch.tensor([2.0, -2.0, 4.0, 0.0])  # mean |g| = 2
    scale.apply(x)
    assert scale.factor == 0.5 and x.grad.tolist() == [1.0, -1.0, 2.0, 0.0]
    x.grad = torch.tensor([8.0, 8.0, 8.0, 8.0])
    scale.apply(x)
    assert x.grad.tolist() == [4.0] * 4  # the same factor, not renormalised
    off = GradientScale(False)
    x.grad = torch.tensor([8.0, 8.0, 8.0, 8.0])
    off.apply(x)
    assert x.grad.tolist() == [8.0] * 4


def _quadratic(target: torch.Tensor):
    def terms(x: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = ((x - target) ** 2).sum()
        return {"content": loss, "style": loss * 0, "tv": loss * 0, "total": loss}
    return terms


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam", "sgd"])
def test_optimise_yields_every_evaluation_and_stops_when_the_caller_leaves(optimizer, device):
    target = torch.full((1, 3, 4, 4), 100.0, device=device)
    s = Settings(optimizer=optimizer)
    x = torch.full((1, 3, 4, 4), 50.0, device=device, requires_grad=True)
    seen = [terms["total"] for terms in optimise(x, _quadratic(target), s, 30)]
    assert len(seen) == 30
    assert seen[0] == pytest.approx(48 * 50.0 ** 2)
    assert seen[-1] < 0.1 * seen[0]
    x2 = torch.full((1, 3, 4, 4), 50.0, device=device, requires_grad=True)
    evaluations = 0
    for _ in optimise(x2, _quadratic(target), s, 30):
        evaluations += 1
        if evaluations == 5:
            break
    assert evaluations == 5


def test_optimise_refuses_an_exploding_sgd_run():
    """After 10 steps, a loss over 10 times the first is divergence, not progress."""
    calls = []

    def growing(x: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(1)
        total = (x * 0).sum() + 1.5 ** len(calls)  # 1.5^6 = 11.4: over x10 at call 6
        return {"total": total}

    x = torch.full((1, 3, 4, 4), 10.0, requires_grad=True)
    with pytest.raises(DivergedError, match="exploded from 1.5 to"):
        for _ in optimise(x, growing, Settings(optimizer="sgd"), 30):
            pass
    assert len(calls) == 11  # refused at the first step it may judge (the 11th)


def test_enlarge_adds_the_share_of_detail_asked_for(device):
    coarse_photo = torch.full((1, 3, 2, 2), 100.0, device=device)
    photo = torch.full((1, 3, 4, 4), 100.0, device=device)
    photo[..., 0, 0] = 140.0  # detail the coarse photo lacks
    x = torch.full((1, 3, 2, 2), 60.0, device=device)
    assert enlarge(x, coarse_photo, photo, 0.0).unique().tolist() == [60.0]
    half = enlarge(x, coarse_photo, photo, 0.5)
    assert half[0, 0, 0, 0].item() == pytest.approx(80.0) and half[0, 0, 3, 3].item() == 60.0
    assert enlarge(x, coarse_photo, photo, 1.0)[0, 0, 0, 0].item() == pytest.approx(100.0)
    bright = torch.full((1, 3, 2, 2), 250.0, device=device)
    assert enlarge(bright, coarse_photo, photo, 1.0).max() == 255.0


def test_lru_forgets_the_least_recently_used_first():
    lru: LRU[int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3)
    assert lru.get("b") is None and lru.get("a") == 1 and lru.get("c") == 3
