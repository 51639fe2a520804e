"""The structure loss: the picture's Laplacian held to the photo's, as pure functions.

Li et al. 2017 ("Laplacian-steered neural style transfer") add to Gatys's objective
the squared difference between the Laplacian of the picture and of the photo, taken
after average pooling by 4 with a 3x3 Laplacian: the pooled Laplacian sees the photo's
shapes (edges, horizons, the flatness of a sky) and not its fine texture, so the
painting's strokes stay while skies and walls stop turning blotchy.

Departures from the paper:

* The Laplacian is taken on grids of a fixed size (:data:`GRIDS`: the picture pooled
  to about 128 and 32 positions on its long side) rather than after a fixed pooling
  factor, so a weight means the same at every picture size: Li et al.'s pool by 4 is
  the 128 grid of a 512 px picture.  Two grids hold both the edges and the larger
  forms, as the paper's two-level variant does.
* The loss is a mean over each grid's positions (not a sum), on the mean of the three
  channels (grey levels, 0..255), times :data:`SCALE`, calibrated so that
  ``--structure 1`` is the strongest setting measured in docs/structure.md that keeps
  the style loss within 10% of the run without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Long side of each grid on which the Laplacian is compared, in positions.
GRIDS = (128, 32)
# ``--structure 1``: the strongest weight measured (docs/structure.md, docs/scripts/structure.py)
# that kept the style loss within +10% of the run without it.
SCALE = 300.0

_KERNEL = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def grid_size(height: int, width: int, grid: int) -> tuple[int, int]:
    """``(rows, cols)`` of the grid whose long side is ``grid`` positions, keeping the
    picture's aspect; never more positions than the picture has, never fewer than 3."""
    long = max(height, width)
    n = min(grid, long)
    return (max(3, min(height, round(height * n / long))),
            max(3, min(width, round(width * n / long))))


def pooled(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The mean of ``image``'s channels ``(B, C, H, W)``, averaged down to ``size``:
    ``(B, 1, rows, cols)``."""
    grey = image.mean(dim=1, keepdim=True)
    if tuple(grey.shape[-2:]) == size:
        return grey
    return F.adaptive_avg_pool2d(grey, size)


def laplacian(grey: torch.Tensor) -> torch.Tensor:
    """The 3x3 Laplacian of ``(B, 1, H, W)``, at the interior positions:
    ``(B, 1, H - 2, W - 2)`` (no padding, so the picture's border invents no edge)."""
    kernel = grey.new_tensor(_KERNEL).view(1, 1, 3, 3)
    return F.conv2d(grey, kernel)


def laplacians(image: torch.Tensor, grids: Sequence[int] = GRIDS) -> list[torch.Tensor]:
    """The Laplacian of ``image`` on each grid of :data:`GRIDS`."""
    h, w = image.shape[-2:]
    return [laplacian(pooled(image, grid_size(h, w, g))) for g in grids]


def structure_loss(image: torch.Tensor, targets: Sequence[torch.Tensor],
                   weights: Sequence[torch.Tensor] | None = None,
                   grids: Sequence[int] = GRIDS) -> torch.Tensor:
    """``SCALE * sum_grids mean_p w_p (lap(image)_p - target_p)^2``: the structure loss
    before its weight.  ``targets``: :func:`laplacians` of the photo; ``weights``: per
    grid, a per-position weight map of the targets' shape (default 1 everywhere)."""
    total = image.new_zeros(())
    for i, (lap, target) in enumerate(zip(laplacians(image, grids), targets, strict=True)):
        sq = (lap - target).pow(2)
        if weights is not None:
            sq = sq * weights[i]
        total = total + sq.mean()
    return SCALE * total


def structure_distance(image: torch.Tensor, photo: torch.Tensor,
                       grids: Sequence[int] = GRIDS) -> float:
    """How far ``image``'s structure is from ``photo``'s: the root mean square difference
    of their Laplacians over the grids, in grey levels.  The measure docs/structure.md
    reports; 0 for the photo itself."""
    with torch.no_grad():
        diffs = [(a - b).pow(2).mean() for a, b in
                 zip(laplacians(image, grids), laplacians(photo, grids), strict=True)]
    return float(torch.stack(diffs).mean().sqrt())
