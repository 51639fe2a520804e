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
small grids, and the matting term (--photoreal) only 3x3 windows of it, so both are
evaluated on the whole picture, with ordinary autograd.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from brushwork.engine.network import FeatureExtractor
from brushwork.engine.objective import (
    MattingTerm,
    StructureTerm,
    content_emphasis,
    size_invariant_weight,
    total_of,
)
from brushwork.engine.settings import Settings
from brushwork.engine.style_terms import StyleLayer, refuse_sliced
from brushwork.errors import BrushworkError
from brushwork.maths.distributions import moment_matrix
from brushwork.maths.losses import gram, tv_loss
from brushwork.maths.regions import LayerGuide, guides


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
        """The box's pixels of ``t``; a box past the picture's edges (a tileable picture's,
        :func:`plan_tiles` with ``wrap``) continues from the opposite edge."""
        if self._inside(t):
            return t[..., self.by0:self.by1, self.bx0:self.bx1]
        rows, cols = self._wrapped(t)
        return t.index_select(-2, rows).index_select(-1, cols)

    def add_into(self, t: torch.Tensor, values: torch.Tensor) -> None:
        """Add ``values`` (the box's shape) into the box of ``t`` in place, wrapped pixels
        into the ones they copy."""
        if self._inside(t):
            self.box(t).add_(values)
            return
        rows, cols = self._wrapped(t)
        strip = values.new_zeros((*values.shape[:-2], t.shape[-2], values.shape[-1]))
        t.index_add_(-1, cols, strip.index_add_(-2, rows, values))

    def _inside(self, t: torch.Tensor) -> bool:
        return self.by0 >= 0 and self.bx0 >= 0 and self.by1 <= t.shape[-2] \
            and self.bx1 <= t.shape[-1]

    def _wrapped(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.arange(self.by0, self.by1, device=t.device) % t.shape[-2]
        cols = torch.arange(self.bx0, self.bx1, device=t.device) % t.shape[-1]
        return rows, cols

    def owned(self, features: torch.Tensor, stride: int) -> torch.Tensor:
        """The positions of ``features`` (this tile's, at ``stride``) that the tile owns."""
        top, left = (self.y0 - self.by0) // stride, (self.x0 - self.bx0) // stride
        rows, cols = -(-(self.y1 - self.y0) // stride), -(-(self.x1 - self.x0) // stride)
        return features[..., top:top + rows, left:left + cols]

    def owned_in_picture(self, stride: int) -> tuple[slice, slice]:
        """Where the owned positions sit in the whole picture's feature map at ``stride``."""
        return (slice(self.y0 // stride, -(-self.y1 // stride)),
                slice(self.x0 // stride, -(-self.x1 // stride)))


def plan_tiles(height: int, width: int, tile: int, halo: int, align: int, *,
               wrap: bool = False) -> list[Tile]:
    """Tiles covering the picture, each owning at most ``tile`` pixels a side (a halo's
    width more at the picture's edges), their boxes all of one shape.

    ``tile`` and ``halo`` must be multiples of ``align`` (the deepest layer's stride), so
    that each tile and its box start on that layer's pooling grid.  ``wrap``: the picture
    is a torus (a tileable one): every tile has its halo on every side, the halos at the
    picture's edges taken from the opposite edge.
    """
    if tile <= 0 or tile % align or halo % align:
        raise BrushworkError(f"tile size {tile} and halo {halo} must be positive multiples "
                             f"of {align} px")
    spans = _wrapped_spans if wrap else _spans
    return [Tile(y0, y1, x0, x1, by0, by1, bx0, bx1)
            for y0, y1, by0, by1 in spans(height, tile, halo, align)
            for x0, x1, bx0, bx1 in spans(width, tile, halo, align)]


def _wrapped_spans(length: int, tile: int, halo: int,
                   align: int) -> list[tuple[int, int, int, int]]:
    """One side's tiles on a torus: owned widths balanced (multiples of ``align``), each
    box the widest owned width plus a halo each side, reaching past the picture's
    edges."""
    count = -(-length // tile)
    share = -(-length // count)  # length / count, rounded up
    owned = -(-share // align) * align
    cuts = [*range(0, length, owned), length]
    return [(o0, o1, o0 - halo, o0 + owned + halo)
            for o0, o1 in zip(cuts, cuts[1:], strict=False)]


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
                tile: int, loss: str = "gram") -> list[torch.Tensor]:
    """Gram matrices of ``image`` at ``layers`` (``(C, C)`` each, not divided by the
    positions), accumulated tile by tile; with ``loss="w2"``, moment matrices
    (:func:`brushwork.maths.distributions.moment_matrix`)."""
    if loss not in ("gram", "w2"):
        raise BrushworkError(f"style_loss {loss} cannot be evaluated in tiles; use w2 or gram")
    halo, align = tile_geometry(net)
    stride = strides(net.steps)
    statistic = moment_matrix if loss == "w2" else (lambda f: gram(f)[0])
    sums: list[torch.Tensor | None] = [None] * len(layers)
    for t in plan_tiles(image.shape[-2], image.shape[-1], tile, halo, align):
        feats = net(t.box(image))
        for i, name in enumerate(layers):
            g = statistic(t.owned(feats[name], stride[name]))
            prev = sums[i]
            sums[i] = g if prev is None else prev.add_(g)
    return [g for g in sums if g is not None]


def _owned_roots(guides: Sequence[LayerGuide] | None, i: int, t: Tile,
                 stride: int) -> torch.Tensor | None:
    """The tile's slice of the whole picture's mask roots at style layer ``i``."""
    return None if guides is None else _owned_target(guides[i].roots, t, stride)


def tiled_style_grams(net: FeatureExtractor, style: torch.Tensor, layers: Sequence[str],
                      tile: int, loss: str = "gram") -> list[torch.Tensor]:
    """:func:`brushwork.engine.style_terms.style_statistics` (per position) for a style
    image too large to run whole (gram and w2; sliced is never tiled)."""
    grams = tiled_grams(net, style, layers, tile, loss)
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
        self.tiles = plan_tiles(height, width, tile, halo, align, wrap=settings.tileable)
        self.stride = strides(net.steps)
        refuse_sliced(settings, tiled=f"{width}x{height}")
        self.guides: list[LayerGuide] | None = None
        if masks is not None:
            self.guides = guides(masks, net.steps, settings.style_layers, settings.mask_mode)
        extra = 1 if settings.style_loss == "w2" else 0  # a moment matrix's border
        self.style_layers = [
            StyleLayer(settings, i, target.detach(), target.shape[-1] - extra,
                       self._positions(name), self.image_pixels,
                       self.guides[i].areas if self.guides is not None else None, weights)
            for i, (name, target) in enumerate(zip(settings.style_layers, style_targets,
                                                   strict=True))]
        # The photo's content features, whole, assembled from the tiles' owned positions.
        self.content_targets = [_assemble(net, content, name, self.stride[name], self.tiles)
                                for name in settings.content_layers]
        self.content_maps = [content_emphasis(faces, t) for t in self.content_targets]
        self.structure = StructureTerm(content, settings.structure, faces)
        self.matting = MattingTerm(content, settings)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self.s
        content, style = _TiledLosses.apply(x, self)
        tv = tv_loss(x, s.tv_power, s.tileable) if s.tv_weight > 0 else x.new_zeros(())
        return total_of({"content": self.content_weight * content,
                         "style": self.style_weight * style, "tv": s.tv_weight * tv,
                         "structure": self.structure(x), "matting": self.matting(x)})

    # -- the two passes ------------------------------------------------------------------

    @torch.no_grad()
    def accumulate(self, x: torch.Tensor) -> tuple[list[torch.Tensor], float]:
        """Pass 1: the whole picture's Gram matrices and the content loss (before alpha)."""
        s = self.s
        grams: list[torch.Tensor | None] = [None] * len(s.style_layers)
        content = 0.0
        for t in self.tiles:
            feats = self.net(t.box(x))
            for i, (name, layer) in enumerate(zip(s.style_layers, self.style_layers,
                                                  strict=True)):
                st = self.stride[name]
                g = layer.statistic(t.owned(feats[name], st),
                                    _owned_roots(self.guides, i, t, st))
                prev = grams[i]
                grams[i] = g if prev is None else prev.add_(g)
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
        leaves = [g.detach().requires_grad_(True) for g in grams]
        with torch.enable_grad():
            style = leaves[0].new_zeros(())
            for i, layer in enumerate(self.style_layers):
                style = style + self.layer_weights[i] * layer.from_statistic(leaves[i])
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
                        st = self.stride[name]
                        g = self.style_layers[i].statistic(
                            t.owned(feats[name], st), _owned_roots(self.guides, i, t, st))
                        share = share + g_style * (d * g).sum()
                if g_content:
                    for name, target, weight in zip(s.content_layers, self.content_targets,
                                                    self.content_maps, strict=True):
                        sq = self._content_squares(t, feats[name], name, target, weight)
                        scale = _content_scale(s.content_norm, target.numel())
                        share = share + g_content * scale * sq.sum()
                if share.requires_grad:
                    (g_tile,) = torch.autograd.grad(share, xt)
                    t.add_into(grad, g_tile)
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
