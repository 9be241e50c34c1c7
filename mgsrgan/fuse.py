"""Inference-time graph simplification: fold each BatchNorm into the convolution before it.

In eval mode BN is a per-channel affine map y = (x - mean) / sqrt(var + eps) * gamma + beta, so after a conv
it can be absorbed into the conv's weight and bias: W' = W * s, b' = (b - mean) * s + beta with
s = gamma / sqrt(var + eps). SRResNet has 2B + 1 such pairs; folding them removes a full read and write of
every feature map per BN, which dominates BN's cost on CPU.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from mgsrgan.generator import Generator, ResidualBlock


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv equal to bn(conv(x)) with bn in eval mode (running statistics)."""
    fused = copy.deepcopy(conv)
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight.detach() * scale.view(-1, 1, 1, 1))
        if fused.bias is None:
            fused.bias = nn.Parameter(torch.zeros_like(scale))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


def fold_batchnorm(generator: Generator) -> Generator:
    """An eval-mode copy of `generator` with every conv -> BN pair folded; same outputs to float rounding.

    The copy is for inference only: training it would train a network without BatchNorm.
    """
    fused = copy.deepcopy(generator).eval()
    for block in fused.body:
        assert isinstance(block, ResidualBlock)
        block.conv1, block.bn1 = fold_conv_bn(block.conv1, block.bn1), nn.Identity()
        block.conv2, block.bn2 = fold_conv_bn(block.conv2, block.bn2), nn.Identity()
    conv, bn = fused.body_tail[0], fused.body_tail[1]
    fused.body_tail = nn.Sequential(fold_conv_bn(conv, bn), nn.Identity())
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused
