"""How the GAN side joins the pixel-loss ensemble P, pixel by pixel: pure tensor maths that Ensemble, the server and
the tools share. G = the GAN side's output (one generator, or the combination of several).

Global blend (Blau & Michaeli, CVPR 2018): P + alpha * (G - P), one alpha for every pixel.

Adaptive fusion (`adaptive_blend`; reads how the GAN members' texture agrees): the GAN members were trained
independently, so texture they share is likely real, and texture each one draws alone is likely hallucination or an
artefact. Per output pixel, with h_k = member k's texture around P (G_k - P minus its local mean), the coherence
c = local mean of |mean_k h_k|^2 / local mean of mean_k |h_k|^2 is 1 where their texture is the same and 1/K where it
is independent (it never exceeds 1: a mean's square is at most the mean of the squares); the GAN share is
alpha * min(1, c / c0): all of alpha where c >= c0, falling toward P as the members' texture parts ways (and P
where no member has texture at all: c = 0, so their common colour offset from P is dropped there too). Coherence,
not the amplitude of the members' disagreement: a large disagreement marks where texture is hard, not where a
member's texture is wrong. The model cards measure it against the global blend.

Guided fusion (`guided_blend`; reads the pixel-loss members' disagreement): where the pixel-loss members agree, the
LR image pins the HR one down (flat areas, clean edges) and GAN texture there can only be an artefact; where they
disagree, detail is missing that no pixel loss recovers, and that is where texture helps. Per output pixel, d = the
pixel-loss members' std and the GAN share is alpha * d^2 / (d^2 + tau^2): 0 where they agree, alpha/2 at d = tau,
alpha where they disagree by much more. The pixel-loss members are needed anyway for P, so the map costs nothing.
The model cards measure it against the global blend, tau by tau.

d is in 8-bit levels, the mean over the 3 channels, averaged over a (2r+1)^2 window of the output.

Texture-preserving mean (`texture_mean`; the GAN members' combination, strategy "texture"): P = the pixel-loss
ensemble estimates the conditional mean E[HR | LR]; each GAN member adds its own texture t_k = G_k - P on top. The
members were trained independently, so the parts of t_k they share are likely real and the rest is each one's own
draw; a weighted mean keeps the shared part but shrinks an independent part's variance by sum(w_k^2) (1/3 for three
equal weights): averaging GAN outputs blurs them toward P. The texture-preserving mean keeps the weighted mean and
rescales its high-frequency texture H = sum_k w_k h_k (h_k = t_k minus its local mean, so colour and the low
frequencies stay the weighted mean's) by s = sqrt(local mean of sum_k w_k h_k^2 / local mean of H^2), clamped to
[1, 1 / sqrt(sum w_k^2)]: s = 1 where the members agree, up to the full restoration where their texture is
independent. The variance-preserving blend of texture synthesis (Heitz and Neyret, HPG 2018), applied to the
members' texture around P.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mgsrgan.errors import UserError

CONSENSUS_RADIUS = 3  # HR pixels: a 7x7 window, 147 samples per variance estimate (3 channels); small enough to
#                       localise an artefact, large enough that the estimate's relative noise is ~12% (sqrt(2/147),
#                       independent Gaussian errors)
EIGHT_BIT_LEVELS = 255.0  # [0, 1] image units -> 8-bit levels, the unit of guided fusion's tau
# Texture energy (mean square, [0, 1] units) below which the members' mean counts as flat: the variance of 8-bit
# quantisation, (1/255)^2 / 12; finer texture than the output can store is not worth rescaling
TEXTURE_ENERGY_FLOOR = (1.0 / 255.0) ** 2 / 12.0
# Adaptive fusion's denominator floor ([0, 1] units squared): only keeps 0 / 0 finite on exactly flat texture, where
# G = P and the weight does not matter; 1,000x below TEXTURE_ENERGY_FLOOR so it never moves a weight that does
COHERENCE_ENERGY_FLOOR = 1e-9


def check_fusion(alpha: float, adaptive_c0: float = 0.0, guided_tau: float = 0.0, *, gan_members: int | None = None,
                 pixel_members: int | None = None, prefix: str = "--") -> None:
    """The one check of the fusion parameters, UserError naming the parameter (`prefix` + name: a CLI flag, or the
    API's field with prefix ""). gan_members / pixel_members: how many each side has, None where not known yet (the
    Ensemble checks again once they are)."""
    alpha_name, adaptive_name, guided_name = (f"{prefix}{name}" for name in ("alpha", "adaptive", "guided"))
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"{alpha_name} must be in [0, 1], got {alpha}")
    if not 0.0 <= adaptive_c0 <= 1.0:
        raise UserError(f"{adaptive_name} must be in [0, 1] (0: one global {alpha_name}; in (0, 1]: the GAN members' "
                        f"texture coherence that keeps all of {alpha_name}), got {adaptive_c0}")
    if guided_tau < 0:
        raise UserError(f"{guided_name} must be >= 0 (8-bit levels; 0: one global {alpha_name}), got {guided_tau}")
    if adaptive_c0 > 0 and alpha == 0.0:
        raise UserError(f"{adaptive_name} needs {alpha_name} > 0 (the GAN share where the GAN members' texture "
                        "agrees; 1 = all of it)")
    if guided_tau > 0 and alpha == 0.0:
        raise UserError(f"{guided_name} needs {alpha_name} > 0 (the GAN share where the pixel-loss members disagree; "
                        "1 = all of it)")
    if guided_tau > 0 and adaptive_c0 > 0:
        raise UserError(f"choose one per-pixel fusion: {adaptive_name} (the GAN members' texture) or {guided_name} "
                        "(the pixel-loss members'), not both")
    if gan_members is not None and alpha > 0.0 and gan_members == 0:
        raise UserError(f"{alpha_name} > 0 needs GAN members to blend in")
    if gan_members is not None and adaptive_c0 > 0 and gan_members < 2:
        raise UserError(f"adaptive fusion needs several GAN members (how alike their texture is steers it); with one "
                        f"GAN member use the global {alpha_name} blend")
    if pixel_members is not None and guided_tau > 0 and pixel_members < 2:
        raise UserError("guided fusion needs several pixel-loss members (their disagreement steers it)")


def local_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, C, H, W) -> the same shape: the mean over each (2r+1)^2 window; border windows average real pixels only."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def member_spread(stack: torch.Tensor) -> torch.Tensor:
    """(K, B, 3, H, W) member outputs -> (B, 1, H, W): their per-pixel std (population form, 0 for K = 1), averaged
    over the channels; the images' units ([0, 1])."""
    return stack.std(dim=0, correction=0).mean(dim=1, keepdim=True)


def _levels(spread: torch.Tensor, radius: int) -> torch.Tensor:
    return local_mean(spread.float() * EIGHT_BIT_LEVELS, radius)


def member_texture(pixel: torch.Tensor, stack: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, C, H, W) P and (K, B, C, H, W) members -> (K, B, C, H, W): each member's texture around P, G_k - P minus
    its local mean over a (2r+1)^2 window (colour and the low frequencies removed)."""
    texture = stack.float() - pixel.float()
    k, b, c, h, w = texture.shape
    flat = texture.reshape(k * b, c, h, w)
    return (flat - local_mean(flat, radius)).reshape(k, b, c, h, w)


def texture_coherence(pixel: torch.Tensor, stack: torch.Tensor, *, radius: int = CONSENSUS_RADIUS) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1]: how alike the members' texture is around each pixel (module docstring); 1 = the same
    texture, 1/K = independent, 0 = cancelling. pixel: (B, C, H, W) P; stack: (K, B, C, H, W) members, both [0, 1]."""
    high = member_texture(pixel, stack, radius)
    agree = local_mean(high.mean(dim=0).square().mean(dim=1, keepdim=True), radius)
    total = local_mean(high.square().mean(dim=0).mean(dim=1, keepdim=True), radius)
    return agree / total.clamp_min(COHERENCE_ENERGY_FLOOR)


def adaptive_blend(pixel: torch.Tensor, gan: torch.Tensor, stack: torch.Tensor, *, alpha: float, c0: float,
                   radius: int = CONSENSUS_RADIUS) -> torch.Tensor:
    """P + w * (G - P) with w = alpha * min(1, c / c0), c = texture_coherence(P, stack) (module docstring).

    pixel, gan: (B, C, H, W) in [0, 1]; stack: (K, B, C, H, W) the GAN members' outputs; c0 in (0, 1]."""
    weight = alpha * (texture_coherence(pixel, stack, radius=radius) / c0).clamp(max=1.0)
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
    high = member_texture(pixel, stack, radius)
    mixed = (w * high).sum(dim=0)  # (B, C, H, W): the weighted mean's texture
    members_energy = local_mean((w * high.square()).sum(dim=0).mean(dim=1, keepdim=True), radius)
    mixed_energy = local_mean(mixed.square().mean(dim=1, keepdim=True), radius)
    cap = float(1.0 / weights.double().square().sum().sqrt())  # full restoration of independent texture
    gain = (members_energy / mixed_energy.clamp_min(TEXTURE_ENERGY_FLOOR)).sqrt().clamp(1.0, cap)
    return pixel + (w * texture).sum(dim=0) + (gain - 1.0) * mixed
