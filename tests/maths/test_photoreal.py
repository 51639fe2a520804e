"""The matting energy against Levin's matting Laplacian built by brute force, and the
guided filter against its definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brushwork.maths.photoreal import (
    MattingWindows,
    box_mean,
    filter_radius,
    guided_filter,
    matting_energy,
)


def levin_laplacian(image: np.ndarray, eps: float) -> np.ndarray:
    """Levin et al. 2008, eq. 12, window by window: ``image`` (H, W, 3) in 0..1 -> the
    (H*W, H*W) matting Laplacian over the 3x3 windows inside the picture."""
    h, w, _ = image.shape
    n = h * w
    lap = np.zeros((n, n))
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            idx = [(y + dy) * w + (x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
            colours = image.reshape(n, 3)[idx]  # (9, 3)
            mu = colours.mean(0)
            sigma = (colours - mu).T @ (colours - mu) / 9
            inv = np.linalg.inv(sigma + eps / 9 * np.eye(3))
            d = colours - mu
            lap[np.ix_(idx, idx)] += np.eye(9) - (1 + d @ inv @ d.T) / 9
    return lap


@pytest.mark.parametrize("eps", [1e-7, 1e-3])
def test_matting_energy_is_levins_quadratic_form(eps):
    rng = np.random.default_rng(3)
    photo = rng.random((6, 5, 3))
    picture = rng.random((6, 5, 2))  # any number of channels
    lap = levin_laplacian(photo, eps)
    want = sum(picture[..., c].ravel() @ lap @ picture[..., c].ravel() for c in range(2)) / 30
    as_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None] * 255  # noqa: E731
    got = matting_energy(as_tensor(picture), as_tensor(photo), eps=eps)
    assert want > 1e-3
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_the_gradient_is_twice_the_laplacian_times_the_picture():
    rng = np.random.default_rng(5)
    photo, picture = rng.random((6, 5, 3)), rng.random((6, 5, 1))
    lap = levin_laplacian(photo, 1e-4)
    v = torch.from_numpy(picture).permute(2, 0, 1)[None].mul(255).requires_grad_(True)
    energy = matting_energy(v, torch.from_numpy(photo).permute(2, 0, 1)[None] * 255, eps=1e-4)
    energy.backward()
    assert v.grad is not None
    want = 2 * lap @ picture[..., 0].ravel() / 30 / 255  # d/dV of (V/255)^T L (V/255) / n
    np.testing.assert_allclose(v.grad[0, 0].numpy().ravel(), want, rtol=1e-6, atol=1e-12)


def test_an_affine_recolouring_of_the_photo_has_no_energy_and_noise_has_much():
    g = torch.Generator().manual_seed(0)
    photo = torch.rand(1, 3, 20, 24, generator=g) * 255
    mix = torch.tensor([[0.5, 0.2, 0.1], [0.0, 0.9, 0.3], [0.2, 0.1, 0.4]])
    recoloured = torch.einsum("ij,bjhw->bihw", mix, photo) + 30
    windows = MattingWindows(photo)
    assert float(windows(recoloured)) < 1e-6
    noisy = recoloured + torch.rand(recoloured.shape, generator=g) * 40
    assert float(windows(noisy)) > 1e-3
    # float32 in, float32 out, with the same value.
    assert windows(noisy.float()).dtype == torch.float32


def test_box_mean_is_the_clipped_window_mean():
    t = torch.rand(1, 2, 7, 9, dtype=torch.float64)
    r = 2
    got = box_mean(t, r)
    for y in range(7):
        for x in range(9):
            window = t[..., max(0, y - r):y + r + 1, max(0, x - r):x + r + 1]
            torch.testing.assert_close(got[..., y, x], window.mean((-2, -1)))
    assert torch.allclose(box_mean(t, 50), t.mean((-2, -1), keepdim=True).expand_as(t))


def test_the_guided_filter_keeps_a_function_of_the_photo_and_flattens_noise():
    g = torch.Generator().manual_seed(1)
    photo = torch.rand(1, 3, 30, 40, generator=g) * 255
    affine = 0.6 * photo[:, :1] + 0.3 * photo[:, 2:] + 20
    kept = guided_filter(affine, photo, radius=3, eps=1e-6)
    assert float((kept - affine).abs().max()) < 0.05
    noise = torch.rand(1, 3, 30, 40, generator=g) * 255  # unrelated to the photo
    smoothed = guided_filter(noise, photo, radius=4)
    assert float(smoothed.std()) < 0.5 * float(noise.std())
    # The filter's output is close to locally affine in the photo: far less energy.
    assert float(matting_energy(smoothed, photo)) < 0.1 * float(matting_energy(noise, photo))


def test_the_filter_radius_follows_the_picture_size():
    assert filter_radius(600, 800) == 35
    assert filter_radius(256, 192) == 11
    assert filter_radius(10, 5) == 1


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="at least 3x3"):
        matting_energy(torch.zeros(1, 3, 2, 8), torch.zeros(1, 3, 2, 8))
    with pytest.raises(ValueError, match="differ in size"):
        matting_energy(torch.zeros(1, 3, 5, 8), torch.zeros(1, 3, 5, 9))
    with pytest.raises(ValueError, match="picture's size"):
        guided_filter(torch.zeros(1, 3, 5, 8), torch.zeros(1, 1, 5, 8))
