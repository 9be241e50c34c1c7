"""`python train.py --config config.yaml`: the command-line edge of training (argv, folders, exit codes)."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from mgsrgan.io.atomic import atomic_write
from mgsrgan.config import Config, DegradationConfig, dump_config, load_config
from mgsrgan.io.photo_degradation import PhotoDegrader
from mgsrgan.train.data import TrainPatches, holdout_paths, load_validation
from mgsrgan.device import resolve_device
from mgsrgan.train.distributed import World, broadcast_object, init_process_group, shutdown, world_from_env
from mgsrgan.errors import UserError
from mgsrgan.train.runlog import RunLog
from mgsrgan.train.loop import Context, StopFlag, Stopped, resume_summary, smoke_note, train
from mgsrgan.io.weightfiles import resolve_imagenet_file, resolve_stlpips_file


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="train.py", description="Train a multi-generator SRGAN ensemble: K members, each pixel-loss "
        "pre-trained (SRResNet) then adversarially trained (SRGAN).")
    parser.add_argument("--config", help="YAML config (config.yaml: x4 paper setup; config_scaled.yaml: x2 for CPU; "
                        "configs/smoke.yaml: seconds). Not needed with --resume.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set train.members=5 (repeatable)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoints, exactly")
    parser.add_argument("--pretrained", metavar="RUN_DIR", type=Path,
                        help="start at the adversarial phase from RUN_DIR's pixel-loss generators "
                             "(member_<k>/pretrain.safetensors), e.g. to try other GAN settings; a new run only")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides runtime.device")
    parser.add_argument("--name", help="run folder name under train.out_dir (default: config stem + time)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    args = parser.parse_args(argv)
    if not args.config and not args.resume:
        parser.error("give --config FILE (or --resume RUN_DIR)")
    if args.pretrained and args.resume:
        parser.error("--pretrained starts a new run; --resume continues one (it already has its generators)")
    return args


def prepare_run_dir(cfg: Config, args: argparse.Namespace) -> Path:
    """Create (or find, for --resume) the run folder and write the resolved config into it."""
    if args.resume:
        run_dir = Path(args.resume)
    else:
        name = args.name or cfg.train.name or f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(cfg.train.out_dir) / name
        if run_dir.exists() and (any(run_dir.glob("member_*/last.safetensors")) or any(run_dir.glob("commit-m*"))):
            raise UserError(f"{run_dir}: a run is already there; continue it with --resume {run_dir} "
                            f"or choose another --name")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / "config.yaml", lambda tmp: Path(tmp).write_text(dump_config(cfg)))
    except OSError as err:
        raise UserError(f"{run_dir}: cannot write the run folder ({err.strerror})") from None
    return run_dir


def load_run_config(args: argparse.Namespace) -> Config:
    if args.resume:
        saved = Path(args.resume) / "config.yaml"
        if not saved.is_file():
            raise UserError(f"--resume {args.resume}: no config.yaml there; is it a run folder?")
        cfg = load_config(saved, args.overrides)
    else:
        cfg = load_config(args.config, args.overrides)
    if args.device:
        cfg.runtime.device = args.device
    return cfg


def shared_run_dir(cfg: Config, args: argparse.Namespace, world: World) -> Path:
    """Rank 0 makes the run folder; every rank gets its path (or rank 0's error, so no rank waits forever)."""
    outcome: tuple[str, str] = ("", "")
    if world.is_main:
        try:
            outcome = (str(prepare_run_dir(cfg, args)), "")
        except UserError as err:
            outcome = ("", str(err))
    path, error = broadcast_object(outcome, world)
    if error:
        raise UserError(error)
    return Path(path)


def photo_degrader(degradation: DegradationConfig, scale: int) -> PhotoDegrader | None:
    """The training LR's photo degradation, or None for the protocol's bicubic one."""
    if degradation.kind == "bicubic":
        return None
    return PhotoDegrader(scale, degradation.first, degradation.second, degradation.second_order_prob)


def run(args: argparse.Namespace, world: World, stop: StopFlag | None = None) -> int:
    cfg = load_run_config(args)
    device = resolve_device(cfg.runtime.device)
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    if world.distributed and cfg.runtime.distributed == "data" and cfg.data.batch_size % world.world_size:
        raise UserError(f"data.batch_size={cfg.data.batch_size} (the global batch) is not divisible by the "
                        f"{world.world_size} processes")
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0
    if restarted and not args.resume:
        if not (args.name or cfg.train.name):
            raise UserError("torchrun restarted the workers, but the run has no fixed name to resume: "
                            "pass --name (or train.name) when using --max-restarts")
        args.resume = str(Path(cfg.train.out_dir) / (args.name or cfg.train.name))
    d = cfg.data  # data problems surface before a run folder is made
    held_out = holdout_paths(d.train_dirs, d.val_holdout)
    degrade = photo_degrader(d.degradation, cfg.model.scale)
    dataset = TrainPatches(hr_dirs=d.train_dirs, lr_dirs=d.train_lr_dirs, scale=cfg.model.scale,
                           hr_patch=d.hr_patch, augment=d.augment, seed=cfg.train.seed,
                           cache_images=d.cache_images, exclude=held_out, degrade=degrade)
    if held_out:
        validation = load_validation(d.train_dirs[-1], cfg.model.scale, paths=held_out, degrade=degrade)
    elif d.val_dir:
        validation = load_validation(d.val_dir, cfg.model.scale, d.val_max_images, degrade=degrade)
    else:
        validation = []
    # missing VGG weights: fail now, not after pre-training (only a content loss needs them)
    if cfg.train.gan_iterations > 0 and cfg.loss.content_weight > 0 and world.is_main:
        if cfg.loss.vgg_weights == "imagenet":
            resolve_imagenet_file(cfg.loss.vgg_path)
        elif cfg.loss.vgg_weights == "stlpips":
            resolve_stlpips_file(cfg.loss.vgg_path)
    init_process_group(world, device)
    run_dir = shared_run_dir(cfg, args, world)
    per_rank_logs = world.distributed and cfg.runtime.distributed == "ensemble"
    log = RunLog(run_dir, enabled=world.is_main or per_rank_logs,
                 filename="log.jsonl" if world.is_main else f"log.rank{world.rank}.jsonl")
    members = f"{cfg.train.members} member" + ("s" if cfg.train.members != 1 else "")
    log.say(f"run folder {run_dir} | device {device} | {members}, {cfg.train.schedule} | "
            f"{len(dataset.sources)} training images ({dataset.skipped_small} smaller than a patch and "
            f"{dataset.skipped_unreadable} unreadable skipped), {len(validation)} validation images"
            + (f" | {world.world_size} processes, {cfg.runtime.distributed}-parallel" if world.distributed else ""))
    if smoke_note(cfg):
        log.say(smoke_note(cfg))
    log.event("start", device=str(device), resume=bool(args.resume), torch=torch.__version__,
              training_images=len(dataset.sources), skipped_small=dataset.skipped_small,
              skipped_unreadable=dataset.skipped_unreadable,
              world_size=world.world_size, rank=world.rank)
    ctx = Context(cfg=cfg, run_dir=run_dir, device=device, dataset=dataset, validation=validation, log=log,
                  progress=not args.no_progress, world=world, stop=stop or StopFlag())
    speaks = ctx.writes_checkpoints  # data-parallel: rank 0 alone (the others hold the same members)
    try:
        train(ctx, resume=bool(args.resume), pretrained=args.pretrained)
    except Stopped as stopped:
        if speaks:
            print(f"stopped by {ctx.stop.reason or 'request'}{_on_rank(world)} and saved; continue with the same "
                  f"command plus --resume {run_dir}: it starts {stopped.resume}", file=sys.stderr)
        return 130 if ctx.stop.reason == CTRL_C else 143
    except (KeyboardInterrupt, Terminated) as interrupt:
        if speaks:
            print(f"{'interrupted' if isinstance(interrupt, KeyboardInterrupt) else 'stopped (SIGTERM)'}"
                  f"{_on_rank(world)} before the current step was saved; continue with the same command plus "
                  f"--resume {run_dir}: it starts {resume_summary(run_dir, ctx.own_members())}", file=sys.stderr)
        return 130 if isinstance(interrupt, KeyboardInterrupt) else 143
    except RuntimeError as err:
        if not (world.distributed and _lost_peer(err)):
            raise
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: rank {world.rank} lost contact with the other processes ({first_line}). Continue with "
              f"the same torchrun command plus --resume {run_dir}: it starts "
              f"{resume_summary(run_dir, ctx.own_members())}", file=sys.stderr)
        return 1
    finally:
        log.close()
    if world.is_main:
        print(f"done: {run_dir} (member checkpoints in {run_dir}/member_*/)")
    return 0


LOST_PEER_MARKERS = ("gloo", "nccl", "connection reset", "connection closed", "timed out")  # as torch words them


def _lost_peer(err: RuntimeError) -> bool:
    """A collective that failed because another rank vanished (gloo raises a plain RuntimeError for it)."""
    return isinstance(err, dist.DistError) or any(m in str(err).lower() for m in LOST_PEER_MARKERS)


def _on_rank(world: World) -> str:
    return f" on rank {world.rank}" if world.distributed else ""


class Terminated(Exception):
    """SIGTERM before training could save (torchrun stops the surviving workers this way when one fails)."""


CTRL_C = "Ctrl-C (SIGINT)"


def install_stop_handlers(stop: StopFlag) -> None:
    """SIGINT (Ctrl-C) and SIGTERM (torchrun, job schedulers, `kill`): while training runs, the first one asks it
    to finish its step, save it (the whole lockstep group at once) and stop; before then, or a second time, the
    process stops at once (KeyboardInterrupt / Terminated), keeping the last saved checkpoints. Once training has
    failed or stopped (stop.closing), a signal changes nothing: the process is already saying how to resume."""
    def handle(signum, frame):
        if stop.closing:  # training already failed or stopped and saved: let the resume message finish
            return
        if stop.armed and not stop.requested:
            stop.reason = CTRL_C if signum == signal.SIGINT else "SIGTERM"
            stop.requested = True
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    world = world_from_env()
    stop = StopFlag()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    install_stop_handlers(stop)
    try:
        return run(args, world, stop)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as interrupt:  # while reading data, before training began
        print(f"{'interrupted' if isinstance(interrupt, KeyboardInterrupt) else 'stopped (SIGTERM)'} before "
              "training began", file=sys.stderr)
        return 130 if isinstance(interrupt, KeyboardInterrupt) else 143
    finally:
        for sig, handler in previous.items():  # main() may be called again in the same process (tests)
            signal.signal(sig, handler)
        shutdown()
