"""One knob from photo to painting: what ``strength`` turns, as pure functions.

Why the raw weights barely move the picture (docs/strength.md has the measurements):
the optimisation starts from the photo, and the style loss compares Gram matrices,
which ignore where things are.  The photo with the painting's texture laid over it
already matches them well, so L-BFGS settles there within its budget whatever α/β
is; with α = 0 the picture still keeps the photo's layout and most of its edges.
What does move it is where the optimisation starts and what it is told to keep:

* ``content_weight`` (α, with β fixed at 1e4): log-spaced, since the picture
  responds to its order of magnitude;
* ``min_size``, the coarsest pyramid scale: at 64 to 128 px relu5_1's receptive field
  covers most of the picture, so the painting's strokes and colour patches are laid
  out large, the way crowsonkb/style-transfer-pytorch starts at 128 px;
* ``photo_detail``: how much of the photo's fine detail (the band a finer scale
  adds) is carried into each finer scale.  1 keeps every edge of the photo; 0
  upsamples the coarse painting alone and lets the content loss bring back only
  what α asks for.

Each is interpolated between its two ends, log-linearly for the first two, so that
equal steps of strength give visibly equal steps in the picture (docs/strength.md).
The coarsest scale is in pixels, not a fraction of the output, so a strength lays
out its large forms alike at every size; a 256 px picture still comes out somewhat
more painted than a 512 px one at the same strength (docs/strength.md).
"""

from __future__ import annotations

import math
from typing import Any

# The default: broad strokes and the painting's colour patches, the subject readable.
DEFAULT_STRENGTH = 0.7
STYLE_WEIGHT = 1e4  # beta; strength turns alpha against it
# (value at strength 0, value at strength 1)
CONTENT_WEIGHT_RANGE = (3000.0, 0.003)
COARSEST_RANGE = (128.0, 64.0)
# Each style loss's factor, so that one strength (one beta against alpha) means a like
# balance of photo and painting whatever the statistic: the median over photo/painting
# pairs of the Gram loss's gradient norm at the photo over this loss's
# (docs/scripts/style_loss_scales.py; docs/style-losses.md).
STYLE_LOSS_SCALES: dict[str, float] = {"gram": 1.0, "w2": 1.1, "sliced": 325.0}
# What strength sets; giving one of these beside an explicit strength must agree.
KNOBS = ("content_weight", "style_weight", "min_size", "photo_detail")
# The defaults before strength existed: alpha 0.5, the pyramid from 160 px, and each
# finer scale starting from the photo plus the coarse scale's change.  The bench's
# time_to_quality and docs/scripts/strength.py's before/after use them.
PRE_STRENGTH_DEFAULTS: dict[str, Any] = {"content_weight": 0.5, "style_weight": 1e4,
                                         "min_size": 160, "photo_detail": 1.0}


def _log_lerp(ends: tuple[float, float], t: float) -> float:
    a, b = ends
    return math.exp(math.log(a) + (math.log(b) - math.log(a)) * t)


def content_weight(strength: float) -> float:
    """α at a 256 px long side, from 3000 (strength 0) down to 0.003 (strength 1)."""
    return _log_lerp(CONTENT_WEIGHT_RANGE, strength)


def coarsest_scale(strength: float) -> int:
    """The long side of the coarsest pyramid scale: 128 px (0) down to 64 px (1)."""
    return round(_log_lerp(COARSEST_RANGE, strength))


def photo_detail(strength: float) -> float:
    """The share of the photo's finer detail carried up each scale: 1 (0) to 0 (1)."""
    return round(1.0 - strength, 12)  # 0.3, not 0.30000000000000004, in the records


def knobs(strength: float) -> dict[str, float | int]:
    """The settings a strength stands for."""
    return {"content_weight": content_weight(strength), "style_weight": STYLE_WEIGHT,
            "min_size": coarsest_scale(strength), "photo_detail": photo_detail(strength)}
