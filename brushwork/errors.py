"""Exceptions raised at brushwork's boundary.

Every user mistake becomes a :class:`BrushworkError` whose message names the
argument and the bad value; the CLI prints it as one line and exits non-zero.
"""

from __future__ import annotations


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
