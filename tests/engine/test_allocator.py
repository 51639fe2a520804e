"""reuse_freed_memory: a freed block's pages are reused, not faulted in again."""

from __future__ import annotations

import platform
import subprocess
import sys
from typing import Any

import pytest
import torch

from brushwork.engine.memory import allocator
from brushwork.engine.memory.allocator import reuse_freed_memory

# Allocates and frees a 64 MB tensor seven times and prints the median page faults of
# the last five; a fresh interpreter each time, since the setting is process-wide.
# "on" sets reuse_freed_memory once, "twice" sets it twice.
SCRIPT = """
import resource, sys, torch
from brushwork.engine.memory.allocator import reuse_freed_memory
for _ in range({"off": 0, "on": 1, "twice": 2}[sys.argv[1]]):
    assert reuse_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):  # the heap grows to fit it
    torch.ones(16 * 2 ** 20)
counts = []
for _ in range(5):
    before = faults()
    torch.ones(16 * 2 ** 20)
    counts.append(faults() - before)
print(sorted(counts)[2])
"""

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="a glibc malloc setting")


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[-1])


@glibc_only
def test_freed_blocks_are_reused_without_page_faults():
    # 64 MB is 16,384 pages of 4 KB: without the setting each comes back by a fault.
    assert faults("off") > 10_000
    assert faults("on") < 1_000


@glibc_only
def test_a_second_call_keeps_the_effect():
    assert faults("twice") < 1_000


class FakeLibc:
    """Stands in for glibc: records each mallopt(param, value) and answers ``result``."""

    def __init__(self, result: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.result = result
        outer = self

        class Mallopt:
            argtypes: Any = None
            restype: Any = None

            def __call__(self, param: int, value: int) -> int:
                outer.calls.append((param, value))
                return outer.result

        self.mallopt = Mallopt()


@pytest.fixture
def fake_glibc(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator.platform, "system", lambda: "Linux")
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: "libc.so.6")
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    return libc


def test_it_turns_off_mmap_and_trimming(fake_glibc):
    assert reuse_freed_memory() is True
    # M_MMAP_MAX (-4) to 0: no block is mmapped; M_TRIM_THRESHOLD (-1) to the largest C int.
    assert fake_glibc.calls == [(-4, 0), (-1, 2 ** 31 - 1)]


def test_a_second_call_sets_nothing_again(fake_glibc):
    assert reuse_freed_memory() is True
    assert reuse_freed_memory() is True
    assert len(fake_glibc.calls) == 2


def test_a_refused_setting_reports_false_and_is_tried_again(fake_glibc):
    fake_glibc.result = 0  # mallopt's error return
    assert reuse_freed_memory() is False
    fake_glibc.result = 1
    assert reuse_freed_memory() is True


@pytest.mark.parametrize("system, libc", [("Darwin", ("", "")), ("Windows", ("", "")),
                                          ("Linux", ("musl", "1.2"))])
def test_elsewhere_it_does_nothing(fake_glibc, monkeypatch, system, libc):
    monkeypatch.setattr(allocator.platform, "system", lambda: system)
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: libc)
    assert reuse_freed_memory() is False
    assert fake_glibc.calls == []


def test_kept_memory_is_a_copy_in_its_own_mapping_and_goes_back_when_freed():
    from brushwork.engine.memory.allocator import kept_copy, kept_empty

    t = torch.arange(12, dtype=torch.float64).reshape(3, 4).t()  # not contiguous
    k = kept_copy(t)
    assert k.dtype == torch.float64 and k.shape == (4, 3) and torch.equal(k, t)
    assert k.data_ptr() != t.data_ptr() and k.is_contiguous()
    assert kept_empty(torch.empty(0)).numel() == 0
    if platform.system() != "Linux":
        return
    before = _rss()
    block = kept_empty(torch.empty(16 * 2 ** 20))  # 64 MB
    block.fill_(1.0)
    assert _rss() - before > 60 * 2 ** 20
    del block
    assert _rss() - before < 8 * 2 ** 20


def _rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")
