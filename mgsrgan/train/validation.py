"""Validation during training: PSNR and SSIM on the Y channel, `scale` pixels cropped (PROTOCOL.md)."""
from __future__ import annotations

from typing import Callable

import torch

from mgsrgan.train.distributed import World, all_reduce_sum
from mgsrgan.evaluate.metrics import psnr, ssim, tensor_to_uint8

Upscale = Callable[[torch.Tensor], torch.Tensor]  # (1, 3, h, w) [0, 1] -> (1, 3, h*s, w*s)


@torch.no_grad()
def validate(upscale: Upscale, pairs: list, scale: int, device: torch.device,
             world: World = World()) -> dict[str, float]:
    """Mean Y-PSNR (dB) and Y-SSIM over `pairs` of (name, lr (1,3,h,w), hr (1,3,H,W)), float tensors in [0, 1].

    In a data-parallel world each rank scores every world_size-th image and the sums are all-reduced, so every
    rank returns the mean over all images.
    """
    psnr_sum = ssim_sum = 0.0
    mine = pairs[world.rank::world.world_size]
    for _name, lr_img, hr_img in mine:
        sr_img = upscale(lr_img.to(device)).float().cpu()
        sr_u8, hr_u8 = tensor_to_uint8(sr_img), tensor_to_uint8(hr_img)
        psnr_sum += psnr(sr_u8, hr_u8, crop_border=scale)
        ssim_sum += ssim(sr_u8, hr_u8, crop_border=scale)
    psnr_sum, ssim_sum, count = all_reduce_sum([psnr_sum, ssim_sum, float(len(mine))], world)
    return {"psnr": psnr_sum / count, "ssim": ssim_sum / count}


def eval_mode_upscaler(generators: list[torch.nn.Module]) -> Upscale:
    """The mean of the generators' outputs (one generator: itself); call with the generators in eval mode."""
    def upscale(lr_img: torch.Tensor) -> torch.Tensor:
        return torch.stack([g(lr_img) for g in generators]).mean(0)
    return upscale


def validate_generators(generators: list[torch.nn.Module], pairs: list, scale: int, device: torch.device,
                        world: World = World()) -> dict[str, float]:
    """Validate the mean of `generators` in eval mode (BN running statistics), restoring their train/eval mode."""
    modes = [g.training for g in generators]
    for g in generators:
        g.eval()
    try:
        return validate(eval_mode_upscaler(generators), pairs, scale, device, world)
    finally:
        for g, mode in zip(generators, modes):
            g.train(mode)
