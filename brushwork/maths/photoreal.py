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

# --photoreal's methods; a bare --photoreal is PHOTOREAL_BARE (chosen in docs/photoreal.md).
PHOTOREAL_METHODS = ("off", "matting", "filter", "both")
PHOTOREAL_BARE = "filter"
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
MATTING_SCALE = 1e9
_WINDOW = 9  # |w|, a 3x3 window


def _wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float64 where the device has it (the window sums cancel: var - c^T S^-1 c)."""
    return t.to(torch.float32 if t.device.type == "mps" else torch.float64)


_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))  # a symmetric 3x3's entries


def _inverse_sym3(s: torch.Tensor) -> torch.Tensor:
    """The inverse of symmetric 3x3 matrices given by their entries :data:`_PAIRS` along
    dim 1 ``(B, 6, ...)``, in the same form: the adjugate over the determinant, closed
    form and elementwise, on any device."""
    a, d, f, b, c, e = s.unbind(1)
    A, D, F_ = d * f - e * e, a * f - c * c, a * d - b * b
    B, C, E = c * e - b * f, b * e - c * d, b * c - a * e
    det = a * A + b * B + c * C
    return torch.stack([A, D, F_, B, C, E], dim=1) / det.unsqueeze(1)


def _quadratic(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``v^T M v`` per position: ``m`` ``(B, 6, ...)`` by its entries :data:`_PAIRS`,
    ``v`` ``(B, C, 3, ...)`` -> ``(B, C, ...)``."""
    m = m.unsqueeze(1)
    v0, v1, v2 = v.unbind(2)
    return (m[:, :, 0] * v0 * v0 + m[:, :, 1] * v1 * v1 + m[:, :, 2] * v2 * v2
            + 2 * (m[:, :, 3] * v0 * v1 + m[:, :, 4] * v0 * v2 + m[:, :, 5] * v1 * v2))


def _apply(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``M v`` per position: ``m`` ``(B, 6, ...)``, ``v`` ``(B, C, 3, ...)`` -> the same
    shape as ``v``."""
    m = m.unsqueeze(1)
    v0, v1, v2 = v.unbind(2)
    return torch.stack([m[:, :, 0] * v0 + m[:, :, 3] * v1 + m[:, :, 4] * v2,
                        m[:, :, 3] * v0 + m[:, :, 1] * v1 + m[:, :, 5] * v2,
                        m[:, :, 4] * v0 + m[:, :, 5] * v1 + m[:, :, 2] * v2], dim=2)


def _window_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean over each 3x3 window inside ``t`` ``(..., H, W)``: ``(..., H-2, W-2)``, as
    shifted sums along each side (cheaper forward and backward than a pooling)."""
    rows = t[..., :-2, :] + t[..., 1:-1, :] + t[..., 2:, :]
    return (rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]) / _WINDOW


def _pair_products(photo: torch.Tensor) -> torch.Tensor:
    """``I_i I_j`` per pixel for the entries :data:`_PAIRS`: ``(B, 6, H, W)``."""
    return torch.stack([photo[:, i] * photo[:, j] for i, j in _PAIRS], dim=1)


def _covariance(mean: torch.Tensor, mean_products: torch.Tensor, eps: float) -> torch.Tensor:
    """``E[I I^T] - E[I] E[I]^T + eps Id`` by entries :data:`_PAIRS`, ``(B, 6, h, w)``,
    from ``mean`` ``(B, 3, h, w)`` and ``mean_products`` ``(B, 6, h, w)``."""
    outer = torch.stack([mean[:, i] * mean[:, j] for i, j in _PAIRS], dim=1)
    ridge = mean.new_tensor([eps, eps, eps, 0.0, 0.0, 0.0]).view(1, 6, 1, 1)
    return mean_products - outer + ridge


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
        self.guide = guide  # (B, 3, H, W)
        self.mean = _window_mean(guide)  # (B, 3, h, w)
        products = _window_mean(_pair_products(guide))
        self.inverse = _inverse_sym3(_covariance(self.mean, products, eps / _WINDOW))

    def __call__(self, picture: torch.Tensor) -> torch.Tensor:
        """The summed energy of ``picture``'s channels ``(B, C, H, W)``, in 0..255, divided
        by the number of pixels: the matting energy per pixel (0..1 colour units)."""
        if picture.shape[-2:] != self.guide.shape[-2:]:
            raise ValueError(f"the picture {tuple(picture.shape[-2:])} and the photo "
                             f"{tuple(self.guide.shape[-2:])} differ in size")
        v = _wide(picture) / 255
        b, c, h, w = v.shape
        mean_v = _window_mean(v)  # (B, C, h, w)
        var_v = _window_mean(v * v) - mean_v * mean_v
        # cov(V, I) per channel of V and colour of I: (B, C, 3, h, w).
        cov = _window_mean(v.unsqueeze(2) * self.guide.unsqueeze(1)) \
            - mean_v.unsqueeze(2) * self.mean.unsqueeze(1)
        energy = _WINDOW * (var_v - _quadratic(self.inverse, cov)).sum() / (h * w)
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
    inverse = _inverse_sym3(_covariance(mean_i, box_mean(_pair_products(guide), r), eps))
    mean_p = box_mean(p, r)  # (B, C, H, W)
    cross = box_mean((p.unsqueeze(2) * guide.unsqueeze(1)).reshape(b, c * 3, h, w), r)
    cov = cross.view(b, c, 3, h, w) - mean_p.unsqueeze(2) * mean_i.unsqueeze(1)
    a = _apply(inverse, cov)  # (B, C, 3, H, W)
    offset = mean_p - (a * mean_i.unsqueeze(1)).sum(2)  # (B, C, H, W)
    mean_a = box_mean(a.reshape(b, c * 3, h, w), r).view(b, c, 3, h, w)
    out = (mean_a * guide.unsqueeze(1)).sum(2) + box_mean(offset, r)
    return (out * 255).to(picture.dtype)
