"""The training loop: K independent members, pixel-loss pre-training then adversarial training.

Members train one after another (`train.schedule: sequential`, each on its own data stream) or all together on
shared batches (`lockstep`: one data stream, one VGG pass over each HR batch for all members). Both run the same
code: a phase trains a *group* of members step by step; sequential mode uses groups of one.

Resume is exact: a sample is a pure function of (data seed, sample index) and the n:m plan is a pure function of
the step, so a member's checkpoint (weights, optimizers, RNG, phase, step) is all the state there is. A group's
`last` files are saved as one (train/group_save.py), so a stop at any moment resumes the whole group from one step.
A stop request (ctx.stop, set by the CLI's SIGINT/SIGTERM handlers) ends the current step, saves the group and
raises Stopped.
"""
from __future__ import annotations

import copy
import functools
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from mgsrgan.config import Config
from mgsrgan.evaluate.stlpips import STLPIPS, ReferenceSTLPIPS
from mgsrgan.train.data import MemberStreams, TrainPatches, make_loader
from mgsrgan.train import group_save
from mgsrgan.train.distributed import World, all_reduce_sum, any_rank, barrier
from mgsrgan.train.losses import ContentLoss
from mgsrgan.io.atomic import atomic_write
from mgsrgan.io.checkpoint import Side, arch_of, load_generator
from mgsrgan.errors import UserError
from mgsrgan.train.member import (DONE, PHASES, Member, build_member, init_body_from, load_training_state,
                                  member_dir, memory_format, save_generator)
from mgsrgan.train.runlog import RunLog, format_eta
from mgsrgan.train.schedule import DISCRIMINATOR, gan_phase_steps, update_kind
from mgsrgan.device import autocast_to
from mgsrgan.train.steps import amp_dtype, gan_step, pixel_step
from mgsrgan.train.validation import validate_generators

PHASE_SEED_STRIDE = 1_000_003  # keeps the GAN phase's data stream apart from the pixel-loss phase's (a prime)
FINISH_POLL_S = 5.0  # how often rank 0 of an ensemble-parallel run looks whether the other ranks' members are done
# Pixel-loss steps below which a run only shows that training runs end to end (configs/smoke.yaml): its members are
# barely past their random init, so no score it prints compares members, ensembles or settings
SMOKE_PIXEL_STEPS = 100


@dataclass
class StopFlag:
    """Set from a signal handler to ask training to stop at the end of its current step (saving it first)."""
    requested: bool = False
    reason: str = ""  # what asked, for messages (e.g. "Ctrl-C", "SIGTERM")
    armed: bool = False  # True while train() can honour a request (from building the members to its return)
    # True once train() has failed or stopped: the CLI is saying how to resume. torchrun's SIGTERM to the survivors
    # of a lost rank lands right then; it must not cut that message short
    closing: bool = False


class Stopped(Exception):
    """Training stopped on request after saving; `resume` says where a --resume starts, member by member."""

    def __init__(self, resume: str):
        super().__init__(resume)
        self.resume = resume


@dataclass
class Context:
    cfg: Config
    run_dir: Path
    device: torch.device
    dataset: TrainPatches
    validation: list  # (name, lr, hr) pairs from data.load_validation; empty = no validation
    log: RunLog
    progress: bool = True
    world: World = World()
    content_loss: ContentLoss | None = None  # built on first use: the VGG weights are needed only for the GAN phase
    stop: StopFlag = field(default_factory=StopFlag)
    groups: list = field(default_factory=list)  # this rank's groups of members, in training order (set by train)
    rates: dict = field(default_factory=dict)  # phase -> last measured group steps/s, for the run's ETA

    @property
    def data_parallel(self) -> bool:
        return self.world.distributed and self.cfg.runtime.distributed == "data"

    @property
    def writes_checkpoints(self) -> bool:
        """Data-parallel ranks hold identical members, so rank 0 alone writes; ensemble ranks own their members."""
        return self.world.is_main or not self.data_parallel

    def own_members(self) -> list[int]:
        members = range(self.cfg.train.members)
        if self.world.distributed and not self.data_parallel:
            return [k for k in members if k % self.world.world_size == self.world.rank]
        return list(members)


def smoke_note(cfg: Config) -> str | None:
    """The warning a smoke-sized run prints with its scores (start and end of the run), or None for a real run."""
    reasons = []
    if cfg.train.pretrain_steps < SMOKE_PIXEL_STEPS:
        reasons.append(f"{cfg.train.pretrain_steps} pixel-loss steps")
    if cfg.loss.vgg_weights == "random" and cfg.train.gan_iterations > 0 and cfg.loss.content_weight > 0:
        reasons.append("a content loss on random VGG weights")
    if not reasons:
        return None
    return (f"note: a smoke run ({', '.join(reasons)}) shows that training runs end to end; it says nothing about "
            "quality (an ensemble may score below its members); train with config.yaml or config_scaled.yaml to "
            "compare anything")


def phase_steps(cfg: Config, phase: str) -> int:
    """Steps (optimizer updates, one batch each) in `phase`: an adversarial iteration is d_updates + g_updates."""
    t = cfg.train
    return t.pretrain_steps if phase == Side.PIXEL else gan_phase_steps(t.gan_iterations, t.g_updates, t.d_updates)


def data_seed(cfg: Config, member: Member, phase: str) -> int:
    """Member k's patch stream seed in `phase`: its own seed, or the run's when members share their data.

    The same in sequential and lockstep runs, so a member sees the same patches whichever schedule trains it.
    """
    base = cfg.train.seed if cfg.train.member_data == "shared" else member.seed
    return base + PHASES.index(phase) * PHASE_SEED_STRIDE


def member_stream(ctx: Context, member: Member, phase: str) -> TrainPatches:
    """The member's training patches in `phase` (a copy of the dataset sharing its decoded images)."""
    dataset = copy.copy(ctx.dataset)
    dataset.seed = data_seed(ctx.cfg, member, phase)
    if ctx.cfg.train.member_data == "bootstrap":
        dataset = dataset.bootstrap(member.seed)  # one resample per member, kept across phases
    return dataset


def shares_batches(cfg: Config, group: list[Member]) -> bool:
    return len(group) == 1 or cfg.train.member_data == "shared"


def _content_loss(ctx: Context) -> ContentLoss | None:
    """The content network, built once; None when loss.content_weight is 0 (no trunk needed at all)."""
    if ctx.cfg.loss.content_weight == 0:
        return None
    if ctx.content_loss is None:
        ctx.content_loss = ContentLoss.from_config(ctx.cfg.loss).to(ctx.device)
        ctx.content_loss = ctx.content_loss.to(memory_format=memory_format(ctx.cfg))
    return ctx.content_loss


def _validate_group(ctx: Context, group: list[Member], phase: str, step: int) -> None:
    if not ctx.validation:
        return
    scale = ctx.cfg.model.scale
    selecting = phase == Side.GAN and ctx.cfg.train.gan_select == "stlpips_alex"
    for member in group:
        member.val = validate_generators([member.shipped_generator()], ctx.validation, scale, ctx.device,
                                         _val_world(ctx), perceptual=alex_distance() if selecting else None)
        ctx.log.event("val", member=member.index, phase=phase, step=step, **member.val)
        ctx.log.scalars(f"val/member_{member.index}", member.val, step)
        if selecting:
            _keep_if_best_gan(ctx, member, step)
        if member.best_psnr is None or member.val["psnr"] > member.best_psnr:
            member.best_psnr = member.val["psnr"]
            if ctx.writes_checkpoints:
                save_generator(member, ctx.cfg, member_dir(ctx.run_dir, member.index) / "best.safetensors")
    if ctx.log.tb is not None:  # a sample per member: the first validation image, upscaled
        _name, lr_img, _hr = ctx.validation[0]
        for member in group:
            member.generator.eval()
            with torch.no_grad():
                ctx.log.image(f"sample/member_{member.index}", member.generator(lr_img.to(ctx.device))[0].cpu(),
                              step)
            member.generator.train()
    text = " ".join(f"m{m.index} {m.val['psnr']:.2f}dB/{m.val['ssim']:.4f}" for m in group)
    if selecting:
        text += " | ST-LPIPS-Alex " + " ".join(f"m{m.index} {m.val['stlpips_alex']:.4f}" for m in group)
    if len(group) > 1:
        mean = validate_generators([m.shipped_generator() for m in group], ctx.validation, scale, ctx.device,
                                   _val_world(ctx))
        ctx.log.event("val", member="mean", phase=phase, step=step, **mean)
        text += f" | mean {mean['psnr']:.2f}dB/{mean['ssim']:.4f}"
    ctx.log.say(f"[val] {phase} step {step}: {text}")


@functools.cache
def alex_distance() -> ReferenceSTLPIPS:
    """ST-LPIPS-Alex on the CPU, loaded once per process (train.gan_select; evaluate.py's headline metric)."""
    return ReferenceSTLPIPS(STLPIPS(net="alex"))


def _keep_if_best_gan(ctx: Context, member: Member, step: int) -> None:
    """train.gan_select: save this validation's weights as `gan` when they pass the guards (PSNR within
    gan_select_max_psnr_drop of the pixel-loss member's, artifact amplitude within gan_select_max_artifact x the
    HR's, no RGB channel's mean shift beyond gan_select_max_shift levels) and beat the member's ST-LPIPS-Alex so
    far."""
    t, val = ctx.cfg.train, member.val
    floor = member.history[Side.PIXEL]["psnr"] - t.gan_select_max_psnr_drop
    ratio = val["artifact"] / max(val["artifact_hr"], 1e-12)
    cast = max(abs(val[key]) for key in ("shift_r", "shift_g", "shift_b"))
    passes = val["psnr"] >= floor and ratio <= t.gan_select_max_artifact and cast <= t.gan_select_max_shift
    if passes and (member.gan_pick is None or val["stlpips_alex"] < member.gan_pick["stlpips_alex"]):
        member.gan_pick = {"step": step, **val}
        if ctx.writes_checkpoints:
            save_generator(member, ctx.cfg, member_dir(ctx.run_dir, member.index) / f"{Side.GAN}.safetensors")
        ctx.log.event("gan_pick", member=member.index, step=step, **val)


def _val_world(ctx: Context) -> World:
    """Data-parallel ranks split the validation images; ensemble ranks validate their own members alone."""
    return ctx.world if ctx.data_parallel else World()


def _save_last(ctx: Context, group: list[Member]) -> None:
    if ctx.writes_checkpoints:
        group_save.save_group(group, ctx.cfg, ctx.run_dir)


def _stop_requested(ctx: Context) -> bool:
    """Data-parallel ranks must stop at the same step (their collectives pair up), so they agree first."""
    return any_rank(ctx.stop.requested, ctx.world) if ctx.data_parallel else ctx.stop.requested


def _stop(ctx: Context, group: list[Member]) -> None:
    """Save `group` where it stands and raise Stopped, saying where a resume starts."""
    ctx.log.say(f"{ctx.stop.reason or 'stop'}: saving members {', '.join(str(m.index) for m in group)} at "
                f"{group[0].phase} step {group[0].step}")
    _save_last(ctx, group)
    raise Stopped(resume_summary(ctx.run_dir, ctx.own_members()))


def resume_summary(run_dir: Path, indices: list[int]) -> str:
    """Where a --resume of `run_dir` starts for these members, read from the files."""
    return describe_points({k: group_save.resume_point(run_dir, k) for k in indices})


def describe_points(points: dict[int, tuple[str, int] | None]) -> str:
    """{member: (phase, step) or None} as "members 0, 1 from pretrain step 37; member 2 from scratch"; "from
    scratch: no checkpoint yet" when no member has a checkpoint."""
    if all(point is None for point in points.values()):
        return "from scratch: no checkpoint yet"
    parts: dict[str, list[int]] = {}
    for k, point in points.items():
        text = ("from scratch (no checkpoint yet)" if point is None else "done" if point[0] == DONE
                else f"from {point[0]} step {point[1]}")
        parts.setdefault(text, []).append(k)
    return "; ".join(f"member{'s' if len(ks) > 1 else ''} {', '.join(map(str, ks))} {text}"
                     for text, ks in parts.items())


def run_eta(ctx: Context, current_phase: str, current_rate: float) -> float:
    """Seconds until this rank's members are all done: the steps left in every group and phase, each phase at its
    last measured rate (a phase not measured yet at the current phase's rate)."""
    seconds = 0.0
    for group in ctx.groups:
        first = group[0]
        for phase in PHASES[PHASES.index(first.phase):] if first.phase in PHASES else ():
            left = phase_steps(ctx.cfg, phase) - (first.step if phase == first.phase else 0)
            rate = ctx.rates.get(phase, current_rate) if phase != current_phase else current_rate
            seconds += left / rate if rate > 0 else float("inf")
    return seconds


def _mean_over_ranks(ctx: Context, values: dict[str, torch.Tensor]) -> dict[str, float]:
    floats = [v.item() for v in values.values()]
    if ctx.data_parallel:
        floats = [f / ctx.world.world_size for f in all_reduce_sum(floats, ctx.world)]
    return dict(zip(values, floats))


def run_phase(ctx: Context, group: list[Member], phase: str) -> None:
    """Train every member of `group` through `phase` from where it stands (members already past it are skipped)."""
    group = [m for m in group if m.phase == phase]
    if not group:
        return
    total, start = phase_steps(ctx.cfg, phase), group[0].step
    if any(m.step != start for m in group):  # a group is saved as one (group_save.py), so its members agree
        raise UserError(f"{ctx.run_dir}: the lockstep members' last checkpoints are at different {phase} steps ("
                        + ", ".join(f"member {m.index}: {m.step}" for m in group) + "); a lockstep group resumes "
                        "from one step only, so this run cannot resume exactly")
    if _stop_requested(ctx):
        _stop(ctx, group)
    if start < total:
        names = ",".join(str(m.index) for m in group)
        # closed on the way out, a stop included, so that what the CLI prints next starts on a line of its own
        with tqdm(total=total, initial=start, desc=f"{phase} m{names}", unit="step", dynamic_ncols=True,
                  disable=not ctx.progress or not ctx.log.enabled) as bar:
            _train_steps(ctx, group, phase, start, total, bar)
    _end_phase(ctx, group, phase, total)


def _train_steps(ctx: Context, group: list[Member], phase: str, start: int, total: int, bar: tqdm) -> None:
    """Steps start..total-1 of `phase` for the group, with logging, validation, `last` saves and stop requests."""
    t = ctx.cfg.train
    shared = shares_batches(ctx.cfg, group)
    dataset = (member_stream(ctx, group[0], phase) if shared
               else MemberStreams([member_stream(ctx, m, phase) for m in group]))
    shard = ctx.world if ctx.data_parallel else World()
    loader = make_loader(dataset, batch_size=ctx.cfg.data.batch_size, start_step=start, stop_step=total,
                         num_workers=ctx.cfg.data.num_workers, pin_memory=ctx.device.type == "cuda",
                         rank=shard.rank, world_size=shard.world_size)
    content_loss = _content_loss(ctx) if phase == Side.GAN else None
    tick = (time.perf_counter(), start)  # (time, step) of the last progress line: its rate covers the steps since
    for step, (lr_img, hr_img) in enumerate(loader, start):
        stats = _step_group(ctx, group, phase, step, lr_img, hr_img, shared=shared, content_loss=content_loss)
        bar.update(1)
        done = step + 1
        if done % t.log_every == 0 or done == total:
            tick = _log_progress(ctx, group, phase, done, total, stats, tick)
        if t.val_every and done % t.val_every == 0 and done < total:
            _validate_group(ctx, group, phase, done)
        saved = done % t.checkpoint_every == 0 and done < total
        if saved:
            _save_last(ctx, group)
        if done < total and _stop_requested(ctx):
            if saved:
                raise Stopped(resume_summary(ctx.run_dir, ctx.own_members()))
            _stop(ctx, group)


def _step_group(ctx: Context, group: list[Member], phase: str, step: int, lr_img: torch.Tensor,
                hr_img: torch.Tensor, *, shared: bool, content_loss: ContentLoss | None) -> dict[int, dict]:
    """One optimizer step of every member of the group; {member index: its step's statistics}."""
    cfg, t = ctx.cfg, ctx.cfg.train
    lr_img = lr_img.to(ctx.device, non_blocking=True)  # (B, 3, p/s, p/s) in [0, 1]
    hr_img = hr_img.to(ctx.device, non_blocking=True)  # (B, 3, p, p) in [0, 1]
    hr_features = None
    if phase == Side.GAN and shared and len(group) > 1 and content_loss is not None and \
            update_kind(step, t.g_updates, t.d_updates) != DISCRIMINATOR:
        with torch.no_grad(), autocast_to(amp_dtype(cfg, ctx.device), ctx.device):
            hr_features = content_loss.features(hr_img)  # shared by the whole lockstep group
    stats = {}
    layout = memory_format(cfg)
    for j, member in enumerate(group):
        # (B, K, 3, h, w) from MemberStreams: member j's own batch
        lr_j, hr_j = (lr_img, hr_img) if shared else (lr_img[:, j], hr_img[:, j])
        lr_j, hr_j = lr_j.contiguous(memory_format=layout), hr_j.contiguous(memory_format=layout)
        if phase == Side.PIXEL:
            stats[member.index] = pixel_step(member, lr_j, hr_j, step, cfg, ctx.device)
        else:
            stats[member.index] = gan_step(member, lr_j, hr_j, step, cfg, ctx.device, content_loss, hr_features)
        member.step = step + 1
    return stats


def _log_progress(ctx: Context, group: list[Member], phase: str, done: int, total: int, stats: dict[int, dict],
                  tick: tuple[float, int]) -> tuple[float, int]:
    """The progress event, scalars and line of every member after `done` steps; returns the new tick."""
    now = time.perf_counter()
    rate = (done - tick[1]) / max(now - tick[0], 1e-9)
    ctx.rates[phase] = rate
    eta = (total - done) / rate if rate > 0 else float("inf")
    eta_run = run_eta(ctx, phase, rate)
    for index, values in stats.items():
        floats = _mean_over_ranks(ctx, values)
        ctx.log.event("train", member=index, phase=phase, step=done, steps_per_s=rate, eta_s=eta, eta_run_s=eta_run,
                      g_learning_rate=group[0].optim_g.param_groups[0]["lr"], **floats)
        ctx.log.scalars(f"train/member_{index}/{phase}", floats, done)
        ctx.log.say(f"[{phase} m{index}] step {done}/{total} " + " ".join(f"{k} {v:.4g}" for k, v in floats.items())
                    + f" | {rate:.2f} step/s, ETA phase {format_eta(eta)}, run {format_eta(eta_run)}")
    return now, done


def _end_phase(ctx: Context, group: list[Member], phase: str, total: int) -> None:
    """The phase's final validation, each member's phase checkpoint and move to the next phase, one group save."""
    if total > 0:  # a phase of zero steps changed nothing: its scores are the previous phase's
        _validate_group(ctx, group, phase, total)
    for member in group:
        _finish_member(ctx, member, phase, total)
    _save_last(ctx, group)
    ctx.log.event("phase_end", phase=phase, members=[m.index for m in group])


def _finish_member(ctx: Context, member: Member, phase: str, total: int) -> None:
    cfg = ctx.cfg
    member.history[phase] = member.val
    picked = phase == Side.GAN and cfg.train.gan_select != "last" and member.gan_pick is not None
    if picked:  # `gan` already holds the picked weights (_keep_if_best_gan)
        member.history[phase] = member.gan_pick
        ctx.log.say(f"[gan_select] member {member.index}: gan = step {member.gan_pick['step']} "
                    f"(ST-LPIPS-Alex {member.gan_pick['stlpips_alex']:.4f}, {member.gan_pick['psnr']:.2f} dB)")
    elif phase == Side.GAN and cfg.train.gan_select != "last" and total > 0:
        ctx.log.say(f"[gan_select] member {member.index}: no validation passed the guards; gan = the last weights")
    if ctx.writes_checkpoints and not picked:
        save_generator(member, cfg, member_dir(ctx.run_dir, member.index) / f"{phase}.safetensors")
    member.phase, member.step = (Side.GAN if phase == Side.PIXEL else DONE), 0
    if phase == Side.PIXEL:
        # The adversarial phase starts a fresh generator optimizer, as SRGAN starts from the trained SRResNet
        # (Ledig et al. 2017, sec. 3.2). Adam's second moments from the converged pixel loss are tiny next to
        # the content and adversarial gradients: carried over, they turn lr 1e-4 into far larger first steps.
        member.optim_g.state.clear()
        if member.ema is not None:  # the average starts from the pixel-loss generator
            member.ema.load_state_dict(member.generator.state_dict(), strict=True)


def start_from_pretrained(ctx: Context, member: Member, source: Path) -> None:
    """Begin `member` at the GAN phase with the generator of `source`/member_<k>/pretrain.safetensors (a finished
    pixel-loss phase of another run, e.g. to try new adversarial settings without repeating it); its file is copied into this run."""
    path = member_dir(source, member.index) / f"{Side.PIXEL}.safetensors"
    if not path.is_file():
        raise UserError(f"--pretrained {source}: {path} not found (member {member.index} has no finished pixel-loss phase)")
    generator, meta = load_generator(path)
    if arch_of(generator) != arch_of(member.generator):
        raise UserError(f"--pretrained {path}: its generator ({arch_of(generator)}) is not this config's "
                        f"({arch_of(member.generator)})")
    member.generator.load_state_dict(generator.state_dict(), strict=True)
    if member.ema is not None:
        member.ema.load_state_dict(generator.state_dict(), strict=True)
    member.phase, member.step = Side.GAN, 0
    member.history[Side.PIXEL] = member.val = meta["history"].get(Side.PIXEL, meta["val"])
    if ctx.writes_checkpoints:  # atomically, like every checkpoint: a stop mid-copy leaves no half file
        atomic_write(member_dir(ctx.run_dir, member.index) / f"{Side.PIXEL}.safetensors",
                     lambda tmp: shutil.copyfile(path, tmp))


def start_body_from(member: Member, source: Path) -> str:
    """`train.init_from`: member k's head, residual blocks and body tail from source/member_<k>/pretrain.safetensors
    (any scale; at the same scale the whole generator), before its first step. Returns what was copied, in words."""
    path = member_dir(source, member.index) / f"{Side.PIXEL}.safetensors"
    if not path.is_file():
        raise UserError(f"train.init_from: {path} not found (every member k needs member_<k>/{Side.PIXEL}.safetensors)")
    generator, _ = load_generator(path)
    try:
        copied = init_body_from(member.generator, generator)
    except ValueError as err:
        raise UserError(f"train.init_from: {path}: {err}") from None
    if member.ema is not None:
        member.ema.load_state_dict(member.generator.state_dict(), strict=True)
    return "generator" if len(copied) == len(member.generator.state_dict()) else "body"


def train(ctx: Context, *, resume: bool, pretrained: Path | None = None) -> list[Member]:
    """Train (or resume) this rank's members of the run in ctx.run_dir; returns them, all in phase DONE.
    pretrained: a run folder whose pixel-loss generators start the GAN phase here (a fresh run only).
    Raises Stopped when ctx.stop is requested (after saving where the members stand)."""
    cfg = ctx.cfg
    if resume and (ctx.world.is_main or not ctx.world.distributed):
        for line in group_save.recover(ctx.run_dir):  # a group save that a stop cut short: finished or dropped
            ctx.log.say(f"resume: {line}")
    barrier(ctx.world)  # no rank reads a `last` file before rank 0 has recovered them
    members = [build_member(cfg, k, ctx.device, data_parallel=ctx.data_parallel) for k in ctx.own_members()]
    ctx.stop.armed = True
    try:
        _start_members(ctx, members, resume=resume, pretrained=pretrained)
        if cfg.train.gan_iterations > 0 and any(m.phase != DONE for m in members):
            _content_loss(ctx)  # fail at start, not hours later, when the VGG weights are missing
        ctx.groups = [members] if cfg.train.schedule == "lockstep" else [[m] for m in members]
        for group in ctx.groups:
            for phase in PHASES:
                run_phase(ctx, group, phase)
        _wait_for_all_members(ctx)
    except BaseException:
        ctx.stop.closing = True  # set while still armed: no gap in which a signal raises
        raise
    finally:
        ctx.stop.armed = False
    if ctx.validation and cfg.train.members > 1 and ctx.world.is_main:
        _validate_final_ensemble(ctx)
    return members


def _start_members(ctx: Context, members: list[Member], *, resume: bool, pretrained: Path | None) -> None:
    """Each member from its `last` checkpoint (--resume), else from --pretrained, train.init_from or its seed."""
    cfg = ctx.cfg
    resumed = {}
    for member in members:
        last = member_dir(ctx.run_dir, member.index) / group_save.LAST
        if ctx.writes_checkpoints:
            member_dir(ctx.run_dir, member.index).mkdir(parents=True, exist_ok=True)
        if resume and last.exists():
            load_training_state(member, last)
            resumed[member.index] = (member.phase, member.step)
        elif pretrained is not None:
            start_from_pretrained(ctx, member, Path(pretrained))
            ctx.log.say(f"member {member.index}: GAN phase from {pretrained}'s pixel-loss generator")
        elif cfg.train.init_from:
            part = start_body_from(member, Path(cfg.train.init_from))
            ctx.log.say(f"member {member.index}: {part} initialised from {cfg.train.init_from}")
    if resume:
        ctx.log.say(f"resume {ctx.run_dir}: " + describe_points({m.index: resumed.get(m.index) for m in members}))
        ctx.log.event("resume", members={k: list(point) for k, point in resumed.items()})


def _wait_for_all_members(ctx: Context, poll_s: float = FINISH_POLL_S) -> None:
    """Return once every member of the run is trained (on any rank).

    Data-parallel ranks train the same members and finish together: a barrier. Ensemble ranks own different members
    and may finish hours apart, longer than any collective may wait (COLLECTIVE_TIMEOUT_MIN), so no rank waits in
    a collective: the others leave, and rank 0, which validates the final ensemble from every member's files,
    polls the members' `last` checkpoints until each says done (a stop request ends the wait).
    """
    if not ctx.world.distributed:
        return
    if ctx.data_parallel:
        barrier(ctx.world)
        return
    if not ctx.world.is_main:
        return
    others = [k for k in range(ctx.cfg.train.members) if k not in ctx.own_members()]
    waiting = None
    while True:
        left = [k for k in others if (group_save.resume_point(ctx.run_dir, k) or ("",))[0] != DONE]
        if not left:
            return
        if ctx.stop.requested:
            raise Stopped(resume_summary(ctx.run_dir, ctx.own_members()))
        if left != waiting:
            ctx.log.say(f"waiting for members {', '.join(map(str, left))} (trained by the other processes)")
            waiting = left
        time.sleep(poll_s)


def _validate_final_ensemble(ctx: Context) -> None:
    """The mean of all members (read back from their files: in ensemble mode other ranks trained them)."""
    cfg = ctx.cfg
    for name in PHASES:
        paths = [member_dir(ctx.run_dir, k) / f"{name}.safetensors" for k in range(cfg.train.members)]
        generators = [load_generator(p)[0].to(ctx.device) for p in paths]
        summary = validate_generators(generators, ctx.validation, cfg.model.scale, ctx.device)
        ctx.log.event("val", member="mean", phase=f"final_{name}", **summary)
        ctx.log.say(f"[val] mean of {len(generators)} {name} members: {summary['psnr']:.2f} dB / "
                    f"{summary['ssim']:.4f}")
    note = smoke_note(cfg)
    if note:
        ctx.log.say(note)
