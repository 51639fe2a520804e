"""The hand-written backward passes agree with autograd's, in NCHW and NHWC."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brushwork.fused import channels_last, frozen_conv3x3, gram_flat, transposed_kernel
from brushwork.losses import gram
from brushwork.vgg import FeatureExtractor

from conftest import tiny_weights


@pytest.mark.parametrize("relu", [False, True])
def test_frozen_conv_gradcheck(relu):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 6, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=g)
    b = torch.randn(4, dtype=torch.float64, generator=g)
    wt = transposed_kernel(w)
    assert torch.autograd.gradcheck(lambda x: frozen_conv3x3(x, w, b, wt, relu), (x,))


@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_frozen_conv_matches_autograd_in_float32(relu, nhwc):
    """float32 takes oneDNN's fused conv+ReLU path on the CPU."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 5, 9, 7, generator=g)
    w = torch.randn(6, 5, 3, 3, generator=g) * 0.3
    b = torch.randn(6, generator=g)
    upstream = torch.randn(2, 6, 9, 7, generator=g)
    if nhwc:
        x0 = x0.contiguous(memory_format=torch.channels_last)
        w = w.contiguous(memory_format=torch.channels_last)
    x1, x2 = x0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
    y1 = frozen_conv3x3(x1, w, b, transposed_kernel(w), relu)
    y2 = F.conv2d(x2, w, b, padding=1)
    y2 = y2.relu() if relu else y2
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    (y1 * upstream).sum().backward()
    (y2 * upstream).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-4)


def test_gram_gradcheck_and_layout():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: gram(f), (f,))
    # An NHWC feature map gets its gradient back in NHWC, equal to autograd's.
    nhwc = f.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    plain = f.detach().clone().requires_grad_(True)
    upstream = torch.randn(2, 3, 3, dtype=torch.float64, generator=g)
    (gram(nhwc) * upstream).sum().backward()
    flat = plain.reshape(2, 3, 20)
    (torch.bmm(flat, flat.transpose(1, 2)) * upstream).sum().backward()
    torch.testing.assert_close(nhwc.grad, plain.grad)
    assert nhwc.grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(gram_flat, (flat.detach().requires_grad_(True),))


def test_channels_last_hands_back_an_nchw_gradient():
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    y = channels_last(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    (y * torch.arange(48.0).view(1, 3, 4, 4)).sum().backward()
    assert x.grad.is_contiguous()
    assert torch.equal(x.grad, torch.arange(48.0).view(1, 3, 4, 4))


def test_extractor_matches_a_plain_vgg():
    """Features and the image gradient equal those of stock conv/ReLU/pool modules."""
    weights = tiny_weights()
    layers = ["relu1_1", "conv2_2", "relu3_1", "relu4_2", "relu5_1"]
    net = FeatureExtractor(weights, layers)
    g = torch.Generator().manual_seed(3)
    image = torch.rand(1, 3, 37, 29, generator=g) * 255

    def plain(x):
        x = net.preprocess(x)
        out = {}
        for name in net.steps:
            if name.startswith("conv"):
                w, b = weights.convs[name]
                x = F.conv2d(x, w, b, padding=1)
            elif name.startswith("relu"):
                x = F.relu(x)
            else:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            if name in layers:
                out[name] = x
        return out

    x1, x2 = image.clone().requires_grad_(True), image.clone().requires_grad_(True)
    f1, f2 = net(x1), plain(x2)
    assert set(f1) == set(layers)
    for name in layers:
        torch.testing.assert_close(f1[name], f2[name], rtol=1e-4, atol=1e-3)
    loss1 = sum((gram(f1[n]) ** 2).sum() * 1e-6 + f1[n].sum() for n in layers)
    loss2 = sum((gram(f2[n]) ** 2).sum() * 1e-6 + f2[n].sum() for n in layers)
    loss1.backward()
    loss2.backward()
    assert x1.grad.is_contiguous()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-3, atol=1e-3 * float(x2.grad.abs().max()))
