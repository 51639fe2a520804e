"""The hand-written Gram backward and the NHWC extractor agree with autograd and NCHW."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from brushwork.fused import channels_last, gram_flat
from brushwork.losses import gram, gram_autograd
from brushwork.vgg import FeatureExtractor

from conftest import tiny_weights


def test_gram_gradcheck_and_layout():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: gram(f), (f,))
    # An NHWC feature map gets its gradient back in NHWC, equal to autograd's.
    nhwc = f.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    plain = f.detach().clone().requires_grad_(True)
    upstream = torch.randn(2, 3, 3, dtype=torch.float64, generator=g)
    (gram(nhwc) * upstream).sum().backward()
    (gram_autograd(plain) * upstream).sum().backward()
    torch.testing.assert_close(nhwc.grad, plain.grad)
    assert nhwc.grad.is_contiguous(memory_format=torch.channels_last)
    flat = f.detach().reshape(2, 3, 20).requires_grad_(True)
    assert torch.autograd.gradcheck(gram_flat, (flat,))


def test_channels_last_hands_back_an_nchw_gradient():
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    y = channels_last(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    (y * torch.arange(48.0).view(1, 3, 4, 4)).sum().backward()
    assert x.grad.is_contiguous()
    assert torch.equal(x.grad, torch.arange(48.0).view(1, 3, 4, 4))


def test_extractor_matches_a_plain_vgg():
    """Features and the image gradient (NHWC inside) equal those of a plain NCHW VGG."""
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
