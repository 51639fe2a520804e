"""Style statistics beyond the Gram matrix, as pure functions (docs/style-losses.md).

* ``w2``: the Wasserstein-2 distance between Gaussian fits of the features (means and
  covariances), as crowsonkb/style-transfer-pytorch uses.  The fit is made from sums
  over positions only, the *moment matrix* ``A = sum_p [F_p; 1] [F_p; 1]^T`` (the Gram
  matrix of the features with a channel of ones added), so tiles add their sums and a
  region's mask weights its positions exactly as it does a Gram matrix.
* ``sliced``: the sliced Wasserstein distance (Heitz et al., CVPR 2021): the features
  projected on random unit directions, sorted, and compared with the painting's sorted
  projections resampled to the picture's number of positions.  Sorting is not a sum over
  positions, so this one cannot be evaluated tile by tile.

Everything here is float32 (or wider) whatever the network's precision.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from brushwork.maths.losses import gram, widened
from brushwork.maths.regions import guided_grams

STYLE_LOSSES = ("gram", "w2", "sliced")
NEWTON_SCHULZ_ITERATIONS = 20
RIDGE = 1e-8  # added to the diagonal before a square root


# -- moments ---------------------------------------------------------------------------------

def moment_matrix(features: torch.Tensor,
                  gram_fn: Callable[[torch.Tensor], torch.Tensor] = gram) -> torch.Tensor:
    """``sum_p [F_p; 1] [F_p; 1]^T`` of ``features`` ``(1, C, h, w)``: ``(C+1, C+1)``, the
    Gram matrix bordered by the sum of the features and the number of positions."""
    g = gram_fn(features)[0]
    total = features.sum(dim=(0, 2, 3), dtype=g.dtype)  # (C,)
    count = g.new_full((1,), float(features.shape[-1] * features.shape[-2]))
    return _bordered(g, total, count)


def guided_moments(features: torch.Tensor, roots: torch.Tensor, gram_fn: Callable[
        [torch.Tensor], torch.Tensor] = gram) -> torch.Tensor:
    """Each region's moment matrix, positions weighted by its mask ``roots**2``:
    ``features`` ``(1, C, h, w)``, ``roots`` ``(R, 1, h, w)`` -> ``(R, C+1, C+1)``."""
    grams = guided_grams(features, roots, gram_fn)
    masks = roots.pow(2).to(grams.dtype)[:, 0]  # (R, h, w)
    totals = torch.einsum("chw,rhw->rc", widened(features[0]).to(grams.dtype), masks)
    counts = masks.sum(dim=(1, 2))
    return torch.stack([_bordered(g, t, c.reshape(1))
                        for g, t, c in zip(grams, totals, counts, strict=True)])


def _bordered(g: torch.Tensor, total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    top = torch.cat([g, total.unsqueeze(1)], dim=1)
    bottom = torch.cat([total, count]).unsqueeze(0)
    return torch.cat([top, bottom], dim=0)


def gaussian_fit(moments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, covariance)`` from moment matrices ``(..., C+1, C+1)`` (sums or per
    position): ``(..., C)`` and ``(..., C, C)``."""
    count = moments[..., -1:, -1]  # (..., 1)
    mean = moments[..., :-1, -1] / count
    second = moments[..., :-1, :-1] / count.unsqueeze(-1)
    cov = second - mean.unsqueeze(-1) * mean.unsqueeze(-2)
    return mean, (cov + cov.transpose(-1, -2)) / 2


# -- matrix square roots ---------------------------------------------------------------------

def sqrtm_newton_schulz(a: torch.Tensor, iterations: int = NEWTON_SCHULZ_ITERATIONS,
                        ridge: float = RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a^½, a^-½)`` of symmetric positive semi-definite ``a`` ``(..., n, n)`` by the
    coupled Newton-Schulz iteration (Higham, "Functions of Matrices", 6.3), after scaling
    ``a + ridge I`` by its Frobenius norm so that it converges.  Eigenvalues far below the
    largest converge slowly: their roots come out too small and their inverse roots
    bounded, which is what keeps the W2 gradient finite on rank-deficient covariances."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a)
    a = a + ridge * eye
    norm = torch.linalg.matrix_norm(a).clamp(min=torch.finfo(a.dtype).tiny)
    norm = norm[..., None, None]
    y, z = a / norm, eye
    for _ in range(iterations):
        t = (3 * eye - z @ y) / 2
        y, z = y @ t, t @ z
    return y * norm.sqrt(), z / norm.sqrt()


class _TraceSqrtm(torch.autograd.Function):
    """``tr(M^½)`` with the gradient ``½ M^-½`` from the same iteration (autograd through
    20 iterations would cost three times the forward)."""

    @staticmethod
    def forward(ctx: Any, m: torch.Tensor, iterations: int) -> torch.Tensor:
        root, inverse = sqrtm_newton_schulz(m, iterations)
        ctx.save_for_backward(inverse)
        return root.diagonal(dim1=-2, dim2=-1).sum(-1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (inverse,) = ctx.saved_tensors
        sym = (inverse + inverse.transpose(-1, -2)) / 4
        return grad[..., None, None] * sym, None


def trace_sqrtm(m: torch.Tensor, iterations: int = NEWTON_SCHULZ_ITERATIONS) -> torch.Tensor:
    """``tr(m^½)`` of symmetric PSD ``m`` ``(..., n, n)``, differentiable."""
    return _TraceSqrtm.apply(m, iterations)


# -- Wasserstein-2 between Gaussians ---------------------------------------------------------

@dataclass(frozen=True)
class GaussianTarget:
    """A target distribution's Gaussian fit, with what W2 needs of it computed once:
    its mean ``(..., C)``, the square root of its covariance ``(..., C, C)`` and the
    covariance's trace ``(...)``."""

    mean: torch.Tensor
    root: torch.Tensor
    trace: torch.Tensor

    @classmethod
    def fit(cls, moments: torch.Tensor) -> GaussianTarget:
        """From moment matrices ``(..., C+1, C+1)``, sums or per position."""
        mean, cov = gaussian_fit(widened(moments.detach()))
        return cls(mean, sqrtm_newton_schulz(cov)[0], cov.diagonal(dim1=-2, dim2=-1).sum(-1))

    def select(self, index: torch.Tensor) -> GaussianTarget:
        """The regions ``index`` of a stacked ``(R, ...)`` target."""
        return GaussianTarget(self.mean[index], self.root[index], self.trace[index])


def w2_squared(moments: torch.Tensor, target: GaussianTarget) -> torch.Tensor:
    """``|mu - mu_t|^2 + tr(C + C_t - 2 (C_t^½ C C_t^½)^½)``: the squared W2 distance
    between the Gaussian fits of ``moments`` ``(..., C+1, C+1)`` and ``target``."""
    mean, cov = gaussian_fit(moments)
    cross = target.root @ cov @ target.root
    cross = (cross + cross.transpose(-1, -2)) / 2
    return ((mean - target.mean).pow(2).sum(-1) + cov.diagonal(dim1=-2, dim2=-1).sum(-1)
            + target.trace - 2 * trace_sqrtm(cross))


def guided_w2(moments: torch.Tensor, target: GaussianTarget, areas: Sequence[float],
              weights: Sequence[float], positions: int) -> torch.Tensor:
    """One layer's W2 over regions: ``sum_r weights[r] * (area_r / M) * W2_r^2`` (as
    :func:`brushwork.maths.regions.guided_style_loss` weights its Gram losses); regions
    with no area add nothing."""
    keep = [r for r, (a, w) in enumerate(zip(areas, weights, strict=True)) if a > 0 and w]
    if not keep:
        return moments.new_zeros(())
    index = torch.tensor(keep, device=moments.device)
    sub = target.select(index)
    scale = moments.new_tensor([weights[r] * areas[r] / positions for r in keep])
    return (scale * w2_squared(moments[index], sub)).sum()


# -- sliced Wasserstein ----------------------------------------------------------------------

def random_directions(channels: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random unit vectors in ``channels`` dimensions, ``(C, K)``, float32."""
    d = torch.randn(channels, count, generator=generator)
    return d / d.norm(dim=0, keepdim=True)


def sorted_projections(features: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``features`` ``(1, C, h, w)`` projected on ``directions`` ``(C, K)`` and sorted
    along the positions: ``(K, h*w)``, float32 (or wider)."""
    flat = widened(features[0]).flatten(1)  # (C, N)
    return (directions.to(flat.dtype).T @ flat).sort(dim=1).values


def resample_sorted(values: torch.Tensor, count: int) -> torch.Tensor:
    """Sorted ``values`` ``(K, N)`` at ``count`` evenly spaced quantiles ``(i + ½) / count``,
    linearly interpolated: ``(K, count)``.  Quantile matching compares two sets of
    positions of different sizes."""
    n = values.shape[1]
    if n == count:
        return values
    at = ((torch.arange(count, dtype=torch.float64, device=values.device) + 0.5) * n / count
          - 0.5).clamp(0, n - 1)
    lo = at.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = (at - lo).to(values.dtype)
    return values[:, lo] * (1 - frac) + values[:, hi] * frac


def mixture_sorted(per_style: Sequence[torch.Tensor], blend: Sequence[float]) -> torch.Tensor:
    """Several styles' sorted projections ``(K, N_k)`` as one: each style's quantiles in
    proportion to its blend weight, merged and sorted (a sample of the mixture)."""
    if len(per_style) == 1:
        return per_style[0]
    total = max(v.shape[1] for v in per_style)
    weight = sum(blend)
    parts = [resample_sorted(v, max(1, round(total * b / weight)))
             for v, b in zip(per_style, blend, strict=True) if b > 0]
    return torch.cat(parts, dim=1).sort(dim=1).values


def sliced_loss(features: torch.Tensor, directions: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
    """The mean over directions and positions of the squared difference between the
    sorted projections of ``features`` and ``target`` ``(K, h*w)`` (already resampled to
    the features' positions): the sliced W2², a mean so that it does not grow with the
    picture."""
    return (sorted_projections(features, directions) - target).pow(2).mean()
