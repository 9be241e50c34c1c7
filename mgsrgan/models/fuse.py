"""Inference-time graph rewrites that keep the outputs (to float rounding) and cut CPU time.

1. BatchNorm folding. In eval mode BN is a per-channel affine map, so after a conv it is absorbed into the conv:
   W' = W * s, b' = (b - mean) * s + beta with s = gamma / sqrt(var + eps). SRResNet has 2B + 1 such pairs;
   folding removes a full read and write of every feature map per BN.
2. Sub-pixel tail. The 9x9 tail conv (C -> 3) runs on the full HR grid, and with 3 output channels oneDNN computes
   at a fraction of its usual rate (it pads the output channels to a vector width; tools/profile_train.py and
   tools/speed.py measure it). The same map is computed on the grid before the last PixelShuffle: a 5x5
   conv from 4C channels to 3 x 4 sub-pixel phases, then PixelShuffle(2) (`generator.subpixel_weight` derives the
   weight; training computes the tail the same way, from the 9x9 weight on every step). The last stage's
   per-channel PReLU moves before the shuffle with each weight repeated for the 4 phases of its channel.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from mgsrgan.models.generator import Generator, ResidualBlock, subpixel_weight
from mgsrgan.models.prelu import PReLU


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


def subpixel_tail(tail: nn.Conv2d) -> nn.Sequential:
    """(9x9 conv C -> K on the HR grid) -> (5x5 conv 4C -> 4K on the grid before the shuffle, PixelShuffle(2))."""
    weight = subpixel_weight(tail.weight.detach())
    k_out, c_in, kernel, _ = weight.shape
    # built on the source's device and dtype (a float64 or CUDA generator folds as it is)
    conv = nn.Conv2d(c_in, k_out, kernel, padding=kernel // 2, device=tail.weight.device, dtype=tail.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(tail.bias.detach().repeat_interleave(4))
    return nn.Sequential(conv, nn.PixelShuffle(2))


def fold_batchnorm(generator: Generator) -> Generator:
    """An eval-mode copy of `generator` for inference: BatchNorm folded and the sub-pixel tail (module docstring);
    the same outputs to float rounding, the same receptive field.

    The copy is for inference only: training it would train a network without BatchNorm.
    """
    fused = copy.deepcopy(generator).eval()
    for block in fused.body:
        assert isinstance(block, ResidualBlock)
        block.conv1, block.bn1 = fold_conv_bn(block.conv1, block.bn1), nn.Identity()
        block.conv2, block.bn2 = fold_conv_bn(block.conv2, block.bn2), nn.Identity()
    conv, bn = fused.body_tail[0], fused.body_tail[1]
    fused.body_tail = nn.Sequential(fold_conv_bn(conv, bn), nn.Identity())
    last = fused.upsample[-1]
    prelu = PReLU(last.act.num_parameters * 4).to(device=last.act.weight.device, dtype=last.act.weight.dtype)
    with torch.no_grad():
        prelu.weight.copy_(last.act.weight.detach().repeat_interleave(4))  # channel c -> phases 4c .. 4c+3
    fused.upsample[-1] = nn.Sequential(last.conv, prelu)  # the shuffle moves into the tail
    fused.tail = subpixel_tail(fused.tail)
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused
