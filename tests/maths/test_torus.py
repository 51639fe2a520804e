"""Pictures on a torus: the wrapped resize, the wrapped TV and the seam measure."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from brushwork.maths.losses import tv_loss
from brushwork.maths.torus import resize_wrapped, seam_profile, seam_ratio


def _periodic(h: int, w: int) -> torch.Tensor:
    """A smooth picture that repeats exactly: whole periods of sines each way."""
    y = torch.arange(h, dtype=torch.float64).view(h, 1) * 2 * math.pi / h
    x = torch.arange(w, dtype=torch.float64).view(1, w) * 2 * math.pi / w
    return torch.stack([100 + 80 * torch.sin(x + 2 * y), 120 + 60 * torch.cos(3 * x - y),
                        128 + 50 * torch.sin(2 * x) * torch.cos(y)])


def test_a_picture_that_repeats_has_no_seam_and_a_ramp_has_one():
    assert seam_ratio(_periodic(24, 32)) == pytest.approx(1.0, abs=0.1)
    # A horizontal ramp 0..93: steps of 3 inside, a drop of 93 at the vertical seam.
    ramp = torch.arange(32, dtype=torch.float64).mul(3).view(1, 1, 32).expand(3, 24, 32)
    seam, inside = seam_profile(ramp)
    # Across the seams of the 48x64 repetition: 48 steps of 93 per channel (the vertical
    # seam) and 64 steps of 0 (the horizontal one); inside, 3 per channel or 0.
    assert seam == pytest.approx(48 * 93 * math.sqrt(3) / (48 + 64))
    assert inside == pytest.approx(48 * 62 * 3 * math.sqrt(3) / (48 * 62 + 46 * 64))
    assert seam_ratio(ramp) > 5
    assert seam_ratio(torch.zeros(3, 8, 8)) == 1.0


def test_seam_ratio_takes_a_batch_of_one():
    p = _periodic(16, 16)
    assert seam_ratio(p.unsqueeze(0)) == seam_ratio(p)


def test_wrapped_resize_commutes_with_rolling_and_a_plain_one_does_not():
    """On a torus, shifting then enlarging 2x is enlarging then shifting twice as far;
    a clamped border breaks that at the edges."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 12, 10, generator=g, dtype=torch.float64) * 255
    big = resize_wrapped(x, (24, 20))
    assert torch.allclose(resize_wrapped(x.roll((1, 3), (-2, -1)), (24, 20)),
                          big.roll((2, 6), (-2, -1)), atol=1e-9)
    plain = F.interpolate(x, size=(24, 20), mode="bicubic", align_corners=False)
    rolled = F.interpolate(x.roll((1, 3), (-2, -1)), size=(24, 20), mode="bicubic",
                           align_corners=False)
    assert not torch.allclose(rolled, plain.roll((2, 6), (-2, -1)), atol=1e-3)
    # Inside, away from the edges, it is the ordinary resize.
    assert torch.allclose(big[..., 4:-4, 4:-4], plain[..., 4:-4, 4:-4], atol=1e-9)


def test_wrapped_tv_counts_the_steps_across_the_edges():
    # A 4x4 checkerboard of 0 and 1 (one channel): every step is 1, each way.
    board = (torch.arange(4).view(4, 1) + torch.arange(4).view(1, 4)).remainder(2).double()
    board = board.view(1, 1, 4, 4)
    assert float(tv_loss(board)) == 9 * 2  # the 3x3 positions with both neighbours
    assert float(tv_loss(board, wrap=True)) == 16 * 2  # all 16 on a torus (4 is even)
    # A ramp's only big step is across the edge, which only the wrapped TV sees.
    ramp = torch.arange(5, dtype=torch.float64).view(1, 1, 1, 5).expand(1, 1, 5, 5)
    assert float(tv_loss(ramp)) == 16
    assert float(tv_loss(ramp, wrap=True)) == 5 * 4 * 1 + 5 * 16
