"""--precision: which arithmetic auto picks, and bfloat16 confined to the network."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import brushwork
import brushwork.engine.precision as precision_module
from brushwork.engine.cache import Cache
from brushwork.engine.memory import calibration
from brushwork.engine.memory.calibration import _calibration_key, _saved_bytes
from brushwork.engine.network import FeatureExtractor
from brushwork.engine.objective import Objective, style_grams
from brushwork.engine.precision import native_bf16, resolve_precision
from brushwork.engine.settings import Settings
from brushwork.engine.tiling import TiledObjective
from brushwork.errors import BrushworkError
from brushwork.io.images import read_metadata
from conftest import tiny_weights

CPU = torch.device("cpu")
XEON = {"cpu_name": "Intel Xeon", "amx_bf16": True, "avx512_bf16": True}
EPYC = {"cpu_name": "AMD EPYC", "amx_bf16": False, "avx512_bf16": False, "avx2": True}


def test_auto_picks_bf16_only_where_the_cpu_has_it():
    on_xeon = resolve_precision("auto", CPU, lambda: XEON)
    assert on_xeon.name == "bf16" and on_xeon.dtype == torch.bfloat16
    assert "amx_bf16 and avx512_bf16" in on_xeon.describe()
    assert resolve_precision("auto", CPU, lambda: {"avx512_bf16": True}).name == "bf16"
    on_epyc = resolve_precision("auto", CPU, lambda: EPYC)
    assert on_epyc.name == "fp32" and on_epyc.dtype == torch.float32
    assert on_epyc.describe() == ("precision fp32: auto, since AMD EPYC has neither "
                                  "amx_bf16 nor avx512_bf16")
    assert resolve_precision("auto", CPU, dict).name == "fp32"  # nothing detected


def test_named_precision_is_taken_as_asked():
    assert resolve_precision("fp32", CPU, lambda: XEON).name == "fp32"
    slow = resolve_precision("bf16", CPU, lambda: EPYC)
    assert slow.name == "bf16" and "slower than fp32" in slow.reason
    assert resolve_precision("bf16", CPU, lambda: XEON).reason == "asked for"
    with pytest.raises(BrushworkError, match="precision must be one of auto, fp32, bf16"):
        resolve_precision("fp16", CPU)
    with pytest.raises(BrushworkError, match="not supported on mps"):
        resolve_precision("bf16", torch.device("mps"))
    assert native_bf16(torch.device("mps"))[0] is False


def test_settings_check_precision():
    assert Settings().precision == "auto"
    assert Settings(precision="bf16").to_dict()["precision"] == "bf16"
    with pytest.raises(BrushworkError, match="precision must be one of auto, fp32, bf16"):
        Settings(precision="half")


def _pair(layers: list[str]) -> tuple[FeatureExtractor, FeatureExtractor]:
    weights = tiny_weights()
    return (FeatureExtractor(weights, layers),
            FeatureExtractor(weights, layers, dtype=torch.bfloat16))


def test_bf16_network_features_are_close_to_fp32():
    full, low = _pair(["relu1_1", "relu3_1", "relu4_2"])
    assert all(c.weight.dtype == torch.bfloat16 for c in low.convs.values())
    assert low.preprocess.mean.dtype == torch.float32  # preprocessing stays exact
    x = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(1)) * 255
    want, got = full(x), low(x)
    for name in want:
        assert got[name].dtype == torch.bfloat16
        err = float((got[name].float() - want[name]).norm() / want[name].norm())
        assert 0 < err < 0.03, name  # bf16's 8-bit mantissa, not zero and not more


def test_bf16_gradient_reaches_the_float32_picture():
    s = Settings()
    full, low = _pair(list(s.content_layers + s.style_layers))
    g = torch.Generator().manual_seed(2)
    photo, style = torch.rand(1, 3, 64, 56, generator=g) * 255, torch.rand(1, 3, 50, 50) * 255
    grads, totals = [], []
    for net in (full, low):
        targets = style_grams(net, style, s.style_layers)
        assert all(t.dtype == torch.float32 for t in targets)
        obj = Objective(net, s, photo, targets)
        x = (photo + 20 * torch.randn(photo.shape, generator=torch.Generator().manual_seed(3))
             ).requires_grad_(True)
        terms = obj(x)
        assert all(v.dtype == torch.float32 for v in terms.values())
        terms["total"].backward()
        assert x.grad is not None and x.grad.dtype == torch.float32
        grads.append(x.grad.flatten())
        totals.append(terms["total"].item())
    assert totals[1] == pytest.approx(totals[0], rel=0.05)
    assert float(torch.cosine_similarity(grads[0], grads[1], dim=0)) > 0.98


def test_tiled_bf16_equals_whole_bf16_within_bf16s_own_error():
    """Tiles change only the order of bf16 sums, so tiled and whole bf16 must differ from
    each other by less than bf16 differs from fp32.  Shallow layers keep the halo small,
    so there are many tiles on a small picture."""
    s = Settings(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))
    full, low = _pair(list(s.content_layers + s.style_layers))
    g = torch.Generator().manual_seed(4)
    photo = torch.rand(1, 3, 90, 101, generator=g) * 255
    style = torch.rand(1, 3, 60, 50, generator=g) * 255
    x = torch.rand(1, 3, 90, 101, generator=g) * 255
    results = {}
    for name, net, tiled in (("fp32", full, False), ("bf16", low, False),
                             ("bf16 tiled", low, True)):
        targets = style_grams(net, style, s.style_layers)
        obj = TiledObjective(net, s, photo, targets, tile=16) if tiled \
            else Objective(net, s, photo, targets)
        if tiled:
            assert isinstance(obj, TiledObjective) and len(obj.tiles) >= 16
        a = x.clone().requires_grad_(True)
        terms = obj(a)
        terms["total"].backward()
        assert a.grad is not None
        results[name] = (terms["total"].item(), a.grad.clone())
    (f_loss, f_grad), (w_loss, w_grad), (t_loss, t_grad) = results.values()
    assert w_loss != f_loss  # bf16 did run
    assert abs(t_loss - w_loss) <= max(abs(w_loss - f_loss), 1e-3 * abs(f_loss))
    assert float((t_grad - w_grad).norm()) <= float((w_grad - f_grad).norm())


def test_saved_activations_take_fewer_bytes_in_bf16():
    """What the calibration measures where no allocator peak can be read: the bytes
    autograd keeps, which the estimate scales with the picture."""
    weights = tiny_weights()
    widths = {"conv1": 32, "conv2": 32}
    convs, cin = {}, 3
    for name, (w, _) in weights.convs.items():  # the tiny net, 32 channels wide up front
        cout = widths.get(name[:5], w.shape[0])
        convs[name] = (torch.randn(cout, cin, 3, 3) * 0.05, torch.zeros(cout))
        cin = cout
    wide = replace(weights, convs=convs)
    s = Settings()
    layers = list(s.content_layers + s.style_layers)
    photo, style = torch.rand(1, 3, 64, 64) * 255, torch.rand(1, 3, 32, 32) * 255
    saved = {}
    for dtype in (torch.float32, torch.bfloat16):
        net = FeatureExtractor(wide, layers, dtype=dtype)
        saved[dtype] = _saved_bytes(
            Objective(net, s, photo, style_grams(net, style, s.style_layers)), CPU)
    assert saved[torch.bfloat16] < 0.8 * saved[torch.float32]


def test_networks_and_calibrations_are_kept_per_precision(monkeypatch, use_tiny):
    cache = Cache()
    fp32 = cache.network(Settings(precision="fp32"), CPU)
    bf16 = cache.network(Settings(precision="bf16"), CPU)
    assert fp32.dtype == torch.float32 and bf16.dtype == torch.bfloat16
    assert cache.network(Settings(precision="bf16"), CPU) is bf16
    s = Settings()
    assert _calibration_key(fp32, s, CPU) != _calibration_key(bf16, s, CPU)
    monkeypatch.setattr(precision_module, "cpu_capabilities", lambda: XEON)
    assert cache.network(Settings(precision="auto"), CPU) is bf16
    monkeypatch.setattr(precision_module, "cpu_capabilities", lambda: EPYC)
    assert cache.network(Settings(precision="auto"), CPU) is fp32


def test_stylize_in_bf16_says_so_and_records_it(use_tiny, photo_path, painting_path,
                                                 tmp_path, monkeypatch):
    # A fixed calibration: measuring the tiny net in emulated bf16 takes a minute here.
    known = calibration.Calibration(device="cpu", resident_bytes=0.0,
                                    eval_bytes=calibration.Line(0.0, 1000.0),
                                    eval_seconds=calibration.Line(0.0, 1e-6),
                                    forward_share=0.3)
    monkeypatch.setattr(calibration, "calibration_for", lambda *a, **k: known)
    monkeypatch.setattr(precision_module, "cpu_capabilities", lambda: XEON)
    said: list[str] = []
    result = brushwork.stylize(photo_path, painting_path, size=32, iterations=12,
                               multiscale="off", seed=0, device="cpu", log=said.append)
    assert result.precision == "bf16" and result.settings["precision"] == "auto"
    assert "precision bf16: auto, since Intel Xeon has amx_bf16 and avx512_bf16" in said
    assert result.history[-1]["style"] < result.history[0]["style"]
    out = result.save(tmp_path / "out.png")
    assert read_metadata(out)["precision"] == "bf16"
    monkeypatch.setattr(precision_module, "cpu_capabilities", lambda: EPYC)
    plain = brushwork.stylize(photo_path, painting_path, size=32, iterations=2,
                              multiscale="off", seed=0, device="cpu")
    assert plain.precision == "fp32"
