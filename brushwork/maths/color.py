"""Colour control (Gatys et al., "Preserving Color in Neural Artistic Style Transfer", 2016).

Images are ``(B, 3, H, W)`` RGB tensors in 0..255.
"""

from __future__ import annotations

import torch

# RGB -> YIQ (NTSC); Y is the luminance, I and Q carry the colour.
_RGB_TO_YIQ = torch.tensor([
    [0.299, 0.587, 0.114],
    [0.595716, -0.274453, -0.321263],
    [0.211456, -0.522591, 0.311135],
])


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", matrix.to(image), image)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    return _apply(_RGB_TO_YIQ, image)


_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ.double()).float()


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return _apply(_YIQ_TO_RGB, image)


def luminance_transfer(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The stylised picture's luminance with the photo's colour (I and Q) channels."""
    y = rgb_to_yiq(stylized)[:, :1]
    iq = rgb_to_yiq(content)[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp(0, 255)


def _mean_cov(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = image.double().reshape(3, -1)  # (3, H*W)
    mean = pixels.mean(dim=1, keepdim=True)
    centred = pixels - mean
    cov = centred @ centred.T / pixels.shape[1]
    return mean, cov + 1e-5 * torch.eye(3, dtype=cov.dtype, device=cov.device)


def _sqrtm(cov: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp_min(1e-8).sqrt()
    if inverse:
        values = 1 / values
    return vectors @ torch.diag(values) @ vectors.T


def match_color(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Recolour ``source`` so its pixels' mean and covariance equal ``target``'s.

    The linear colour transfer of the paper above: ``x' = A (x - mu_s) + mu_t`` with
    ``A = Sigma_t^(1/2) Sigma_s^(-1/2)`` (symmetric square roots).  A single image each
    (batch of one); sizes may differ.
    """
    # float64 on the CPU: MPS has no float64, and this runs once per scale.
    src, tgt = source[0].detach().cpu(), target[0].detach().cpu()
    mu_s, cov_s = _mean_cov(src)
    mu_t, cov_t = _mean_cov(tgt)
    a = _sqrtm(cov_t) @ _sqrtm(cov_s, inverse=True)
    pixels = src.double().reshape(3, -1)
    out = a @ (pixels - mu_s) + mu_t
    return out.reshape(source.shape).to(source.dtype).clamp(0, 255).to(source.device)
