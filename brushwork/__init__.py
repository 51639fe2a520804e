"""brushwork: neural style transfer (Gatys et al.) for people who make pictures."""

__version__ = "0.1.0"

from .allocator import reuse_freed_memory  # noqa: E402
from .engine import Cache, Interrupted, Iterate, Result, stylize  # noqa: E402
from .errors import BrushworkError  # noqa: E402
from .pyramid import count_steps  # noqa: E402
from .settings import Settings  # noqa: E402

__all__ = ["stylize", "Cache", "Settings", "Result", "Iterate", "Interrupted", "BrushworkError",
           "count_steps", "reuse_freed_memory", "__version__"]
