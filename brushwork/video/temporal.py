"""The temporal terms of Ruder et al. (2016): keep a frame's painting close to the earlier
frames' paintings carried along the optical flow, wherever the flow can be trusted.

``L_temporal(x, w, c) = (1/D) sum_k c_k (x_k - w_k)^2`` with D = C * H * W, w an earlier
painting warped to this frame and c its reliability (brushwork.video.flow).  Long-term
terms compare with frames further back, weighted so that each pixel counts once, from
the nearest earlier frame where it is reliable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from brushwork.video.deps import need
from brushwork.video.flow import Motion, motion, warp


def temporal_loss(x: torch.Tensor, warped: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(1/D) sum c (x - warped)^2``: x and warped (1, C, H, W), weights (1, 1, H, W)."""
    return (weights * (x - warped).pow(2)).sum() / x.numel()


def long_term_weights(weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The paper's long-term weights from per-frame reliabilities, nearest frame first:
    ``c_j' = max(c_j - sum_{k nearer than j} c_k, 0)``, so a pixel reliable in a nearer
    frame is not counted again from a farther one."""
    out: list[torch.Tensor] = []
    nearer = torch.zeros_like(weights[0]) if weights else None
    for c in weights:
        assert nearer is not None
        out.append((c - nearer).clamp(min=0))
        nearer = nearer + c
    return out


@dataclass
class Earlier:
    """One earlier frame, as the temporal terms use it: its painting carried to this
    frame along the flow, and where that can be trusted."""

    back: int  # frames back
    warped: torch.Tensor  # (1, 3, H, W), 0..255
    weights: torch.Tensor  # (1, 1, H, W), 0..1
    flow: torch.Tensor | None = None  # (1, 2, H, W), this frame back to the earlier one


def carry(frame: np.ndarray, earlier: np.ndarray, painting: torch.Tensor, back: int,
          guess: torch.Tensor | None = None) -> Earlier:
    """``painting`` of the grey frame ``earlier`` carried to the grey frame ``frame``;
    ``guess``: the flow expected (:func:`brushwork.video.flow.motion`)."""
    return carried(painting, motion(frame, earlier, guess), back)


def carried(painting: torch.Tensor, m: Motion, back: int) -> Earlier:
    """``painting`` of the frame ``back`` frames earlier, carried along ``m``."""
    return Earlier(back, warp(painting, m.backward), m.weights, m.backward)


# The narrowest new part of a frame painted as a region of its own, as a share of the
# frame's short side.  A region matched to the painting's Gram matrices on its own must
# hold all of the painting's colours and strokes; a sliver (the strip an object uncovers
# as it moves) cannot, and crammed with them it shows as a blotch.  Slivers are painted
# with the rest of the frame.
FRESH_MIN_WIDTH = 1 / 8


class TemporalTerms:
    """The temporal terms of one frame: ``weight * sum_j L_temporal(x, w_j, c_j')`` over
    the earlier frames (nearest first, with long-term weights).  A callable for
    :func:`brushwork.stylize`'s ``terms``: picture -> {"temporal": term}.  Its targets are
    resized (area) to a picture of another size, a coarser scale's."""

    def __init__(self, earlier: Sequence[Earlier], weight: float) -> None:
        ordered = sorted(earlier, key=lambda e: e.back)
        self.weight = weight
        self.warped = [e.warped for e in ordered]
        self.weights = long_term_weights([e.weights for e in ordered])
        self._sized: dict[tuple[int, int], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def targets(self, size: tuple[int, int], device: torch.device
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The warped paintings and their weights at (H, W) ``size`` on ``device``."""
        if size not in self._sized:
            def fit(t: torch.Tensor) -> torch.Tensor:
                t = t.to(device)
                return t if t.shape[-2:] == size else F.interpolate(t, size=size, mode="area")
            self._sized[size] = ([fit(t) for t in self.warped], [fit(t) for t in self.weights])
        return self._sized[size]

    def fresh(self) -> torch.Tensor:
        """``(1, 1, H, W)`` in 0..1: the parts of this frame that no earlier frame's
        painting reaches reliably (1 - the long-term weights' sum) and that are wide
        enough to be painted as a region of their own (:func:`wide_parts`)."""
        new = 1 - torch.stack(self.weights).sum(dim=0).clamp(0, 1)
        return wide_parts(new, max(1, round(min(new.shape[-2:]) * FRESH_MIN_WIDTH / 2)))

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        warped, weights = self.targets((x.shape[-2], x.shape[-1]), x.device)
        total = x.new_zeros(())
        for w, c in zip(warped, weights, strict=True):
            total = total + temporal_loss(x, w, c)
        return {"temporal": self.weight * total}


def wide_parts(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """``mask`` ``(1, 1, H, W)`` without its parts narrower than a disc of ``radius``:
    a grey-level opening by that disc (OpenCV's), which keeps the outline and the soft
    edges of what is wider."""
    cv2 = need("cv2")
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    plane = np.ascontiguousarray(mask[0, 0].detach().cpu().numpy(), dtype=np.float32)
    opened = cv2.morphologyEx(plane, cv2.MORPH_OPEN, disc, borderType=cv2.BORDER_REPLICATE)
    return torch.from_numpy(opened)[None, None].to(mask)


def warped_start(photo: torch.Tensor, nearest: Earlier) -> torch.Tensor:
    """A frame's starting picture: the previous painting carried along the flow where it
    is reliable, the frame's photo where it is not.  The paper starts from the warped
    painting everywhere; in a disocclusion that holds whatever the flow dragged there
    (often a copy of the occluder), which a short run then leaves as a ghost."""
    c = nearest.weights.to(photo)
    return c * nearest.warped.to(photo) + (1 - c) * photo


def warping_error(paintings: Sequence[torch.Tensor], frames: Sequence[np.ndarray]) -> list[float]:
    """Flicker, per frame after the first: the mean squared difference (grey levels^2, over
    the three channels) between each painting and the previous painting carried to it
    along the flow of the grey ``frames``, over reliable pixels (weighted by c).  The
    flows are found as a video run finds them (each pair's guessed from the last)."""
    errors = []
    guess = None
    for t in range(1, len(paintings)):
        earlier = carry(frames[t], frames[t - 1], paintings[t - 1], 1, guess)
        guess = earlier.flow
        c = earlier.weights
        diff = (c * (paintings[t] - earlier.warped).pow(2)).sum() / (3 * c.sum().clamp(min=1))
        errors.append(float(diff))
    return errors
