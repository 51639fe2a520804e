"""Exceptions raised at brushwork's boundary.

Every user mistake becomes a :class:`BrushworkError` whose message names the
argument and the bad value; the CLI prints it as one line and exits non-zero.
Running out of memory is recognised here too (:func:`out_of_memory`), whichever
allocator said so, so the CLI and the studio word it the same way.
"""

from __future__ import annotations

import re

GiB = 1024**3

# Exit statuses of the ``brushwork`` command, one table for every subcommand.
EXIT_ERROR = 1  # a BrushworkError (a user's mistake, or memory ran out); also a batch with failures
EXIT_USAGE = 2  # the command line itself is wrong (argparse's convention)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)
# What the CLI suggests; the studio, whose users set no memory budget, words its own.
CLI_MEMORY_ADVICE = ("try a smaller --size, a --max-memory below what is free (the scales "
                     "that need it are then painted in tiles), or --tile-size")


class BrushworkError(ValueError):
    """A problem with what the user asked for (bad file, bad option, bad weights)."""


class ImageError(BrushworkError):
    """An input image is missing, unreadable, not an image, too small or too large."""


class WeightsError(BrushworkError):
    """A weights file is missing, corrupt, mismatched, or cannot be fetched."""


class DivergedError(BrushworkError):
    """The optimisation produced a NaN or exploding loss."""


class OutputError(BrushworkError):
    """The output path exists (without force) or cannot be written."""


class OutOfMemory(BrushworkError):
    """The run asked for more memory (RAM or the GPU's) than the machine had."""


# The allocators' own words: PyTorch's CPU allocator ("DefaultCPUAllocator: can't
# allocate memory" / "not enough memory"), CUDA's and MPS's ("... out of memory"),
# and the C library's errno 12 ("Cannot allocate memory").
_OOM_TEXT = re.compile(r"out of memory|can't allocate memory|not enough memory|"
                       r"cannot allocate memory|failed to allocate", re.IGNORECASE)
_BYTES = re.compile(r"allocate (\d+) bytes", re.IGNORECASE)
_SIZED = re.compile(r"tried to allocate (\d+(?:\.\d+)?) ?([KMGT]i?B)", re.IGNORECASE)
_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def out_of_memory(exc: BaseException,
                  advice: str = CLI_MEMORY_ADVICE) -> OutOfMemory | None:
    """An :class:`OutOfMemory` with one line for ``exc`` if it means memory ran out, else
    None.  The line says how much was asked for when the allocator said, and ``advice``."""
    text = str(exc)
    if not isinstance(exc, MemoryError) and not (
            isinstance(exc, RuntimeError) and _OOM_TEXT.search(text)):
        return None
    where = "on the GPU" if re.search(r"cuda|mps|gpu", text, re.IGNORECASE) else "in RAM"
    asked = _asked_bytes(text)
    amount = f" (it asked for {asked / GiB:.2f} GiB more {where})" if asked else f" {where}"
    return OutOfMemory(f"out of memory{amount}; {advice}")


def _asked_bytes(text: str) -> float | None:
    if (found := _BYTES.search(text)) is not None:
        return float(found.group(1))
    if (sized := _SIZED.search(text)) is not None:
        return float(sized.group(1)) * _UNITS[sized.group(2)[0].lower()]
    return None
