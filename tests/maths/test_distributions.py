"""W2 between Gaussian fits and sliced Wasserstein, on hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from brushwork.maths.distributions import (
    GaussianTarget,
    gaussian_fit,
    guided_moments,
    guided_w2,
    mixture_sorted,
    moment_matrix,
    random_directions,
    resample_sorted,
    sliced_loss,
    sorted_projections,
    sqrtm_newton_schulz,
    trace_sqrtm,
    w2_squared,
)

D = torch.float64


def moments_of(mean: list[float], cov: torch.Tensor) -> torch.Tensor:
    """The moment matrix per position of a Gaussian: [[C + mu mu^T, mu], [mu^T, 1]]."""
    mu = torch.tensor(mean, dtype=D)
    top = torch.cat([cov + torch.outer(mu, mu), mu[:, None]], dim=1)
    return torch.cat([top, torch.cat([mu, torch.ones(1, dtype=D)])[None]], dim=0)


def spd(n: int, seed: int) -> torch.Tensor:
    x = torch.randn(n, n, dtype=D, generator=torch.Generator().manual_seed(seed))
    return x @ x.T / n + 0.5 * torch.eye(n, dtype=D)


def test_w2_of_diagonal_gaussians_is_the_closed_form():
    # W2^2 = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2 for diagonal covariances.
    a, b = torch.tensor([4.0, 1.0, 9.0], dtype=D), torch.tensor([1.0, 16.0, 9.0], dtype=D)
    x = moments_of([1.0, 2.0, 0.0], torch.diag(a))
    t = GaussianTarget.fit(moments_of([0.0, 0.0, 3.0], torch.diag(b)))
    want = (1 + 4 + 9) + (2 - 1) ** 2 + (1 - 4) ** 2 + 0
    assert float(w2_squared(x, t)) == pytest.approx(want, rel=1e-6)


def test_w2_is_zero_between_equal_gaussians_and_sees_only_the_mean_shift():
    cov = spd(5, 1)
    t = GaussianTarget.fit(moments_of([0.0] * 5, cov))
    assert abs(float(w2_squared(moments_of([0.0] * 5, cov), t))) < 1e-6
    shifted = moments_of([1.0, -2.0, 0.0, 0.0, 2.0], cov)
    assert float(w2_squared(shifted, t)) == pytest.approx(9.0, rel=1e-6)


def test_w2_of_sums_equals_w2_of_means():
    """A moment matrix of sums and the same per position fit one Gaussian."""
    cov = spd(4, 2)
    t = GaussianTarget.fit(moments_of([1.0, 0.0, 0.0, 1.0], spd(4, 3)))
    per_position = moments_of([0.5, 0.5, 0.0, 0.0], cov)
    assert float(w2_squared(per_position * 37, t)) == pytest.approx(
        float(w2_squared(per_position, t)), rel=1e-9)


def test_newton_schulz_root_and_inverse_root_match_the_eigendecomposition():
    a = spd(8, 4)
    root, inverse = sqrtm_newton_schulz(a, ridge=0.0)
    e, v = torch.linalg.eigh(a)
    torch.testing.assert_close(root, v @ torch.diag(e.sqrt()) @ v.T, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(inverse, v @ torch.diag(e.rsqrt()) @ v.T, rtol=1e-8, atol=1e-8)
    batch = torch.stack([a, spd(8, 5)])
    torch.testing.assert_close(sqrtm_newton_schulz(batch, ridge=0.0)[0][0], root)


def test_trace_sqrtm_gradient_is_half_the_inverse_root():
    a = spd(6, 6).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: trace_sqrtm((m + m.T) / 2), (a,))


def test_w2_gradient_by_gradcheck():
    t = GaussianTarget.fit(moments_of([0.3, -0.2, 0.1], spd(3, 7)))
    x = moments_of([1.0, 0.5, -1.0], spd(3, 8)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: w2_squared((m + m.T) / 2, t), (x,))


def test_moment_matrix_fits_the_features_mean_and_covariance():
    f = torch.randn(1, 4, 5, 6, dtype=D, generator=torch.Generator().manual_seed(9))
    mean, cov = gaussian_fit(moment_matrix(f))
    flat = f[0].flatten(1)
    torch.testing.assert_close(mean, flat.mean(1))
    torch.testing.assert_close(cov, torch.cov(flat, correction=0))
    assert float(moment_matrix(f)[-1, -1]) == 30


def test_guided_moments_weight_positions_by_the_mask():
    f = torch.randn(1, 3, 4, 4, dtype=D, generator=torch.Generator().manual_seed(10))
    left = torch.zeros(1, 1, 4, 4, dtype=D)
    left[..., :2] = 1
    roots = torch.cat([left, 1 - left, torch.full_like(left, 0.5).sqrt()])
    m = guided_moments(f, roots)
    torch.testing.assert_close(m[0], moment_matrix(f[..., :2]))
    torch.testing.assert_close(m[1], moment_matrix(f[..., 2:]))
    torch.testing.assert_close(m[2], moment_matrix(f) / 2)  # half of every position
    torch.testing.assert_close(m[0] + m[1], moment_matrix(f))


def test_guided_w2_weights_each_region_by_its_share_of_the_positions():
    t0 = moments_of([0.0, 0.0], spd(2, 11))
    t1 = moments_of([1.0, 1.0], spd(2, 12))
    x0, x1 = moments_of([2.0, 0.0], spd(2, 13)), moments_of([0.0, 0.0], spd(2, 12))
    target = GaussianTarget.fit(torch.stack([t0, t1]))
    got = guided_w2(torch.stack([x0 * 10, x1 * 30]), target, [10.0, 30.0], [1.0, 2.0], 40)
    want = (10 / 40 * w2_squared(x0, GaussianTarget.fit(t0))
            + 2 * 30 / 40 * w2_squared(x1, GaussianTarget.fit(t1)))
    assert float(got) == pytest.approx(float(want), rel=1e-9)
    assert float(guided_w2(torch.stack([x0, x1]), target, [0.0, 0.0], [1.0, 1.0], 40)) == 0


def test_sliced_loss_of_one_direction_by_hand():
    f = torch.tensor([3.0, 1.0, 2.0], dtype=D).reshape(1, 1, 1, 3)
    one = torch.ones(1, 1, dtype=D)
    target = torch.tensor([[0.0, 2.0, 4.0]], dtype=D)
    # sorted 1, 2, 3 against 0, 2, 4: (1 + 0 + 1) / 3.
    assert float(sliced_loss(f, one, target)) == pytest.approx(2 / 3)
    # Two directions: x and -x (sorted -3, -2, -1 against 0, 2, 4: (9 + 16 + 25) / 3).
    both = torch.tensor([[1.0, -1.0]], dtype=D)
    assert float(sliced_loss(f, both, target.expand(2, 3))) == pytest.approx(
        (2 + 50) / 6)


def test_sliced_loss_is_zero_for_any_order_of_the_same_values():
    g = torch.Generator().manual_seed(14)
    f = torch.randn(1, 5, 3, 4, generator=g)
    shuffled = f.flatten(2)[..., torch.randperm(12, generator=g)].reshape(1, 5, 3, 4)
    d = random_directions(5, 5, g)
    assert float(sliced_loss(shuffled, d, sorted_projections(f, d))) < 1e-10


def test_sliced_gradient_by_gradcheck():
    g = torch.Generator().manual_seed(15)
    f = torch.randn(1, 3, 2, 3, dtype=D, generator=g).requires_grad_(True)
    d = random_directions(3, 4, g).to(D)
    target = torch.randn(4, 6, dtype=D, generator=g).sort(dim=1).values
    assert torch.autograd.gradcheck(lambda x: sliced_loss(x, d, target), (f,))


def test_random_directions_are_unit_and_reproducible():
    a = random_directions(6, 4, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.norm(dim=0), torch.ones(4))
    torch.testing.assert_close(a, random_directions(6, 4, torch.Generator().manual_seed(3)))


def test_resampling_sorted_values_takes_evenly_spaced_quantiles():
    v = torch.tensor([[0.0, 10.0]])
    # quantiles 1/8, 3/8, 5/8, 7/8 of two samples at 1/4 and 3/4: clamped at the ends.
    torch.testing.assert_close(resample_sorted(v, 4), torch.tensor([[0.0, 2.5, 7.5, 10.0]]))
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    torch.testing.assert_close(resample_sorted(w, 3), torch.tensor([[1.5, 3.5, 5.5]]))
    assert resample_sorted(w, 6) is w


def test_a_mixture_takes_quantiles_in_proportion_to_the_blend():
    a, b = torch.tensor([[0.0, 0.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    torch.testing.assert_close(mixture_sorted([a, b], [0.75, 0.25]),
                               torch.tensor([[0.0, 0.0, 0.0, 1.0]]))
    assert mixture_sorted([a], [1.0]) is a
