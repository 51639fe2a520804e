"""The losses of Gatys et al., as small pure functions.

Features are ``(B, C, H, W)`` tensors.  In the paper's notation a layer ``l`` has
``N_l`` feature maps (channels) of ``M_l`` positions (height * width) each.

The default normalisations are the paper's.  Two more are provided so that the
seeds' code can be reproduced setting by setting:

* ``"mean"``: seed 001 (the PyTorch tutorial style): the Gram matrix divided by
  ``C * H * W`` and a *mean* squared error; content loss as a mean squared error.
* ``"keras"``: seed 004 (the Keras example): ``sum((G - A)^2) / (4 * 3^2 * (h*w)^2)``
  with ``h*w`` the *image's* pixel count, not the layer's; content loss a plain sum.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_weight

CONTENT_NORMS = ("paper", "sum", "mean")
STYLE_NORMS = ("paper", "mean", "keras")


LOW_PRECISIONS = (torch.bfloat16, torch.float16)


def widened(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 if it is in a low precision, else as it is (float64 stays)."""
    return t.float() if t.dtype in LOW_PRECISIONS else t


class _SymmetricGram(torch.autograd.Function):
    """``G = F F^T`` with a one-product backward.

    G is symmetric, so ``dL/dF = (dG + dG^T) F``: one matrix product where autograd's
    ``bmm`` backward does two and adds them.  The gradient comes back in the features'
    own memory layout (NHWC on the CPU, see brushwork.engine.network), or every later add and ReLU
    mask in the backward would work on a strided copy.

    On the CPU, for one picture, both products are 1x1 convolutions, which oneDNN runs
    faster than MKL's product of such skinny matrices (docs/benchmarks.md): ``G`` is the
    weight gradient of a 1x1 convolution whose input and output gradient are both ``F``
    (``torch.nn.grad.conv2d_weight``), and ``(dG + dG^T) F`` is ``F`` convolved with
    ``dG + dG^T`` as a 1x1 kernel.

    Features in a low precision (a bfloat16 network, brushwork.engine.precision) are
    multiplied in float32 and G is float32; only the low-precision features are kept for
    the backward, which casts them again, so a float32 copy of each style layer is never
    held between the passes.
    """

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(features)
        features = widened(features)
        b, c, h, w = features.shape
        if _by_convolution(features):
            return conv2d_weight(features, (c, c, 1, 1), features).view(1, c, c)
        flat = features.reshape(b, c, h * w)
        return torch.bmm(flat, flat.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (saved,) = ctx.saved_tensors
        return _gram_backward(widened(saved), grad).to(saved.dtype)


def _gram_backward(features: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    b, c, h, w = features.shape
    sym = grad + grad.transpose(1, 2)
    if _by_convolution(features):
        return F.conv2d(features, sym.view(c, c, 1, 1))
    flat = features.reshape(b, c, h * w)
    if flat.stride(1) == 1:
        # Features in NHWC: dF = F^T sym (sym is symmetric), transposed back as a view.
        return torch.bmm(flat.transpose(1, 2), sym).transpose(1, 2).view(b, c, h, w)
    return torch.bmm(sym, flat).view(b, c, h, w)


def _by_convolution(features: torch.Tensor) -> bool:
    return features.device.type == "cpu" and features.shape[0] == 1


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix ``G_ij = sum_k F_ik F_jk`` per batch item: ``(B, C, H, W) -> (B, C, C)``."""
    return _SymmetricGram.apply(features)


def gram_autograd(features: torch.Tensor) -> torch.Tensor:
    """The same Gram matrix left to autograd (two products in its backward); the
    benchmark's baseline and the tests' reference."""
    b, c, h, w = features.shape
    flat = widened(features).reshape(b, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2))


def content_loss(features: torch.Tensor, target: torch.Tensor, norm: str = "paper",
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """``L_content = 1/2 * sum (F - P)^2`` (``norm="paper"``).  ``weight``: a
    per-position weight ``(1, 1, H, W)`` on each squared difference (default 1)."""
    sq = (features - target).pow(2)
    if weight is not None:
        sq = sq * weight
    if norm == "paper":
        return 0.5 * sq.sum()
    if norm == "sum":
        return sq.sum()
    if norm == "mean":
        return sq.mean()
    raise ValueError(f"content norm must be one of {CONTENT_NORMS}, not {norm!r}")


def style_layer_loss(
    gram_x: torch.Tensor,
    gram_target: torch.Tensor,
    channels: int,
    positions: float,
    norm: str = "paper",
    image_pixels: int | None = None,
) -> torch.Tensor:
    """``E_l = 1/(4 N_l^2 M_l^2) * sum (G_l - A_l)^2`` (``norm="paper"``).

    ``positions`` is ``M_l``; a region's (brushwork.maths.regions) is the sum of its soft mask.

    The normalisation is applied to the difference before squaring, which gives the
    same value but keeps float32 sums far from overflow at large sizes.
    """
    if norm == "paper":
        return ((gram_x - gram_target) / (2.0 * channels * positions)).pow(2).sum()
    if norm == "mean":
        scale = channels * positions  # seed 001 divides G by a*b*c*d with a == 1
        return ((gram_x - gram_target) / scale).pow(2).mean()
    if norm == "keras":
        if image_pixels is None:
            raise ValueError("the 'keras' style norm needs image_pixels")
        return ((gram_x - gram_target) / (2.0 * 3 * image_pixels)).pow(2).sum()
    raise ValueError(f"style norm must be one of {STYLE_NORMS}, not {norm!r}")


def tv_loss(image: torch.Tensor, power: float = 1.0, wrap: bool = False) -> torch.Tensor:
    """Total variation ``sum ((x[i+1,j]-x[i,j])^2 + (x[i,j+1]-x[i,j])^2) ^ power``.

    ``power=1`` is the plain squared-gradient form; ``power=1.25`` is seed 004's
    (Mahendran & Vedaldi's beta = 2.5).  Like seed 004 it sums over the
    ``(H-1) x (W-1)`` positions that have both neighbours; with ``wrap`` (a picture on a
    torus, brushwork.maths.torus) every position has them, the last row's and column's
    being the first ones.
    """
    if wrap:
        dy = image.roll(-1, -2) - image
        dx = image.roll(-1, -1) - image
    else:
        dy = image[..., 1:, :-1] - image[..., :-1, :-1]
        dx = image[..., :-1, 1:] - image[..., :-1, :-1]
    sq = dy.pow(2) + dx.pow(2)
    if power == 1.0:
        return sq.sum()
    # d/dx of s^p is infinite at s = 0 when p < 1; a tiny epsilon keeps it finite.
    return (sq + 1e-8).pow(power).sum() if power < 1.0 else sq.pow(power).sum()
