"""One ensemble member: its seed, networks, optimizers and progress, and its checkpoint round trip."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mgsrgan.io.checkpoint import (CheckpointError, Side, arch_of, load_tensors, optimizer_tensors, read_meta,
                                   restore_optimizer, save_checkpoint)
from mgsrgan.config import Config, config_to_dict
from mgsrgan.device import resolve_precision
from mgsrgan.models.discriminator import Discriminator
from mgsrgan.train.distributed import cross_rank_batchnorm
from mgsrgan.models.generator import Generator

DONE = "done"  # a member's phase once both are trained
PHASES = (Side.PIXEL, Side.GAN)  # the training phases, in order: each makes the checkpoint of its side


@dataclass
class Member:
    index: int
    seed: int
    generator: Generator
    discriminator: Discriminator
    optim_g: torch.optim.Adam
    optim_d: torch.optim.Adam
    phase: str = Side.PIXEL  # a Side, or DONE
    step: int = 0  # steps done within `phase`
    best_psnr: float | None = None  # best validation PSNR so far; None before the first validation
    gan_pick: dict | None = None  # train.gan_select: the GAN-phase validation saved as `gan` so far ({"step", scores})
    val: dict | None = None  # last validation scores {"psnr", "ssim"}
    history: dict = field(default_factory=dict)  # phase -> val scores at the end of that phase
    # fp16 autocast needs loss scaling; disabled (a pass-through) otherwise. Not checkpointed: it re-calibrates.
    scaler_g: torch.amp.GradScaler | None = None
    scaler_d: torch.amp.GradScaler | None = None
    # What the gradient steps call: DistributedDataParallel wrappers in data-parallel runs, else the networks.
    # Gradient-free passes and checkpoints use `generator` / `discriminator` themselves.
    train_generator: torch.nn.Module | None = None
    train_discriminator: torch.nn.Module | None = None
    # The GAN phase's moving average of the generator weights (train.ema_decay > 0), reset to the generator when
    # that phase starts; what the `gan` checkpoint and GAN-phase validation use. None = off.
    ema: Generator | None = None

    def shipped_generator(self) -> Generator:
        """The generator a checkpoint of the current phase ships: the EMA in the GAN phase when there is one."""
        return self.ema if self.ema is not None and self.phase == Side.GAN else self.generator


def member_seed(cfg: Config, index: int) -> int:
    return cfg.train.seed + index


def memory_format(cfg: Config) -> torch.memory_format:
    """The layout of the networks and their batches in training: NHWC (runtime.channels_last) on CUDA and on CPU
    alike, where oneDNN's convolutions and the elementwise work between them run faster in it (tools/speed.py)."""
    return torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format


def build_member(cfg: Config, index: int, device: torch.device, *, data_parallel: bool = False) -> Member:
    """Networks initialised from the member's own seed, so members differ from their first weight.

    data_parallel: wrap both networks in DistributedDataParallel (the process group must be initialised), with
    BatchNorm statistics over the global batch (SyncBatchNorm on CUDA, CrossRankBatchNorm2d on CPU).
    """
    seed = member_seed(cfg, index)
    torch.manual_seed(seed)
    m, t = cfg.model, cfg.train
    generator = Generator(scale=m.scale, num_blocks=m.num_blocks, channels=m.channels,
                          global_skip=m.global_skip).to(device)
    discriminator = Discriminator(channels=m.d_channels, dense=m.d_dense, leaky_slope=m.leaky_slope,
                                  pool=m.d_pool, spectral_norm=m.d_spectral_norm).to(device)
    generator = generator.to(memory_format=memory_format(cfg))
    discriminator = discriminator.to(memory_format=memory_format(cfg))
    train_generator, train_discriminator = generator, discriminator
    if data_parallel:
        train_generator, train_discriminator = (wrap_data_parallel(generator, device),
                                                wrap_data_parallel(discriminator, device))
    if cfg.runtime.compile:  # compiled at their first gradient step; validation and checkpoints use the plain ones
        train_generator, train_discriminator = torch.compile(train_generator), torch.compile(train_discriminator)
    betas = (t.adam_beta1, t.adam_beta2)
    optim_g = torch.optim.Adam(generator.parameters(), lr=t.g_learning_rate, betas=betas)
    optim_d = torch.optim.Adam(discriminator.parameters(), lr=t.d_learning_rate, betas=betas)
    fp16 = resolve_precision(cfg.runtime.amp, device, "runtime.amp") == torch.float16
    ema = copy.deepcopy(generator).requires_grad_(False).eval() if t.ema_decay > 0 else None
    return Member(index, seed, generator, discriminator, optim_g, optim_d,
                  scaler_g=torch.amp.GradScaler(device.type, enabled=fp16),
                  scaler_d=torch.amp.GradScaler(device.type, enabled=fp16),
                  train_generator=train_generator, train_discriminator=train_discriminator, ema=ema)


BODY_PREFIXES = ("head.", "body.", "body_tail.")  # the scale-independent part of an SRResNet (LR grid)


def init_body_from(generator: Generator, source: Generator) -> list[str]:
    """Copy `source`'s head, residual blocks and body tail (parameters and BatchNorm statistics) into `generator`,
    which may have another scale; at the same scale the upsampler and tail too (the whole generator: a warm
    restart, SGDR, Loshchilov & Hutter 2017). Returns the names copied. ValueError when the two bodies differ in shape."""
    own, theirs = generator.state_dict(), source.state_dict()
    body = [name for name in own if name.startswith(BODY_PREFIXES)]
    mismatched = [name for name in body if name not in theirs or theirs[name].shape != own[name].shape]
    if mismatched:
        raise ValueError(f"bodies differ ({len(mismatched)} tensors, e.g. {mismatched[0]}): "
                         f"{source.num_blocks} blocks x {source.channels} channels vs "
                         f"{generator.num_blocks} x {generator.channels}")
    same_scale = source.scale == generator.scale and own.keys() == theirs.keys() and all(
        own[name].shape == theirs[name].shape for name in own)
    names = list(own) if same_scale else body
    with torch.no_grad():
        for name in names:
            own[name].copy_(theirs[name])
    return names


def wrap_data_parallel(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Global-batch BatchNorm in place (parameter names unchanged), then DistributedDataParallel around it."""
    if device.type == "cuda":
        swapped = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        assert swapped is module, "the root module is never a BatchNorm here"
    else:
        cross_rank_batchnorm(module)
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda"
                                                     else None)


def member_dir(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / f"member_{index}"


def _meta(member: Member, cfg: Config) -> dict:
    return {"arch": vars(arch_of(member.generator)), "member": member.index, "seed": member.seed,
            "phase": member.phase, "step": member.step, "val": member.val, "best_psnr": member.best_psnr,
            "gan_pick": member.gan_pick, "history": member.history, "config": config_to_dict(cfg)}


def save_generator(member: Member, cfg: Config, path: Path) -> None:
    """A generator-only checkpoint (best / pretrain / gan): what inference loads (the EMA in the GAN phase, if any)."""
    tensors = {f"generator.{k}": v for k, v in member.shipped_generator().state_dict().items()}
    save_checkpoint(path, tensors, _meta(member, cfg))


def save_training_state(member: Member, cfg: Config, path: Path) -> None:
    """Everything an exact resume needs: both networks, both optimizers, RNG state, progress."""
    tensors = {f"generator.{k}": v for k, v in member.generator.state_dict().items()}
    tensors.update({f"discriminator.{k}": v for k, v in member.discriminator.state_dict().items()})
    if member.ema is not None:
        tensors.update({f"ema.{k}": v for k, v in member.ema.state_dict().items()})
    optim_meta = {}
    for name, optimizer in (("optim_g", member.optim_g), ("optim_d", member.optim_d)):
        flat, extra = optimizer_tensors(optimizer, name)
        tensors.update(flat)
        optim_meta[name] = extra
    tensors["rng.torch"] = torch.get_rng_state()
    meta = _meta(member, cfg)
    meta["optimizers"] = optim_meta
    save_checkpoint(path, tensors, meta)


def load_training_state(member: Member, path: Path) -> None:
    """Restore a member built by build_member from its `last.safetensors`, in place."""
    meta = read_meta(path)
    if "optimizers" not in meta:
        raise CheckpointError(f"{path}: a generator-only checkpoint; resume needs last.safetensors")
    device = next(member.generator.parameters()).device
    member.generator.load_state_dict(load_tensors(path, "generator."), strict=True)
    member.discriminator.load_state_dict(load_tensors(path, "discriminator."), strict=True)
    ema = load_tensors(path, "ema.")
    if ema and member.ema is None:
        raise CheckpointError(f"{path}: holds generator EMA weights, but train.ema_decay is 0; resume with the "
                              "run's own config")
    if member.ema is not None:
        if ema:
            member.ema.load_state_dict(ema, strict=True)
        elif meta["phase"] == Side.PIXEL or (meta["phase"] == Side.GAN and meta["step"] == 0):
            # the EMA starts at the GAN phase's first step: a file from before then holds none yet (e.g. a GAN
            # phase restarted from a pixel-loss run with new GAN settings)
            member.ema.load_state_dict(member.generator.state_dict(), strict=True)
        else:
            raise CheckpointError(f"{path}: GAN-phase step {meta['step']} without generator EMA weights, but "
                                  "train.ema_decay is set; resume with the run's own config")
    for name, optimizer in (("optim_g", member.optim_g), ("optim_d", member.optim_d)):
        tensors = {k: v.to(device) if k.split(".", 1)[1] != "step" else v
                   for k, v in load_tensors(path, f"{name}.").items()}
        restore_optimizer(optimizer, tensors, meta["optimizers"][name])
    torch.set_rng_state(load_tensors(path, "rng.")["torch"])
    member.phase, member.step = meta["phase"], meta["step"]
    member.val, member.best_psnr, member.history = meta["val"], meta["best_psnr"], meta["history"]
    member.gan_pick = meta.get("gan_pick")  # files from before train.gan_select have none
