"""The ensemble bias-variance split and the LR-consistency projection (research/decompose.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mgsrgan.io.degradation import bicubic_downscale
from research.decompose import (bicubic_matrix, combination_mse, cubic, downscale, ensemble_split, gain_db, gram,
                                lr_projection, split_by_texture, stacking_weights, texture)


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8: a few low-frequency waves, no clipping, so PIL's 8-bit intermediate rounding stays small."""
    gen = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.zeros((h, w, 3))
    for c in range(3):
        for _ in range(3):
            fy, fx, phase = gen.uniform(0.5, 4, 2).tolist() + [gen.uniform(0, 6.3)]
            img[..., c] += np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)
    return np.round(128 + 30 * img).astype(np.uint8)


def test_cubic_kernel_shape():
    x = torch.tensor([0.0, 1.0, 2.0, 2.5, -1.0, 0.5], dtype=torch.float64)
    k = cubic(x)
    assert k[0] == 1 and k[1] == 0 and k[2] == 0 and k[3] == 0 and k[4] == 0
    assert k[5] == pytest.approx(0.5625)  # Keys a = -0.5 at 0.5: (1.5)(0.125) - (2.5)(0.25) + 1


@pytest.mark.parametrize("scale", [2, 4])
def test_bicubic_matrix_matches_pil(scale):
    hr = smooth_image(48, 64)
    ours = downscale(torch.from_numpy(hr).permute(2, 0, 1).double(), scale).permute(1, 2, 0).numpy()
    pil = bicubic_downscale(hr, scale).astype(np.float64)
    assert np.abs(np.round(ours) - pil).max() <= 1.0  # PIL rounds to 8 bits between its two passes
    assert np.abs(ours - pil).mean() < 0.35
    assert torch.allclose(bicubic_matrix(64, scale).sum(dim=1), torch.ones(64 // scale, dtype=torch.float64))


def test_bicubic_matrix_needs_multiple():
    with pytest.raises(ValueError, match="multiple of scale"):
        bicubic_matrix(33, 2)


def test_projection_is_consistent_and_minimal():
    gen = torch.Generator().manual_seed(0)
    truth = torch.rand(3, 32, 40, generator=gen, dtype=torch.float64)
    lr = downscale(truth, 2)
    guess = truth + 0.05 * torch.randn(3, 32, 40, generator=gen, dtype=torch.float64)
    projected = lr_projection(guess, lr, 2)
    assert torch.allclose(downscale(projected, 2), lr, atol=1e-10)
    # an orthogonal projection onto a set that holds the truth moves the guess closer to it
    assert (projected - truth).square().sum() < (guess - truth).square().sum()
    # and a consistent image is left as it is (idempotent)
    assert torch.allclose(lr_projection(projected, lr, 2), projected, atol=1e-10)


def test_ensemble_split_identity_and_limit():
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(256, 256, generator=gen, dtype=torch.float64) * 255
    bias = 2.0 * torch.randn(256, 256, generator=gen, dtype=torch.float64)
    k, sigma = 4, 3.0
    members = target + bias + sigma * torch.randn(k, 256, 256, generator=gen, dtype=torch.float64)
    split = ensemble_split(members, target)
    # the ambiguity decomposition is exact
    assert split["member_mse"] == pytest.approx(split["mean_mse"] + split["spread"], rel=1e-12)
    # the mean of infinitely many members keeps only the shared bias (4 = 2^2) ...
    assert split["limit_mse"] == pytest.approx(float(bias.square().mean()), rel=0.05)
    # ... and the member MSE is bias^2 + sigma^2
    assert split["member_mse"] == pytest.approx(float(bias.square().mean()) + sigma ** 2, rel=0.05)


def test_ensemble_split_clones_gain_nothing():
    target = torch.zeros(8, 8, dtype=torch.float64)
    members = torch.ones(3, 8, 8, dtype=torch.float64)
    split = ensemble_split(members, target)
    assert split["spread"] == 0 and split["limit_mse"] == split["mean_mse"] == 1.0
    with pytest.raises(ValueError, match="at least 2"):
        ensemble_split(members[:1], target)


def test_gain_db():
    assert gain_db(2.0, 1.0) == pytest.approx(3.0103, abs=1e-4)
    assert gain_db(1.0, 1.0) == 0.0


def test_texture_is_zero_on_flat_and_marks_an_edge():
    assert texture(torch.full((9, 12), 77.0), 5).abs().max() == 0
    step = torch.zeros(9, 12)
    step[:, 6:] = 40.0  # a vertical edge between columns 5 and 6
    tex = texture(step, 3)
    # the forward difference sits at column 5; the 3x3 box spreads it over columns 4..6, away from the top/bottom rows
    assert tex[4, 4:7].tolist() == pytest.approx([40 / 3] * 3)
    assert tex[:, :4].abs().max() == 0 and tex[:, 7:].abs().max() == 0
    with pytest.raises(ValueError, match="odd"):
        texture(step, 4)


def test_split_by_texture_puts_error_and_spread_where_they_are():
    h, w = 4, 8
    target = torch.zeros(h, w, dtype=torch.float64)
    feature = torch.arange(w, dtype=torch.float64).expand(h, w)  # textured to the right
    bias, d = 3.0, 4.0
    members = torch.zeros(2, h, w, dtype=torch.float64)
    # the right half: a shared bias 3 and a disagreement of +-4 (member error 9 + 16 = 25, spread 16)
    members[0, :, w // 2:] = bias + d
    members[1, :, w // 2:] = bias - d
    # columns 2..3: clones off by 1 (error 1, no spread); columns 0..1 exact
    members[:, :, 2:4] = 1.0
    bins = split_by_texture(members, target, feature, 4)
    assert [b["sse_share"] for b in bins] == pytest.approx([0, 8 / 408, 200 / 408, 200 / 408])
    assert [b["spread_share"] for b in bins] == pytest.approx([0, 0, 16 / 25, 16 / 25])
    # an ensemble_split over all pixels agrees with the bins' weighted spread
    whole = ensemble_split(members, target)
    assert whole["spread"] / whole["member_mse"] == pytest.approx(
        sum(b["sse_share"] * b["spread_share"] for b in bins))
    with pytest.raises(ValueError, match="at least 2"):
        split_by_texture(members[:1], target, feature, 4)


def test_stacking_finds_the_combination_that_cancels_errors():
    gen = torch.Generator().manual_seed(4)
    target = torch.rand(16, 16, generator=gen, dtype=torch.float64) * 255
    err = torch.randn(16, 16, generator=gen, dtype=torch.float64)
    # opposite errors of sizes 1 and 3: 0.75 x (t + e) + 0.25 x (t - 3e) = t exactly
    members = torch.stack([target + err, target - 3 * err])
    stats = gram(members, target)
    w = stacking_weights(stats)
    assert w.tolist() == pytest.approx([0.75, 0.25])
    assert combination_mse(stats, w) == pytest.approx(0.0, abs=1e-9)
    # the statistics give each member's own MSE, and add over images
    assert combination_mse(stats, torch.tensor([1.0, 0.0])) == pytest.approx(float(err.square().mean()))
    both = gram(torch.cat([members, members], dim=-1), torch.cat([target, target], dim=-1))
    twice = {key: stats[key] * 2 for key in stats}
    assert all(torch.allclose(torch.as_tensor(both[k]), torch.as_tensor(twice[k])) for k in stats)


def test_stacking_extrapolates_past_the_best_member_and_sums_to_one():
    gen = torch.Generator().manual_seed(5)
    target = torch.rand(16, 16, generator=gen, dtype=torch.float64) * 255
    bias = torch.randn(16, 16, generator=gen, dtype=torch.float64)
    # the better member has half the worse one's error, in the same direction: 2 x better - worse = target
    members = torch.stack([target + 2 * bias, target + bias])
    w = stacking_weights(gram(members, target))
    assert w.tolist() == pytest.approx([-1.0, 2.0])
    assert float(w.sum()) == pytest.approx(1.0)
