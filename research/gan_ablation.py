"""Which adversarial-phase recipe gives detail without a cast or a checkerboard? A small ablation, scored on the
held-out validation split (never a test set).

    python -m research.gan_ablation --checkpoint runs/x2-indep/member_0/pretrain.safetensors \
        --config config_scaled.yaml [--iterations 300] [--variants paper l1_adv ...] \
        [--out research/results/gan_ablation]

Every variant starts from the same pixel-loss generator with fresh optimizers and a fresh discriminator (seeded),
reads the same patch stream (the config's training data minus the held-out images) and runs the trainer's own
`steps.gan_step` for --iterations steps of the config's n:m plan, in the config's precision. Each variant
keeps a weight EMA (--ema) beside its raw generator; both are scored on the config's validation images:
Y PSNR, ST-LPIPS-Alex (a judge no loss here trains on), periodic-artifact amplitude (next to the HR's own) and
colour shift (mgsrgan.evaluate.artifacts). Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mgsrgan.io.checkpoint import load_generator
from mgsrgan.config import load_config
from mgsrgan.train.data import TrainPatches, holdout_paths, load_validation, make_loader
from mgsrgan.evaluate.protocol import artifact_scores
from mgsrgan.train.losses import ContentLoss
from mgsrgan.train.member import GAN, build_member
from mgsrgan.evaluate.metrics import psnr, tensor_to_uint8
from mgsrgan.train.steps import gan_step
from mgsrgan.evaluate.stlpips import STLPIPS, stlpips_distance

REPO = Path(__file__).resolve().parents[1]

# name -> config overrides on top of the given config. All keep the config's lr, n:m plan and patch stream.
SHALLOW = ["loss.content_layers=[1_2, 2_2, 3_3]", "loss.content_layer_weights=[0.1, 0.1, 1.0]"]
VARIANTS: dict[str, list[str]] = {
    # what shipped before: ST-LPIPS VGG16 conv5_3 content + 1e-3 adversarial, no pixel anchor
    "paper_5_3": ["loss.pixel_weight_gan=0", "loss.content_weight=1", "loss.adv_weight=0.001"],
    # pixel anchor + deep content (the measured cast/checkerboard source)
    "paper_5_3_frozen_bn": ["loss.pixel_weight_gan=0", "loss.content_weight=1", "loss.adv_weight=0.001",
                            "train.gan_freeze_bn=true"],
    # pixel anchor + adversarial only
    "l1_adv": ["loss.pixel_weight_gan=1", "loss.content_weight=0", "loss.adv_weight=0.005"],
    "l1_adv_frozen_bn": ["loss.pixel_weight_gan=1", "loss.content_weight=0", "loss.adv_weight=0.005",
                         "train.gan_freeze_bn=true"],
    "l1_ragan_sn": ["loss.pixel_weight_gan=1", "loss.content_weight=0", "loss.adv_weight=0.005",
                    "train.gan_freeze_bn=true", "loss.adversarial=relativistic", "model.d_spectral_norm=true"],
    # the above + the grid-pattern penalty (losses.grid_pattern_loss)
    "l1_ragan_sn_grid": ["loss.pixel_weight_gan=1", "loss.content_weight=0", "loss.adv_weight=0.005",
                         "train.gan_freeze_bn=true", "loss.adversarial=relativistic", "model.d_spectral_norm=true",
                         "loss.grid_weight=1000"],
    "l1_shallow_ragan_sn": ["loss.pixel_weight_gan=1", "loss.content_weight=1", "loss.adv_weight=0.005",
                            "train.gan_freeze_bn=true", "loss.adversarial=relativistic",
                            "model.d_spectral_norm=true", *SHALLOW],
}


def score(generator: torch.nn.Module, validation: list, scale: int, stlpips) -> dict[str, float]:
    """Mean over the validation images of Y PSNR, ST-LPIPS-Alex (if given), artifact amplitude, colour shift."""
    rows = []
    generator.eval()
    for _name, lr, hr in validation:
        with torch.no_grad():
            sr = tensor_to_uint8(generator(lr).float())
        hr8 = tensor_to_uint8(hr)
        row = {"psnr": psnr(sr, hr8, crop_border=scale), **artifact_scores(sr, hr8, scale=scale)}
        if stlpips is not None:
            row["stlpips_alex"] = float(stlpips(sr[scale:-scale, scale:-scale], hr8[scale:-scale, scale:-scale]))
        rows.append(row)
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def run_variant(name: str, args: argparse.Namespace, stlpips) -> dict:
    cfg = load_config(args.config, [*VARIANTS[name], f"train.ema_decay={args.ema}",
                                    f"train.gan_iterations={args.iterations}",  # >= the steps run: no decay
                                    f"train.gan_lr_decay_iteration={args.iterations}"])
    device = torch.device("cpu")
    member = build_member(cfg, 0, device)
    pretrained, _meta = load_generator(args.checkpoint)
    member.generator.load_state_dict(pretrained.state_dict(), strict=True)
    member.ema.load_state_dict(pretrained.state_dict(), strict=True)
    member.generator.train()
    member.phase = GAN
    d = cfg.data
    held_out = holdout_paths(d.train_dirs, d.val_holdout)
    dataset = TrainPatches(hr_dirs=d.train_dirs, scale=cfg.model.scale, hr_patch=d.hr_patch, augment=d.augment,
                           seed=args.seed, exclude=held_out)
    validation = load_validation(d.train_dirs[-1], cfg.model.scale, paths=held_out)
    content = ContentLoss.from_config(cfg.loss) if cfg.loss.content_weight > 0 else None
    loader = make_loader(dataset, batch_size=d.batch_size, start_step=0, stop_step=args.iterations,
                         num_workers=d.num_workers)
    start = time.perf_counter()
    first = last = None
    for it, (lr_img, hr_img) in enumerate(loader):
        stats = {k: float(v) for k, v in gan_step(member, lr_img, hr_img, it, cfg, device, content, None).items()}
        if "adv" in stats:
            first = first or stats
            last = stats
    seconds = time.perf_counter() - start
    out = {"variant": name, "overrides": VARIANTS[name], "seconds": seconds, "first_g": first, "last_g": last,
           "raw": score(member.generator, validation, cfg.model.scale, stlpips),
           "ema": score(member.ema, validation, cfg.model.scale, stlpips)}
    print(f"{name}: {seconds:.0f} s | raw {out['raw']} | ema {out['ema']}", flush=True)
    return out


def markdown(results: list[dict], start: dict, args: argparse.Namespace) -> str:
    head = ("| variant | weights | PSNR (dB) | ST-LPIPS-Alex | artifact (HR {hr:.3f}) | shift R / G / B |\n"
            "| --- | --- | ---: | ---: | ---: | --- |\n").format(hr=start["artifact_hr"])

    def line(name: str, which: str, s: dict) -> str:
        alex = f"{s['stlpips_alex']:.4f}" if "stlpips_alex" in s else "-"
        return (f"| {name} | {which} | {s['psnr']:.2f} | {alex} | {s['artifact']:.3f} | "
                f"{s['shift_r']:+.2f} / {s['shift_g']:+.2f} / {s['shift_b']:+.2f} |\n")
    body = line("start (pixel loss)", "-", start)
    for r in results:
        body += line(r["variant"], "raw", r["raw"]) + line(r["variant"], f"EMA {args.ema}", r["ema"])
    return (f"GAN-phase ablation: {args.iterations} iterations from `{args.checkpoint}` (config `{args.config}`), "
            f"scored on the held-out validation images.\n\n" + head + body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a pixel-loss generator checkpoint")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=300, help="GAN steps (each one D or one G update) per variant")
    parser.add_argument("--ema", type=float, default=0.99, help="EMA decay scored beside the raw weights")
    parser.add_argument("--seed", type=int, default=1_000_003, help="patch stream seed (phase 2's of member 0)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--no-stlpips", action="store_true", help="skip ST-LPIPS-Alex (faster)")
    parser.add_argument("--append", action="store_true", help="keep OUT.json's other variants in the table")
    parser.add_argument("--out", type=Path, default=REPO / "research/results/gan_ablation")
    args = parser.parse_args()
    stlpips = None if args.no_stlpips else alex_distance()
    cfg = load_config(args.config)
    held_out = holdout_paths(cfg.data.train_dirs, cfg.data.val_holdout)
    validation = load_validation(cfg.data.train_dirs[-1], cfg.model.scale, paths=held_out)
    start = score(load_generator(args.checkpoint)[0], validation, cfg.model.scale, stlpips)
    earlier = []
    if args.append and args.out.with_suffix(".json").is_file():  # add variants to an earlier table (same start)
        previous = json.loads(args.out.with_suffix(".json").read_text())
        earlier = [r for r in previous["results"] if r["variant"] not in args.variants]
    results = earlier + [run_variant(name, args, stlpips) for name in args.variants]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"start": start, "results": results,
                                                         "checkpoint": str(args.checkpoint),
                                                         "iterations": args.iterations}, indent=1))
    text = markdown(results, start, args)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


def alex_distance():
    """ST-LPIPS-Alex on uint8 (H, W, 3) pairs (the package's AlexNet weights, our implementation)."""
    model = STLPIPS(net="alex")
    return lambda sr, hr: stlpips_distance(np.ascontiguousarray(sr), np.ascontiguousarray(hr), model=model)


if __name__ == "__main__":
    sys.exit(main())
