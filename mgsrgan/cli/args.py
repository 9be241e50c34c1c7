"""Command-line arguments shared by the commands that load an ensemble (`inference.py`, `mgsrgan export`): where
the members come from and how they are combined, and building the model from them."""
from __future__ import annotations

import argparse
from pathlib import Path

from mgsrgan.infer import ensemble
from mgsrgan.infer.ensemble import STRATEGIES, Ensemble
from mgsrgan.infer.upscaler import ensemble_from_source
from mgsrgan.io.checkpoint import CHECKPOINT_NAMES


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the members come from and how they are combined (shared with `mgsrgan export`)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", type=Path, help="training run folder: uses every RUN/member_<k>/<checkpoint>")
    source.add_argument("--weights", type=Path, nargs="+", metavar="FILE",
                        help="explicit checkpoint files, one per member (default: the shipped weights/ folder, or "
                             "$MGSRGAN_WEIGHTS when set)")
    shipped = " or ".join(f"weights/x{s}" for s in ensemble.SHIPPED_SCALES)
    parser.add_argument("--scale", type=int, default=None,
                        help=f"which shipped model: {shipped} (default x{ensemble.DEFAULT_SHIPPED_SCALE}: trained "
                             "longest); with --run/--weights it must match their scale; for other "
                             "output sizes see --outscale")
    parser.add_argument("--real", action="store_true",
                        help="use the real-photo model of --scale (weights/x<scale>-real): for photos from phones "
                             "and the web (JPEG, sensor noise, blur). The default model is for clean downscaled "
                             "images; --checkpoint gan picks its GAN members. Not with --run/--weights")
    parser.add_argument("--checkpoint", choices=CHECKPOINT_NAMES, default=None,
                        help="which checkpoint of each member: pretrain (pixel-loss phase: highest PSNR), gan "
                             "(adversarial: most texture), or, in a training run folder, best (best validation "
                             "PSNR) or last. Default: pretrain for the shipped weights (they hold pretrain and gan) "
                             "and with --alpha; for a run folder best, or pretrain where it has no best")
    parser.add_argument("--strategy", choices=STRATEGIES, default=None,
                        help="mean: plain average; median: robust to one bad member; weighted: 1/MSE weights from "
                             "validation PSNR; perceptual: 1/d weights from each member's held-out ST-LPIPS-Alex d "
                             "(GAN members scored by python -m tools.score_members); best: one member, K times faster; "
                             "consensus: per-pixel weights that drop a member only where it disagrees with the rest "
                             "(see mgsrgan/infer/ensemble.py); texture (GAN members): the perceptual-weights mean "
                             "with the texture that averaging removes restored, measured around the pixel-loss "
                             "members beside them (mgsrgan/infer/fusion.py). Default: texture for scored GAN "
                             "members with their pretrain checkpoints (the shipped gan checkpoints), perceptual "
                             "for scored ones without, else mean")
    parser.add_argument("--alpha", type=float, default=0.0,
                        help="perception-distortion knob in [0, 1]: (1-A) * pixel-loss ensemble + A * GAN side "
                             "(the GAN members' texture-preserving mean when scored, else their mean); 0 (default) "
                             "= best PSNR, 1 = most texture "
                             "(Blau & Michaeli 2018)")
    parser.add_argument("--adaptive", type=float, default=0.0, metavar="C0",
                        help="adaptive fusion: per pixel, the GAN share is A where the GAN members' fine texture "
                             "agrees (coherence >= C0, in (0, 1]) and falls toward the pixel-loss ensemble where "
                             "each member draws its own (likely hallucination or artefact); a higher C0 keeps less "
                             "texture; 0 (default) = one global --alpha")
    parser.add_argument("--guided", type=float, default=0.0, metavar="TAU",
                        help="guided fusion: per pixel, the GAN share is 0 where the pixel-loss members agree (flat "
                             "areas, clean edges: texture there is an artefact) and rises to A/2 where their std "
                             "reaches TAU 8-bit levels and toward A beyond, so a larger TAU keeps texture only where "
                             "they disagree more; 0 (default) = one global --alpha. The model cards compare values")
    parser.add_argument("--gan-member", type=Path, nargs="+", metavar="FILE",
                        help="GAN checkpoint(s) blended in by --alpha (default: every member's gan checkpoint)")
    parser.add_argument("--gan-index", type=int, default=None,
                        help="blend in this member's gan checkpoint alone (default: all members, averaged)")
    parser.add_argument("--self-ensemble", action="store_true",
                        help="run every member on the 8 flips/rotations of the input and average (EDSR+, Lim et al. "
                             "2017); 8x the time for a small gain (the model cards measure it)")


def model_from_args(args: argparse.Namespace) -> Ensemble:
    return ensemble_from_source(run=args.run, weights=args.weights, checkpoint=args.checkpoint,
                                strategy=args.strategy, alpha=args.alpha, gan_paths=args.gan_member,
                                gan_index=args.gan_index, adaptive_c0=args.adaptive, guided_tau=args.guided,
                                self_ensemble=args.self_ensemble, scale=args.scale, real=args.real)
