"""The engine: Gatys et al.'s optimisation and everything it needs to run well, for the
features, the studio and the commands above it (see docs/architecture.md).

* ``painter``    :func:`stylize` and :func:`estimate`: the run, coarse to fine
* ``texture``    :func:`texture` and :func:`estimate_texture`: the style alone, from noise
* ``settings``   :class:`Settings`, the one schema of options (CLI, API, studio, batch)
* ``result``     what a run hands back: :class:`Iterate`, :class:`Result`, :class:`Interrupted`
* ``network``    the frozen VGG feature extractor
* ``objective``  the loss a scale minimises (content, style, TV, extra terms)
* ``tiling``     the same objective evaluated tile by tile, exactly
* ``optimise``   one scale's optimisation (L-BFGS, Adam, SGD); ``lbfgs`` the L-BFGS itself
* ``pyramid``    the coarse-to-fine schedule; ``stopping`` when a scale has converged
* ``cache``      networks and style targets shared between runs
* ``device``     choosing CPU, CUDA or MPS
* ``memory``     what a run will cost, and the plan that fits a memory budget

Within the engine, modules import each other by their own paths; the names below are
what the layers above use.
"""

from brushwork.engine.cache import Cache
from brushwork.engine.device import resolve_device
from brushwork.engine.memory.forecast import Estimate
from brushwork.engine.painter import ImageInput, estimate, stylize
from brushwork.engine.result import Interrupted, Iterate, Result
from brushwork.engine.settings import Settings, option_specs
from brushwork.engine.texture import estimate_texture, texture

__all__ = ["stylize", "estimate", "texture", "estimate_texture", "Estimate", "Cache",
           "Settings", "option_specs", "Result", "Iterate", "Interrupted", "ImageInput",
           "resolve_device"]
