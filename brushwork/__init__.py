"""brushwork: neural style transfer (Gatys et al.) for people who make pictures."""

__version__ = "0.1.0"

from .allocator import reuse_freed_memory
from .engine import Cache, Interrupted, Iterate, Result, estimate, stylize
from .errors import BrushworkError
from .memory import Estimate
from .pyramid import count_steps
from .settings import Settings

__all__ = ["stylize", "estimate", "Estimate", "Cache", "Settings", "Result", "Iterate",
           "Interrupted", "BrushworkError", "count_steps", "reuse_freed_memory", "__version__"]
