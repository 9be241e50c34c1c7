"""Is the ensemble's disagreement map worth showing? How well the members' per-pixel std predicts the error.

    python -m tools.uncertainty_worth --runs weights runs/x2-indep --checkpoint pretrain \
        --sets ../shared/data/Set14 ../shared/data/BSD100 [--out tools/results/uncertainty_worth]
    python -m tools.uncertainty_worth --runs weights/campaign/x2-pixel --dihedral \
        --held-out config_scaled.yaml          # one network's 8 flips/rotations as the members, validation images

Per image (x2 or the run's scale, crop = scale): the members' outputs, their mean M and per-pixel std s (mean over
RGB), the error e = |M - HR| (mean over RGB, 8-bit levels). Reported, averaged over images: the Spearman rank
correlation of s with e, and the MSE left after dropping the 10 % most-uncertain pixels divided by the MSE left
after dropping 10 % at random (the expectation: the full MSE); below 1 means the map points at the errors. Also
the ensemble's PSNR gain (RGB-mean error, Y PSNR) over its best member on each set. Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm import tqdm

from mgsrgan.config import load_config
from mgsrgan.device import autocast_to, resolve_precision
from mgsrgan.infer.self_ensemble import symmetry_outputs
from mgsrgan.train.data import holdout_paths
from mgsrgan.infer.ensemble import load_members, run_member_paths
from mgsrgan.evaluate.protocol import benchmark_images
from mgsrgan.evaluate.metrics import PEAK, psnr, tensor_to_uint8
from tools.fusion_curve import load_pair

REPO = Path(__file__).resolve().parents[1]

DROP = 0.10  # share of pixels dropped: the 10 %


def image_stats(outputs: torch.Tensor, hr: np.ndarray, scale: int) -> dict[str, float]:
    """outputs (K, 1, 3, H, W) in [0, 1]; hr (H, W, 3) uint8."""
    c = scale
    mean = outputs.mean(0)
    std = outputs.std(0, correction=0).mean(dim=1)[0, c:-c, c:-c].numpy() * PEAK  # (H', W') levels
    err = (mean[0].permute(1, 2, 0).numpy() * PEAK - hr.astype(np.float64))[c:-c, c:-c]  # (H', W', 3)
    sq = np.square(err).mean(axis=2).ravel()
    order = np.argsort(-std.ravel(), kind="stable")
    keep = order[int(DROP * sq.size):]  # drop the most uncertain 10 %
    rho = spearmanr(std.ravel(), np.abs(err).mean(axis=2).ravel()).statistic
    member_psnr = [psnr(tensor_to_uint8(o), hr, crop_border=scale) for o in outputs]
    return {"spearman": float(rho), "mse_ratio": float(sq[keep].mean() / sq.mean()),
            "psnr_mean": psnr(tensor_to_uint8(mean), hr, crop_border=scale), "member_psnr": member_psnr}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--checkpoint", default="pretrain")
    parser.add_argument("--sets", type=Path, nargs="+", default=[])
    parser.add_argument("--held-out", type=Path, metavar="CONFIG",
                        help="also the validation images this config holds out of training (where to choose)")
    parser.add_argument("--dihedral", action="store_true",
                        help="each member's outputs on the 8 flips/rotations of the input count as members")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", type=Path, default=REPO / "tools/results/uncertainty_worth")
    args = parser.parse_args()
    dtype = resolve_precision(args.precision, torch.device("cpu"))
    sets = {folder.name: benchmark_images(folder) for folder in args.sets}
    if args.held_out is not None:
        cfg = load_config(args.held_out)
        sets["held-out"] = holdout_paths(cfg.data.train_dirs, cfg.data.val_holdout)
    if not sets:
        parser.error("give --sets FOLDER [...] and/or --held-out CONFIG")
    results = {}
    for run in args.runs:
        members = [g for g, _ in load_members(run_member_paths(run, args.checkpoint))]
        scale = members[0].scale
        for set_name, paths in sets.items():
            rows = []
            for path in tqdm(paths, desc=f"{run} {set_name}", unit="img"):
                hr, lr = load_pair(path, scale)
                with torch.no_grad(), autocast_to(dtype, lr.device):
                    outputs = torch.stack([o.float() for m in members
                                           for o in (symmetry_outputs(m, lr) if args.dihedral else [m(lr)])])
                rows.append(image_stats(outputs, hr, scale))
            member_means = np.mean([r["member_psnr"] for r in rows], axis=0)
            ens = float(np.mean([r["psnr_mean"] for r in rows]))
            results.setdefault(str(run), {})[set_name] = {
                "spearman": float(np.mean([r["spearman"] for r in rows])),
                "mse_ratio_drop10": float(np.mean([r["mse_ratio"] for r in rows])),
                "ensemble_psnr": ens, "member_psnr": member_means.tolist(),
                "gain_over_best_member": ens - float(member_means.max())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"checkpoint": args.checkpoint, "dihedral": args.dihedral,
                                                         "results": results}, indent=1))
    members = "each member's 8 flips/rotations as members" if args.dihedral else "the members"
    lines = [f"Checkpoint `{args.checkpoint}`, {dtype}, {members}; Spearman(std, |error|) and MSE after dropping the 10 % most "
             "uncertain pixels / MSE after dropping 10 % at random (lower = the map finds the errors).", "",
             "| run | set | members (dB) | ensemble (dB) | gain over best | Spearman | MSE ratio |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for run, sets in results.items():
        for name, r in sets.items():
            lines.append(f"| {run} | {name} | {' / '.join(f'{p:.2f}' for p in r['member_psnr'])} | "
                         f"{r['ensemble_psnr']:.2f} | {r['gain_over_best_member']:+.3f} | {r['spearman']:.3f} | "
                         f"{r['mse_ratio_drop10']:.3f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
