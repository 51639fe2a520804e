"""Pictures on a torus, whose left edge is the right one's neighbour and whose top is the
bottom's: they repeat without a seam (``--tileable``).  Resizing one, and measuring how
well it tiles."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["resize_wrapped", "seam_ratio", "seam_profile"]


def resize_wrapped(picture: torch.Tensor, size: tuple[int, int],
                   mode: str = "bicubic") -> torch.Tensor:
    """``picture`` ``(B, C, H, W)`` resized to ``size`` (height, width) as a torus: the
    pixels near an edge are interpolated from the opposite edge's too, not from a
    clamped border.  Resizes the 3x3 repetition and keeps its middle, so the sampling
    positions are exactly those of an ordinary resize."""
    h, w = size
    tiled = picture.repeat(1, 1, 3, 3)
    out = F.interpolate(tiled, size=(3 * h, 3 * w), mode=mode, align_corners=False)
    return out[..., h:2 * h, w:2 * w].contiguous()


def _steps(picture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The step to the next pixel, across columns ``(..., H, W-1)`` and rows
    ``(..., H-1, W)``, as its length over the channels."""
    p = picture.double()
    dx = (p[..., :, 1:] - p[..., :, :-1]).pow(2).sum(-3).sqrt()
    dy = (p[..., 1:, :] - p[..., :-1, :]).pow(2).sum(-3).sqrt()
    return dx, dy


def seam_profile(picture: torch.Tensor) -> tuple[float, float]:
    """``(across the seams, elsewhere)``: in the 2x2 repetition of ``picture``
    ``(C, H, W)`` or ``(1, C, H, W)``, the mean length of the colour step between
    neighbouring pixels across the two seam lines (where a copy's right edge meets the
    next copy's left, and its bottom the next one's top), and the mean over every other
    pair of neighbours."""
    if picture.dim() == 4:
        picture = picture[0]
    h, w = picture.shape[-2:]
    dx, dy = _steps(picture.repeat(1, 2, 2))
    seam = torch.cat([dx[:, w - 1], dy[h - 1, :]])
    interior = torch.cat([torch.cat([dx[:, :w - 1], dx[:, w:]], 1).flatten(),
                          torch.cat([dy[:h - 1], dy[h:]], 0).flatten()])
    return float(seam.mean()), float(interior.mean())


def seam_ratio(picture: torch.Tensor) -> float:
    """How visible the seam of ``picture`` repeated 2x2 is: the mean gradient across the
    seams over the mean gradient elsewhere (:func:`seam_profile`).  About 1 for a
    picture that tiles (its edges continue each other as its inside does); a flat
    picture's seam is a line of steps a few times the inside's."""
    seam, interior = seam_profile(picture)
    return seam / interior if interior > 0 else (1.0 if seam == 0 else float("inf"))
