"""A frozen VGG feature extractor that returns a dict of named layers.

The network is built from the shapes in the weights (so tiny test networks work too)
and stops at the deepest layer asked for: nothing past it is ever computed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from brushwork.errors import BrushworkError
from brushwork.maths.layers import layer_names

if TYPE_CHECKING:
    from brushwork.io.weights import VGGWeights

# Caffe's VGG (and the Keras/HED one) takes BGR 0..255 minus this mean, in BGR order.
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)
# torchvision's VGG takes RGB 0..1 normalised by the ImageNet statistics.
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)
POOLINGS = ("max", "avg")


def check_layers(arch: str, names: list[str] | tuple[str, ...], role: str) -> None:
    """Raise a BrushworkError naming the bad layer and listing the valid ones."""
    valid = layer_names(arch)
    for name in names:
        if name not in valid:
            raise BrushworkError(
                f"unknown {role} layer {name!r} for {arch}; valid layers: {', '.join(valid)}"
            )


class Preprocess(nn.Module):
    """Pixel space (RGB, 0..255) to the network's input space."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode == "caffe":
            # Flip RGB -> BGR and subtract the BGR mean: x' = x[:, ::-1] - mean.
            self.flip = True
            self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1))
            self.register_buffer("scale", torch.ones(1, 3, 1, 1))
        elif mode == "torch":
            self.flip = False
            self.register_buffer("mean", torch.tensor(TORCH_MEAN_RGB).view(1, 3, 1, 1) * 255)
            self.register_buffer("scale", 1 / (torch.tensor(TORCH_STD_RGB).view(1, 3, 1, 1) * 255))
        else:
            raise BrushworkError(f"preprocess must be 'caffe' or 'torch', not {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip:
            x = x.flip(1)
        return (x - self.mean) * self.scale


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


class FeatureExtractor(nn.Module):
    """VGG conv stack up to the deepest of ``layers``; ``forward`` returns ``{name: features}``.

    ``layers`` use the names of :func:`brushwork.maths.layers.layer_names`: ``conv4_2`` is the
    convolution's output before the ReLU, ``relu4_2`` after it.  The paper's Caffe model
    rectified in place, so the paper's "conv4_2" features are our ``relu4_2``.
    """

    def __init__(self, weights: VGGWeights, layers: list[str] | tuple[str, ...],
                 pooling: str = "max", *, channels_last: bool = True,
                 dtype: torch.dtype = torch.float32) -> None:
        """``channels_last``: work in NHWC on the CPU, where oneDNN's 3x3 convolutions at
        the shallow, wide layers run faster on it (docs/benchmarks.md); off gives the stock
        NCHW layout, for the benchmark's comparison.

        ``dtype``: the arithmetic of the network (brushwork.engine.precision).  The input
        is cast to it after preprocessing (the gradient comes back to the float32 picture
        as float32) and the feature maps come out in it: the losses cast them to float32
        as they use them (brushwork.maths.losses), so autograd keeps only the
        low-precision maps.  The weights are held in ``dtype``, cast once here rather than
        on every call."""
        super().__init__()
        self.channels_last = channels_last
        self.dtype = dtype
        if pooling not in POOLINGS:
            raise BrushworkError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        check_layers(weights.arch, layers, "requested")
        self.arch = weights.arch
        self.layers = tuple(dict.fromkeys(layers))
        self.pooling = pooling
        self.preprocess = Preprocess(weights.preprocess)
        order = layer_names(weights.arch)
        deepest = max(order.index(n) for n in self.layers)
        self.steps: list[str] = order[: deepest + 1]
        self.convs = nn.ModuleDict()
        for name in self.steps:
            if name.startswith("conv"):
                w, b = weights.convs[name]
                conv = nn.Conv2d(w.shape[1], w.shape[0], kernel_size=3, padding=1)
                conv.load_state_dict({"weight": w, "bias": b})
                self.convs[name] = conv.to(dtype)
        self.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor, wrap: bool = False) -> dict[str, torch.Tensor]:
        """``image``: (B, 3, H, W) RGB in 0..255.

        ``wrap``: see the picture as a torus, its left edge the right one's neighbour and
        its top the bottom's: each convolution pads circularly instead of with zeros, so
        features at an edge see the opposite edge and a picture that matches them there
        repeats without a seam.  Its height and width must be multiples of the deepest
        layer's stride (:func:`stride`), so that every pooling tiles the torus exactly."""
        if wrap:
            self._check_wraps(image)
        wanted = set(self.layers)
        features: dict[str, torch.Tensor] = {}
        x = self.preprocess(image)
        low = self.dtype != torch.float32
        if low:
            x = x.to(self.dtype)
        nhwc = self.channels_last and x.device.type == "cpu"
        if nhwc:
            x = channels_last(x)
        self._weights_layout(nhwc)
        for name in self.steps:
            if name.startswith("conv"):
                conv = self.convs[name]
                if wrap:
                    assert isinstance(conv, nn.Conv2d)
                    x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), conv.weight,
                                 conv.bias)
                else:
                    x = conv(x)
            elif name.startswith("relu"):
                # In place unless the pre-activation itself was asked for.
                x = F.relu(x, inplace="conv" + name[4:] not in wanted)
            elif self.pooling == "max":
                x = F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)
            else:
                x = F.avg_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)
            if name in wanted:
                features[name] = x
        return features

    def stride(self) -> int:
        """The deepest layer's stride in pixels: 2 to the number of poolings before it."""
        return 2 ** sum(name.startswith("pool") for name in self.steps)

    def _check_wraps(self, image: torch.Tensor) -> None:
        height, width = image.shape[-2:]
        stride = self.stride()
        if height % stride or width % stride:
            raise BrushworkError(f"a picture seen as a torus must be a multiple of {stride} px "
                                 f"on each side, not {width}x{height}")

    def _weights_layout(self, nhwc: bool) -> None:
        """Weights in the activations' layout: on the CPU in NHWC, or each convolution's
        backward reorders them again (a 9 MB copy per call for the 512-channel layers);
        elsewhere as loaded, so cuDNN picks its layout as it always has."""
        fmt = torch.channels_last if nhwc else torch.contiguous_format
        for conv in self.convs.values():
            assert isinstance(conv, nn.Conv2d)
            if not conv.weight.is_contiguous(memory_format=fmt):
                conv.weight.data = conv.weight.data.contiguous(memory_format=fmt)
