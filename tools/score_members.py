"""Score each member of a run (or shipped ensemble) on its held-out validation images with ST-LPIPS-Alex, and
store the score in the member's checkpoint (`val.stlpips_alex`), for `--strategy perceptual` (1/d weights).

    python -m tools.score_members weights/x2 --checkpoint gan
    python -m tools.score_members runs/NAME --checkpoint gan

The images are the run's own held-out split (`data.val_holdout` of its config.yaml: the last N images of its last
training folder; Set5/Set14/BSD100 are never used to choose weights), scored as evaluate.py scores (modcrop, bicubic
LR, SR rounded to 8 bits, `scale` border pixels cropped). A member whose adversarial phase did little scores near the
pixel-loss members and gets a small weight.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mgsrgan.config import load_config
from mgsrgan.errors import UserError
from mgsrgan.evaluate.protocol import evaluate_image, load_hr, tensor_upscaler
from mgsrgan.evaluate.stlpips import STLPIPS, ReferenceSTLPIPS
from mgsrgan.infer.ensemble import load_members, run_member_paths
from mgsrgan.io.checkpoint import update_val
from mgsrgan.train.data import holdout_paths


SCORE_KEY = "stlpips_alex"


def score_members(run: Path, checkpoint: str, images: list[Path], *, progress: bool = True) -> list[float]:
    """Mean ST-LPIPS-Alex of each member of `run` (its `checkpoint`) over `images` (HR files), in member order."""
    paths = run_member_paths(run, checkpoint)
    members = load_members(paths)
    scale = members[0][0].scale
    upscalers = {str(k): tensor_upscaler(generator.eval()) for k, (generator, _) in enumerate(members)}
    perceptual = {SCORE_KEY: ReferenceSTLPIPS(STLPIPS(net="alex"))}
    totals = np.zeros(len(members))
    for image in tqdm(images, desc=f"{run.name} {checkpoint}", unit="img", disable=not progress):
        scores = evaluate_image(load_hr(image), upscalers, scale=scale, perceptual=perceptual)
        totals += [scores[str(k)][SCORE_KEY] for k in range(len(members))]
    return list(totals / len(images))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run folder or shipped weights folder (member_<k>/ and config.yaml)")
    parser.add_argument("--checkpoint", default="gan")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.run / "config.yaml")
        if cfg.data.val_holdout <= 0:
            raise UserError(f"{args.run}/config.yaml: data.val_holdout is 0; no held-out images to score on")
        images = holdout_paths(cfg.data.train_dirs, cfg.data.val_holdout)
        scores = score_members(args.run, args.checkpoint, images)
        for path, score in zip(run_member_paths(args.run, args.checkpoint), scores):
            update_val(path, {SCORE_KEY: float(score), f"{SCORE_KEY}_images": len(images)})
            print(f"{path}: held-out ST-LPIPS-Alex {score:.4f} over {len(images)} images")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
