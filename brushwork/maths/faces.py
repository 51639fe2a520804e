"""Faces kept: soft weight maps from face boxes, and how much they raise the terms.

A face detector (brushwork.io.faces) gives boxes as fractions of the photo, so one set
of boxes serves every pyramid scale.  Each box becomes an ellipse a little taller than
the box (a frontal-face box cuts the forehead and chin) with a feathered edge, so the
raised terms fade into the painting around the face instead of leaving a seam.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Box = tuple[float, float, float, float]  # (left, top, width, height), fractions of the photo

# Inside a face, the content loss is weighted 1 + CONTENT_RAISE and the structure loss
# gets STRUCTURE_RAISE added to --structure; chosen from the portraits in docs/structure.md.
CONTENT_RAISE = 300.0
STRUCTURE_RAISE = 3.0
# The ellipse's semi-axes relative to the box's half sides, and the feathered share of
# its radius.
WIDEN, HEIGHTEN, FEATHER = 1.0, 1.25, 0.35


def face_map(boxes: Sequence[Box], size: tuple[int, int], *, widen: float = WIDEN,
             heighten: float = HEIGHTEN, feather: float = FEATHER) -> torch.Tensor:
    """``(1, 1, rows, cols)`` in 0..1 for a picture of ``size`` (rows, cols): 1 inside
    each box's ellipse, falling smoothly to 0 over its outer ``feather`` of the radius."""
    rows, cols = size
    out = torch.zeros(1, 1, rows, cols)
    ys = (torch.arange(rows, dtype=torch.float32) + 0.5) / rows  # pixel centres, fractions
    xs = (torch.arange(cols, dtype=torch.float32) + 0.5) / cols
    for left, top, width, height in boxes:
        a, b = widen * width / 2, heighten * height / 2
        if a <= 0 or b <= 0:
            continue
        dy = ((ys - (top + height / 2)) / b).view(-1, 1)
        dx = ((xs - (left + width / 2)) / a).view(1, -1)
        r = (dx.pow(2) + dy.pow(2)).sqrt()
        t = ((1 - r) / feather).clamp(0, 1)
        out[0, 0] = torch.maximum(out[0, 0], t * t * (3 - 2 * t))  # smoothstep
    return out


def emphasis(faces: torch.Tensor, raise_by: float) -> torch.Tensor:
    """A per-position weight: 1 outside faces, ``1 + raise_by`` inside, soft between."""
    return 1.0 + raise_by * faces
