"""`python train.py --config config.yaml`: the command-line edge of training (argv, folders, exit codes)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from mgsrgan.checkpoint import atomic_write
from mgsrgan.config import Config, dump_config, load_config
from mgsrgan.data import TrainPatches, load_validation
from mgsrgan.device import resolve_device
from mgsrgan.errors import UserError
from mgsrgan.runlog import RunLog
from mgsrgan.training import Context, train


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="train.py", description="Train a multi-generator SRGAN ensemble: K members, each pixel-loss "
        "pre-trained (SRResNet) then adversarially trained (SRGAN).")
    parser.add_argument("--config", help="YAML config (config.yaml: x4 paper setup; config_scaled.yaml: x2 for CPU; "
                        "configs/smoke.yaml: seconds). Not needed with --resume.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set train.members=5 (repeatable)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoints, exactly")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides runtime.device")
    parser.add_argument("--name", help="run folder name under train.out_dir (default: config stem + time)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    args = parser.parse_args(argv)
    if not args.config and not args.resume:
        parser.error("give --config FILE (or --resume RUN_DIR)")
    return args


def prepare_run_dir(cfg: Config, args: argparse.Namespace) -> Path:
    """Create (or find, for --resume) the run folder and write the resolved config into it."""
    if args.resume:
        run_dir = Path(args.resume)
    else:
        name = args.name or cfg.train.name or f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(cfg.train.out_dir) / name
        if run_dir.exists() and any(run_dir.glob("member_*/last.safetensors")):
            raise UserError(f"{run_dir}: a run is already there; continue it with --resume {run_dir} "
                            f"or choose another --name")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / "config.yaml", lambda tmp: Path(tmp).write_text(dump_config(cfg)))
    except OSError as err:
        raise UserError(f"{run_dir}: cannot write the run folder ({err.strerror})") from None
    return run_dir


def run(args: argparse.Namespace) -> int:
    if args.resume:
        saved = Path(args.resume) / "config.yaml"
        if not saved.is_file():
            raise UserError(f"--resume {args.resume}: no config.yaml there; is it a run folder?")
        cfg = load_config(saved, args.overrides)
    else:
        cfg = load_config(args.config, args.overrides)
    if args.device:
        cfg.runtime.device = args.device
    device = resolve_device(cfg.runtime.device)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    d = cfg.data  # data problems surface before a run folder is made
    dataset = TrainPatches(hr_dirs=d.train_dirs, lr_dirs=d.train_lr_dirs, scale=cfg.model.scale,
                           hr_patch=d.hr_patch, augment=d.augment, seed=cfg.train.seed,
                           cache_images=d.cache_images)
    validation = load_validation(d.val_dir, cfg.model.scale, d.val_max_images) if d.val_dir else []
    run_dir = prepare_run_dir(cfg, args)
    log = RunLog(run_dir, quiet=False)
    log.say(f"run folder {run_dir} | device {device} | {cfg.train.members} members, {cfg.train.schedule} | "
            f"{len(dataset.sources)} training images, {len(validation)} validation images")
    log.event("start", device=str(device), resume=bool(args.resume), torch=torch.__version__)
    ctx = Context(cfg=cfg, run_dir=run_dir, device=device, dataset=dataset, validation=validation, log=log,
                  progress=not args.no_progress)
    try:
        train(ctx, resume=bool(args.resume))
    except KeyboardInterrupt:
        log.say(f"interrupted: the last checkpoints are kept; continue with  python train.py --resume {run_dir}")
        return 130
    finally:
        log.close()
    print(f"done: {run_dir} (member checkpoints in {run_dir}/member_*/)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
