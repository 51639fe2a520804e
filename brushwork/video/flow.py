"""Optical flow between two frames, warping a picture by a flow, and where a flow can be
trusted (Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos", 2016).

Flows are (1, 2, H, W) float32 tensors of (dx, dy) in pixels.  ``flow(a, b)`` maps each
pixel p of frame a to where it is in frame b: ``a(p) ~ b(p + flow(p))``; so the flow from
frame i back to an earlier frame fetches, for each pixel of frame i, what the earlier
frame (or its painting) holds there: :func:`warp`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from brushwork.video.deps import need

# The consistency check's constants, as in the paper.
OCCLUSION_SLACK = (0.01, 0.5)  # |w + w^|^2 > 0.01 (|w|^2 + |w^|^2) + 0.5
BOUNDARY_SLACK = (0.01, 0.002)  # |grad u|^2 + |grad v|^2 > 0.01 |w^|^2 + 0.002
# Their checker blurs the weights (sigma 0.8) after marking failures below zero, so that a
# failure spreads outwards and a reliable pixel next to one counts a little less.
SMOOTH_SIGMA = 0.8
# A guided flow is taken at a pixel only if what it fetches is at most this many grey
# levels further from the frame than what the unguided flow fetches (averaged with this
# blur): video compression alone moves pixels by a few levels.
PHOTOMETRIC_SLACK = 4.0
PHOTOMETRIC_SIGMA = 1.5


def grey(frame: np.ndarray) -> np.ndarray:
    """An RGB frame (H, W, 3) uint8 as the single 8-bit channel DIS works on."""
    cv2 = need("cv2")
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def optical_flow(a: np.ndarray, b: np.ndarray, guess: torch.Tensor | None = None) -> torch.Tensor:
    """The dense flow from grey frame ``a`` to grey frame ``b`` (same size), by OpenCV's
    DIS (Kroeger et al. 2016) at its medium preset, refined down to full resolution (the
    preset stops at half, which blurs a small frame's motion boundaries): (1, 2, H, W).

    ``guess``: a flow to start from instead of none.  DIS searches from its coarsest
    scale down, and from nothing it can miss a small object moving fast (its motion is
    lost in the coarse scales' averaging); started from the motion the object had a
    frame earlier, it keeps it."""
    cv2 = need("cv2")
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(0)
    start = None if guess is None else np.ascontiguousarray(
        guess[0].permute(1, 2, 0).numpy(), dtype=np.float32)
    flow = dis.calc(a, b, start)  # (H, W, 2); DIS refines ``start`` in place when given
    return torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1).unsqueeze(0)


@dataclass
class Motion:
    """How an earlier frame's content reaches frame i: the flow from frame i back to the
    earlier frame (what :func:`warp` uses) and where it can be trusted
    (:func:`reliability`)."""

    backward: torch.Tensor  # (1, 2, H, W)
    weights: torch.Tensor  # (1, 1, H, W), 0..1


def motion(frame: np.ndarray, earlier: np.ndarray, guess: torch.Tensor | None = None) -> Motion:
    """The :class:`Motion` from grey frame ``frame`` back to grey frame ``earlier``.

    With ``guess`` (the backward flow expected, such as the last frame pair's, scaled by
    how many frames back ``earlier`` is), the flows are also found starting from it (and
    from its opposite for the forward flow), and a pixel takes that candidate where it
    passes the forward-backward check better and fetches what the frame shows there
    about as well (:func:`photometric_error`).  Both flows started from one guess can
    agree with each other and both be wrong: where a moving object left, they carry it
    on, and only the frames' pixels tell.  A guess that fits nowhere (a scene cut, a
    change of direction) thus loses everywhere to the unguided flow.
    """
    backward = optical_flow(frame, earlier)
    weights = reliability(backward, optical_flow(earlier, frame))
    if guess is None:
        return Motion(backward, weights)
    guided = optical_flow(frame, earlier, guess)
    guided_weights = reliability(guided, optical_flow(earlier, frame, -guess))
    now, then = _grey_tensor(frame), _grey_tensor(earlier)
    better = (guided_weights > weights) & (
        photometric_error(now, then, guided)
        <= photometric_error(now, then, backward) + PHOTOMETRIC_SLACK)
    return Motion(torch.where(better, guided, backward), torch.where(better, guided_weights,
                                                                     weights))


def _grey_tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame).to(torch.float32)[None, None]


def photometric_error(frame: torch.Tensor, earlier: torch.Tensor,
                      backward: torch.Tensor) -> torch.Tensor:
    """How far the grey ``earlier`` frame fetched along ``backward`` is from ``frame``,
    ``(1, 1, H, W)`` grey levels, averaged over a few pixels around each (so a single
    noisy pixel does not decide)."""
    return _blur((warp(earlier, backward) - frame).abs(), PHOTOMETRIC_SIGMA)


def _grid(flow: torch.Tensor) -> torch.Tensor:
    """Where each pixel lands, ``p + flow(p)``, in grid_sample's -1..1 coordinates:
    (1, H, W, 2)."""
    _, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    x = (xs + flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    y = (ys + flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    return torch.stack([x, y], dim=-1)


def warp(picture: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``picture`` (N, C, H, W) moved by ``flow``: out(p) = picture(p + flow(p)),
    bilinear; points outside take the nearest border value (the check marks them
    unreliable)."""
    grid = _grid(flow).to(picture.dtype).expand(picture.shape[0], -1, -1, -1)
    return F.grid_sample(picture, grid, mode="bilinear", padding_mode="border",
                         align_corners=True)


def _outside(flow: torch.Tensor) -> torch.Tensor:
    """Pixels whose ``p + flow(p)`` leaves the frame: (1, 1, H, W) bool."""
    return (_grid(flow).abs() > 1).any(dim=-1).unsqueeze(1)


def _gradient_energy(flow: torch.Tensor) -> torch.Tensor:
    """|grad u|^2 + |grad v|^2 by central differences (the border repeated): (1, 1, H, W)."""
    padded = F.pad(flow, (1, 1, 1, 1), mode="replicate")
    dx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    dy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    return (dx.pow(2) + dy.pow(2)).sum(dim=1, keepdim=True)


def _blur(weights: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur of (1, 1, H, W), the border repeated."""
    radius = max(1, int(np.ceil(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=weights.dtype, device=weights.device)
    k = torch.exp(-t.pow(2) / (2 * sigma**2))
    k = k / k.sum()
    out = F.conv2d(F.pad(weights, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))


def reliability(backward: torch.Tensor, forward: torch.Tensor,
                smooth: float = SMOOTH_SIGMA) -> torch.Tensor:
    """Per-pixel weights c in 0..1 on frame i's grid for a warp from an earlier frame.

    ``backward``: the flow from frame i to the earlier frame (what :func:`warp` uses);
    ``forward``: the flow from the earlier frame to frame i.  c is 0 where the two
    disagree (a disocclusion: what frame i shows there was hidden or out of the earlier
    frame), at motion boundaries, and where the backward flow leaves the frame; 1
    elsewhere; blurred by ``smooth`` (0: not at all), as the authors' checker does.
    """
    there = warp(forward, backward)  # the forward flow at p + w^(p)
    a, b = OCCLUSION_SLACK
    mismatch = (backward + there).pow(2).sum(dim=1, keepdim=True)
    occluded = mismatch > a * (backward.pow(2).sum(1, keepdim=True)
                               + there.pow(2).sum(1, keepdim=True)) + b
    a, b = BOUNDARY_SLACK
    boundary = _gradient_energy(backward) > a * backward.pow(2).sum(1, keepdim=True) + b
    weights = torch.ones_like(mismatch)
    weights[boundary] = 0.0
    weights[occluded | _outside(backward)] = -1.0
    if smooth > 0:
        weights = _blur(weights, smooth)
    return weights.clamp(0, 1)
