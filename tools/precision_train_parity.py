"""Does bf16 autocast train as well as fp32? The same member, seed and patch stream, pixel-loss phase, both ways.

    python -m tools.precision_train_parity [--config config_scaled.yaml] [--steps 200]
        [--out tools/results/precision_train_parity]

Builds member 0 of the config (its seed), trains it --steps pixel-loss steps with the trainer's own
`steps.pixel_step` on the config's patch stream (held-out images excluded) at the config's cosine schedule
shortened to --steps, once with runtime.amp=none (fp32) and once with bf16, and scores each on the config's
validation images (Y PSNR). Writes OUT.json and OUT.md with validation PSNR and steps/s of each.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from mgsrgan.config import load_config
from mgsrgan.train.data import TrainPatches, holdout_paths, load_validation, make_loader
from mgsrgan.train.member import build_member
from mgsrgan.train.steps import pixel_step
from mgsrgan.train.validation import validate_generators

REPO = Path(__file__).resolve().parents[1]


def run(amp: str, args: argparse.Namespace) -> dict:
    cfg = load_config(args.config, [f"runtime.amp={amp}", f"train.pretrain_steps={args.steps}"])
    d, device = cfg.data, torch.device("cpu")
    held_out = holdout_paths(d.train_dirs, d.val_holdout)
    dataset = TrainPatches(hr_dirs=d.train_dirs, scale=cfg.model.scale, hr_patch=d.hr_patch, augment=d.augment,
                           seed=cfg.train.seed, exclude=held_out)
    validation = load_validation(d.train_dirs[-1], cfg.model.scale, paths=held_out)
    member = build_member(cfg, 0, device)
    loader = make_loader(dataset, batch_size=d.batch_size, start_step=0, stop_step=args.steps,
                         num_workers=d.num_workers)
    start = time.perf_counter()
    for step, (lr_img, hr_img) in enumerate(loader):
        pixel_step(member, lr_img, hr_img, step, cfg, device)
    seconds = time.perf_counter() - start
    scores = validate_generators([member.generator], validation, cfg.model.scale, device)
    return {"amp": amp, "steps": args.steps, "seconds": seconds, "steps_per_s": args.steps / seconds, **scores}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "config_scaled.yaml")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "tools/results/precision_train_parity")
    args = parser.parse_args()
    rows = [run(amp, args) for amp in ("none", "bf16")]
    args.out.with_suffix(".json").write_text(json.dumps({"config": str(args.config), "rows": rows}, indent=1))
    fp32, bf16 = rows
    text = (f"Pixel-loss training, member 0 of `{args.config.name}`, {args.steps} steps, same seed and patches; "
            "validation = the held-out images (Y PSNR).\n\n| precision | validation PSNR (dB) | SSIM | steps/s |\n"
            "| --- | ---: | ---: | ---: |\n"
            + "".join(f"| {'fp32' if r['amp'] == 'none' else r['amp']} | {r['psnr']:.3f} | {r['ssim']:.4f} | "
                      f"{r['steps_per_s']:.3f} |\n" for r in rows)
            + f"\nbf16 - fp32: {bf16['psnr'] - fp32['psnr']:+.3f} dB; speed ratio "
              f"{bf16['steps_per_s'] / fp32['steps_per_s']:.2f}x\n")
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
