"""Validation during training: PSNR and SSIM on the Y channel, `scale` pixels cropped (PROTOCOL.md)."""
from __future__ import annotations

import torch

from mgsrgan.evaluate.metrics import psnr, ssim, tensor_to_uint8
from mgsrgan.evaluate.protocol import ARTIFACTS, PairDistance, TensorUpscale, artifact_scores, perceptual_scores
from mgsrgan.train.distributed import World, all_reduce_sum

GAN_SELECT_KEYS = ("stlpips_alex", *ARTIFACTS)  # the extra scores `perceptual=` adds


@torch.no_grad()
def validate(upscale: TensorUpscale, pairs: list, scale: int, device: torch.device,
             world: World = World(), *, perceptual: PairDistance | None = None) -> dict[str, float]:
    """Mean Y-PSNR (dB) and Y-SSIM over `pairs` of (name, lr (1,3,h,w), hr (1,3,H,W)), float tensors in [0, 1].

    With `perceptual` (an ST-LPIPS-Alex PairDistance) also the mean "stlpips_alex", and the mean periodic-artifact
    amplitude of SR and HR ("artifact", "artifact_hr", 8-bit levels) and the mean colour shift SR - HR per RGB
    channel ("shift_r", "shift_g", "shift_b", signed 8-bit levels), as evaluate.py scores them (`scale` pixels
    cropped): what train.gan_select reads. In a data-parallel world each rank scores every world_size-th image and
    the sums are all-reduced, so every rank returns the mean over all images.
    """
    sums = dict.fromkeys(["psnr", "ssim"] + (list(GAN_SELECT_KEYS) if perceptual else []), 0.0)
    mine = pairs[world.rank::world.world_size]
    for _name, lr_img, hr_img in mine:
        sr_img = upscale(lr_img.to(device)).float().cpu()
        sr_u8, hr_u8 = tensor_to_uint8(sr_img), tensor_to_uint8(hr_img)
        sums["psnr"] += psnr(sr_u8, hr_u8, crop_border=scale)
        sums["ssim"] += ssim(sr_u8, hr_u8, crop_border=scale)
        if perceptual is not None:
            sums["stlpips_alex"] += perceptual_scores(sr_u8, hr_u8, {"stlpips_alex": perceptual},
                                                      crop_border=scale)["stlpips_alex"]
            artifacts = artifact_scores(sr_u8, hr_u8, scale=scale)
            for key in ARTIFACTS:
                sums[key] += artifacts[key]
    *totals, count = all_reduce_sum([*sums.values(), float(len(mine))], world)
    return {key: total / count for key, total in zip(sums, totals)}


def eval_mode_upscaler(generators: list[torch.nn.Module]) -> TensorUpscale:
    """The mean of the generators' outputs (one generator: itself); call with the generators in eval mode."""
    def upscale(lr_img: torch.Tensor) -> torch.Tensor:
        return torch.stack([g(lr_img) for g in generators]).mean(0)
    return upscale


def validate_generators(generators: list[torch.nn.Module], pairs: list, scale: int, device: torch.device,
                        world: World = World(), *, perceptual: PairDistance | None = None) -> dict[str, float]:
    """Validate the mean of `generators` in eval mode (BN running statistics), restoring their train/eval mode."""
    modes = [g.training for g in generators]
    for g in generators:
        g.eval()
    try:
        return validate(eval_mode_upscaler(generators), pairs, scale, device, world, perceptual=perceptual)
    finally:
        for g, mode in zip(generators, modes):
            g.train(mode)
