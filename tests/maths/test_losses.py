"""The losses against hand-computed values, gradcheck, and properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from brushwork.maths.losses import content_loss, gram, style_layer_loss, tv_loss


def test_gram_of_ones_is_number_of_positions(device):
    f = torch.ones(1, 3, 4, 5, device=device)
    g = gram(f)
    assert g.shape == (1, 3, 3) and g.device.type == device.type
    assert torch.equal(g.cpu(), torch.full((1, 3, 3), 20.0))


def test_gram_hand_computed(device):
    # Two channels, positions [1, 2] and [3, 4]: G = [[5, 11], [11, 25]].
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]], device=device).view(1, 2, 1, 2)
    assert torch.equal(gram(f)[0].cpu(), torch.tensor([[5.0, 11.0], [11.0, 25.0]]))


def test_gram_keeps_batch_items_apart(device):
    f = torch.stack([torch.ones(2, 2, 2), 2 * torch.ones(2, 2, 2)]).to(device)
    g = gram(f).cpu()
    assert torch.equal(g[0], torch.full((2, 2), 4.0))
    assert torch.equal(g[1], torch.full((2, 2), 16.0))


def test_content_loss_is_half_sum_of_squares(device):
    f = torch.tensor([1.0, 2.0, 3.0], device=device).view(1, 1, 1, 3)
    p = torch.tensor([1.0, 0.0, 0.0], device=device).view(1, 1, 1, 3)
    # Differences 0, 2, 3: squares sum to 13.
    assert content_loss(f, p).item() == pytest.approx(6.5)
    assert content_loss(f, p, "sum").item() == pytest.approx(13.0)
    assert content_loss(f, p, "mean").item() == pytest.approx(13.0 / 3)


def test_style_layer_loss_paper_normalisation(device):
    # N = 3, M = 10, G - A = 6 everywhere: E = 9 * 36 / (4 * 9 * 100) = 0.09.
    g = torch.full((3, 3), 6.0, device=device)
    a = torch.zeros(3, 3, device=device)
    assert style_layer_loss(g, a, 3, 10).item() == pytest.approx(0.09)


def test_style_layer_loss_seed_normalisations(device):
    # N = 2, M = 5, G - A = 4 everywhere.
    g, a = torch.full((2, 2), 4.0, device=device), torch.zeros(2, 2, device=device)
    # seed 001: the mean square of (G - A) / (N M) = (4 / 10)^2 = 0.16.
    assert style_layer_loss(g, a, 2, 5, "mean").item() == pytest.approx(0.16)
    # seed 004: sum (G - A)^2 / (4 * 3^2 * pixels^2) = 4 * 16 / (36 * 100^2) = 1 / 5625.
    assert style_layer_loss(g, a, 2, 5, "keras", image_pixels=100).item() == pytest.approx(
        1 / 5625)
    with pytest.raises(ValueError):
        style_layer_loss(g, a, 2, 5, "keras")
    with pytest.raises(ValueError):
        style_layer_loss(g, a, 2, 5, "bogus")


def checkerboard(n: int, device: torch.device) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    return ((x + y) % 2).float().view(1, 1, n, n).to(device)


def test_tv_of_checkerboard(device):
    # 6x6: each of the 5 x 5 positions with both neighbours has dy^2 + dx^2 = 2, so
    # 25 * 2 = 50, and 25 * 2^1.25 = 59.46... with power 1.25.
    assert tv_loss(checkerboard(6, device)).item() == pytest.approx(50.0)
    assert tv_loss(checkerboard(6, device), 1.25).item() == pytest.approx(59.4603557501)


def test_tv_of_a_ramp_hand_computed(device):
    # Rows [0, 1, 3], [0, 1, 3], [2, 2, 2]: the four positions with both neighbours
    # have (dy, dx) = (0, 1), (0, 2), (2, 1), (1, 2): squares 1 + 4 + 5 + 5 = 15.
    x = torch.tensor([[0.0, 1.0, 3.0], [0.0, 1.0, 3.0], [2.0, 2.0, 2.0]], device=device)
    assert tv_loss(x.view(1, 1, 3, 3)).item() == pytest.approx(15.0)


def test_tv_of_constant_is_zero_and_finite_gradient_below_one(device):
    x = torch.full((1, 3, 5, 5), 7.0, device=device, requires_grad=True)
    assert tv_loss(x).item() == 0.0
    loss = tv_loss(x, 0.5)
    loss.backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("power", [1.0, 1.25])
def test_gradcheck_tv(power, float64_device):
    x = torch.rand(1, 2, 5, 4, dtype=torch.float64, device=float64_device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: tv_loss(t, power), (x,))


def test_gradcheck_content_and_style(float64_device):
    kw = {"dtype": torch.float64, "device": float64_device}
    f = torch.rand(1, 3, 4, 4, requires_grad=True, **kw)
    p = torch.rand(1, 3, 4, 4, **kw)
    a = gram(torch.rand(1, 3, 4, 4, **kw))[0]
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
