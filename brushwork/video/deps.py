"""The video feature's own packages, PyAV (FFmpeg's libraries in its wheel) and OpenCV,
imported only when a video is painted, with one line saying how to install them."""

from __future__ import annotations

import importlib
from types import ModuleType

from brushwork.errors import BrushworkError

INSTALL = "pip install 'brushwork[video]'"
_PACKAGES = {"av": "PyAV", "cv2": "OpenCV (opencv-python-headless)"}


def need(module: str) -> ModuleType:
    """``import module``, or a BrushworkError naming the package and the install command."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BrushworkError(f"video needs {_PACKAGES[module]}, which is not installed: "
                             f"{INSTALL}") from None
