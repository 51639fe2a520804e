"""Which style goes where: guided Gram matrices (Gatys et al. 2017, "Controlling
Perceptual Factors in Neural Style Transfer", section 4), as pure functions.

Each style paints a region of the picture, given as a mask in 0..1 over the photo
(white = this style).  At each style layer the region's mask is carried down to the
layer's grid (:func:`layer_masks`), the features are weighted by it, and the region's
Gram matrix is normalised by its own area at that layer, so that it is the mean of
``F_p F_p^T`` over the region's positions and compares with the painting's Gram matrix
per position, whatever the region's size.

Departures from the paper, and why:

* The weight of a position in its region's Gram matrix is the mask ``m`` itself (the
  features are multiplied by ``sqrt(m)``), not the paper's ``m^2``: with soft masks that
  add up to 1, a position on a soft edge then counts half in each region, and the
  regions' Gram matrices, weighted by their areas, add up to the whole picture's.
* Each region's loss is weighted by its share of the layer's positions (``area / M``),
  so each pixel's style gradient has the same scale whatever the size of its region,
  and one region covering everything is exactly the unmasked objective.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from brushwork.maths.losses import gram, style_layer_loss

# How a mask reaches a layer's grid:
# resize: averaged down at each pooling (the paper's "simple" propagation); a position
#   near a border takes a share of each region.
# inside: also eroded by each 3x3 convolution and 2x2 pooling (the paper's "inside"
#   guidance), so a position belongs to a region only if all it sees lies in it.
MASK_MODES = ("resize", "inside")


@dataclass(frozen=True)
class LayerGuide:
    """The regions at one style layer: ``roots``, the square roots of the masks at the
    layer's grid, ``(R, 1, h, w)``, which the features are multiplied by, and each
    region's area there (the sum of its mask, in positions)."""

    roots: torch.Tensor
    areas: tuple[float, ...]


def layer_masks(masks: torch.Tensor, steps: Sequence[str], layers: Sequence[str],
                mode: str = "resize") -> list[torch.Tensor]:
    """The masks ``(R, 1, H, W)`` (in 0..1, at the network's input size) carried down
    the network's ``steps`` to each of ``layers``: ``(R, 1, h, w)`` each, on the grid the
    layer's features have (ceil-mode 2x2 poolings, as the network's)."""
    if mode not in MASK_MODES:
        raise ValueError(f"mask mode must be one of {MASK_MODES}, not {mode!r}")
    wanted = set(layers)
    out: dict[str, torch.Tensor] = {}
    m = masks
    for name in steps:
        if name.startswith("pool"):
            if mode == "inside":  # the least over the window the pooling reads
                m = -F.max_pool2d(-m, kernel_size=2, stride=2, ceil_mode=True)
            else:
                m = _mean_pool(m)
        elif name.startswith("conv") and mode == "inside":
            # A 3x3 convolution sees one position further each way; outside the picture
            # is zero padding, not another region, so the border does not erode.
            m = -F.max_pool2d(-m, kernel_size=3, stride=1, padding=1)
        if name in wanted:
            out[name] = m
    missing = [n for n in layers if n not in out]
    if missing:
        raise ValueError(f"layers {missing} are not among the network's steps")
    return [out[n] for n in layers]


def _mean_pool(m: torch.Tensor) -> torch.Tensor:
    """2x2 mean with ceil mode, a window hanging over the edge averaged over the
    positions it has (so a mask of ones stays ones)."""
    h, w = m.shape[-2:]
    padded = F.pad(m, (0, w % 2, 0, h % 2), mode="replicate") if h % 2 or w % 2 else m
    return F.avg_pool2d(padded, kernel_size=2, stride=2)


def guides(masks: torch.Tensor, steps: Sequence[str], layers: Sequence[str],
           mode: str = "resize") -> list[LayerGuide]:
    """:class:`LayerGuide` per layer of ``layers`` for the masks ``(R, 1, H, W)``."""
    out = []
    for m in layer_masks(masks, steps, layers, mode):
        m = m.clamp(0, 1)
        out.append(LayerGuide(m.sqrt().contiguous(),
                              tuple(float(a) for a in m.sum(dim=(1, 2, 3)))))
    return out


def guided_grams(features: torch.Tensor, roots: torch.Tensor,
                 gram_fn: Callable[[torch.Tensor], torch.Tensor] = gram) -> torch.Tensor:
    """Each region's Gram matrix ``sum_p m_p F_p F_p^T`` (not divided by its area):
    ``features`` ``(1, C, h, w)`` and ``roots`` ``(R, 1, h, w)`` -> ``(R, C, C)``.

    Each product runs over the box around the region's positions only (two regions
    side by side cost about one whole Gram matrix, not two); a region with no
    positions here gets zeros, without a product."""
    c = features.shape[1]
    out = []
    for root in roots:
        box = _bounding_box(root)
        if box is None:
            # The dtype gram_fn gives: float32 for low-precision features, else theirs.
            out.append(features.new_zeros(
                c, c, dtype=torch.promote_types(features.dtype, torch.float32)))
        else:
            rows, cols = box
            out.append(gram_fn(features[..., rows, cols] * root[..., rows, cols])[0])
    return torch.stack(out)


def _bounding_box(root: torch.Tensor) -> tuple[slice, slice] | None:
    """The rows and columns of ``root`` ``(1, h, w)`` that hold its non-zero values."""
    rows = torch.nonzero(root[0].amax(dim=1)).flatten()
    if not len(rows):
        return None
    cols = torch.nonzero(root[0].amax(dim=0)).flatten()
    return (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))


def guided_style_loss(grams: torch.Tensor, targets: torch.Tensor, areas: Sequence[float],
                      weights: Sequence[float], channels: int, positions: int,
                      norm: str = "paper", image_pixels: int | None = None) -> torch.Tensor:
    """One layer's style loss over regions: ``sum_r weights[r] * (area_r / M) * E_r``,
    with ``E_r`` the layer loss (:func:`brushwork.maths.losses.style_layer_loss`) of the
    region's Gram matrix ``grams[r]`` against ``targets[r]`` (a Gram matrix per position)
    over the region's ``area_r`` positions.  Regions with no area add nothing."""
    total = grams.new_zeros(())
    for r, (area, weight) in enumerate(zip(areas, weights, strict=True)):
        if area <= 0 or weight == 0:
            continue
        total = total + weight * (area / positions) * style_layer_loss(
            grams[r], targets[r] * area, channels, area, norm, image_pixels)
    return total


def region_weights(blend: Sequence[float]) -> list[float]:
    """Each region's weight from the styles' blend weights: 1 each when equal, so that a
    region is painted as strongly as one style over the whole picture."""
    total = sum(blend)
    return [b * len(blend) / total for b in blend]


def split_regions(masks: torch.Tensor, targets: Sequence[torch.Tensor],
                  weights: Sequence[float], fresh: torch.Tensor
                  ) -> tuple[torch.Tensor, list[torch.Tensor], list[float]]:
    """Each region split in two: its part outside ``fresh`` ``(1, 1, H, W)`` (in 0..1, at
    the masks' size) and its part inside, both with the region's target and weight.

    A region's Gram matrix is normalised by its own area, so a small new part of the
    picture (what a video frame shows for the first time) is held to the painting's
    statistics on its own, with each of its pixels pulled as hard as on a whole picture,
    instead of moving the whole picture's Gram matrix by its small share: there the
    gradient per pixel is that share times smaller.  ``masks`` ``(R, 1, H, W)``,
    ``targets`` per layer ``(R, C, C)``; returns ``2R`` of each, the outside parts first."""
    keep = masks * (1 - fresh)
    new = masks * fresh
    return (torch.cat([keep, new]), [torch.cat([t, t]) for t in targets],
            [*weights, *weights])


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The masks ``(R, 1, H, W)`` at ``size`` (width, height), antialiased, in 0..1."""
    w, h = size
    if masks.shape[-2:] == (h, w):
        return masks
    return F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False,
                         antialias=True).clamp(0, 1)


def recolour_by_region(photo: torch.Tensor, styles: Sequence[torch.Tensor],
                       masks: torch.Tensor,
                       match: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                       ) -> torch.Tensor:
    """The photo recoloured to each region's own painting (``match(photo, style)``),
    blended by the masks ``(R, 1, H, W)`` at the photo's size; the photo as it is where
    no mask is."""
    cover = masks.sum(dim=0, keepdim=True)  # (1, 1, H, W)
    share = masks / cover.clamp(min=1.0)  # overlapping masks share a position
    out = photo * (1 - share.sum(dim=0, keepdim=True))
    for k, style in enumerate(styles):
        out = out + share[k:k + 1] * match(photo, style)
    return out.clamp(0, 255)
