"""Command-line arguments shared by the commands that load an ensemble (`inference.py`, `mgsrgan export`): where
the members come from and how they are combined, and building the model from them."""
from __future__ import annotations

import argparse
import sys
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
                        help="explicit checkpoint files, one per member (default: the shipped weights/ folder)")
    parser.add_argument("--scale", type=int, choices=ensemble.SHIPPED_SCALES, default=None,
                        help="which shipped ensemble: weights/x2 or weights/x4 (default "
                             f"x{ensemble.DEFAULT_SHIPPED_SCALE}: its members trained longer); with --run/--weights "
                             "it must match their scale")
    parser.add_argument("--checkpoint", choices=CHECKPOINT_NAMES, default=None,
                        help="which checkpoint of each run member: best validation PSNR (default), last, pretrain "
                             "(pixel-loss phase: highest PSNR) or gan (adversarial: most texture); default "
                             "pretrain with --alpha, for the shipped weights and for a run folder without best "
                             "checkpoints")
    parser.add_argument("--strategy", choices=STRATEGIES, default=None,
                        help="mean: safe default; median: robust to one bad member; weighted: 1/MSE weights from "
                             "validation PSNR; perceptual: 1/d weights from each member's held-out ST-LPIPS-Alex d "
                             "(GAN members scored by scripts/score_members.py); best: one member, K times faster; "
                             "consensus: per-pixel weights that drop a member only where it disagrees with the rest "
                             "(see mgsrgan/infer/ensemble.py); texture (GAN members): the perceptual-weights mean "
                             "with the texture that averaging removes restored, measured around the pixel-loss "
                             "members beside them (mgsrgan/infer/fusion.py). Default: texture for scored GAN "
                             "members with their pretrain checkpoints (the shipped gan checkpoints), perceptual "
                             "for scored ones without, else mean")
    parser.add_argument("--alpha", type=float, default=0.0,
                        help="perception-distortion knob in [0, 1]: (1-A) * distortion ensemble + A * GAN side "
                             "(the GAN members' texture-preserving mean when scored, else their mean); 0 (default) "
                             "= best PSNR, 1 = most texture "
                             "(Blau & Michaeli 2018)")
    parser.add_argument("--adaptive", type=float, default=0.0, metavar="C0",
                        help="adaptive fusion: per pixel, the GAN share is A where the GAN members' fine texture "
                             "agrees (coherence >= C0, in (0, 1]) and falls toward the pixel-loss ensemble where "
                             "each member draws its own (likely hallucination or artefact); try --alpha 1 "
                             "--adaptive 0.8 (chosen on held-out images); 0 (default) = one global --alpha")
    parser.add_argument("--guided", type=float, default=0.0, metavar="TAU",
                        help="guided fusion: per pixel, the GAN share is 0 where the pixel-loss members agree (flat "
                             "areas, clean edges: texture there is an artefact) and rises to A/2 where their std "
                             "reaches TAU 8-bit levels and toward A beyond; try --alpha 1 --guided 0.25 (chosen on "
                             "held-out images); 0 (default) = one global --alpha")
    parser.add_argument("--gan-member", type=Path, nargs="+", metavar="FILE",
                        help="GAN checkpoint(s) blended in by --alpha (default: every member's gan checkpoint)")
    parser.add_argument("--gan-index", type=int, default=None,
                        help="blend in this member's gan checkpoint alone (default: all members, averaged)")
    parser.add_argument("--self-ensemble", action="store_true",
                        help="run every member on the 8 flips/rotations of the input and average (EDSR+, Lim et al. "
                             "2017); 8x the time for +0.01 dB on Set5 with the previous shipped members "
                             "(weights/x2/MODEL_CARD.md)")


def model_from_args(args: argparse.Namespace) -> Ensemble:
    model = ensemble_from_source(run=args.run, weights=args.weights, checkpoint=args.checkpoint,
                                 strategy=args.strategy, alpha=args.alpha, gan_member=args.gan_member,
                                 gan_index=args.gan_index, adaptive_c0=args.adaptive, guided_tau=args.guided,
                                 self_ensemble=args.self_ensemble, scale=args.scale)
    notice = ensemble.SHIPPED_ROOT / "NOTICE.txt"  # optional: what a user of the shipped ensemble must know
    if args.run is None and not args.weights and notice.is_file():
        print(f"note: {notice.read_text().strip()}", file=sys.stderr)
    return model
