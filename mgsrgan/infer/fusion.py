"""How the GAN side joins the pixel-loss ensemble P, pixel by pixel: pure tensor maths that Ensemble, the server and
the benchmarks share. G = the GAN side's output (one generator, or the combination of several).

Global blend (Blau & Michaeli, CVPR 2018): P + alpha * (G - P), one alpha for every pixel.

Adaptive fusion (`adaptive_blend`; reads the GAN members' disagreement): the GAN members were trained
independently, so where they agree their detail is likely real, and where they disagree it is likely hallucinated
or an artefact. Per output pixel, d = the GAN members' std and the GAN share is alpha * tau^2 / (tau^2 + d^2):
alpha where they agree, half of it at d = tau, toward P where they disagree. Measured on the shipped x2 members
(weights/x2/MODEL_CARD.md): no better than the global blend, because one GAN member barely learned texture, so
their disagreement marks where the others add detail, not where they err.

Guided fusion (`guided_blend`; reads the pixel-loss members' disagreement): where the pixel-loss members agree, the
LR image pins the HR one down (flat areas, clean edges) and GAN texture there can only be an artefact; where they
disagree, detail is missing that no pixel loss recovers, and that is where texture helps. Per output pixel, d = the
pixel-loss members' std and the GAN share is alpha * d^2 / (d^2 + tau^2): 0 where they agree, alpha/2 at d = tau,
alpha where they disagree by much more. The pixel-loss members are needed anyway for P, so the map costs nothing.
Measured on the 10 held-out validation images (weights/x2, alpha 1): tau 0.25 -> ST-LPIPS-Alex 0.0220 with a
grid-pattern amplitude of 0.044 (the HR's 0.051), where the global blend at that score carries ~0.053.

In both, d is in 8-bit levels, the mean over the 3 channels, averaged over a (2r+1)^2 window of the output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CONSENSUS_RADIUS = 3  # HR pixels: a 7x7 window, 147 samples per variance estimate (3 channels); small enough to
#                       localise an artefact, large enough that the estimate's relative noise is ~12% (sqrt(2/147),
#                       independent Gaussian errors)
EIGHT_BIT_LEVELS = 255.0  # [0, 1] image units -> 8-bit levels, the unit of both fusions' tau


def local_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, C, H, W) -> the same shape: the mean over each (2r+1)^2 window; border windows average real pixels only."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def member_spread(stack: torch.Tensor) -> torch.Tensor:
    """(K, B, 3, H, W) member outputs -> (B, 1, H, W): their per-pixel std (population form, 0 for K = 1), averaged
    over the channels; the images' units ([0, 1])."""
    return stack.std(dim=0, correction=0).mean(dim=1, keepdim=True)


def _levels(spread: torch.Tensor, radius: int) -> torch.Tensor:
    return local_mean(spread.float() * EIGHT_BIT_LEVELS, radius)


def adaptive_blend(pixel: torch.Tensor, gan: torch.Tensor, spread: torch.Tensor, *, alpha: float, tau: float,
                   radius: int = CONSENSUS_RADIUS) -> torch.Tensor:
    """P + w * (G - P) with w = alpha * tau^2 / (tau^2 + d^2) per pixel (module docstring).

    pixel, gan: (B, C, H, W) in [0, 1]; spread: (B, 1, H, W) std of the GAN members in [0, 1] units; tau in 8-bit
    levels, > 0."""
    levels = _levels(spread, radius)
    weight = alpha * tau * tau / (tau * tau + levels.square())
    return pixel + weight * (gan - pixel)


def guided_blend(pixel: torch.Tensor, gan: torch.Tensor, pixel_spread: torch.Tensor, *, alpha: float, tau: float,
                 radius: int = CONSENSUS_RADIUS) -> torch.Tensor:
    """P + w * (G - P) with w = alpha * d^2 / (d^2 + tau^2) per pixel (module docstring).

    pixel, gan: (B, C, H, W) in [0, 1]; pixel_spread: (B, 1, H, W) std of the pixel-loss members in [0, 1] units;
    tau in 8-bit levels, > 0."""
    squared = _levels(pixel_spread, radius).square()
    weight = alpha * squared / (squared + tau * tau)
    return pixel + weight * (gan - pixel)
