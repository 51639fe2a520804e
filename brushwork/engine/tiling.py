"""The whole picture's objective and gradient, evaluated tile by tile.

A Gram matrix is a sum over positions, ``G = sum_p F_p F_p^T``, and the content loss is a
sum over positions too, so neither needs the whole feature map at once:

1. Forward, without autograd, tile by tile: each tile (with a halo as wide as the
   deepest layer's receptive field) runs through the network, and the feature positions
   it *owns* add into each style layer's Gram matrix and into the content loss.
2. The style loss and its gradient with respect to each (small) Gram matrix come from
   the whole picture's Gram matrices.
3. Backward, tile by tile: each tile runs forward again with autograd, and its owned
   positions' share of the loss (the Gram gradient dotted with its own partial Gram, and
   its content terms) is backpropagated to the tile's pixels, halo included; the tiles'
   gradients add up to the whole picture's.

Tiles start on the pooling grid of the deepest layer, so each tile computes exactly the
features the whole picture has at the positions it owns: the result is the untiled
objective and gradient up to float summation order, with nothing to blend and no seams.
Memory is set by the tile, not the picture; the price is one more forward pass per
evaluation, plus the halos.  The structure loss needs only the picture averaged down to
small grids, so it is evaluated on the whole picture, with ordinary autograd.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from brushwork.engine.network import FeatureExtractor
from brushwork.engine.objective import StructureTerm, content_emphasis, size_invariant_weight
from brushwork.engine.settings import Settings
from brushwork.errors import BrushworkError
from brushwork.maths.losses import gram, style_layer_loss, tv_loss
from brushwork.maths.regions import LayerGuide, guided_grams, guided_style_loss, guides


def strides(steps: Sequence[str]) -> dict[str, int]:
    """Each step's output stride in pixels (1 until the first pooling, then 2, 4, ...)."""
    out, stride = {}, 1
    for name in steps:
        if name.startswith("pool"):
            stride *= 2
        out[name] = stride
    return out


def receptive_radius(steps: Sequence[str]) -> int:
    """How far, in pixels, the last of ``steps`` sees past its own position on each side:
    a 3x3 convolution adds one position at its input's stride, a 2x2 pooling one."""
    radius, stride = 0, 1
    for name in steps:
        if name.startswith("conv"):
            radius += stride
        elif name.startswith("pool"):
            radius += stride
            stride *= 2
    return radius


@dataclass(frozen=True)
class Tile:
    """The pixels a tile owns (``y0:y1, x0:x1``) and the box it reads (the halo added,
    clipped to the picture)."""

    y0: int
    y1: int
    x0: int
    x1: int
    by0: int
    by1: int
    bx0: int
    bx1: int

    def box(self, t: torch.Tensor) -> torch.Tensor:
        return t[..., self.by0:self.by1, self.bx0:self.bx1]

    def owned(self, features: torch.Tensor, stride: int) -> torch.Tensor:
        """The positions of ``features`` (this tile's, at ``stride``) that the tile owns."""
        top, left = (self.y0 - self.by0) // stride, (self.x0 - self.bx0) // stride
        rows, cols = -(-(self.y1 - self.y0) // stride), -(-(self.x1 - self.x0) // stride)
        return features[..., top:top + rows, left:left + cols]

    def owned_in_picture(self, stride: int) -> tuple[slice, slice]:
        """Where the owned positions sit in the whole picture's feature map at ``stride``."""
        return (slice(self.y0 // stride, -(-self.y1 // stride)),
                slice(self.x0 // stride, -(-self.x1 // stride)))


def plan_tiles(height: int, width: int, tile: int, halo: int, align: int) -> list[Tile]:
    """Tiles covering the picture, each owning at most ``tile`` pixels a side (a halo's
    width more at the picture's edges), their boxes all of one shape.

    ``tile`` and ``halo`` must be multiples of ``align`` (the deepest layer's stride), so
    that each tile and its box start on that layer's pooling grid.
    """
    if tile <= 0 or tile % align or halo % align:
        raise BrushworkError(f"tile size {tile} and halo {halo} must be positive multiples "
                             f"of {align} px")
    return [Tile(y0, y1, x0, x1, by0, by1, bx0, bx1)
            for y0, y1, by0, by1 in _spans(height, tile, halo, align)
            for x0, x1, bx0, bx1 in _spans(width, tile, halo, align)]


def _spans(length: int, tile: int, halo: int, align: int) -> list[tuple[int, int, int, int]]:
    """One side's tiles as ``(owned start, owned end, box start, box end)``.

    Every box has one length, ``2 * halo`` plus the owned width plus ``length % align``
    (so that the last box, which starts on the grid, ends on the picture's edge): boxes
    of one shape reuse the same memory and kernels, where boxes clipped at the edges
    would leave the allocator holes of every size.  The first and last tiles own a halo's
    width more than the others, since only one of their halos lies in the picture, and
    the owned widths are balanced, the largest multiple of ``align`` needed."""
    if length <= tile + 2 * halo:
        return [(0, length, 0, length)]
    inner = length - 2 * halo
    count = -(-inner // tile)
    share = -(-inner // count)  # inner / count, rounded up
    owned = -(-share // align) * align
    box = owned + 2 * halo + length % align
    if box >= length:
        return [(0, length, 0, length)]
    cuts = [0, *(halo + i * owned for i in range(1, count)), length]
    spans = []
    for o0, o1 in zip(cuts, cuts[1:], strict=False):
        start = 0 if o0 == 0 else min(o0 - halo, length - box)
        spans.append((o0, o1, start, start + box))
    return spans


def tile_geometry(net: FeatureExtractor) -> tuple[int, int]:
    """``(halo, align)`` for ``net``: the halo is the deepest layer's receptive radius,
    rounded up to a multiple of its stride (``align``)."""
    align = strides(net.steps)[net.steps[-1]]
    radius = receptive_radius(net.steps)
    return -(-radius // align) * align, align


_CONTENT_SCALE = {"paper": 0.5, "sum": 1.0}  # "mean" divides by the element count


def _content_scale(norm: str, numel: int) -> float:
    return 1.0 / numel if norm == "mean" else _CONTENT_SCALE[norm]


@torch.no_grad()
def tiled_grams(net: FeatureExtractor, image: torch.Tensor, layers: Sequence[str],
                tile: int) -> list[torch.Tensor]:
    """Gram matrices of ``image`` at ``layers`` (``(C, C)`` each, not divided by the
    positions), accumulated tile by tile."""
    halo, align = tile_geometry(net)
    stride = strides(net.steps)
    grams: list[torch.Tensor | None] = [None] * len(layers)
    for t in plan_tiles(image.shape[-2], image.shape[-1], tile, halo, align):
        _add_owned_grams(grams, t, net(t.box(image)), layers, stride)
    return [g for g in grams if g is not None]


def _add_owned_grams(grams: list[torch.Tensor | None], t: Tile,
                     feats: dict[str, torch.Tensor], layers: Sequence[str],
                     stride: dict[str, int],
                     layer_guides: Sequence[LayerGuide] | None = None) -> None:
    """Add the Gram matrices of the positions ``t`` owns into ``grams`` (in place); with
    ``layer_guides``, each region's guided Gram matrix ``(R, C, C)``."""
    for i, name in enumerate(layers):
        g = _owned_gram(t, feats[name], stride[name],
                        layer_guides[i] if layer_guides is not None else None)
        prev = grams[i]
        grams[i] = g if prev is None else prev.add_(g)


def _owned_gram(t: Tile, features: torch.Tensor, stride: int,
                guide: LayerGuide | None) -> torch.Tensor:
    """The Gram matrix of the positions ``t`` owns in ``features``; with ``guide``, each
    region's, from the tile's slice of the whole picture's masks at this layer."""
    owned = t.owned(features, stride)
    if guide is None:
        return gram(owned)[0]
    return guided_grams(owned, _owned_target(guide.roots, t, stride))


def tiled_style_grams(net: FeatureExtractor, style: torch.Tensor, layers: Sequence[str],
                      tile: int) -> list[torch.Tensor]:
    """:func:`brushwork.engine.objective.style_grams` (per position) for a style image too large
    to run whole."""
    grams = tiled_grams(net, style, layers, tile)
    stride = strides(net.steps)
    h, w = style.shape[-2:]
    return [g / (-(-h // stride[n]) * -(-w // stride[n])) for g, n in zip(grams, layers,
                                                                        strict=True)]


class TiledObjective(nn.Module):
    """:class:`brushwork.engine.objective.Objective`'s terms and gradient, evaluated ``tile``
    pixels at a time (module docstring); the same interface."""

    photo: torch.Tensor

    def __init__(self, net: FeatureExtractor, settings: Settings, content: torch.Tensor,
                 style_targets: Sequence[torch.Tensor], tile: int,
                 masks: torch.Tensor | None = None,
                 weights: Sequence[float] | None = None,
                 faces: torch.Tensor | None = None) -> None:
        """``masks`` and ``weights``: regions, as for Objective; the masks are carried
        down the layers on the whole picture (one channel each), and each tile takes its
        slice of them.  ``faces``: as for Objective; each tile takes its slice of the
        content weight."""
        super().__init__()
        self.net = net
        self.s = settings
        self.tile = tile
        self.register_buffer("photo", content, persistent=False)
        height, width = content.shape[-2:]
        self.image_pixels = height * width
        self.content_weight = settings.knob("content_weight")
        self.style_weight = settings.knob("style_weight")
        if settings.size_invariant:
            self.content_weight = size_invariant_weight(self.content_weight, max(height, width))
        n = len(settings.style_layers)
        self.layer_weights = list(settings.style_layer_weights or [1.0 / n] * n)
        halo, align = tile_geometry(net)
        self.tiles = plan_tiles(height, width, tile, halo, align)
        self.stride = strides(net.steps)
        self.style_targets = [g.detach() for g in style_targets]
        self.guides: list[LayerGuide] | None = None
        if masks is not None:
            self.guides = guides(masks, net.steps, settings.style_layers, settings.mask_mode)
            self.region_weights = list(weights) if weights is not None else [1.0] * len(masks)
        # The photo's content features, whole, assembled from the tiles' owned positions.
        self.content_targets = [_assemble(net, content, name, self.stride[name], self.tiles)
                                for name in settings.content_layers]
        self.content_maps = [content_emphasis(faces, t) for t in self.content_targets]
        self.structure = StructureTerm(content, settings.structure, faces)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self.s
        content, style = _TiledLosses.apply(x, self)
        tv = tv_loss(x, s.tv_power) if s.tv_weight > 0 else x.new_zeros(())
        terms = {"content": self.content_weight * content, "style": self.style_weight * style,
                 "tv": s.tv_weight * tv, "structure": self.structure(x)}
        terms["total"] = terms["content"] + terms["style"] + terms["tv"] + terms["structure"]
        return terms

    # -- the two passes ------------------------------------------------------------------

    @torch.no_grad()
    def accumulate(self, x: torch.Tensor) -> tuple[list[torch.Tensor], float]:
        """Pass 1: the whole picture's Gram matrices and the content loss (before alpha)."""
        s = self.s
        grams: list[torch.Tensor | None] = [None] * len(s.style_layers)
        content = 0.0
        for t in self.tiles:
            feats = self.net(t.box(x))
            _add_owned_grams(grams, t, feats, s.style_layers, self.stride, self.guides)
            for name, target, weight in zip(s.content_layers, self.content_targets,
                                            self.content_maps, strict=True):
                sq = self._content_squares(t, feats[name], name, target, weight)
                content += _content_scale(s.content_norm, target.numel()) * float(sq.sum())
            # Let this tile's features go before the next tile's forward pass allocates.
            del feats, sq
        return [g for g in grams if g is not None], content

    def style_and_grads(self, grams: list[torch.Tensor]
                        ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The style loss (before beta) from whole Gram matrices, and its gradient with
        respect to each of them."""
        s = self.s
        leaves = [g.detach().requires_grad_(True) for g in grams]
        with torch.enable_grad():
            style = leaves[0].new_zeros(())
            for i, name in enumerate(s.style_layers):
                positions = self._positions(name)
                channels = leaves[i].shape[-1]
                if self.guides is not None:
                    style = style + self.layer_weights[i] * guided_style_loss(
                        leaves[i], self.style_targets[i], self.guides[i].areas,
                        self.region_weights, channels, positions, s.style_norm,
                        self.image_pixels)
                    continue
                target = self.style_targets[i] * positions
                style = style + self.layer_weights[i] * style_layer_loss(
                    leaves[i], target, channels, positions, s.style_norm, self.image_pixels)
            d_grams = list(torch.autograd.grad(style, leaves))
        return style.detach(), d_grams

    def backward_tiles(self, x: torch.Tensor, d_grams: list[torch.Tensor], g_content: float,
                       g_style: float) -> torch.Tensor:
        """Pass 2: the image gradient, tile by tile."""
        s = self.s
        grad = torch.zeros_like(x)
        for t in self.tiles:
            xt = t.box(x).detach().requires_grad_(True)
            with torch.enable_grad():
                feats = self.net(xt)
                share = xt.new_zeros(())
                if g_style:
                    for i, (name, d) in enumerate(zip(s.style_layers, d_grams, strict=True)):
                        g = _owned_gram(t, feats[name], self.stride[name],
                                        self.guides[i] if self.guides is not None else None)
                        share = share + g_style * (d * g).sum()
                if g_content:
                    for name, target, weight in zip(s.content_layers, self.content_targets,
                                                    self.content_maps, strict=True):
                        sq = self._content_squares(t, feats[name], name, target, weight)
                        scale = _content_scale(s.content_norm, target.numel())
                        share = share + g_content * scale * sq.sum()
                if share.requires_grad:
                    (g_tile,) = torch.autograd.grad(share, xt)
                    t.box(grad).add_(g_tile)
            # Let this tile's features and graph go before the next tile's forward pass.
            del feats, share, xt
        return grad

    def _content_squares(self, t: Tile, features: torch.Tensor, name: str,
                         target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """The squared content differences at the positions ``t`` owns, weighted where
        faces raise them."""
        stride = self.stride[name]
        sq = (t.owned(features, stride) - _owned_target(target, t, stride)).pow(2)
        return sq if weight is None else sq * _owned_target(weight, t, stride)

    def _positions(self, name: str) -> int:
        h, w = self.photo.shape[-2:]
        stride = self.stride[name]
        return -(-h // stride) * -(-w // stride)


def _owned_target(target: torch.Tensor, t: Tile, stride: int) -> torch.Tensor:
    rows, cols = t.owned_in_picture(stride)
    return target[..., rows, cols]


@torch.no_grad()
def _assemble(net: FeatureExtractor, image: torch.Tensor, name: str, stride: int,
              tiles: list[Tile]) -> torch.Tensor:
    """The whole picture's features at ``name``, from each tile's owned positions."""
    height, width = image.shape[-2:]
    out: torch.Tensor | None = None
    for t in tiles:
        f = t.owned(net(t.box(image))[name], stride)
        if out is None:
            # Content targets stay float32 (or wider) whatever the network's precision.
            out = f.new_empty(1, f.shape[1], -(-height // stride), -(-width // stride),
                              dtype=torch.promote_types(f.dtype, torch.float32))
        rows, cols = t.owned_in_picture(stride)
        out[..., rows, cols] = f
    assert out is not None
    return out.contiguous()


class _TiledLosses(torch.autograd.Function):
    """``(content, style)`` of a :class:`TiledObjective` at ``x``; the backward is pass 2."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, objective: TiledObjective
                ) -> tuple[torch.Tensor, torch.Tensor]:
        grams, content = objective.accumulate(x)
        style, d_grams = objective.style_and_grads(grams)
        ctx.objective, ctx.d_grams = objective, d_grams
        ctx.save_for_backward(x)
        return x.new_tensor(content), style.to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_content: torch.Tensor, g_style: torch.Tensor
                 ) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        grad = ctx.objective.backward_tiles(x, ctx.d_grams, float(g_content), float(g_style))
        return grad, None
