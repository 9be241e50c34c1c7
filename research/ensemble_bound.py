"""How much more can the pixel-loss ensemble gain from its members? A bias-variance split of their error.

    python -m research.ensemble_bound --run weights/x2 --held-out config_scaled.yaml \
        --sets ../shared/data/Set14 ../shared/data/BSD100 [--self-ensemble-sets held-out Set14] \
        [--out research/results/ensemble_bound]
    python -m research.ensemble_bound --members A.safetensors B.safetensors ... --held-out config_scaled.yaml

`--members` takes checkpoint files instead of a run's members, and they may differ in architecture (one scale):
how much more do members of other depths and widths differ than members of other seeds or data?

Per image (crop = scale px, Y of BT.601 in 8-bit levels, the members' float outputs clipped to [0, 1]):
research/decompose.py's ensemble_split gives the average member's MSE, the mean's MSE, the members' spread (the
exact difference) and the MSE a mean of infinitely many members of the same recipe would reach. Reported per set:
the protocol PSNR (8-bit, as evaluate.py) of the best member and of the mean, the spread as a share of the member
MSE, and the limit's gain over the 3-member mean. Two more ways to buy variance reduction, measured: the geometric
self-ensemble of every member (K x 8 passes, `--self-ensemble-sets`), and the LR-consistency projection of the mean
(decompose.lr_projection), which removes the part of the error the LR itself shows. And where the error lies: per
image, the share of the average member's squared error and the members' spread in each quartile of LR texture
(decompose.split_by_texture), averaged over the set's images. With --held-out, also the stacked combination
(decompose.stacking_weights: least-squares weights summing to 1, fitted on the held-out images' Y) scored on every
set, in float Y (unrounded), against the best member in the same terms. Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mgsrgan.config import load_config
from mgsrgan.device import autocast_to, resolve_precision
from mgsrgan.evaluate.metrics import PEAK, Y_OFFSET, Y_WEIGHTS, psnr, tensor_to_uint8
from mgsrgan.evaluate.protocol import benchmark_images
from mgsrgan.infer.ensemble import load_members, run_member_paths
from mgsrgan.infer.self_ensemble import SelfEnsemble
from mgsrgan.train.data import holdout_paths
from research.decompose import (combination_mse, downscale, ensemble_split, gain_db, gram, lr_projection,
                                split_by_texture, stacking_weights, texture)
from tools.fusion_curve import load_pair

REPO = Path(__file__).resolve().parents[1]

TEXTURE_WINDOW = 5  # LR-gradient box, HR pixels: about one LR 3x3 neighbourhood at x2, what a first conv sees
TEXTURE_BINS = 4  # quartiles
LIST_KEYS = ("member_psnr", "x8_member_psnr", "texture_sse_share", "texture_spread_share")  # averaged per entry


def y_levels(rgb: torch.Tensor, crop: int) -> torch.Tensor:
    """(..., 3, H, W) in [0, 1] (clipped here) -> (..., H - 2 crop, W - 2 crop) float64 Y in 8-bit levels."""
    weights = torch.tensor(Y_WEIGHTS, dtype=torch.float64).view(3, 1, 1)
    y = Y_OFFSET + (rgb.double().clamp(0.0, 1.0) * weights).sum(dim=-3)
    return y[..., crop:-crop, crop:-crop]


def image_row(outputs: torch.Tensor, hr: np.ndarray, lr: torch.Tensor, scale: int,
              x8: torch.Tensor | None) -> tuple[dict, dict]:
    """outputs (K, 1, 3, H, W) float in [0, 1]; hr (H, W, 3) uint8; lr (1, 3, h, w) in [0, 1]; x8 the members'
    self-ensembles (K, 1, 3, H, W) or None -> (the image's row for set_summary, its `gram` statistics on Y for
    the stacking)."""
    hr_t = torch.from_numpy(hr.copy()).permute(2, 0, 1).double() / PEAK
    members_y, hr_y = y_levels(outputs[:, 0], scale), y_levels(hr_t, scale)
    split = ensemble_split(members_y, hr_y)
    upscaled = F.interpolate(lr.double(), scale_factor=scale, mode="bicubic", align_corners=False)[0]
    bins = split_by_texture(members_y, hr_y, texture(y_levels(upscaled, scale), TEXTURE_WINDOW), TEXTURE_BINS)
    mean = outputs.mean(dim=0)
    row = {"member_psnr": [psnr(tensor_to_uint8(o), hr, crop_border=scale) for o in outputs],
           "mean_psnr": psnr(tensor_to_uint8(mean), hr, crop_border=scale),
           "spread_share": split["spread"] / split["member_mse"],
           "limit_gain_db": gain_db(split["mean_mse"], split["limit_mse"]),
           "lr_error_levels": float((downscale(mean, scale) - lr.double()).abs().mean() * PEAK),
           "projected_psnr": psnr(tensor_to_uint8(lr_projection(mean, lr, scale).float()), hr, crop_border=scale),
           "texture_sse_share": [b["sse_share"] for b in bins],
           "texture_spread_share": [b["spread_share"] for b in bins]}
    if x8 is not None:
        row["x8_member_psnr"] = [psnr(tensor_to_uint8(o), hr, crop_border=scale) for o in x8]
        row["x8_mean_psnr"] = psnr(tensor_to_uint8(x8.mean(dim=0)), hr, crop_border=scale)
    return row, gram(members_y, hr_y)


def set_summary(rows: list[dict]) -> dict:
    out = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key not in LIST_KEYS}
    for key in LIST_KEYS:
        if key in rows[0]:
            out[key] = np.mean([r[key] for r in rows], axis=0).tolist()
    out["best_member_psnr"] = max(out["member_psnr"])
    out["gain_over_best"] = out["mean_psnr"] - out["best_member_psnr"]
    return out


def stacked(stats: list[dict], weights: torch.Tensor) -> dict:
    """Per-image `gram` statistics of one set and stacking weights -> the set's mean float-Y PSNR of each member and
    of the stacked combination, and the stack's gain over the best member."""
    k = weights.shape[0]
    members = [float(np.mean([gain_db(PEAK ** 2, combination_mse(st, torch.eye(k)[i])) for st in stats]))
               for i in range(k)]
    stack = float(np.mean([gain_db(PEAK ** 2, combination_mse(st, weights)) for st in stats]))  # PSNR in dB
    return {"member_float_psnr": members, "stacked_float_psnr": stack, "gain_over_best": stack - max(members)}


def markdown(results: dict, k: int) -> str:
    lines = ["| set | best member (dB) | mean of K (dB) | gain | spread / member MSE | "
             f"mean of infinitely many: gain over the mean of {k} | "
             f"every member x8, mean ({8 * k} passes): gain over best member | "
             "LR error of the mean (levels) | mean, LR-projected: gain |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        x8 = f"{r['x8_mean_psnr'] - r['best_member_psnr']:+.3f}" if "x8_mean_psnr" in r else "not run"
        lines.append(f"| {name} | {r['best_member_psnr']:.3f} | {r['mean_psnr']:.3f} | {r['gain_over_best']:+.3f} | "
                     f"{100 * r['spread_share']:.2f} % | {r['limit_gain_db']:+.3f} | {x8} | "
                     f"{r['lr_error_levels']:.2f} | {r['projected_psnr'] - r['mean_psnr']:+.3f} |")
    lines += ["", f"Where the error lies, by quartile of LR texture ({TEXTURE_WINDOW} px box of the upscaled LR's "
              "gradient), smoothest first: share of the average member's squared error / spread as a share of the "
              "member MSE in that quartile (per image, averaged over the set)", "",
              "| set | " + " | ".join(f"quartile {i + 1}" for i in range(TEXTURE_BINS)) + " |",
              "| --- |" + " ---: |" * TEXTURE_BINS]
    for name, r in results.items():
        cells = [f"{100 * sse:.1f} % / {100 * spread:.2f} %"
                 for sse, spread in zip(r["texture_sse_share"], r["texture_spread_share"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    weights = next((r["stacking_weights"] for r in results.values() if "stacking_weights" in r), None)
    if weights is not None:
        lines += ["", "Stacked combination, weights fitted on the held-out images (least squares, summing to 1): "
                  + " / ".join(f"{w:.3f}" for w in weights)
                  + "; float Y, unrounded (held-out: fitted there, an upper bound)", "",
                  "| set | best member (dB) | stacked (dB) | gain |", "| --- | ---: | ---: | ---: |"]
        for name, r in results.items():
            st = r["stacked"]
            lines.append(f"| {name} | {max(st['member_float_psnr']):.3f} | {st['stacked_float_psnr']:.3f} | "
                         f"{st['gain_over_best']:+.3f} |")
    return "\n".join(lines) + "\n"


def load_mixed(paths: list[Path]) -> list[torch.nn.Module]:
    """Generators (eval, BN folded) from checkpoint files that may differ in depth and width but not in scale: each
    loaded alone, since load_members holds an ensemble to one architecture."""
    generators = [load_members([path])[0][0] for path in paths]
    scales = {g.scale for g in generators}
    if len(scales) != 1:
        raise SystemExit(f"--members: the checkpoints mix scales {sorted(scales)}")
    return generators


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="run folder (or weights/x2) with pretrain members")
    source.add_argument("--members", type=Path, nargs="+", metavar="FILE",
                        help="checkpoint files (architectures may differ) instead of a run's members")
    parser.add_argument("--checkpoint", default="pretrain")
    parser.add_argument("--sets", type=Path, nargs="*", default=[], help="HR image folders")
    parser.add_argument("--held-out", type=Path, metavar="CONFIG", help="also the images this config holds out")
    parser.add_argument("--self-ensemble-sets", nargs="*", default=[], metavar="NAME",
                        help="sets (folder names, or held-out) where every member also runs x8 (8x the time)")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--out", type=Path, default=REPO / "research/results/ensemble_bound")
    args = parser.parse_args()
    if args.members:
        members = load_mixed(args.members)
        source_name = "checkpoints " + ", ".join(f"`{path}`" for path in args.members)
    else:
        members = [g for g, _ in load_members(run_member_paths(args.run, args.checkpoint))]
        source_name = f"`{args.run}` {args.checkpoint} members"
    if len(members) < 2:
        parser.error(f"{len(members)} member: a split needs at least 2")
    x8_members = [SelfEnsemble(g) for g in members]
    scale = members[0].scale
    dtype = resolve_precision(args.precision, torch.device("cpu"))
    sets = {}
    if args.held_out is not None:
        cfg = load_config(args.held_out)
        sets["held-out"] = holdout_paths(cfg.data.train_dirs, cfg.data.val_holdout)
    sets.update({folder.name: benchmark_images(folder) for folder in args.sets})
    if not sets:
        parser.error("give --held-out CONFIG and/or --sets FOLDER [...]")
    results, stats = {}, {}
    for name, paths in sets.items():
        scored = []  # (row, gram statistics) per image
        for path in tqdm(paths, desc=name, unit="img"):
            hr, lr = load_pair(path, scale)
            with torch.no_grad(), autocast_to(dtype, lr.device):
                outputs = torch.stack([g(lr).float() for g in members])
                x8 = (torch.stack([g(lr).float() for g in x8_members])
                      if name in args.self_ensemble_sets else None)
            scored.append(image_row(outputs, hr, lr, scale, x8))
        stats[name] = [st for _, st in scored]
        results[name] = set_summary([row for row, _ in scored])
    if "held-out" in stats:
        fit = stats["held-out"]
        weights = stacking_weights({key: sum(st[key] for st in fit) for key in fit[0]})
        for name in results:
            results[name]["stacking_weights"] = weights.tolist()
            results[name]["stacked"] = stacked(stats[name], weights)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"run": args.run and str(args.run),
                                                         "members": list(map(str, args.members or [])),
                                                         "checkpoint": args.checkpoint,
                                                         "precision": str(dtype), "results": results}, indent=1))
    table = markdown(results, len(members))
    args.out.with_suffix(".md").write_text(f"{source_name}, {dtype}.\n\n" + table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
