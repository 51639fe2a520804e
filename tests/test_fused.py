"""The hand-written backwards (the Gram matrix's, the whole network's) and the NHWC
extractor agree with autograd and NCHW."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brushwork.engine import Objective
from brushwork.fused import channels_last, gram_flat
from brushwork.losses import gram, gram_autograd
from brushwork.settings import Settings
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


FUSED_CASES = [
    {},  # the defaults: relu3_2 + relu4_2 content, the paper's five style layers
    # Pre-activation and pooled layers, a layer that is both content and style, seed 001.
    {"content_layers": ("conv3_1", "relu1_1"), "style_layers": ("relu1_1", "conv2_1", "pool3"),
     "content_norm": "mean", "style_norm": "mean", "style_layer_weights": (0.2, 0.5, 0.3)},
    # Average pooling, seed 004's norms and its TV term.
    {"pooling": "avg", "content_norm": "sum", "style_norm": "keras", "tv_weight": 0.3,
     "tv_power": 1.25},
]


@pytest.mark.parametrize("nhwc", [True, False], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("options", FUSED_CASES, ids=["defaults", "pre-activation", "avg"])
def test_hand_written_backward_equals_autograd(options, nhwc):
    s = Settings(size_invariant=False, **options)
    net = FeatureExtractor(tiny_weights(), s.content_layers + s.style_layers, s.pooling,
                           channels_last=nhwc)
    g = torch.Generator().manual_seed(5)
    photo, style = torch.rand(1, 3, 37, 29, generator=g) * 255, torch.rand(1, 3, 30, 30, generator=g) * 255
    objective = Objective(net, s, photo, [style], [1.0])
    image = torch.rand(1, 3, 37, 29, generator=g) * 255
    x_fused, x_auto = image.clone().requires_grad_(True), image.clone().requires_grad_(True)
    assert objective.uses_fused(x_fused)
    fused = objective(x_fused)
    fused["total"].backward()
    objective.fused = False
    auto = objective(x_auto)
    auto["total"].backward()
    for key in ("content", "style", "tv", "total"):
        assert fused[key].item() == pytest.approx(auto[key].item(), rel=1e-5)
    assert x_fused.grad.is_contiguous()
    scale = float(x_auto.grad.abs().max())
    assert scale > 0
    torch.testing.assert_close(x_fused.grad, x_auto.grad, rtol=1e-4, atol=1e-5 * scale)


def test_hand_written_backward_takes_each_terms_weight():
    """Backpropagating 3 * content + 0.5 * style through the fused terms gives autograd's
    gradient for the same sum: the backward scales each term by its own upstream weight."""
    s = Settings()
    net = FeatureExtractor(tiny_weights(), s.content_layers + s.style_layers)
    g = torch.Generator().manual_seed(6)
    photo, style = torch.rand(1, 3, 24, 24, generator=g) * 255, torch.rand(1, 3, 24, 24, generator=g) * 255
    objective = Objective(net, s, photo, [style], [1.0])
    image = torch.rand(1, 3, 24, 24, generator=g) * 255
    grads = []
    for fused in (True, False):
        objective.fused = fused
        x = image.clone().requires_grad_(True)
        terms = objective(x)
        (3 * terms["content"] + 0.5 * terms["style"]).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5 * float(grads[1].abs().max()))


def test_fused_path_only_where_it_applies():
    s = Settings()
    net = FeatureExtractor(tiny_weights(), s.content_layers + s.style_layers)
    photo = torch.rand(1, 3, 16, 16) * 255
    objective = Objective(net, s, photo, [photo], [1.0])
    assert objective.uses_fused(photo.clone().requires_grad_(True))
    assert not objective.uses_fused(photo)  # no gradient wanted
    with torch.no_grad():
        assert not objective.uses_fused(photo.clone().requires_grad_(True))
    assert not objective.uses_fused(torch.rand(2, 3, 16, 16, requires_grad=True))  # a batch


def test_a_plain_forward_keeps_only_the_features():
    """Without keep (the style targets' pass) no activation outlives the next step; with
    it, every step's input, each ReLU's output and each max-pool's indices are kept, and
    the backward lets them all go."""
    net = FeatureExtractor(tiny_weights(), ["relu1_1", "relu3_1"])
    image = torch.rand(1, 3, 16, 16) * 255
    plain = net.record(image, keep=False)
    assert set(plain.features) == {"relu1_1", "relu3_1"}
    assert not plain.inputs and not plain.outputs and not plain.indices
    with torch.no_grad():
        tape = net.record(image)
    assert set(tape.inputs) == set(net.steps)
    assert set(tape.indices) == {"pool1", "pool2"}
    net.backward(tape, lambda name, g: torch.ones_like(tape.features[name])
                 if name == "relu3_1" and g is None else g)
    assert not tape.inputs and not tape.outputs and not tape.indices and not tape.features


def test_weights_follow_the_activations_layout():
    net = FeatureExtractor(tiny_weights(), ["relu2_1"])
    image = torch.rand(1, 3, 8, 8) * 255
    net(image)
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last)
               for c in net.convs.values())
    net.channels_last = False  # as on a GPU: the weights go back to the loaded layout
    net(image)
    assert all(c.weight.is_contiguous() for c in net.convs.values())
