"""brushwork: neural style transfer (Gatys et al.) for people who make pictures.

The public API: everything below is importable from ``brushwork`` itself, wherever in
the package it lives (docs/architecture.md has the map).
"""

from brushwork._version import __version__
from brushwork.engine import (
    Cache,
    Estimate,
    Interrupted,
    Iterate,
    Result,
    Settings,
    estimate,
    estimate_texture,
    stylize,
    texture,
)
from brushwork.engine.memory.allocator import reuse_freed_memory
from brushwork.engine.pyramid import count_steps
from brushwork.errors import BrushworkError
from brushwork.io.images import load_image, read_metadata, save_image

__all__ = ["stylize", "estimate", "texture", "estimate_texture", "Estimate", "Cache",
           "Settings", "Result", "Iterate", "Interrupted", "BrushworkError", "count_steps",
           "reuse_freed_memory",
           "load_image", "read_metadata", "save_image", "__version__"]
