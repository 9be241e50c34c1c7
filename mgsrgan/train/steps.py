"""One optimizer step of one member, per phase. Pure training math: no I/O, no logging.

Tensors: lr_img (B, 3, h, w) and hr_img (B, 3, h*scale, w*scale), float in [0, 1], on the training device.
Each function returns a dict of detached scalar tensors (converted to floats only when logged, so the GPU is
not synchronised every step).
"""
from __future__ import annotations

import torch

from mgsrgan.config import Config
from mgsrgan.device import autocast_to, resolve_precision
from mgsrgan.train.losses import (ContentLoss, adversarial_g_loss, discriminator_fake_loss, discriminator_real_loss,
                            grid_pattern_loss, pixel_loss, relativistic_fake_loss, relativistic_g_loss,
                            relativistic_real_loss)
from mgsrgan.train.member import Member
from mgsrgan.train.schedule import DISCRIMINATOR, gan_learning_rate_factor, pixel_learning_rate_factor, update_kind


def amp_dtype(cfg: Config, device: torch.device) -> torch.dtype:
    """`runtime.amp`'s autocast dtype on `device` (CPU included, where it runs bf16 natively) for `autocast_to`.

    Master weights, optimizer state, losses (computed on .float() outputs) and BatchNorm statistics stay fp32.
    """
    return resolve_precision(cfg.runtime.amp, device, "runtime.amp")


def _apply(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def pixel_step(member: Member, lr_img: torch.Tensor, hr_img: torch.Tensor, step: int, cfg: Config,
                  device: torch.device) -> dict[str, torch.Tensor]:
    """The pixel-loss phase (SRResNet): minimise the pixel loss only; `step` (0-based) sets the lr on the schedule."""
    t = cfg.train
    factor = pixel_learning_rate_factor(step, t.pretrain_steps, t.pretrain_lr_schedule)
    for group in member.optim_g.param_groups:
        group["lr"] = t.g_learning_rate * factor
    with autocast_to(amp_dtype(cfg, device), device):
        sr_img = member.train_generator(lr_img)
    loss = pixel_loss(sr_img.float(), hr_img, cfg.loss.pixel)
    _apply(loss, member.optim_g, member.scaler_g)
    return {"pixel": loss.detach()}


def set_gan_learning_rates(member: Member, cfg: Config, step: int) -> None:
    t = cfg.train
    factor = gan_learning_rate_factor(step, t.gan_lr_decay_iteration, t.gan_lr_decay, t.g_updates, t.d_updates)
    for group in member.optim_g.param_groups:
        group["lr"] = t.gan_g_learning_rate * factor
    for group in member.optim_d.param_groups:
        group["lr"] = t.d_learning_rate * factor


def freeze_batchnorm(generator: torch.nn.Module) -> None:
    """BatchNorm layers to eval mode: normalise with the stored statistics and stop updating them."""
    for module in generator.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


@torch.no_grad()
def update_ema(ema: torch.nn.Module, generator: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * generator, per parameter; buffers (BN statistics) copied."""
    for e, g in zip(ema.parameters(), generator.parameters()):
        e.lerp_(g.detach(), 1.0 - decay)
    for e, g in zip(ema.buffers(), generator.buffers()):
        e.copy_(g)


def _discriminator_update(member: Member, lr_img: torch.Tensor, hr_img: torch.Tensor, cfg: Config,
                          device: torch.device) -> dict[str, torch.Tensor]:
    with torch.no_grad(), autocast_to(amp_dtype(cfg, device), device):
        sr_img = member.generator(lr_img)
    relativistic = cfg.loss.adversarial == "relativistic"
    mean_fake = None
    if relativistic:  # the real term compares with the batch's mean fake logit (no gradient through it)
        with torch.no_grad(), autocast_to(amp_dtype(cfg, device), device):
            mean_fake = member.discriminator(sr_img).float()
    # Real and fake batches go through D separately (BatchNorm statistics per batch, as in the paper's
    # reference implementations), each forward followed by its backward (the pattern DDP supports).
    optimizer = member.optim_d
    optimizer.zero_grad(set_to_none=True)
    with autocast_to(amp_dtype(cfg, device), device):
        real_logits = member.train_discriminator(hr_img).float()
    real_loss = (relativistic_real_loss(real_logits, mean_fake) if relativistic
                 else discriminator_real_loss(real_logits))
    member.scaler_d.scale(real_loss).backward()
    with autocast_to(amp_dtype(cfg, device), device):
        fake_logits = member.train_discriminator(sr_img).float()
    fake_loss = (relativistic_fake_loss(real_logits, fake_logits) if relativistic
                 else discriminator_fake_loss(fake_logits))
    member.scaler_d.scale(fake_loss).backward()
    member.scaler_d.step(optimizer)
    member.scaler_d.update()
    return {"loss_d": (real_loss + fake_loss).detach(), "d_real": torch.sigmoid(real_logits).mean().detach(),
            "d_fake": torch.sigmoid(fake_logits).mean().detach()}


def gan_step(member: Member, lr_img: torch.Tensor, hr_img: torch.Tensor, step: int, cfg: Config,
             device: torch.device, content_loss: ContentLoss | None,
             hr_features: list[torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """The GAN phase (SRGAN): one discriminator or one generator update, as the n:m plan says for `step` (0-based).

    `hr_features` are the content network's features of hr_img, computed once per batch by the caller and shared
    by all members trained in lockstep on the same batch (None: computed here). content_loss may be None when
    loss.content_weight is 0.
    """
    set_gan_learning_rates(member, cfg, step)
    if cfg.train.gan_freeze_bn:
        freeze_batchnorm(member.generator)  # again every step: validation toggles train()/eval()
    if update_kind(step, cfg.train.g_updates, cfg.train.d_updates) == DISCRIMINATOR:
        return _discriminator_update(member, lr_img, hr_img, cfg, device)
    lo = cfg.loss
    discriminator = member.discriminator
    discriminator.requires_grad_(False)  # no D gradients in a G step: saves the weight-gradient work
    try:
        with autocast_to(amp_dtype(cfg, device), device):
            sr_img = member.train_generator(lr_img)
            fake_logits = discriminator(sr_img).float()  # D itself, not its DDP wrapper: D is not updated here
            if lo.adversarial == "relativistic":
                with torch.no_grad():
                    real_logits = discriminator(hr_img).float()
                adversarial = relativistic_g_loss(real_logits, fake_logits)
            else:
                adversarial = adversarial_g_loss(fake_logits)
        loss = lo.adv_weight * adversarial
        stats = {"adv": adversarial.detach()}
        if content_loss is not None and lo.content_weight > 0:
            with autocast_to(amp_dtype(cfg, device), device):
                content = content_loss(sr_img, hr=hr_img if hr_features is None else None, hr_features=hr_features)
            loss = loss + lo.content_weight * content.float()
            stats["content"] = content.detach()
        if lo.grid_weight > 0:
            grid = grid_pattern_loss(sr_img, hr_img, cfg.model.scale)
            loss = loss + lo.grid_weight * grid
            stats["grid"] = grid.detach()
        if lo.pixel_weight_gan > 0:
            pixel = pixel_loss(sr_img.float(), hr_img, lo.pixel)
            loss = loss + lo.pixel_weight_gan * pixel
            stats["pixel"] = pixel.detach()
        _apply(loss, member.optim_g, member.scaler_g)
    finally:
        discriminator.requires_grad_(True)
    if member.ema is not None:
        update_ema(member.ema, member.generator, cfg.train.ema_decay)
    stats["d_fake_g"] = torch.sigmoid(fake_logits).mean().detach()
    return stats
