"""Keep freed memory in the process instead of giving it back to the system (glibc).

Every evaluation allocates and frees the same few hundred MB of activations and
gradients.  glibc's malloc serves blocks over 32 MB (and, with its default dynamic
threshold, many smaller ones) with a fresh ``mmap`` and returns them with ``munmap``
on free, so each evaluation faults every page of them in again, and the kernel zeroes
each page first.  What that costs, and what this setting buys, is measured by
``brushwork bench`` (its ``allocator_effect`` row; figures in docs/benchmarks.md).

:func:`reuse_freed_memory` asks malloc to serve everything from its heap and not to
trim it, so the second evaluation reuses the first one's pages.  The process keeps its
peak resident memory until it exits, which a stylize run, a demo, a sweep or the
benchmark do anyway; a long-running server (the studio) would hold its peak for good, so
the ``brushwork`` command sets it for those one-shot commands only.  It changes a
process-wide setting, so the library never calls it by itself; a program that embeds
brushwork can.

What a run keeps for many steps (L-BFGS's history and gradient, a checkpoint's copy of
the picture) is another matter: allocated between evaluations and freed steps later,
such blocks would sit in the heap between the evaluations' and cut it into holes that
the next evaluation's blocks do not fit, so the heap, which is never trimmed, grows past
the evaluation's own peak.  :func:`kept_empty` gives them a memory mapping each instead,
outside the heap, returned to the system as soon as they are freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import platform

import torch

# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# The largest value M_TRIM_THRESHOLD takes (a C int): free memory at the heap's top is
# returned only past 2 GB.
_NEVER_TRIM = 2 ** 31 - 1

_applied = False


def reuse_freed_memory() -> bool:
    """Serve large blocks from malloc's heap and keep it; True if it took effect.

    Only on Linux with glibc; elsewhere (macOS, Windows, musl) it does nothing and
    returns False.  Safe to call more than once.
    """
    global _applied
    if _applied:
        return True
    libc = _glibc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success and 0 on error.
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _NEVER_TRIM))
    return _applied


def kept_empty(like: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor of ``like``'s shape and dtype for memory kept across
    evaluations: on the CPU in an anonymous memory mapping of its own (module docstring),
    elsewhere ``torch.empty_like``."""
    if like.device.type != "cpu" or like.numel() == 0:
        return torch.empty_like(like, memory_format=torch.contiguous_format)
    block = mmap.mmap(-1, like.numel() * like.element_size())
    return torch.frombuffer(block, dtype=like.dtype, count=like.numel()).view(like.shape)


def kept_copy(t: torch.Tensor) -> torch.Tensor:
    """``t.clone()`` into :func:`kept_empty` memory."""
    return kept_empty(t).copy_(t)


def trim_heap() -> bool:
    """Give malloc's free pages back to the system now (``malloc_trim(0)``), so that what
    the process holds next shows in its resident set; True if it was done (glibc only)."""
    libc = _glibc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


def _glibc() -> ctypes.CDLL | None:
    """The C library, on Linux with glibc; None elsewhere or when it will not load."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None
