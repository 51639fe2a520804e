"""Work that repeated runs share: loaded networks and style Gram targets."""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from brushwork.engine.network import FeatureExtractor, check_layers
from brushwork.engine.precision import resolve_precision
from brushwork.engine.settings import Settings
from brushwork.engine.style_terms import style_statistics
from brushwork.io.weights import VGGWeights, load_weights

T = TypeVar("T")
Log = Callable[[str], None]


class LRU(Generic[T]):
    """A bounded mapping that forgets the least recently used entry first; thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> T | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: T) -> T:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def model_key(model: str) -> tuple[Any, ...]:
    """A weights file is known by its path, modification time and size; a source by its name."""
    path = Path(model).expanduser()
    if path.is_file():
        st = path.stat()
        return (str(path.resolve()), st.st_mtime_ns, st.st_size)
    return (model,)


def build_network(weights: VGGWeights, settings: Settings,
                  device: torch.device) -> FeatureExtractor:
    """The feature extractor for ``settings``' layers, pooling and precision, on ``device``."""
    check_layers(weights.arch, settings.content_layers, "content")
    check_layers(weights.arch, settings.style_layers, "style")
    precision = resolve_precision(settings.precision, device)
    return FeatureExtractor(weights, settings.content_layers + settings.style_layers,
                            settings.pooling, dtype=precision.dtype).to(device)


def load_network(settings: Settings, device: torch.device, log: Log | None = None
                 ) -> FeatureExtractor:
    """Read ``settings.model``'s weights and build its extractor, with no cache."""
    return build_network(_read_weights(settings.model, log), settings, device)


def _read_weights(model: str, log: Log | None, download: bool = True) -> VGGWeights:
    if log:
        return load_weights(model, log=log, download=download)
    return load_weights(model, download=download)


class Cache:
    """Loaded networks and style Gram targets, shared by several runs.

    Pass one to several :func:`brushwork.stylize` calls (a sweep, the studio's job queue)
    and the weights are read once per model and each style image's Gram matrices are
    computed once per size, instead of once per run.  Style targets are keyed by the
    bytes of the resized (and colour-matched) style image, so a changed file is never
    served stale.  Bounded (least recently used entries go first) and thread-safe.
    """

    def __init__(self, max_networks: int = 2, max_targets: int = 64, *,
                 download: bool = True) -> None:
        # download=False: a source's weights not yet on this machine are an error, never
        # fetched (a server, whose requests must not start downloads).
        self.download = download
        self._weights: LRU[VGGWeights] = LRU(max_networks)
        self._networks: LRU[FeatureExtractor] = LRU(max_networks)
        self._targets: LRU[list[torch.Tensor]] = LRU(max_targets)
        # The key each network was built under; weak, so a forgotten network takes its
        # key with it (an id() could be reused by another object).
        self._network_keys: weakref.WeakKeyDictionary[FeatureExtractor, tuple[Any, ...]] = \
            weakref.WeakKeyDictionary()
        self._keys_lock = threading.Lock()
        self.network_loads = 0  # how many times weights were actually read
        self.target_hits = 0
        self.target_misses = 0

    def weights(self, model: str, log: Log | None = None) -> VGGWeights:
        """The weights of ``model`` (a source name or a file), read once."""
        key = model_key(model)
        weights = self._weights.get(key)
        if weights is None:
            weights = self._weights.put(key, _read_weights(model, log, self.download))
            self.network_loads += 1
        return weights

    def network(self, settings: Settings, device: torch.device,
                log: Log | None = None) -> FeatureExtractor:
        """A feature extractor for these settings' model, layers, pooling and device."""
        key = (model_key(settings.model), settings.pooling, str(device),
               resolve_precision(settings.precision, device).name,
               tuple(dict.fromkeys(settings.content_layers + settings.style_layers)))
        net = self._networks.get(key)
        if net is None:
            net = self._networks.put(key, build_network(self.weights(settings.model, log),
                                                        settings, device))
            with self._keys_lock:
                self._network_keys[net] = key
        return net

    def style_statistics(self, net: FeatureExtractor, style: torch.Tensor,
                         settings: Settings) -> list[torch.Tensor]:
        """:func:`brushwork.engine.style_terms.style_statistics`, computed once per
        network, style image, layers and style loss (and seed, which draws the sliced
        loss's directions)."""
        with self._keys_lock:
            net_key = self._network_keys.get(net)
        if net_key is None:  # not one of ours: nothing to key it by safely
            return style_statistics(net, style, settings)
        digest = hashlib.sha1(style.detach().cpu().numpy().tobytes()).hexdigest()
        loss_key = (settings.style_loss,
                    settings.seed if settings.style_loss == "sliced" else None)
        key = (net_key, tuple(style.shape), tuple(settings.style_layers), loss_key, digest)
        stats = self._targets.get(key)
        if stats is None:
            stats = self._targets.put(key, style_statistics(net, style, settings))
            self.target_misses += 1
        else:
            self.target_hits += 1
        return stats
