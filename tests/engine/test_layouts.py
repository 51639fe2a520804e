"""The evaluation's two speed-ups (the Gram matrix's one-product backward, the NHWC
extractor) agree with autograd and NCHW."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brushwork.engine.network import FeatureExtractor, channels_last
from brushwork.engine.objective import Objective
from brushwork.engine.settings import Settings
from brushwork.maths.losses import gram, gram_autograd
from conftest import rtol_on, tiny_weights


def test_gram_gradcheck_and_layout(float64_device):
    g = torch.Generator().manual_seed(2)
    f = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=g).to(float64_device)
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: gram(f), (f,))
    # An NHWC feature map gets its gradient back in NHWC, equal to autograd's.
    nhwc = f.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    plain = f.detach().clone().requires_grad_(True)
    upstream = torch.randn(2, 3, 3, dtype=torch.float64, generator=g).to(float64_device)
    (gram(nhwc) * upstream).sum().backward()
    (gram_autograd(plain) * upstream).sum().backward()
    torch.testing.assert_close(nhwc.grad, plain.grad)
    assert nhwc.grad.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_hands_back_an_nchw_gradient(device):
    x = torch.randn(1, 3, 4, 4, device=device, requires_grad=True)
    y = channels_last(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    ramp = torch.arange(48.0, device=device).view(1, 3, 4, 4)
    (y * ramp).sum().backward()
    assert x.grad.is_contiguous()
    assert torch.equal(x.grad, ramp)


def test_extractor_matches_a_plain_vgg(device):
    """Features and the image gradient (NHWC inside on the CPU) equal those of a plain
    NCHW VGG."""
    weights = tiny_weights()
    layers = ["relu1_1", "conv2_2", "relu3_1", "relu4_2", "relu5_1"]
    net = FeatureExtractor(weights, layers).to(device)
    g = torch.Generator().manual_seed(3)
    image = (torch.rand(1, 3, 37, 29, generator=g) * 255).to(device)

    def plain(x):
        x = net.preprocess(x)
        out = {}
        for name in net.steps:
            if name.startswith("conv"):
                w, b = weights.convs[name]
                x = F.conv2d(x, w.to(device), b.to(device), padding=1)
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
        atol = 1e-3 if device.type == "cpu" else rtol_on(device, 0) * float(f2[name].abs().max())
        torch.testing.assert_close(f1[name], f2[name], rtol=rtol_on(device, 1e-4), atol=atol)
    loss1 = sum((gram(f1[n]) ** 2).sum() * 1e-6 + f1[n].sum() for n in layers)
    loss2 = sum((gram(f2[n]) ** 2).sum() * 1e-6 + f2[n].sum() for n in layers)
    loss1.backward()
    loss2.backward()
    assert x1.grad.is_contiguous()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=rtol_on(device, 1e-3),
                               atol=rtol_on(device, 1e-3) * float(x2.grad.abs().max()))


CASES = [
    {},  # the defaults: relu3_2 + relu4_2 content, the paper's five style layers
    # Pre-activation and pooled layers, a layer that is both content and style, the
    # PyTorch tutorial's norms.
    {"content_layers": ("conv3_1", "relu1_1"), "style_layers": ("relu1_1", "conv2_1", "pool3"),
     "content_norm": "mean", "style_norm": "mean", "style_layer_weights": (0.2, 0.5, 0.3)},
    # Average pooling, the Keras example's norms and its TV term.
    {"pooling": "avg", "content_norm": "sum", "style_norm": "keras", "tv_weight": 0.3,
     "tv_power": 1.25},
]


class _AutogradGram(Objective):
    gram = staticmethod(gram_autograd)


@pytest.mark.parametrize("options", CASES, ids=["defaults", "pre-activation", "avg"])
def test_fast_objective_equals_the_stock_one(options, device):
    """NHWC (on the CPU) with the one-product Gram backward gives the terms and the image
    gradient of NCHW with autograd's, for several layer sets, both poolings and every norm."""
    s = Settings(size_invariant=False, **options)
    layers = s.content_layers + s.style_layers
    g = torch.Generator().manual_seed(5)
    photo = (torch.rand(1, 3, 37, 29, generator=g) * 255).to(device)
    style = (torch.rand(1, 3, 30, 30, generator=g) * 255).to(device)
    fast = Objective.for_styles(FeatureExtractor(tiny_weights(), layers, s.pooling).to(device),
                                s, photo, [style])
    stock = _AutogradGram.for_styles(
        FeatureExtractor(tiny_weights(), layers, s.pooling, channels_last=False).to(device), s,
        photo, [style])
    image = (torch.rand(1, 3, 37, 29, generator=g) * 255).to(device)
    x_fast, x_stock = image.clone().requires_grad_(True), image.clone().requires_grad_(True)
    got, want = fast(x_fast), stock(x_stock)
    (3 * got["content"] + 0.5 * got["style"] + got["tv"]).backward()
    (3 * want["content"] + 0.5 * want["style"] + want["tv"]).backward()
    for key in ("content", "style", "tv", "total"):
        assert got[key].item() == pytest.approx(want[key].item(), rel=rtol_on(device, 1e-5))
    assert x_fast.grad.is_contiguous()
    scale = float(x_stock.grad.abs().max())
    assert scale > 0
    torch.testing.assert_close(x_fast.grad, x_stock.grad, rtol=rtol_on(device, 1e-4),
                               atol=rtol_on(device, 1e-5) * scale)


def test_weights_follow_the_activations_layout():
    net = FeatureExtractor(tiny_weights(), ["relu2_1"])
    image = torch.rand(1, 3, 8, 8) * 255
    net(image)
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last)
               for c in net.convs.values())
    net.channels_last = False  # as on a GPU: the weights go back to the loaded layout
    net(image)
    assert all(c.weight.is_contiguous() for c in net.convs.values())
