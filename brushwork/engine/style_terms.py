"""The style term of one layer for each ``style_loss`` (gram, w2, sliced), used by both
the whole objective (brushwork.engine.objective) and the tiled one (brushwork.engine.tiling).

A style's *statistics* at each layer are what its target is made of, per position so that
a target fits the picture's size whatever the painting's:

* gram: the Gram matrix ``(C, C)`` divided by the positions;
* w2: the moment matrix ``(C+1, C+1)`` (brushwork.maths.distributions) divided by the
  positions, from which the Gaussian fit comes;
* sliced: the features' projections on the layer's random directions, sorted, ``(K, N)``.

Gram and moment matrices are linear in the positions' contributions, so blending styles,
regions' masks and tiles all work on them as sums (a blend of moment matrices is the
moment matrix of the styles' mixture); sliced targets blend as a mixture too
(:func:`brushwork.maths.distributions.mixture_sorted`) but take no masks and no tiles.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from brushwork.engine.network import FeatureExtractor
from brushwork.engine.settings import Settings
from brushwork.errors import BrushworkError
from brushwork.maths.distributions import (
    GaussianTarget,
    guided_moments,
    guided_w2,
    moment_matrix,
    random_directions,
    resample_sorted,
    sliced_loss,
    sorted_projections,
    w2_squared,
)
from brushwork.maths.losses import gram, style_layer_loss
from brushwork.maths.regions import guided_grams, guided_style_loss
from brushwork.maths.strength import STYLE_LOSS_SCALES

GramFn = Callable[[torch.Tensor], torch.Tensor]
# The directions of a sliced loss come from this seed when the run has none: they are part
# of the loss's definition (the same picture always scores the same), not its noise.
DIRECTIONS_SEED = 0


def directions(settings: Settings, layer_index: int, channels: int) -> torch.Tensor:
    """The sliced loss's ``C`` random unit directions ``(C, C)`` at a style layer, drawn
    from the run's seed and the layer's index, so runs are reproducible."""
    seed = settings.seed if settings.seed is not None else DIRECTIONS_SEED
    generator = torch.Generator().manual_seed((seed * 1000003 + layer_index) % 2**63)
    return random_directions(channels, channels, generator)


@torch.no_grad()
def style_statistics(net: FeatureExtractor, style: torch.Tensor, settings: Settings
                     ) -> list[torch.Tensor]:
    """``style``'s statistics at each of ``settings.style_layers`` for its
    ``style_loss`` (module docstring)."""
    feats = net(style)
    out = []
    for i, name in enumerate(settings.style_layers):
        f = feats[name]
        positions = f.shape[-1] * f.shape[-2]
        if settings.style_loss == "sliced":
            d = directions(settings, i, f.shape[1]).to(f.device)
            out.append(sorted_projections(f, d))
        elif settings.style_loss == "w2":
            out.append(moment_matrix(f) / positions)
        else:
            out.append(gram(f)[0] / positions)
    return out


def refuse_sliced(settings: Settings, *, tiled: str | None = None, regions: bool = False
                  ) -> None:
    """A one-line error when a sliced loss is asked of what it cannot do: ``tiled``
    names the scale the plan would paint in tiles; ``regions``: masks or a video's new
    parts, whose positions it cannot weight."""
    if settings.style_loss != "sliced":
        return
    if tiled is not None:
        raise BrushworkError(
            f"style_loss sliced cannot be painted in tiles (sorted projections are not a "
            f"sum over positions), and this run's plan tiles the {tiled} scale to fit its "
            f"memory budget; use style_loss w2 or gram, a smaller size, or a larger "
            f"max_memory")
    if regions:
        raise BrushworkError("style_loss sliced takes no style masks, region map or fresh "
                             "regions; use style_loss w2 or gram with them")


class StyleLayer:
    """One style layer's target and how a picture is compared with it.

    ``target``: the statistics per position (a Gram or moment matrix, ``(R, ...)`` with
    regions), or for sliced the sorted projections of the (blended) style.  With
    ``roots`` ``(R, 1, h, w)`` and ``areas`` (a :class:`brushwork.maths.regions.LayerGuide`'s),
    region ``r`` is compared with ``target[r]``, weighted by ``region_weights[r]``.
    """

    def __init__(self, settings: Settings, index: int, target: torch.Tensor,
                 channels: int, positions: int, image_pixels: int,
                 areas: Sequence[float] | None = None,
                 region_weights: Sequence[float] | None = None) -> None:
        self.loss = settings.style_loss
        self.norm = settings.style_norm
        self.channels, self.positions, self.image_pixels = channels, positions, image_pixels
        self.areas = list(areas) if areas is not None else None
        self.region_weights = list(region_weights) if region_weights is not None else (
            [1.0] * len(self.areas) if self.areas is not None else None)
        self.scale = STYLE_LOSS_SCALES[self.loss]
        self.target = target
        self.gaussian: GaussianTarget | None = None
        self.directions: torch.Tensor | None = None
        if self.loss == "w2":
            self.gaussian = GaussianTarget.fit(target)
        elif self.loss == "sliced":
            if areas is not None:
                refuse_sliced(settings, regions=True)
            self.directions = directions(settings, index, channels).to(target.device)
            self.target = resample_sorted(target, positions)

    @property
    def sums(self) -> bool:
        """Whether the loss is a function of a sum over positions (tiles can add theirs)."""
        return self.loss != "sliced"

    def statistic(self, features: torch.Tensor, roots: torch.Tensor | None = None,
                  gram_fn: GramFn = gram) -> torch.Tensor:
        """The sum over ``features``' positions the loss is made of (a Gram or moment
        matrix, per region with ``roots``); only for losses that have one."""
        if self.loss == "w2":
            return moment_matrix(features, gram_fn) if roots is None else guided_moments(
                features, roots, gram_fn)
        if self.loss == "gram":
            return gram_fn(features)[0] if roots is None else guided_grams(
                features, roots, gram_fn)
        raise AssertionError("sliced has no statistic that sums over positions")

    def from_statistic(self, stat: torch.Tensor) -> torch.Tensor:
        """The layer's loss from the whole picture's statistic (before the layer weight)."""
        if self.loss == "w2":
            assert self.gaussian is not None
            if self.areas is None:
                return self.scale * w2_squared(stat, self.gaussian)
            assert self.region_weights is not None
            return self.scale * guided_w2(stat, self.gaussian, self.areas,
                                          self.region_weights, self.positions)
        if self.areas is None:
            return style_layer_loss(stat, self.target * self.positions, self.channels,
                                    self.positions, self.norm, self.image_pixels)
        assert self.region_weights is not None
        return guided_style_loss(stat, self.target, self.areas, self.region_weights,
                                 self.channels, self.positions, self.norm, self.image_pixels)

    def __call__(self, features: torch.Tensor, roots: torch.Tensor | None = None,
                 gram_fn: GramFn = gram) -> torch.Tensor:
        """The layer's loss at the whole picture's ``features``."""
        if self.loss == "sliced":
            assert self.directions is not None
            return self.scale * sliced_loss(features, self.directions, self.target)
        return self.from_statistic(self.statistic(features, roots, gram_fn))
