"""SRResNet generator (Ledig et al., CVPR 2017, fig. 4).

9x9 head conv + PReLU, B residual blocks (conv-BN-PReLU-conv-BN + identity), conv-BN + global skip,
one (conv, PixelShuffle x2, PReLU) stage per factor of 2, 9x9 tail conv to RGB.
Optionally (global_skip="bicubic", not in the paper) the network predicts the residual over a bicubic upscale of
its input, as VDSR does (Kim et al., CVPR 2016): the untrained network already scores near bicubic, and training
converges in far fewer steps.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

HEAD_KERNEL = 9  # 9x9 first and last convolutions (Ledig et al. 2017, fig. 4)
BODY_KERNEL = 3  # 3x3 convolutions everywhere else (Ledig et al. 2017, fig. 4)
GLOBAL_SKIPS = ("none", "bicubic")  # none: the paper; bicubic: residual over bicubic (Kim et al. 2016)
BICUBIC_REACH = 2  # a bicubic sample reads 4 taps: 2 LR pixels either side


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        pad = BODY_KERNEL // 2
        self.conv1 = nn.Conv2d(channels, channels, BODY_KERNEL, padding=pad)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)
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
        self.act = nn.PReLU(channels)

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
        self.head = nn.Sequential(nn.Conv2d(3, channels, HEAD_KERNEL, padding=HEAD_KERNEL // 2), nn.PReLU(channels))
        self.body = nn.Sequential(*[ResidualBlock(channels) for _ in range(num_blocks)])
        self.body_tail = nn.Sequential(nn.Conv2d(channels, channels, BODY_KERNEL, padding=BODY_KERNEL // 2),
                                       nn.BatchNorm2d(channels))
        self.upsample = nn.Sequential(*[UpsampleStage(channels) for _ in range(int(math.log2(scale)))])
        self.tail = nn.Conv2d(channels, 3, HEAD_KERNEL, padding=HEAD_KERNEL // 2)

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        feat = self.head(lr_img)
        feat = feat + self.body_tail(self.body(feat))
        out = self.tail(self.upsample(feat))
        if self.global_skip == "bicubic":
            out = out + F.interpolate(lr_img, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out

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
