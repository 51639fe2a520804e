"""reuse_freed_memory: a freed block's pages are reused, not faulted in again."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from brushwork.allocator import reuse_freed_memory

# Allocates and frees a 64 MB tensor seven times and prints the median page faults of
# the last five; a fresh interpreter each time, since the setting is process-wide.
SCRIPT = """
import resource, sys, torch
from brushwork.allocator import reuse_freed_memory
if sys.argv[1] == "on":
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


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="a glibc malloc setting")
def test_freed_blocks_are_reused_without_page_faults():
    # 64 MB is 16,384 pages of 4 KB: without the setting each comes back by a fault.
    assert faults("off") > 10_000
    assert faults("on") < 1_000


def test_a_second_call_is_harmless():
    code = ("from brushwork.allocator import reuse_freed_memory as r; "
            "print(r() == r())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
