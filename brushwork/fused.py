"""Autograd functions whose backward passes do less than autograd's generic ones.

Measured on this project's 2-core CPU at 512 px (``brushwork bench``, docs/benchmarks.md):

* A frozen 3x3 convolution's input gradient is itself a 3x3 convolution, of the output
  gradient with the kernel flipped and its in/out channels swapped.  oneDNN's
  backward-data path ran at about half the speed of its forward path for the same
  FLOPs; calling the forward kernel instead made the whole evaluation about 1.4x faster.
  The ReLU that follows is folded in: its mask is applied to the gradient just before.
* On the CPU, oneDNN's convolutions run much faster on channels-last (NHWC) tensors at
  the shallow, wide layers (64 channels at 512x512: 110 ms -> 76 ms per call), so the
  extractor works in NHWC there and hands the image gradient back in NCHW.
* The forward ReLU is applied by oneDNN as the convolution writes its output.
* ``G = F F^T`` is symmetric, so ``dF = (dG + dG^T) F`` is one matrix product where
  autograd's ``bmm`` backward does two and adds them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


# oneDNN's convolution with the ReLU applied as it writes (what torch.compile's CPU
# backend emits); it saves one pass over the layer's output. Private in torch, so
# looked up once and skipped when a build lacks it.
try:
    _CONV_RELU = torch.ops.mkldnn._convolution_pointwise.default \
        if torch.backends.mkldnn.is_available() else None
except (AttributeError, RuntimeError):  # pragma: no cover - depends on the torch build
    _CONV_RELU = None


class _FrozenConv3x3(torch.autograd.Function):
    """``y = [relu](conv2d(x, weight, bias, padding=1))``; gradient for ``x`` only."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                weight_t: torch.Tensor, relu: bool) -> torch.Tensor:
        if relu and _CONV_RELU is not None and x.device.type == "cpu" and x.dtype == torch.float32:
            y = _CONV_RELU(x, weight, bias, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
        else:
            y = F.conv2d(x, weight, bias, padding=1)
            if relu:
                y = y.relu_()
        if relu:
            ctx.save_for_backward(weight_t, y)
        else:
            ctx.save_for_backward(weight_t)
        ctx.relu = relu
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        if ctx.relu:
            weight_t, y = ctx.saved_tensors
            grad = torch.ops.aten.threshold_backward(grad, y, 0)
        else:
            (weight_t,) = ctx.saved_tensors
        grad_x = F.conv2d(grad, weight_t, padding=1) if ctx.needs_input_grad[0] else None
        return grad_x, None, None, None, None


def transposed_kernel(weight: torch.Tensor) -> torch.Tensor:
    """The kernel whose 3x3 'same' convolution is the input gradient of ``weight``'s:
    ``(out, in, kh, kw) -> (in, out, 2 - kh, 2 - kw)``."""
    return weight.detach().flip(2, 3).transpose(0, 1).contiguous()


def frozen_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   weight_t: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """A padded 3x3 convolution (and ReLU) whose weights get no gradient.

    ``weight_t`` is :func:`transposed_kernel` of ``weight``, computed once.
    """
    return _FrozenConv3x3.apply(x, weight, bias, weight_t, relu)


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
            # Features in NHWC: return dF in that order too, as F^T sym (sym is symmetric);
            # an NCHW gradient here would make every later add and mask a strided copy.
            return torch.bmm(flat.transpose(1, 2), sym).transpose(1, 2)
        return torch.bmm(sym, flat)


def gram_flat(flat: torch.Tensor) -> torch.Tensor:
    """``(B, N, M) -> (B, N, N)``: ``F F^T`` with a one-product backward."""
    return _Gram.apply(flat)
