"""The structure loss: the Laplacian on fixed grids, its loss and its gradient."""

from __future__ import annotations

import math

import pytest
import torch

from brushwork.maths.structure import (
    GRIDS,
    SCALE,
    grid_size,
    laplacian,
    laplacians,
    structure_distance,
    structure_loss,
)


def test_laplacian_by_hand():
    ramp = torch.arange(25, dtype=torch.float64).view(1, 1, 5, 5) * 3  # linear: no curvature
    assert torch.equal(laplacian(ramp), torch.zeros(1, 1, 3, 3, dtype=torch.float64))
    spike = torch.zeros(1, 1, 5, 5)
    spike[0, 0, 2, 2] = 1.0
    assert laplacian(spike)[0, 0].tolist() == [[0, 1, 0], [1, -4, 1], [0, 1, 0]]


def test_grids_keep_their_size_whatever_the_picture():
    assert grid_size(192, 256, 128) == grid_size(768, 1024, 128) == (96, 128)
    assert grid_size(192, 256, 32) == (24, 32)
    assert grid_size(40, 60, 128) == (40, 60)  # never more positions than pixels
    assert grid_size(2, 600, 32) == (3, 32)  # room for a 3x3 Laplacian


def _waves(height: int, width: int) -> torch.Tensor:
    """A smooth pattern, the same picture at any resolution."""
    y = (torch.arange(height, dtype=torch.float64) + 0.5) / height
    x = (torch.arange(width, dtype=torch.float64) + 0.5) / width
    grey = 128 + 60 * torch.sin(9 * y).view(-1, 1) * torch.cos(13 * x).view(1, -1)
    return grey.expand(1, 3, height, width).clone()


def test_the_distance_means_the_same_at_every_size():
    """The same two pictures at 256 and at 1024 px are equally far apart."""
    small = structure_distance(_waves(192, 256), _waves(192, 256).flip(-1))
    large = structure_distance(_waves(768, 1024), _waves(768, 1024).flip(-1))
    assert small > 0.1
    assert large == pytest.approx(small, rel=0.02)


def test_the_loss_is_zero_at_the_photo_and_grows_with_the_difference():
    photo = _waves(60, 80)
    targets = laplacians(photo)
    assert len(targets) == len(GRIDS)
    assert float(structure_loss(photo, targets)) == 0.0
    near = structure_loss(photo + 5 * torch.rand(photo.shape, dtype=torch.float64), targets)
    far = structure_loss(photo + 20 * torch.rand(photo.shape, dtype=torch.float64), targets)
    assert 0 < float(near) < float(far)
    # Its definition: SCALE times the mean squared difference, summed over the grids.
    other = photo.flip(-2)
    want = SCALE * sum(float((a - b).pow(2).mean()) for a, b in
                       zip(laplacians(other), targets, strict=True))
    assert float(structure_loss(other, targets)) == pytest.approx(want, rel=1e-9)
    assert structure_distance(other, photo) == pytest.approx(math.sqrt(want / SCALE / 2))


def test_weights_scale_the_loss_where_they_are():
    photo = _waves(40, 52)
    targets = laplacians(photo)
    x = photo.flip(-1)
    ones = [torch.ones_like(t) for t in targets]
    assert float(structure_loss(x, targets, [3 * w for w in ones])) == pytest.approx(
        3 * float(structure_loss(x, targets)))


def test_the_gradient_matches_finite_differences():
    """A tiny picture whose grids pool unevenly (adaptive pooling) and a weight map."""
    g = torch.Generator().manual_seed(0)
    photo = torch.rand(1, 3, 11, 14, generator=g, dtype=torch.float64) * 255
    targets = laplacians(photo, grids=(9, 5))
    weights = [torch.rand(t.shape, generator=g, dtype=torch.float64) + 0.5 for t in targets]
    x = (torch.rand(1, 3, 11, 14, generator=g, dtype=torch.float64) * 255).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda im: structure_loss(im, targets, weights, grids=(9, 5)), (x,))
