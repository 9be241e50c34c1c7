"""Is a trained member's PSNR plateau its training budget or its BatchNorm? Continue its pixel-loss training and see.

    python benchmarks/plateau_probe.py --checkpoint weights/member_0/pretrain.safetensors --config weights/config.yaml
        [--steps 300] [--lr 1e-4] [--every 100] [--variants batchnorm folded]
        [--out benchmarks/results/plateau_probe.json]

For each variant, starting from the same checkpoint: `batchnorm` trains the network as it is (BatchNorm in train
mode on the batch statistics, as in phase 1); `folded` first folds every BatchNorm into its convolution
(mgsrgan.models.fuse.fold_batchnorm: the same outputs at step 0) and trains that BatchNorm-free network, as EDSR does
(Lim et al. 2017). Both see the same patch stream (the config's data and patch size, its batch size, seed
--seed) with L1 and Adam at a constant --lr, and are scored on the config's validation set (Y PSNR, crop = scale)
every --every steps. If the folded network gains clearly more, BatchNorm held the plateau; if both keep gaining,
the run was stopped too early. Writes --out (JSON) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # so `python benchmarks/plateau_probe.py` finds the package without installing it

from mgsrgan.io.checkpoint import load_generator  # noqa: E402
from mgsrgan.config import load_config  # noqa: E402
from mgsrgan.train.data import TrainPatches, load_validation, make_loader  # noqa: E402
from mgsrgan.models.fuse import fold_batchnorm  # noqa: E402
from mgsrgan.train.losses import pixel_loss  # noqa: E402
from mgsrgan.train.validation import validate_generators  # noqa: E402

VARIANTS = ("batchnorm", "folded")


def probe(variant: str, args: argparse.Namespace, cfg, dataset: TrainPatches, validation: list) -> list[dict]:
    """Train one copy of the checkpoint for args.steps; -> [{"step", "psnr", "ssim", "seconds"}] from step 0.

    Every variant reads the same `dataset`: its samples are a pure function of (seed, index), so each loader
    replays the same patch stream (no torch random numbers are drawn)."""
    generator, _meta = load_generator(args.checkpoint)
    if variant == "folded":
        generator = fold_batchnorm(generator)
        generator.requires_grad_(True)  # fold_batchnorm freezes its copy for inference
    generator.train()
    loader = make_loader(dataset, batch_size=cfg.data.batch_size, start_step=0, stop_step=args.steps,
                         num_workers=cfg.data.num_workers)
    optimizer = torch.optim.Adam(generator.parameters(), lr=args.lr)
    device = torch.device("cpu")
    scores = [{"step": 0, **validate_generators([generator], validation, cfg.model.scale, device), "seconds": 0.0}]
    start = time.perf_counter()
    for step, (lr_img, hr_img) in enumerate(loader, start=1):
        loss = pixel_loss(generator(lr_img), hr_img, cfg.loss.pixel)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.every == 0 or step == args.steps:
            row = validate_generators([generator], validation, cfg.model.scale, device)
            scores.append({"step": step, **row, "seconds": time.perf_counter() - start})
            print(f"{variant} step {step}: {row['psnr']:.3f} dB", flush=True)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a pretrain.safetensors of a member")
    parser.add_argument("--config", type=Path, required=True, help="the run's config (data, patch, batch, loss)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-4, help="constant Adam lr (the paper's 1e-4)")
    parser.add_argument("--every", type=int, default=100, help="validate every this many steps")
    parser.add_argument("--seed", type=int, default=0, help="patch stream seed")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "plateau_probe.json")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.every < 1:
        parser.error("--steps and --every must be >= 1")
    for path in (args.checkpoint, args.config):
        if not path.is_file():
            parser.error(f"{path}: no such file")
    cfg = load_config(args.config)
    if not cfg.data.val_dir:
        parser.error(f"{args.config}: data.val_dir is empty; the probe scores on the validation set")
    validation = load_validation(cfg.data.val_dir, cfg.model.scale, cfg.data.val_max_images)
    dataset = TrainPatches(hr_dirs=cfg.data.train_dirs, lr_dirs=cfg.data.train_lr_dirs, scale=cfg.model.scale,
                           hr_patch=cfg.data.hr_patch, augment=cfg.data.augment, seed=args.seed)
    results = {variant: probe(variant, args, cfg, dataset, validation) for variant in args.variants}
    report = {"checkpoint": str(args.checkpoint), "config": str(args.config), "steps": args.steps, "lr": args.lr,
              "seed": args.seed, "val_dir": cfg.data.val_dir, "device": "cpu", "torch": torch.__version__,
              "variants": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n| step | {' | '.join(f'{v} (dB)' for v in results)} |")
    print("| --- |" + " --- |" * len(results))
    for index, row in enumerate(next(iter(results.values()))):
        print(f"| {row['step']} | " + " | ".join(f"{results[v][index]['psnr']:.3f}" for v in results) + " |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
