"""The feature extractor and the colour functions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brushwork.engine.network import CAFFE_MEAN_BGR, FeatureExtractor, Preprocess
from brushwork.errors import BrushworkError
from brushwork.maths.color import luminance_transfer, match_color, rgb_to_yiq, yiq_to_rgb
from conftest import rtol_on


def manual_features(w, x, upto):
    """The same network written out by hand with functional ops."""
    out = {}
    x = x.flip(1) - torch.tensor(CAFFE_MEAN_BGR, device=x.device).view(1, 3, 1, 1)
    for name, (k, b) in w.convs.items():
        block = int(name[4])
        if name.endswith("_1") and block > 1:
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        x = F.conv2d(x, k.to(x.device), b.to(x.device), padding=1)
        out[name] = x
        x = F.relu(x)
        out["relu" + name[4:]] = x
        if name == upto:
            break
    return out


def test_module_matches_manual_network(tiny, device):
    x = (torch.rand(1, 3, 32, 32) * 255).to(device)
    net = FeatureExtractor(tiny, ["relu1_1", "conv3_1", "relu4_2"]).to(device)
    got = net(x)
    want = manual_features(tiny, x, "conv4_2")
    assert set(got) == {"relu1_1", "conv3_1", "relu4_2"}
    for name in got:
        assert got[name].device.type == device.type
        atol = 1e-5 if device.type == "cpu" else rtol_on(device, 0) * float(want[name].abs().max())
        assert torch.allclose(got[name], want[name], atol=atol), name


def test_conv_output_is_not_rectified_in_place(tiny, device):
    net = FeatureExtractor(tiny, ["conv2_1", "relu2_1"]).to(device)
    out = net((torch.rand(1, 3, 32, 32) * 255).to(device))
    assert (out["conv2_1"] < 0).any()
    assert torch.equal(out["relu2_1"], out["conv2_1"].clamp_min(0))


def test_network_stops_at_deepest_requested_layer(tiny):
    net = FeatureExtractor(tiny, ["relu2_1"])
    assert net.steps[-1] == "relu2_1"
    assert set(net.convs) == {"conv1_1", "conv1_2", "conv2_1"}
    assert not any(p.requires_grad for p in net.parameters())


def test_unknown_layer_lists_valid_ones(tiny):
    with pytest.raises(BrushworkError, match="unknown requested layer 'conv6_1'.*conv1_1, relu1_1"):
        FeatureExtractor(tiny, ["conv6_1"])
    with pytest.raises(BrushworkError, match="pooling"):
        FeatureExtractor(tiny, ["relu1_1"], pooling="min")


def test_avg_and_max_pooling_differ(tiny, device):
    x = (torch.rand(1, 3, 32, 32) * 255).to(device)
    a = FeatureExtractor(tiny, ["relu3_1"], pooling="avg").to(device)(x)["relu3_1"]
    m = FeatureExtractor(tiny, ["relu3_1"], pooling="max").to(device)(x)["relu3_1"]
    assert a.shape == m.shape and not torch.allclose(a, m)


def test_caffe_and_torch_preprocessing(device):
    pixel = torch.tensor([10.0, 20.0, 30.0], device=device).view(1, 3, 1, 1)
    caffe = Preprocess("caffe").to(device)(pixel).flatten().cpu()
    # BGR order, less Caffe's BGR mean: 30 - 104.00699, 20 - 116.66877, 10 - 122.67892.
    assert torch.allclose(caffe, torch.tensor([-74.00699, -96.66877, -112.67892]))
    white = torch.full((1, 3, 1, 1), 255.0, device=device)
    torch_in = Preprocess("torch").to(device)(white).flatten().cpu()
    # (1 - mean) / std per RGB channel: 0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225.
    assert torch.allclose(torch_in, torch.tensor([2.2489083, 2.4285714, 2.64]))


def test_yiq_round_trip_and_luminance(device):
    x = (torch.rand(1, 3, 8, 8) * 255).to(device)
    assert torch.allclose(yiq_to_rgb(rgb_to_yiq(x)), x, atol=1e-3)
    grey = torch.full((1, 3, 2, 2), 100.0, device=device)
    yiq = rgb_to_yiq(grey)
    assert torch.allclose(yiq[:, 0].cpu(), torch.full((1, 2, 2), 100.0), atol=1e-4)
    assert yiq[:, 1:].abs().max() < 1e-4


def test_luminance_transfer_keeps_photo_colour_and_painting_light(device):
    stylized = (torch.rand(1, 3, 8, 8) * 155 + 50).to(device)
    photo = (torch.rand(1, 3, 8, 8) * 55 + 100).to(device)
    out = rgb_to_yiq(luminance_transfer(stylized, photo))
    assert torch.allclose(out[:, 0], rgb_to_yiq(stylized)[:, 0], atol=0.05)
    assert torch.allclose(out[:, 1:], rgb_to_yiq(photo)[:, 1:], atol=0.05)


def test_match_color_moves_mean_and_covariance(device):
    g = torch.Generator().manual_seed(0)
    source = torch.rand(1, 3, 16, 16, generator=g) * 100 + 20
    mix = torch.tensor([[1.0, 0.2, 0.0], [0.1, 0.8, 0.3], [0.0, 0.1, 0.5]])
    target = torch.einsum("ij,bjhw->bihw", mix, torch.rand(1, 3, 20, 12, generator=g) * 120) + 30
    out = match_color(source.to(device), target.to(device))
    assert out.device.type == device.type
    flat_o, flat_t = out[0].cpu().reshape(3, -1).double(), target[0].reshape(3, -1).double()
    assert torch.allclose(flat_o.mean(1), flat_t.mean(1), atol=0.05)
    assert torch.allclose(torch.cov(flat_o, correction=0), torch.cov(flat_t, correction=0),
                          rtol=0.01, atol=0.5)
