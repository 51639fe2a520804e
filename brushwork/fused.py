"""Autograd functions that make one evaluation cheaper than autograd's generic ones.

Measured side by side on this project's 2-core CPU (``brushwork bench``'s
``eval_ablation``; docs/benchmarks.md):

* ``G = F F^T`` is symmetric, so ``dF = (dG + dG^T) F`` is one matrix product where
  autograd's ``bmm`` backward does two and adds them (x1.14 per evaluation at 512 px).
* oneDNN's 3x3 convolutions run faster on channels-last (NHWC) tensors at the shallow,
  wide layers (64 channels at 512x512: 110 ms -> 76 ms per call), so the extractor works
  in NHWC on the CPU and hands the image gradient back in NCHW (a further x1.09). The
  Gram backward returns its gradient in the features' own layout, or every later add
  and ReLU mask would be a strided copy that eats the gain.
"""

from __future__ import annotations

from typing import Any

import torch


class _ChannelsLast(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()  # optimisers flatten the image's gradient with .view(-1)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in NHWC memory order; its gradient comes back in the usual NCHW order."""
    return _ChannelsLast.apply(x)


class _Gram(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, flat: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(flat)
        return torch.bmm(flat, flat.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (flat,) = ctx.saved_tensors
        sym = grad + grad.transpose(1, 2)
        if flat.stride(1) == 1:
            # Features in NHWC: return dF in that order too, as F^T sym (sym is symmetric).
            return torch.bmm(flat.transpose(1, 2), sym).transpose(1, 2)
        return torch.bmm(sym, flat)


def gram_flat(flat: torch.Tensor) -> torch.Tensor:
    """``(B, N, M) -> (B, N, N)``: ``F F^T`` with a one-product backward."""
    return _Gram.apply(flat)
