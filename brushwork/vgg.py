"""A frozen VGG feature extractor that returns a dict of named layers.

The network is built from the shapes in the weights (so tiny test networks work too)
and stops at the deepest layer asked for: nothing past it is ever computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import BrushworkError
from .fused import channels_last
from .layers import layer_names

if TYPE_CHECKING:
    from .weights import VGGWeights

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

    def backward(self, grad: torch.Tensor) -> torch.Tensor:
        """The gradient with respect to the pixels, given the one at the network's input."""
        grad = grad * self.scale
        return grad.flip(1) if self.flip else grad


@dataclass
class Tape:
    """What :meth:`FeatureExtractor.record` keeps for :meth:`FeatureExtractor.backward`."""

    features: dict[str, torch.Tensor]
    # Per step: the step's input (convolutions and pooling use its shape), its output
    # (a ReLU's gives the mask), and max-pooling's indices.
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    indices: dict[str, torch.Tensor] = field(default_factory=dict)


# add_grad(step name, g) -> g: adds the losses' gradient at that step's output into g.
AddGrad = Callable[[str, "torch.Tensor | None"], "torch.Tensor | None"]


class FeatureExtractor(nn.Module):
    """VGG conv stack up to the deepest of ``layers``; ``forward`` returns ``{name: features}``.

    ``layers`` use the names of :func:`brushwork.layers.layer_names`: ``conv4_2`` is the
    convolution's output before the ReLU, ``relu4_2`` after it.  The paper's Caffe model
    rectified in place, so the paper's "conv4_2" features are our ``relu4_2``.
    """

    def __init__(self, weights: VGGWeights, layers: list[str] | tuple[str, ...], pooling: str = "max",
                 *, channels_last: bool = True):
        """``channels_last``: work in NHWC on the CPU (see brushwork.fused); off gives the
        stock NCHW layout, for the benchmark's comparison."""
        super().__init__()
        self.channels_last = channels_last
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
                with torch.no_grad():
                    conv.weight.copy_(w)
                    conv.bias.copy_(b)
                self.convs[name] = conv
        self.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """``image``: (B, 3, H, W) RGB in 0..255."""
        # Nothing but the features is kept: without a gradient (the style targets) each
        # activation is freed as soon as the next step has read it.
        return self.record(image, keep=False).features

    def record(self, image: torch.Tensor, keep: bool = True) -> Tape:
        """The forward pass, keeping what :meth:`backward` needs unless ``keep`` is False.
        Autograd records it as usual when the image requires a gradient."""
        wanted = set(self.layers)
        tape = Tape({})
        x = self.preprocess(image)
        nhwc = self.channels_last and x.device.type == "cpu"
        if nhwc:
            # oneDNN's convolutions are faster on NHWC inputs (see brushwork.fused).
            x = channels_last(x)
        self._weights_layout(nhwc)
        for name in self.steps:
            if keep:
                tape.inputs[name] = x
            if name.startswith("conv"):
                x = self.convs[name](x)
            elif name.startswith("relu"):
                # In place unless the pre-activation itself was asked for.
                x = F.relu(x, inplace="conv" + name[4:] not in wanted)
                if keep:
                    tape.outputs[name] = x
            elif self.pooling == "max" and keep:
                x, tape.indices[name] = F.max_pool2d_with_indices(x, kernel_size=2, stride=2,
                                                                  ceil_mode=True)
            elif self.pooling == "max":
                x = F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)
            else:
                x = F.avg_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)
            if name in wanted:
                tape.features[name] = x
        return tape

    def _weights_layout(self, nhwc: bool) -> None:
        """Weights in the activations' layout: on the CPU in NHWC, or each convolution's
        backward reorders them again (a 9 MB copy per call for the 512-channel layers);
        elsewhere as loaded, so cuDNN picks its layout as it always has."""
        fmt = torch.channels_last if nhwc else torch.contiguous_format
        for conv in self.convs.values():
            if not conv.weight.is_contiguous(memory_format=fmt):
                conv.weight.data = conv.weight.data.contiguous(memory_format=fmt)

    @torch.no_grad()
    def backward(self, tape: Tape, add_grad: AddGrad) -> torch.Tensor:
        """The gradient with respect to the image of a :meth:`record` made without autograd,
        by hand from the deepest step back to the first (brushwork.fused says why).

        At each step ``add_grad(name, g)`` first adds the losses' gradient with respect to
        that step's output into ``g`` (``None`` above the deepest loss) and returns it; then
        ``g`` goes back through the step, in place where the step allows it.  The tape is
        emptied on the way, so it serves one backward.
        """
        g: torch.Tensor | None = None
        for name in reversed(self.steps):
            g = add_grad(name, g)
            # Each step's tensors are let go once used, as autograd does: the tape is spent.
            tape.features.pop(name, None)
            out, indices = tape.outputs.pop(name, None), tape.indices.pop(name, None)
            x = tape.inputs.pop(name)
            if g is None:
                continue
            if name.startswith("relu"):
                # dReLU: zero where the output is zero; written over g itself.
                g = torch.ops.aten.threshold_backward.grad_input(g, out, 0, grad_input=g)
            elif name.startswith("conv"):
                # Input gradient only: the weights are frozen.
                g = torch.ops.aten.convolution_backward(
                    g, x, self.convs[name].weight, None, (1, 1), (1, 1), (1, 1), False, (0, 0), 1,
                    (True, False, False))[0]
            elif indices is not None:
                g = torch.ops.aten.max_pool2d_with_indices_backward(
                    g, x, (2, 2), (2, 2), (0, 0), (1, 1), True, indices)
            else:
                g = torch.ops.aten.avg_pool2d_backward(g, x, (2, 2), (2, 2), (0, 0), True, True,
                                                       None)
        assert g is not None, "no loss gradient reached the image"
        g = self.preprocess.backward(g)
        return g.contiguous()
