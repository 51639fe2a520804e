"""The objective of one scale: ``alpha * L_content + beta * L_style + tv_weight * L_tv
+ structure * L_structure + matting_weight * L_matting``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from brushwork.engine.network import FeatureExtractor
from brushwork.engine.settings import Settings
from brushwork.engine.style_terms import StyleLayer, style_statistics
from brushwork.errors import BrushworkError
from brushwork.maths.distributions import mixture_sorted
from brushwork.maths.faces import CONTENT_RAISE, STRUCTURE_RAISE, emphasis
from brushwork.maths.losses import content_loss, gram, tv_loss
from brushwork.maths.photoreal import MATTING_SCALE, MattingWindows
from brushwork.maths.regions import guides, region_weights, resize_masks, split_regions
from brushwork.maths.structure import GRIDS, grid_size, laplacians, structure_loss

REFERENCE_LONG_SIDE = 256  # the size at which content_weight applies as given
# More loss terms for a run: the picture -> named weighted terms (brushwork.video's temporal
# loss), each added to the total.
ExtraTerms = Callable[[torch.Tensor], dict[str, torch.Tensor]]


@torch.no_grad()
def style_grams(net: FeatureExtractor, style: torch.Tensor,
                layers: Sequence[str]) -> list[torch.Tensor]:
    """Gram matrices of ``style`` at ``layers``, divided by each layer's positions.

    Stored per position so a target fits the output's size, not the style's.
    """
    feats = net(style)
    return [gram(feats[n])[0] / (feats[n].shape[-1] * feats[n].shape[-2]) for n in layers]


def blend_grams(per_style: Sequence[Sequence[torch.Tensor]],
                blend: Sequence[float]) -> list[torch.Tensor]:
    """Per layer, ``sum_k blend[k] * G_k``: several styles as one target.

    Blending the targets gives the same optimum as a weighted sum of per-style losses
    (they differ by a constant), at the cost of one.
    """
    return [sum((g * b for g, b in zip(layer, blend, strict=True)), torch.zeros_like(layer[0]))
            for layer in zip(*per_style, strict=True)]


def region_targets(per_style: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
    """Per layer, the styles' Gram matrices stacked ``(R, C, C)``: style ``r`` is region
    ``r``'s target."""
    return [torch.stack(list(layer)) for layer in zip(*per_style, strict=True)]


def style_targets(grams: Sequence[Sequence[torch.Tensor]], blend: Sequence[float],
                  masks: torch.Tensor | None = None, fresh: torch.Tensor | None = None,
                  loss: str = "gram"
                  ) -> tuple[list[torch.Tensor], torch.Tensor | None, list[float] | None]:
    """``(targets, masks, weights)`` for :class:`Objective` from each style's Gram matrices
    (per layer) and their ``blend``: one blended target over the whole picture; with
    ``masks`` ``(R, 1, H, W)``, style ``r`` paints region ``r``; with ``fresh``
    ``(1, 1, H, W)`` (at the masks' or the picture's size), each region is split into its
    part outside and inside it (:func:`brushwork.maths.regions.split_regions`).

    ``grams`` are the styles' statistics for ``loss`` (:func:`style_statistics`): Gram or
    moment matrices blend as sums; sliced projections blend as a mixture and take no
    regions."""
    if loss == "sliced":
        if masks is not None or fresh is not None:
            raise BrushworkError("style_loss sliced takes no style masks, region map or "
                                 "fresh regions; use style_loss w2 or gram with them")
        return [mixture_sorted(layer, blend) for layer in zip(*grams, strict=True)], None, None
    if masks is None and fresh is None:
        return blend_grams(grams, blend), None, None
    if masks is None:  # the whole picture as one region, with the styles' blend
        assert fresh is not None
        targets = [g.unsqueeze(0) for g in blend_grams(grams, blend)]
        masks, weights = fresh.new_ones(fresh.shape), [1.0]
    else:
        targets, weights = region_targets(grams), region_weights(blend)
    if fresh is not None:
        masks, targets, weights = split_regions(masks, targets, weights, fresh)
    return targets, masks, weights


def size_invariant_weight(content_weight: float, long_side: int) -> float:
    """alpha for a picture whose long side is ``long_side``, given alpha at 256 px.

    The paper's content loss is a sum over positions (it grows with the pixel count)
    while its style loss is normalised by M^2 (it does not), so one alpha would paint a
    512 px picture more photo-like than a 256 px preview.
    """
    return content_weight * (REFERENCE_LONG_SIDE / long_side) ** 2


def content_emphasis(faces: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor | None:
    """The content loss's per-position weight at a layer whose features are ``target``'s
    shape: raised inside the faces ``(1, 1, H, W)`` (None: no faces, no weight)."""
    if faces is None:
        return None
    h, w = target.shape[-2:]
    return emphasis(resize_masks(faces, (w, h)), CONTENT_RAISE).to(target.device,
                                                                   torch.float32)


class StructureTerm(nn.Module):
    """``--structure`` times the structure loss (brushwork.maths.structure), its weight
    raised by STRUCTURE_RAISE inside faces.  It needs only the picture pooled to small
    grids, so a tiled objective evaluates it on the whole picture, exactly."""

    def __init__(self, photo: torch.Tensor, weight: float,
                 faces: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = weight
        self.active = weight > 0 or faces is not None
        self.targets: list[torch.Tensor] = []
        self.maps: list[torch.Tensor] | None = None
        if not self.active:
            return
        with torch.no_grad():
            self.targets = [t.detach() for t in laplacians(photo)]
        if faces is not None:
            h, w = photo.shape[-2:]
            self.maps = [weight + STRUCTURE_RAISE * F.adaptive_avg_pool2d(
                faces.to(photo), grid_size(h, w, g))[..., 1:-1, 1:-1] for g in GRIDS]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x.new_zeros(())
        if self.maps is not None:
            return structure_loss(x, self.targets, self.maps)
        return self.weight * structure_loss(x, self.targets)


class MattingTerm(nn.Module):
    """``--photoreal`` matting or both: ``matting_weight * MATTING_SCALE`` times the
    picture's matting energy per pixel under the photo's matting Laplacian
    (brushwork.maths.photoreal, Luan et al. 2017); 0 otherwise.  Its 3x3 windows need no
    network, so a tiled objective evaluates it on the whole picture, exactly."""

    def __init__(self, photo: torch.Tensor, settings: Settings) -> None:
        super().__init__()
        self.active = settings.photoreal in ("matting", "both") and settings.matting_weight > 0
        self.weight = settings.matting_weight * MATTING_SCALE
        self.windows = MattingWindows(photo) if self.active else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.windows is None:
            return x.new_zeros(())
        return self.weight * self.windows(x)


class GramCache(Protocol):
    """Where style targets may come from instead of being computed
    (brushwork.engine.cache.Cache)."""

    def style_statistics(self, net: FeatureExtractor, style: torch.Tensor,
                         settings: Settings) -> list[torch.Tensor]: ...


class Objective(nn.Module):
    """The loss of one scale at an image, as a dict of weighted terms and their total.

    Targets (the photo's content features, the style Gram matrices per position) are
    computed once and kept as buffers.
    """

    gram = staticmethod(gram)  # the benchmark's baseline swaps in losses.gram_autograd
    photo: torch.Tensor

    def __init__(self, net: FeatureExtractor, settings: Settings, content: torch.Tensor,
                 style_targets: Sequence[torch.Tensor], masks: torch.Tensor | None = None,
                 weights: Sequence[float] | None = None,
                 faces: torch.Tensor | None = None) -> None:
        """``style_targets``: one target per style layer, per position, for the
        settings' ``style_loss`` (:func:`brushwork.engine.style_terms.style_statistics`:
        for gram a Gram matrix, :func:`style_grams`; or :func:`style_targets` of several).

        ``faces`` ``(1, 1, H, W)`` in 0..1 at ``content``'s size
        (brushwork.maths.faces.face_map): where the content and structure terms are raised.

        With ``masks`` ``(R, 1, H, W)`` (in 0..1, at ``content``'s size), each target is
        ``(R, C, C)``, region ``r``'s painting's Gram matrix, and the style loss is the
        guided one of brushwork.maths.regions, region ``r`` weighted by ``weights[r]``
        (default 1 each)."""
        super().__init__()
        self.net = net
        self.s = settings
        self.register_buffer("photo", content, persistent=False)  # this scale's photo
        self.image_pixels = content.shape[-1] * content.shape[-2]
        self.content_weight = settings.knob("content_weight")
        self.style_weight = settings.knob("style_weight")
        if settings.size_invariant:
            self.content_weight = size_invariant_weight(
                self.content_weight, max(content.shape[-1], content.shape[-2]))
        n = len(settings.style_layers)
        self.layer_weights = list(settings.style_layer_weights or [1.0 / n] * n)
        with torch.no_grad():
            # Seen as the picture is (on a torus when tileable), so that the photo itself
            # is still the content loss's minimum.
            feats = net(content, wrap=settings.tileable)
        for i, name in enumerate(settings.content_layers):
            target = feats[name].detach()  # float32 (or wider) whatever the network's dtype
            self.register_buffer(f"content_{i}", target.to(
                torch.promote_types(target.dtype, torch.float32), copy=True))
        self.content_maps = [content_emphasis(faces, feats[name])
                             for name in settings.content_layers]
        self.structure = StructureTerm(content, settings.structure, faces)
        self.matting = MattingTerm(content, settings)
        for i, g in enumerate(style_targets):
            self.register_buffer(f"gram_{i}", g)
        self.guided = masks is not None
        areas: list[tuple[float, ...] | None] = [None] * n
        self.region_weights: list[float] | None = None
        if masks is not None:
            self.region_weights = list(weights) if weights is not None else [1.0] * len(masks)
            layer_guides = guides(masks, net.steps, settings.style_layers, settings.mask_mode)
            areas = [g.areas for g in layer_guides]
            for i, guide in enumerate(layer_guides):
                self.register_buffer(f"roots_{i}", guide.roots, persistent=False)
        self.style_layers = [
            StyleLayer(settings, i, target, feats[name].shape[1],
                       feats[name].shape[-1] * feats[name].shape[-2], self.image_pixels,
                       areas[i], self.region_weights)
            for i, (name, target) in enumerate(zip(settings.style_layers, style_targets,
                                                   strict=True))]

    @classmethod
    def for_styles(cls, net: FeatureExtractor, settings: Settings, content: torch.Tensor,
                   styles: Sequence[torch.Tensor], blend: Sequence[float] | None = None,
                   cache: GramCache | None = None,
                   masks: torch.Tensor | None = None,
                   faces: torch.Tensor | None = None) -> Objective:
        """The objective for style images (already at their size for this scale),
        blended by ``blend`` (default: equally); targets from ``cache`` when given.
        With ``masks`` ``(R, 1, H, W)``, one per style at the photo's size, each style
        paints its own region instead, weighted by its blend (1 each when equal)."""
        blend = list(blend) if blend is not None else [1.0 / len(styles)] * len(styles)
        stats = [cache.style_statistics(net, t, settings) if cache
                 else style_statistics(net, t, settings) for t in styles]
        return cls(net, settings, content,
                   *style_targets(stats, blend, masks, loss=settings.style_loss), faces=faces)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self.s
        feats = self.net(x, wrap=s.tileable)
        content = x.new_zeros(())
        for i, name in enumerate(s.content_layers):
            content = content + content_loss(feats[name], getattr(self, f"content_{i}"),
                                             s.content_norm, self.content_maps[i])
        style = x.new_zeros(())
        for i, (name, layer) in enumerate(zip(s.style_layers, self.style_layers, strict=True)):
            roots = getattr(self, f"roots_{i}") if self.guided else None
            style = style + self.layer_weights[i] * layer(feats[name], roots, self.gram)
        tv = tv_loss(x, s.tv_power, s.tileable) if s.tv_weight > 0 else x.new_zeros(())
        return total_of({"content": self.content_weight * content,
                         "style": self.style_weight * style, "tv": s.tv_weight * tv,
                         "structure": self.structure(x), "matting": self.matting(x)})


def total_of(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weighted terms with their sum added last, as ``"total"``."""
    terms["total"] = sum(terms.values(), next(iter(terms.values())).new_zeros(()))
    return terms


class WithTerms(nn.Module):
    """An objective with more weighted terms (:data:`ExtraTerms`) added to its total."""

    def __init__(self, objective: nn.Module, extra: ExtraTerms) -> None:
        super().__init__()
        self.objective = objective
        self.extra = extra

    @property
    def photo(self) -> torch.Tensor:
        photo = self.objective.photo
        assert isinstance(photo, torch.Tensor)
        return photo

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = self.objective(x)
        total = terms.pop("total")
        for name, value in self.extra(x).items():
            terms[name] = value
            total = total + value
        terms["total"] = total  # last, as the objective's own
        return terms
