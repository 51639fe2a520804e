"""Textures: Gatys, Ecker and Bethge's texture synthesis ("Texture Synthesis Using
Convolutional Neural Networks", 2015), the style terms alone from noise.

A texture is a run of :func:`brushwork.engine.painter.stylize` with no photo: its content
weight is 0, it starts from seeded noise, and the canvas it paints is a blank picture of
the size asked for.  So it has everything a painting has, the coarse-to-fine pyramid,
L-BFGS, tiles within a memory budget (print size), several styles blended, a checkpoint,
and with ``tileable`` a picture that repeats with no seam (wallpapers, materials).
Departure from the 2015 paper: it started from noise at the full size with no pyramid;
here the coarse scales lay out the large forms first, as for a painting.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from PIL import Image

from brushwork.engine.cache import Cache
from brushwork.engine.memory.forecast import Estimate
from brushwork.engine.painter import Callback, ImageInput, Log, estimate_size, stylize
from brushwork.engine.result import Interrupted, Result
from brushwork.engine.settings import Settings
from brushwork.errors import BrushworkError
from brushwork.io import checkpoint as checkpoints
from brushwork.io.images import MIN_SIDE

# The options that speak of a photo, which a texture has not.
PHOTO_OPTIONS = ("strength", "content_weight", "size_invariant", "content_layers",
                 "content_norm", "photo_detail", "preserve_colors", "style_masks",
                 "region_map", "region_colors", "mask_mode", "structure", "keep_faces",
                 "photoreal")
Size = int | tuple[int, int]


def texture(style: ImageInput | Sequence[ImageInput], size: Size = 512, *,
            callback: Callback | None = None, log: Log | None = None,
            cache: Cache | None = None, checkpoint: str | os.PathLike[str] | None = None,
            checkpoint_every: float = checkpoints.EVERY, resume: bool = False,
            **options: Any) -> Result:
    """A texture in the style of ``style`` (one painting or several, blended by
    ``style_weights``), ``size`` pixels: a long side (square) or ``(width, height)``.

    ``options``: the fields of :class:`~brushwork.engine.settings.Settings` but ``size``
    and those of a photo (:data:`PHOTO_OPTIONS`); ``init`` is ``"noise"`` (the default)
    or a picture to start from; ``seed`` makes it reproducible.  ``callback``, ``log``,
    ``cache``, ``checkpoint``, ``checkpoint_every`` and ``resume`` are :func:`stylize`'s.
    With ``tileable=True`` each side is rounded to a multiple of 16 px.
    """
    canvas, run_options = _texture_options(size, options, "texture")
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    try:
        result = stylize(canvas, styles, callback=callback, log=log, cache=cache,
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                         resume=resume, **run_options)
    except Interrupted as stop:
        _describe(stop.result, canvas)
        raise
    _describe(result, canvas)
    return result


def estimate_texture(size: Size = 512, *, log: Log | None = None,
                     cache: Cache | None = None, measure: bool = True,
                     **options: Any) -> Estimate:
    """What :func:`texture` with the same size and options would need: its peak memory,
    its time on this device and its plan (brushwork.engine.painter.estimate_size); no
    picture is read, since a texture's plan depends only on its size."""
    canvas, run_options = _texture_options(size, options, "estimate_texture")
    return estimate_size(canvas.size, log=log, cache=cache, measure=measure, **run_options)


def texture_size(size: Any) -> tuple[int, int]:
    """``size`` as ``(width, height)``: an int is a square's side."""
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
        raise BrushworkError(f"a texture's size must be a number of pixels or (width, "
                             f"height), not {size!r}")
    w, h = pair
    if min(w, h) < MIN_SIDE:
        raise BrushworkError(f"a texture must be at least {MIN_SIDE} px a side, not {w}x{h}")
    return w, h


def _texture_options(size: Any, options: dict[str, Any], caller: str
                     ) -> tuple[Image.Image, dict[str, Any]]:
    """The blank canvas of a texture and the options of the run that paints it."""
    # False, 0 and "off" ask for nothing a photo would give (keep_faces=False,
    # structure=0, photoreal="off").
    given = [name for name in PHOTO_OPTIONS if options.get(name) not in (None, False, "off")]
    if given:
        raise BrushworkError(f"a texture has no photo, so {caller} takes no "
                             f"{', '.join(given)}")
    if options.get("init") == "content":
        raise BrushworkError("a texture has no photo to start from: init must be 'noise' "
                             "or a picture")
    w, h = texture_size(size)
    run = {**options, "size": max(w, h), "content_weight": 0.0,
           "init": options.get("init", "noise")}
    limit = Settings.from_options(run).max_pixels
    if w * h > limit:
        raise BrushworkError(f"a {w}x{h} texture has more than max_pixels ({limit}) pixels")
    # The canvas only gives the run its size: with no content weight, its pixels are
    # never a target; mid-grey, so the pyramid's carried-up photo detail is nil.
    return Image.new("RGB", (w, h), (128, 128, 128)), run


def _describe(result: Result, canvas: Image.Image) -> None:
    """Record the texture's inputs (its styles and size), not the blank canvas."""
    result.inputs = {"texture": list(canvas.size), "style": result.inputs["style"]}
