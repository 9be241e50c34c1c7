"""How much an ensemble of K members can gain, and where the members' error lies: pure tensor maths.

Bias-variance split of a mean of members (an identity, Krogh and Vedelsby 1995, "ambiguity decomposition"): per
pixel, the members' mean squared error = the ensemble mean's squared error + the members' spread (population
variance around their mean). So the mean gains exactly the spread over the average member, and no more. If the
members are independent draws around one shared function (the same recipe, other seeds), E[MSE of a K-mean] =
bias^2 + sigma^2 / K, with sigma^2 estimated without bias by K/(K-1) x the spread: the MSE of the mean of infinitely
many such members is MSE_mean - sigma^2 / K. That bounds the gain any number of members of this kind can bring.

LR consistency: the protocol's LR is the HR downscaled by PIL's antialiased bicubic (mgsrgan.io.degradation), a
linear map D = A_h (.) A_w^T per channel. The part of an SR image's error that D keeps is visible in the LR: the
orthogonal projection x + A_h^+ (lr - D x) A_w^+T (A^+ = A^T (A A^T)^-1) removes it, moving x the least distance
to an image whose downscale is the LR (the consistency-enforcing projection of Bahat and Michaeli, CVPR 2020).

Where the error lies: `texture` ranks pixels by the local gradient of the (upscaled) LR, which the members see, and
`split_by_texture` splits the member error and the spread over its quantiles. If the error sits where the texture
is and the members agree there at least as much as elsewhere, routing pixels to specialists (ClassSR, Kong et al., CVPR
2021) cannot make members that differ at equal accuracy: a texture specialist is just a better member.

Stacking (Breiman 1996, "Stacked regressions"): the weights of a linear combination of the members, summing to 1
but free in sign, fitted by least squares on held-out images. It is the best any global weighting can do there,
and with weights outside [0, 1] it can extrapolate from the weaker members past the best one.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BICUBIC_A = -0.5  # PIL's bicubic kernel parameter (Keys 1981 with a = -0.5; PIL Resample.c, bicubic_filter)
BICUBIC_SUPPORT = 2.0  # the cubic kernel is 0 beyond |x| = 2 input pixels (stretched by the scale when shrinking)


def cubic(x: torch.Tensor, a: float = BICUBIC_A) -> torch.Tensor:
    """Keys' cubic convolution kernel at x (any shape): 1 at 0, 0 at the integers, 0 for |x| >= 2."""
    x = x.abs()
    inner = (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
    outer = a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
    return torch.where(x < 1, inner, torch.where(x < BICUBIC_SUPPORT, outer, torch.zeros_like(x)))


def bicubic_matrix(n_hr: int, scale: int) -> torch.Tensor:
    """(n_hr // scale, n_hr) float64: PIL's antialiased bicubic downscale along one axis as a matrix.

    Output sample j sits at HR coordinate (j + 0.5) * scale; the kernel is stretched by the scale (antialiasing);
    taps past the border are dropped and each row renormalised to sum 1, as PIL does. Within 1 level of PIL on
    smooth images (PIL also rounds to 8 bits between its horizontal and vertical passes)."""
    if n_hr % scale:
        raise ValueError(f"size {n_hr} is not a multiple of scale {scale}; modcrop first")
    j = torch.arange(n_hr // scale, dtype=torch.float64)[:, None]
    i = torch.arange(n_hr, dtype=torch.float64)[None, :]
    weights = cubic((i + 0.5 - (j + 0.5) * scale) / scale)
    return weights / weights.sum(dim=1, keepdim=True)


def downscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(..., H, W) -> (..., H/scale, W/scale) float64 by bicubic_matrix along both axes (unrounded)."""
    a_h, a_w = bicubic_matrix(x.shape[-2], scale), bicubic_matrix(x.shape[-1], scale)
    return a_h @ x.double() @ a_w.T


def lr_projection(sr: torch.Tensor, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """(..., H, W) SR and (..., H/scale, W/scale) LR -> (..., H, W) float64: the nearest image (least squares) whose
    `downscale` is exactly lr (module docstring)."""
    a_h, a_w = bicubic_matrix(sr.shape[-2], scale), bicubic_matrix(sr.shape[-1], scale)
    pinv_h = a_h.T @ torch.linalg.inv(a_h @ a_h.T)
    pinv_w = a_w.T @ torch.linalg.inv(a_w @ a_w.T)
    residual = lr.double() - a_h @ sr.double() @ a_w.T
    return sr.double() + pinv_h @ residual @ pinv_w.T


def ensemble_split(members: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """members (K, ...) and target (...) in one unit (e.g. Y in 8-bit levels), K >= 2 -> mean squared errors:

    member_mse   the average member's MSE (mean over members and pixels)
    mean_mse     the MSE of the members' mean
    spread       the mean population variance of the members per pixel: member_mse - mean_mse, exactly
    limit_mse    mean_mse - spread / (K - 1): the MSE of the mean of infinitely many members drawn alike
    """
    k = members.shape[0]
    if k < 2:
        raise ValueError("an ensemble split needs at least 2 members")
    members, target = members.double(), target.double()
    mean = members.mean(dim=0)
    spread = float(members.var(dim=0, correction=0).mean())
    mean_mse = float((mean - target).square().mean())
    return {"member_mse": float((members - target).square().mean()), "mean_mse": mean_mse, "spread": spread,
            "limit_mse": mean_mse - spread / (k - 1)}  # sigma^2 / K with sigma^2 = K / (K - 1) x spread


def gain_db(mse_from: float, mse_to: float) -> float:
    """The PSNR gain, in dB, of going from MSE mse_from to mse_to."""
    return 10.0 * math.log10(mse_from / mse_to)


def texture(y: torch.Tensor, window: int) -> torch.Tensor:
    """(H, W) image (e.g. Y of the bicubic-upscaled LR) -> (H, W) float64: |dI/dx| + |dI/dy| (forward differences,
    0 past the last row/column) averaged over a window x window box (window odd, zero padded)."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    y = y.double()
    grad = torch.zeros_like(y)
    grad[:, :-1] += (y[:, 1:] - y[:, :-1]).abs()
    grad[:-1, :] += (y[1:, :] - y[:-1, :]).abs()
    return F.avg_pool2d(grad[None, None], window, stride=1, padding=window // 2, count_include_pad=True)[0, 0]


def split_by_texture(members: torch.Tensor, target: torch.Tensor, feature: torch.Tensor,
                     bins: int) -> list[dict[str, float]]:
    """members (K, H, W), target and feature (H, W) -> per quantile bin of `feature` (equal pixel counts, lowest
    first; ties by position): sse_share, the bin's share of the average member's squared error (sums to 1), and
    spread_share, the members' spread / the average member's MSE inside the bin (see ensemble_split)."""
    if members.shape[0] < 2:
        raise ValueError("a split needs at least 2 members")
    order = torch.argsort(feature.reshape(-1), stable=True)
    member_err = (members.double() - target.double()).square().mean(dim=0).reshape(-1)[order]  # average member
    spread = members.double().var(dim=0, correction=0).reshape(-1)[order]
    total = float(member_err.sum())
    out = []
    for chunk_err, chunk_spread in zip(member_err.tensor_split(bins), spread.tensor_split(bins)):
        member_sse = float(chunk_err.sum())
        out.append({"sse_share": member_sse / total if total else 0.0,
                    "spread_share": float(chunk_spread.sum()) / member_sse if member_sse else 0.0})
    return out


def gram(members: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor | int]:
    """members (K, ...) and target (...) -> the sufficient statistics of every linear combination's squared error:
    g = A^T A (K, K), c = A^T b (K,), d = b^T b, n pixels (A: (n, K), b: (n,)), float64. They add over images."""
    a = members.double().reshape(members.shape[0], -1)
    b = target.double().reshape(-1)
    return {"g": a @ a.T, "c": a @ b, "d": b @ b, "n": b.numel()}


def combination_mse(stats: dict, weights: torch.Tensor) -> float:
    """MSE of sum_k weights[k] * member k, from `gram` statistics: (w^T g w - 2 w^T c + d) / n."""
    w = weights.double()
    return float((w @ stats["g"] @ w - 2 * w @ stats["c"] + stats["d"]) / stats["n"])


def stacking_weights(stats: dict) -> torch.Tensor:
    """(K,) float64 weights summing to 1 that minimise `combination_mse` (the constrained least squares in closed
    form: w = G^-1 (c - mu 1), mu chosen so that the weights sum to 1)."""
    ones = torch.ones(stats["c"].shape[0], dtype=torch.float64)
    g_inv_c = torch.linalg.solve(stats["g"], stats["c"])
    g_inv_1 = torch.linalg.solve(stats["g"], ones)
    mu = (g_inv_c.sum() - 1) / g_inv_1.sum()
    return g_inv_c - mu * g_inv_1
