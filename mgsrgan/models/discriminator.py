"""SRGAN discriminator (Ledig et al., CVPR 2017, fig. 4) for any HR patch size.

Eight 3x3 convs, 64 -> 512 channels, strides alternating 1 and 2, BN after all but the first, LeakyReLU(0.2),
then dense 1024, LeakyReLU, dense 1 logit. Optionally spectral-normalised without BN (Miyato et al. 2018). The paper flattens the 6x6x512 map of a 96 px input; an adaptive
average pool to `pool` x `pool` (6 by default, the identity at 96 px) lets the same network take any patch size.
"""
from __future__ import annotations

import torch
from torch import nn


class Discriminator(nn.Module):
    """Input (B, 3, H, W) float RGB in [0, 1], H and W >= 16; output (B,) real/fake logits."""

    def __init__(self, *, channels: int = 64, dense: int = 1024, leaky_slope: float = 0.2, pool: int = 6,
                 spectral_norm: bool = False) -> None:
        super().__init__()
        widths = [channels, channels, channels * 2, channels * 2, channels * 4, channels * 4,
                  channels * 8, channels * 8]
        layers: list[nn.Module] = []
        in_ch = 3
        for i, out_ch in enumerate(widths):
            stride = 2 if i % 2 == 1 else 1
            layers.append(_maybe_sn(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1), spectral_norm))
            if i > 0 and not spectral_norm:  # SN replaces BN (as in Real-ESRGAN's discriminator)
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.LeakyReLU(leaky_slope))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(nn.Flatten(), _maybe_sn(nn.Linear(in_ch * pool * pool, dense), spectral_norm),
                                        nn.LeakyReLU(leaky_slope), _maybe_sn(nn.Linear(dense, 1), spectral_norm))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(img))).squeeze(1)


def _maybe_sn(layer: nn.Module, on: bool) -> nn.Module:
    """The layer with its weight divided by its largest singular value (one power iteration a step), if `on`."""
    return nn.utils.parametrizations.spectral_norm(layer) if on else layer
