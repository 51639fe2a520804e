"""Shared fixtures: tiny VGG networks and tiny pictures, made on the spot."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from brushwork.io.weights import VGGWeights
from brushwork.maths.layers import BLOCKS

TINY_WIDTHS = (4, 6, 8, 8, 8)


def devices_present() -> list[str]:
    """"cpu", and "cuda" and "mps" where torch finds them."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


@pytest.fixture(params=devices_present())
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each device present in turn, so a device-dependent test runs wherever one exists."""
    return torch.device(request.param)


def rtol_on(device: torch.device, cpu: float) -> float:
    """A relative tolerance for comparing two float32 computations: ``cpu`` on the CPU, at
    least 2e-3 elsewhere, where cuDNN's convolutions run in TF32 by default (10 bits)."""
    return cpu if device.type == "cpu" else max(cpu, 2e-3)


@pytest.fixture
def float64_device(device: torch.device) -> torch.device:
    """``device``, skipped where float64 is not supported (MPS), for gradcheck."""
    if device.type == "mps":
        pytest.skip("MPS has no float64")
    return device


def tiny_weights(arch: str = "vgg16", seed: int = 0, preprocess: str = "caffe") -> VGGWeights:
    """A VGG with a handful of channels per layer and He-initialised random weights."""
    g = torch.Generator().manual_seed(seed)
    convs = {}
    cin = 3
    for b, n in enumerate(BLOCKS[arch]):
        for i in range(n):
            cout = TINY_WIDTHS[b]
            w = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
            # Caffe-space inputs are ~100 in size; scale the first layer to match.
            if b == 0 and i == 0 and preprocess == "caffe":
                w = w / 60.0
            convs[f"conv{b + 1}_{i + 1}"] = (w, torch.randn(cout, generator=g) * 0.01)
            cin = cout
    return VGGWeights(arch=arch, convs=convs, preprocess=preprocess, source="tiny")


@pytest.fixture
def tiny():
    return tiny_weights()


@pytest.fixture
def tiny_model_file(tmp_path):
    """The tiny VGG16 saved as a .safetensors file, usable as --model PATH."""
    from safetensors.torch import save_file

    w = tiny_weights()
    tensors = {}
    for name, (k, b) in w.convs.items():
        tensors[f"{name}.weight"] = k.contiguous()
        tensors[f"{name}.bias"] = b.contiguous()
    path = tmp_path / "tiny_vgg16.safetensors"
    save_file(tensors, str(path), metadata={"preprocess": "caffe"})
    return path


def photo_array(w: int = 40, h: int = 32, seed: int = 1) -> np.ndarray:
    """A smooth 'photo': gradients and a disc."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x / w * 255).astype(np.float64)
    gch = (y / h * 255).astype(np.float64)
    b = np.where((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 3) ** 2, 220.0, 40.0)
    return np.stack([r, gch, b], axis=-1).astype(np.uint8)


def painting_array(w: int = 36, h: int = 36, seed: int = 2) -> np.ndarray:
    """A high-contrast 'painting': coloured stripes with noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    stripes = ((x + y) // 4) % 2
    base = np.where(stripes[..., None] == 1, [230, 200, 40], [30, 60, 160]).astype(np.float64)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def photo_path(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(photo_array()).save(path)
    return path


@pytest.fixture
def painting_path(tmp_path):
    path = tmp_path / "painting.png"
    Image.fromarray(painting_array()).save(path)
    return path


@pytest.fixture
def use_tiny(monkeypatch):
    """Make stylize() use the tiny network whatever --model says."""
    import brushwork.engine.cache as cache_module

    weights = tiny_weights()
    monkeypatch.setattr(cache_module, "load_weights", lambda *a, **k: weights)
    return weights


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Calibrations and downloads go to a folder of the test session, not the user's cache.

    Set for the rest of the process, never restored: a thread that outlives its test (a
    studio worker still measuring the device when its app's shutdown stopped waiting for
    it) would otherwise write its calibration into the user's cache after the session;
    keys naming pytest's folders were found there once."""
    os.environ["BRUSHWORK_CACHE"] = str(tmp_path_factory.mktemp("cache"))
