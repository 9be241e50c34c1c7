"""One optimizer step of one member, per phase. Pure training math: no I/O, no logging.

Tensors: lr_img (B, 3, h, w) and hr_img (B, 3, h*scale, w*scale), float in [0, 1], on the training device.
Each function returns a dict of detached scalar tensors (converted to floats only when logged, so the GPU is
not synchronised every step).
"""
from __future__ import annotations

import contextlib

import torch

from mgsrgan.config import Config
from mgsrgan.losses import (ContentLoss, adversarial_g_loss, discriminator_fake_loss, discriminator_real_loss,
                            pixel_loss)
from mgsrgan.member import Member
from mgsrgan.schedule import DISCRIMINATOR, gan_learning_rate_factor, pretrain_learning_rate_factor, update_kind


def autocast(cfg: Config, device: torch.device):
    """bf16/fp16 autocast on CUDA; fp32 on CPU (CPU autocast is slower than fp32 for these convs)."""
    if device.type != "cuda" or cfg.runtime.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.runtime.amp == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def _apply(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def pretrain_step(member: Member, lr_img: torch.Tensor, hr_img: torch.Tensor, step: int, cfg: Config,
                  device: torch.device) -> dict[str, torch.Tensor]:
    """Phase 1 (SRResNet): minimise the pixel loss only; `step` (0-based) sets the lr on the schedule."""
    t = cfg.train
    factor = pretrain_learning_rate_factor(step, t.pretrain_steps, t.pretrain_lr_schedule)
    for group in member.optim_g.param_groups:
        group["lr"] = t.g_learning_rate * factor
    with autocast(cfg, device):
        sr_img = member.train_generator(lr_img)
    loss = pixel_loss(sr_img.float(), hr_img, cfg.loss.pixel)
    _apply(loss, member.optim_g, member.scaler_g)
    return {"pixel": loss.detach()}


def set_gan_learning_rates(member: Member, cfg: Config, iteration: int) -> None:
    t = cfg.train
    factor = gan_learning_rate_factor(iteration, t.gan_lr_decay_step, t.gan_lr_decay)
    for group in member.optim_g.param_groups:
        group["lr"] = t.gan_g_learning_rate * factor
    for group in member.optim_d.param_groups:
        group["lr"] = t.d_learning_rate * factor


def gan_step(member: Member, lr_img: torch.Tensor, hr_img: torch.Tensor, iteration: int, cfg: Config,
             device: torch.device, content_loss: ContentLoss,
             hr_features: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Phase 2 (SRGAN): one discriminator or one generator update, as the n:m plan says for `iteration`.

    `hr_features` are the content network's features of hr_img, computed once per batch by the caller and shared
    by all members trained in lockstep (None: computed here).
    """
    set_gan_learning_rates(member, cfg, iteration)
    generator, discriminator = member.generator, member.discriminator
    if update_kind(iteration, cfg.train.g_updates, cfg.train.d_updates) == DISCRIMINATOR:
        with torch.no_grad(), autocast(cfg, device):
            sr_img = generator(lr_img)
        # Real and fake batches go through D separately (BatchNorm statistics per batch, as in the paper's
        # reference implementations), each forward followed by its backward.
        with autocast(cfg, device):
            real_logits = member.train_discriminator(hr_img).float()
        real_loss = discriminator_real_loss(real_logits)
        optimizer = member.optim_d
        optimizer.zero_grad(set_to_none=True)
        member.scaler_d.scale(real_loss).backward()
        with autocast(cfg, device):
            fake_logits = member.train_discriminator(sr_img).float()
        fake_loss = discriminator_fake_loss(fake_logits)
        member.scaler_d.scale(fake_loss).backward()
        member.scaler_d.step(optimizer)
        member.scaler_d.update()
        return {"loss_d": (real_loss + fake_loss).detach(), "d_real": torch.sigmoid(real_logits).mean().detach(),
                "d_fake": torch.sigmoid(fake_logits).mean().detach()}
    discriminator.requires_grad_(False)  # no D gradients in a G step: saves the weight-gradient work
    try:
        with autocast(cfg, device):
            sr_img = member.train_generator(lr_img)
            fake_logits = discriminator(sr_img).float()  # D itself, not its DDP wrapper: D is not updated here
            content = content_loss(sr_img, hr=hr_img if hr_features is None else None, hr_features=hr_features)
        adversarial = adversarial_g_loss(fake_logits)
        loss = cfg.loss.content_weight * content.float() + cfg.loss.adv_weight * adversarial
        stats = {"content": content.detach(), "adv": adversarial.detach()}
        if cfg.loss.pixel_weight_gan > 0:
            pixel = pixel_loss(sr_img.float(), hr_img, cfg.loss.pixel)
            loss = loss + cfg.loss.pixel_weight_gan * pixel
            stats["pixel"] = pixel.detach()
        _apply(loss, member.optim_g, member.scaler_g)
    finally:
        discriminator.requires_grad_(True)
    stats["d_fake_g"] = torch.sigmoid(fake_logits).mean().detach()
    return stats
