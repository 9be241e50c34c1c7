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

Texture-preserving mean (`texture_mean`; the GAN members' combination, strategy "texture"): P = the pixel-loss
ensemble estimates the conditional mean E[HR | LR]; each GAN member adds its own texture t_k = G_k - P on top. The
members were trained independently, so the parts of t_k they share are likely real and the rest is each one's own
draw; a weighted mean keeps the shared part but shrinks an independent part's variance by sum(w_k^2) (1/3 for three
equal weights): averaging GAN outputs blurs them toward P. The texture-preserving mean keeps the weighted mean and
rescales its high-frequency texture H = sum_k w_k h_k (h_k = t_k minus its local mean, so colour and the low
frequencies stay the weighted mean's) by s = sqrt(local mean of sum_k w_k h_k^2 / local mean of H^2), clamped to
[1, 1 / sqrt(sum w_k^2)]: s = 1 where the members agree, up to the full restoration where their texture is
independent. The variance-preserving blend of texture synthesis (Heitz and Neyret, HPG 2018), applied to the
members' texture around P. Measured on the 10 held-out images (weights/x2): ST-LPIPS-Alex 0.0111 against 0.0150
for the best member alone and 0.0167 for the perceptual-weights mean, at the members' PSNR (29.71 dB).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CONSENSUS_RADIUS = 3  # HR pixels: a 7x7 window, 147 samples per variance estimate (3 channels); small enough to
#                       localise an artefact, large enough that the estimate's relative noise is ~12% (sqrt(2/147),
#                       independent Gaussian errors)
EIGHT_BIT_LEVELS = 255.0  # [0, 1] image units -> 8-bit levels, the unit of both fusions' tau
# Texture energy (mean square, [0, 1] units) below which the members' mean counts as flat: the variance of 8-bit
# quantisation, (1/255)^2 / 12; finer texture than the output can store is not worth rescaling
TEXTURE_ENERGY_FLOOR = (1.0 / 255.0) ** 2 / 12.0


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


def texture_mean(pixel: torch.Tensor, stack: torch.Tensor, weights: torch.Tensor, *,
                 radius: int = CONSENSUS_RADIUS) -> torch.Tensor:
    """The texture-preserving mean of the GAN members (module docstring).

    pixel: (B, C, H, W) the pixel-loss ensemble's output P; stack: (K, B, C, H, W) the GAN members' outputs, both in
    [0, 1]; weights: (K,) summing to 1. radius: HR pixels of the local mean that splits texture from the low
    frequencies, and of the window the energies are averaged over. Returns (B, C, H, W), not clipped."""
    stack, pixel = stack.float(), pixel.float()
    w = weights.to(stack.dtype).view(-1, *([1] * (stack.dim() - 1)))
    texture = stack - pixel
    k, b, c, h, wd = texture.shape
    flat = texture.reshape(k * b, c, h, wd)
    high = (flat - local_mean(flat, radius)).reshape(k, b, c, h, wd)
    mixed = (w * high).sum(dim=0)  # (B, C, H, W): the weighted mean's texture
    members_energy = local_mean((w * high.square()).sum(dim=0).mean(dim=1, keepdim=True), radius)
    mixed_energy = local_mean(mixed.square().mean(dim=1, keepdim=True), radius)
    cap = float(1.0 / weights.double().square().sum().sqrt())  # full restoration of independent texture
    gain = (members_energy / mixed_energy.clamp_min(TEXTURE_ENERGY_FLOOR)).sqrt().clamp(1.0, cap)
    return pixel + (w * texture).sum(dim=0) + (gain - 1.0) * mixed
