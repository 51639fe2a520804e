"""Photo-real style transfer: the matting energy and the guided filter, as pure functions.

Both measure or make a picture that is, in every small window, an affine function of
the photo's colours (``q_i = a_w . I_i + b_w``): the photo's edges and texture with
another photo's colours and light, and no brush strokes.

* :func:`matting_energy` is Levin et al.'s (2008) matting-Laplacian quadratic form,
  ``sum_c V_c^T L V_c`` over the picture's channels ``V_c``, the term Luan et al.
  (2017, Deep Photo Style Transfer) add to Gatys's objective.  No sparse matrix is
  built: by Levin's Theorem 1 the form is a sum over the 3x3 windows ``w`` inside the
  picture of ``min_{a,b} sum_{i in w} (V_i - a . I_i - b)^2 + eps |a|^2``, which is
  ``|w| (var_w(V) - c_w^T (Sigma_w + eps/|w| Id)^-1 c_w)`` with ``Sigma_w`` the photo's
  3x3 colour covariance in the window and ``c_w`` the covariance of the photo with
  ``V`` (biased, /|w|).  Box means and a closed-form 3x3 inverse: differentiable by
  autograd (the gradient is ``2 L V``), any size, any device.
* :func:`guided_filter` is He et al.'s (2010) guided filter with a colour guide: the
  FastPhotoStyle smoothing step, the painted picture made locally affine in the photo
  after painting.  OpenCV's ``cv2.ximgproc.guidedFilter`` is only in opencv-contrib,
  whose wheel conflicts with the opencv-python-headless this project's extras use, so
  it is written here: it is a formula of box means.

Pictures and photos are ``(B, C, H, W)`` in 0..255; the maths runs on 0..1 (Levin's
and He's scale, where their epsilons are given).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# --photoreal's methods; a bare --photoreal is PHOTOREAL_BARE (chosen in docs/photoreal.md).
PHOTOREAL_METHODS = ("off", "matting", "filter", "both")
PHOTOREAL_BARE = "both"
# Levin et al. and Luan et al.'s regulariser, for colours in 0..1.
MATTING_EPS = 1e-7
# The guided filter's ridge on 0..1 colours: 1e-2 flattened the photo's low-contrast
# texture (a table's grain) and 1e-4 let the painting's strokes through; 1e-3 kept the
# one and not the other (docs/photoreal.md).  Its radius is FastPhotoStyle's 35 px at
# pictures of about 800 px, as a share of the long side, so that the filter does the
# same to a picture at every size.
FILTER_EPS = 1e-3
FILTER_RADIUS_SHARE = 35 / 800
# ``--matting-weight 1``: the matting energy per pixel times this joins the objective;
# calibrated in docs/photoreal.md (docs/scripts/photoreal.py).
MATTING_SCALE = 1e6
_WINDOW = 9  # |w|, a 3x3 window


def _wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float64 where the device has it (the window sums cancel: var - c^T S^-1 c)."""
    return t.to(torch.float32 if t.device.type == "mps" else torch.float64)


def _inverse_sym3(s: torch.Tensor) -> torch.Tensor:
    """The inverse of symmetric 3x3 matrices stored ``(..., 3, 3)`` (the adjugate over the
    determinant): closed form, batched, on any device."""
    a, b, c = s[..., 0, 0], s[..., 0, 1], s[..., 0, 2]
    d, e, f = s[..., 1, 1], s[..., 1, 2], s[..., 2, 2]
    A, B, C = d * f - e * e, c * e - b * f, b * e - c * d
    D, E, F_ = a * f - c * c, b * c - a * e, a * d - b * b
    det = a * A + b * B + c * C
    inv = torch.stack([A, B, C, B, D, E, C, E, F_], dim=-1) / det.unsqueeze(-1)
    return inv.view(*s.shape)


def _covariance(mean: torch.Tensor, mean_products: torch.Tensor) -> torch.Tensor:
    """Per position, ``E[I I^T] - E[I] E[I]^T`` as ``(B, h, w, 3, 3)`` from ``mean``
    ``(B, 3, h, w)`` and ``mean_products`` ``(B, 3, 3, h, w)``."""
    outer = mean.unsqueeze(2) * mean.unsqueeze(1)
    return (mean_products - outer).permute(0, 3, 4, 1, 2)


def _products(photo: torch.Tensor) -> torch.Tensor:
    """``I_i I_i^T`` per pixel: ``(B, 3, 3, H, W)``."""
    return photo.unsqueeze(2) * photo.unsqueeze(1)


class MattingWindows:
    """The photo's part of :func:`matting_energy`, computed once: per 3x3 window its
    colour mean and ``(Sigma_w + eps/|w| Id)^-1``.  Calling it with a picture gives the
    picture's matting energy with respect to this photo."""

    def __init__(self, photo: torch.Tensor, eps: float = MATTING_EPS) -> None:
        if photo.dim() != 4 or photo.shape[1] != 3:
            raise ValueError(f"the photo must be (B, 3, H, W), not {tuple(photo.shape)}")
        if min(photo.shape[-2:]) < 3:
            raise ValueError(f"the photo must be at least 3x3 pixels, not "
                             f"{tuple(photo.shape[-2:])}")
        guide = _wide(photo) / 255
        b, _, h, w = guide.shape
        self.guide = guide  # (B, 3, H, W)
        self.mean = F.avg_pool2d(guide, 3, stride=1)  # (B, 3, h, w)
        products = F.avg_pool2d(_products(guide).reshape(b, 9, h, w), 3, stride=1)
        cov = _covariance(self.mean, products.view(b, 3, 3, h - 2, w - 2))
        regular = torch.eye(3, dtype=guide.dtype, device=guide.device) * (eps / _WINDOW)
        self.inverse = _inverse_sym3(cov + regular)  # (B, h, w, 3, 3)

    def __call__(self, picture: torch.Tensor) -> torch.Tensor:
        """The summed energy of ``picture``'s channels ``(B, C, H, W)``, in 0..255, divided
        by the number of pixels: the matting energy per pixel (0..1 colour units)."""
        if picture.shape[-2:] != self.guide.shape[-2:]:
            raise ValueError(f"the picture {tuple(picture.shape[-2:])} and the photo "
                             f"{tuple(self.guide.shape[-2:])} differ in size")
        v = _wide(picture) / 255
        b, c, h, w = v.shape
        mean_v = F.avg_pool2d(v, 3, stride=1)  # (B, C, h, w)
        var_v = F.avg_pool2d(v * v, 3, stride=1) - mean_v * mean_v
        # E[V I] per channel of V and colour of I: (B, C, 3, h, w).
        cross = F.avg_pool2d((v.unsqueeze(2) * self.guide.unsqueeze(1)).reshape(b, c * 3, h, w),
                             3, stride=1).view(b, c, 3, h - 2, w - 2)
        cov = (cross - mean_v.unsqueeze(2) * self.mean.unsqueeze(1)).permute(0, 1, 3, 4, 2)
        explained = torch.einsum("bcyxi,byxij,bcyxj->bcyx", cov, self.inverse, cov)
        energy = _WINDOW * (var_v - explained).sum() / (h * w)
        return energy.to(picture.dtype if picture.is_floating_point() else torch.float32)


def matting_energy(picture: torch.Tensor, photo: torch.Tensor,
                   eps: float = MATTING_EPS) -> torch.Tensor:
    """Levin's ``sum_c V_c^T L V_c`` for ``picture``'s channels under ``photo``'s matting
    Laplacian (module docstring), divided by the number of pixels.  Both ``(B, C, H, W)``
    in 0..255; the photo has 3 channels.  0 for any picture that is one affine function
    of the photo over the whole picture (with eps -> 0); grows with the part of the
    picture that no window's affine function of the photo explains."""
    return MattingWindows(photo, eps)(picture)


def box_mean(t: torch.Tensor, radius: int) -> torch.Tensor:
    """The mean of ``t`` ``(B, C, H, W)`` over the ``(2r+1)^2`` window around each pixel,
    clipped to the picture (He et al.'s ``f_mean``), by running sums along each side: the
    cost does not grow with the radius."""
    return _box_along(_box_along(t, radius, -1), radius, -2)


def _box_along(t: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    n = t.shape[dim]
    sums = torch.cumsum(t, dim=dim)
    sums = torch.cat([torch.zeros_like(sums.narrow(dim, 0, 1)), sums], dim=dim)  # (.., n+1)
    idx = torch.arange(n, device=t.device)
    hi = (idx + radius + 1).clamp(max=n)
    lo = (idx - radius).clamp(min=0)
    count = (hi - lo).to(t.dtype)
    shape = [1] * t.dim()
    shape[dim] = n
    return (sums.index_select(dim, hi) - sums.index_select(dim, lo)) / count.view(shape)


def filter_radius(height: int, width: int) -> int:
    """The guided filter's radius for a picture of this size (:data:`FILTER_RADIUS_SHARE`
    of its long side, at least 1 px)."""
    return max(1, round(FILTER_RADIUS_SHARE * max(height, width)))


def guided_filter(picture: torch.Tensor, photo: torch.Tensor, radius: int | None = None,
                  eps: float = FILTER_EPS) -> torch.Tensor:
    """He et al.'s guided filter of ``picture`` ``(B, C, H, W)`` guided by the colour
    ``photo`` ``(B, 3, H, W)``, both in 0..255: in each window of radius ``radius``
    (default :func:`filter_radius`) the best affine function ``a . I + b`` of the photo
    (ridge ``eps`` on ``a``, colours in 0..1), and at each pixel the mean of the
    functions of the windows holding it, applied to its photo colour.  The result keeps
    the photo's edges and takes the picture's colours; 0..255, the picture's dtype."""
    if photo.shape[-2:] != picture.shape[-2:] or photo.shape[1] != 3:
        raise ValueError(f"the photo {tuple(photo.shape)} must be (B, 3, H, W) at the "
                         f"picture's size {tuple(picture.shape)}")
    r = filter_radius(*picture.shape[-2:]) if radius is None else radius
    guide, p = _wide(photo) / 255, _wide(picture) / 255
    b, c, h, w = p.shape
    mean_i = box_mean(guide, r)  # (B, 3, H, W)
    products = box_mean(_products(guide).reshape(b, 9, h, w), r).view(b, 3, 3, h, w)
    sigma = _covariance(mean_i, products)  # (B, H, W, 3, 3)
    inverse = _inverse_sym3(sigma + torch.eye(3, dtype=p.dtype, device=p.device) * eps)
    mean_p = box_mean(p, r)  # (B, C, H, W)
    cross = box_mean((p.unsqueeze(2) * guide.unsqueeze(1)).reshape(b, c * 3, h, w), r)
    cov = (cross.view(b, c, 3, h, w) - mean_p.unsqueeze(2) * mean_i.unsqueeze(1))
    a = torch.einsum("byxij,bcjyx->bciyx", inverse, cov)  # (B, C, 3, H, W)
    offset = mean_p - (a * mean_i.unsqueeze(1)).sum(2)  # (B, C, H, W)
    mean_a = box_mean(a.reshape(b, c * 3, h, w), r).view(b, c, 3, h, w)
    out = (mean_a * guide.unsqueeze(1)).sum(2) + box_mean(offset, r)
    return (out * 255).to(picture.dtype)
