"""The losses against hand-computed values, gradcheck, and properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from brushwork.losses import content_loss, gram, style_layer_loss, tv_loss


def test_gram_of_ones_is_number_of_positions():
    f = torch.ones(1, 3, 4, 5)
    g = gram(f)
    assert g.shape == (1, 3, 3)
    assert torch.equal(g, torch.full((1, 3, 3), 20.0))


def test_gram_hand_computed():
    # Two channels, positions [1, 2] and [3, 4]: G = [[5, 11], [11, 25]].
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    assert torch.equal(gram(f)[0], torch.tensor([[5.0, 11.0], [11.0, 25.0]]))


def test_gram_keeps_batch_items_apart():
    f = torch.stack([torch.ones(2, 2, 2), 2 * torch.ones(2, 2, 2)])
    g = gram(f)
    assert torch.equal(g[0], torch.full((2, 2), 4.0))
    assert torch.equal(g[1], torch.full((2, 2), 16.0))


def test_content_loss_is_half_sum_of_squares():
    f = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3)
    p = torch.tensor([1.0, 0.0, 0.0]).view(1, 1, 1, 3)
    assert content_loss(f, p).item() == pytest.approx(0.5 * (4 + 9))
    assert content_loss(f, p, "sum").item() == pytest.approx(13.0)
    assert content_loss(f, p, "mean").item() == pytest.approx(13.0 / 3)


def test_style_layer_loss_paper_normalisation():
    # (G - A) = d everywhere in an N x N matrix: E = N^2 d^2 / (4 N^2 M^2) = d^2 / (4 M^2).
    n, m, d = 3, 10, 6.0
    g = torch.full((n, n), d)
    a = torch.zeros(n, n)
    assert style_layer_loss(g, a, n, m).item() == pytest.approx(d ** 2 / (4 * m ** 2))


def test_style_layer_loss_seed_normalisations():
    n, m, d = 2, 5, 4.0
    g, a = torch.full((n, n), d), torch.zeros(n, n)
    # seed 001: mse of G / (C*H*W)
    assert style_layer_loss(g, a, n, m, "mean").item() == pytest.approx((d / (n * m)) ** 2)
    # seed 004: sum (G-A)^2 / (4 * 3^2 * pixels^2), pixels being the image's
    expected = n * n * d ** 2 / (4 * 9 * 100 ** 2)
    assert style_layer_loss(g, a, n, m, "keras", image_pixels=100).item() == pytest.approx(expected)
    with pytest.raises(ValueError):
        style_layer_loss(g, a, n, m, "keras")
    with pytest.raises(ValueError):
        style_layer_loss(g, a, n, m, "bogus")


def checkerboard(n: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    return ((x + y) % 2).float().view(1, 1, n, n)


def test_tv_of_checkerboard():
    # Every one of the (n-1)^2 positions has dy^2 = dx^2 = 1.
    n = 6
    assert tv_loss(checkerboard(n)).item() == pytest.approx(2 * (n - 1) ** 2)
    assert tv_loss(checkerboard(n), 1.25).item() == pytest.approx(2 ** 1.25 * (n - 1) ** 2)


def test_tv_of_constant_is_zero_and_finite_gradient_below_one():
    x = torch.full((1, 3, 5, 5), 7.0, requires_grad=True)
    assert tv_loss(x).item() == 0.0
    loss = tv_loss(x, 0.5)
    loss.backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("power", [1.0, 1.25])
def test_gradcheck_tv(power):
    x = torch.rand(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: tv_loss(t, power), (x,))


def test_gradcheck_content_and_style():
    f = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    p = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    a = gram(torch.rand(1, 3, 4, 4, dtype=torch.float64))[0]
    assert torch.autograd.gradcheck(lambda t: content_loss(t, p), (f,))
    assert torch.autograd.gradcheck(lambda t: style_layer_loss(gram(t)[0], a, 3, 16), (f,))


@settings(max_examples=30, deadline=None)
@given(c=st.integers(1, 5), h=st.integers(1, 4), w=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_gram_is_symmetric_positive_semidefinite(c, h, w, seed):
    f = torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    g = gram(f)[0]
    assert torch.allclose(g, g.T)
    assert torch.linalg.eigvalsh(g).min() > -1e-9 * max(1.0, g.abs().max().item())


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 10))
def test_style_loss_zero_only_at_target(seed, scale):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(1, 3, 3, 3, generator=g)
    a = gram(f)[0]
    assert style_layer_loss(gram(f)[0], a, 3, 9).item() == 0.0
    other = style_layer_loss(gram(f * (1 + scale))[0], a, 3, 9).item()
    assert other > 0 and math.isfinite(other)
