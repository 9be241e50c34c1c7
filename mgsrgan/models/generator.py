"""SRResNet generator (Ledig et al., CVPR 2017, fig. 4).

9x9 head conv + PReLU, B residual blocks (conv-BN-PReLU-conv-BN + identity), conv-BN + global skip,
one (conv, PixelShuffle x2, PReLU) stage per factor of 2, 9x9 tail conv to RGB (computed in its exact 5x5
sub-pixel form before the last shuffle: `subpixel_weight`; the parameters are the 9x9 conv's).
Optionally (global_skip="bicubic", not in the paper) the network predicts the residual over a bicubic upscale of
its input, as VDSR does (Kim et al., CVPR 2016): the untrained network already scores near bicubic, and training
converges in far fewer steps.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mgsrgan.models.prelu import PReLU, prelu

HEAD_KERNEL = 9  # 9x9 first and last convolutions (Ledig et al. 2017, fig. 4)
BODY_KERNEL = 3  # 3x3 convolutions everywhere else (Ledig et al. 2017, fig. 4)
GLOBAL_SKIPS = ("none", "bicubic")  # none: the paper; bicubic: residual over bicubic (Kim et al. 2016)
BICUBIC_REACH = 2  # a bicubic sample reads 4 taps: 2 LR pixels either side


def subpixel_weight(weight: torch.Tensor) -> torch.Tensor:
    """A stride-1 "same" conv weight (K, C, k, k), k odd, on the grid after a PixelShuffle(2) -> the weight
    (4K, 4C, k', k') of the same map on the grid before the shuffle, followed by PixelShuffle(2).

    With y = shuffle(z), output pixel (2I + p, 2J + q) reads y at offsets dy, dx in [-h, h] (h = k // 2), i.e. z at
    I + m with p + dy = 2m + a (a the phase of the source pixel): |m| <= r = ceil(h / 2), k' = 2r + 1, and
    W'[k*4 + p*2 + q, c*4 + a*2 + b, m + r, n + r] = W[k, c, 2m + a - p + h, 2n + b - q + h] (zero outside the
    kernel). Zero padding matches: y outside the image is z outside it. Built by indexing, so it is differentiable:
    training runs the 9x9 tail in this form (fewer, better-vectorised output channels) and the gradient reaches
    the 9x9 weight itself (each entry is the sum over the sub-pixel taps it fills).
    """
    k_out, c_in, size, _ = weight.shape
    half = size // 2
    reach = (half + 1) // 2
    pad = 2 * reach + 1 - half  # 2m + a - p + h spans [h - 2r - 1, h + 2r + 1]: pad the kernel with zeros to reach
    padded = F.pad(weight, (pad, pad, pad, pad))
    phase = torch.arange(2, device=weight.device)
    offset = torch.arange(-reach, reach + 1, device=weight.device)
    # index[p, a, m] = 2m + a - p + h + pad: the padded kernel's row (or column) feeding tap m from phase a to p
    index = 2 * offset[None, None, :] + phase[None, :, None] - phase[:, None, None] + half + pad
    rows = index[:, None, :, None, :, None]  # (p, 1, a, 1, m, 1)
    cols = index[None, :, None, :, None, :]  # (1, q, 1, b, 1, n)
    taps = padded[:, :, rows, cols]  # (K, C, p, q, a, b, m, n)
    kernel = 2 * reach + 1
    return taps.permute(0, 2, 3, 1, 4, 5, 6, 7).reshape(k_out * 4, c_in * 4, kernel, kernel)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        pad = BODY_KERNEL // 2
        self.conv1 = nn.Conv2d(channels, channels, BODY_KERNEL, padding=pad)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, BODY_KERNEL, padding=pad)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class UpsampleStage(nn.Module):
    """Conv to 4C channels, PixelShuffle x2 (sub-pixel convolution, Shi et al. 2016), PReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, BODY_KERNEL, padding=BODY_KERNEL // 2)
        self.shuffle = nn.PixelShuffle(2)
        self.act = PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class Generator(nn.Module):
    """SRResNet. Input (B, 3, H, W) float RGB in [0, 1]; output (B, 3, H*scale, W*scale), roughly [0, 1], unclipped.

    The paper feeds LR in [0, 1] and trains against HR in [-1, 1] with a tanh; we keep both in [0, 1] with a linear
    output so that the output can be clipped and scored directly (the MSE then differs by a constant factor of 4,
    which Adam's scale invariance absorbs).
    """

    def __init__(self, *, scale: int = 4, num_blocks: int = 16, channels: int = 64,
                 global_skip: str = "none") -> None:
        super().__init__()
        if scale not in (2, 4, 8):
            raise ValueError(f"scale must be 2, 4 or 8, got {scale}")
        if global_skip not in GLOBAL_SKIPS:
            raise ValueError(f"global_skip must be one of {GLOBAL_SKIPS}, got {global_skip!r}")
        self.global_skip = global_skip
        self.scale = scale
        self.num_blocks = num_blocks
        self.channels = channels
        self.head = nn.Sequential(nn.Conv2d(3, channels, HEAD_KERNEL, padding=HEAD_KERNEL // 2), PReLU(channels))
        self.body = nn.Sequential(*[ResidualBlock(channels) for _ in range(num_blocks)])
        self.body_tail = nn.Sequential(nn.Conv2d(channels, channels, BODY_KERNEL, padding=BODY_KERNEL // 2),
                                       nn.BatchNorm2d(channels))
        self.upsample = nn.Sequential(*[UpsampleStage(channels) for _ in range(int(math.log2(scale)))])
        self.tail = nn.Conv2d(channels, 3, HEAD_KERNEL, padding=HEAD_KERNEL // 2)

    def forward(self, lr_img: torch.Tensor, *, plain_tail: bool = False) -> torch.Tensor:
        """plain_tail: every shuffle, then the 9x9 tail on the HR grid, as the paper draws it (slower; the reference
        the sub-pixel form is tested and timed against). The default computes the same map (`upsample_and_tail`)."""
        feat = self.head(lr_img)
        feat = feat + self.body_tail(self.body(feat))
        out = self.tail(self.upsample(feat)) if plain_tail else self.upsample_and_tail(feat)
        if self.global_skip == "bicubic":
            out = out + F.interpolate(lr_img, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out

    def upsample_and_tail(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) body features -> (B, 3, h*scale, w*scale): the upsampling stages and the 9x9 tail, the tail
        in its sub-pixel form before the last shuffle (`tail_before_shuffle`)."""
        last = self.upsample[-1]
        if not (isinstance(last, UpsampleStage) and isinstance(self.tail, nn.Conv2d)):
            return self.tail(self.upsample(feat))  # fold_batchnorm's copy: its tail is already sub-pixel
        return self.tail_before_shuffle(last.conv(self.upsample[:-1](feat)))

    def tail_before_shuffle(self, z: torch.Tensor) -> torch.Tensor:
        """The last stage's shuffle and PReLU and the 9x9 tail, from the last stage's conv output z (B, 4C, H/2, W/2)
        to the image (B, 3, H, W), computed before the shuffle: PReLU with each channel's slope repeated for its 4
        phases, then the 5x5 conv 4C -> 12 of `subpixel_weight` (built from the 9x9 weight on every call, so the
        parameters, checkpoints and gradients stay the 9x9 conv's), then PixelShuffle(2). Same map to float
        rounding; with 3 output channels oneDNN pads the plain tail's output to a vector width and runs it at a
        fraction of its rate (`python -m tools.speed --case tail_x4` times both forms).
        """
        slope = self.upsample[-1].act.weight
        z = prelu(z, slope.repeat_interleave(4) if slope.numel() > 1 else slope)
        weight = subpixel_weight(self.tail.weight)  # (12, 4C, 5, 5)
        out = F.conv2d(z, weight, self.tail.bias.repeat_interleave(4), padding=weight.shape[-1] // 2)
        return F.pixel_shuffle(out, 2)

    def receptive_radius(self) -> int:
        """Receptive-field radius in LR pixels: how far an output pixel's LR footprint reaches from its centre.

        Tiling with a pad of at least this many LR pixels reproduces the untiled output exactly (zero padding
        enters only beyond the image, never at a tile seam).
        """
        half_head, half_body = HEAD_KERNEL // 2, BODY_KERNEL // 2
        radius = half_head + self.num_blocks * 2 * half_body + half_body  # head, blocks, body tail (LR grid)
        # Upsample stage i runs on a grid 2^i finer: its 3x3 conv reaches 1 fine pixel = 1/2^i LR pixels.
        fine = 0.0
        for stage in range(int(math.log2(self.scale))):
            fine += half_body / (2 ** stage)
        fine += half_head / self.scale  # tail conv on the HR grid
        # The bicubic skip reaches BICUBIC_REACH LR pixels (border samples clamp to the image edge, the same in
        # a tile that touches the edge as in the whole image).
        return max(radius + math.ceil(fine), BICUBIC_REACH)
