"""Does the GAN members' disagreement say where their texture costs PSNR and buys no perception? Probes.

    python -m research.adaptive_probe --run weights/x2 --held-out config_scaled.yaml \
        [--sets ../shared/data/Set14 ../shared/data/BSD100] [--out research/results/adaptive_probe]

The first adaptive fusion (w = tau^2 / (tau^2 + d^2), d = the GAN members' std in 8-bit levels over 7x7) lay on the
global alpha blend's curve: no better, no worse. This scores, on the validation images (where a setting may be chosen; --sets only checks one), three
other readings of the same signal (and one reversed), each as P + w (G - P) per pixel (P = the pixel-loss mean,
G = the texture-preserving GAN combination, as inference.py):
  structure   w = tau^2 / (tau^2 + d^2), d = the std of the GAN members' 7x7 local means (colour and shape
              disagreement; independent fine texture is expected and left alone)
  coherence   w = min(1, c / c0), c = |mean of the members' texture|^2 / mean of |texture|^2 over 7x7 (1 where
              their texture agrees, 1/K where it is independent): toward P where the texture is each one's own
  incoherence w = min(1, (1 - c) / (1 - c0)): the reverse, toward P where they agree
  reversed    w = d^2 / (d^2 + tau^2), d = the adaptive fusion's (the GAN members' std): adaptive turned around,
              toward P where they agree (guided fusion's form, with the GAN members' spread)
Each is compared with the global blend at the same PSNR (linear interpolation along alpha in [0.5, 1], the branch
where PSNR falls as alpha grows) and at the same ST-LPIPS-Alex (along every alpha: it falls as alpha grows).
Also reported, the diagnostic: over 7x7 windows binned by the adaptive d, the PSNR cost of G over P
((G-HR)^2 - (P-HR)^2) per unit of texture energy (G-P)^2 (1: texture independent of the truth; below 1: partly
right). Adaptive fusion assumes the ratio rises with d (disagreement = wrong texture); a flat ratio would make d
useless, a falling one means the members disagree where their texture is most often right.
Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mgsrgan.config import load_config
from mgsrgan.evaluate.metrics import PEAK, psnr, tensor_to_uint8
from mgsrgan.evaluate.protocol import benchmark_images
from mgsrgan.evaluate.stlpips import STLPIPS, ReferenceSTLPIPS
from mgsrgan.infer.ensemble import (alex_scores, combine, load_members, perceptual_weights,
                                    run_member_paths)
from mgsrgan.infer.fusion import (CONSENSUS_RADIUS, guided_blend, local_mean, member_spread,
                                  texture_coherence)
from mgsrgan.train.data import holdout_paths
from tools.fusion_curve import _run, against_global, load_pair

REPO = Path(__file__).resolve().parents[1]

ALPHAS = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # 0.5 .. 1: the falling-PSNR branch, where most probes land
STRUCTURE_TAUS = (0.5, 1.0, 2.0)  # levels: the members' local means differ by 0.3-1 level (their colour shifts)
COHERENCE_C0 = (0.5, 0.7, 0.8, 0.9, 1.0)
REVERSED_TAUS = (1.0, 2.0, 4.0)  # levels: the GAN members' local std is 1-4 levels over 93 % of the texture energy
D_BINS = (0.0, 1.0, 2.0, 4.0, 8.0, np.inf)  # adaptive d in levels


def _amplitude_blend(p: torch.Tensor, g: torch.Tensor, spread: torch.Tensor, tau: float, r: int) -> torch.Tensor:
    """The first adaptive fusion's form: P + tau^2 / (tau^2 + d^2) (G - P), d = spread in levels over a 7x7 window."""
    d2 = local_mean(spread * PEAK, r).square()
    return p + tau * tau / (tau * tau + d2) * (g - p)


def probes(p: torch.Tensor, g: torch.Tensor, gk: torch.Tensor) -> dict[str, torch.Tensor]:
    r = CONSENSUS_RADIUS
    out = {f"global alpha {a:g}": p + a * (g - p) for a in ALPHAS}
    k, b, c, h, w = gk.shape
    low = local_mean(gk.reshape(k * b, c, h, w), r).reshape(k, b, c, h, w)  # the members' 7x7 local means
    for tau in STRUCTURE_TAUS:
        out[f"structure tau {tau:g}"] = _amplitude_blend(p, g, member_spread(low), tau, r)
    c = texture_coherence(p, gk, radius=r)  # the shipped --adaptive's signal
    for c0 in COHERENCE_C0:
        out[f"coherence c0 {c0:g}"] = p + (c / c0).clamp(max=1.0) * (g - p)
        if c0 < 1.0:  # 1 - c0 = 0: no reverse at c0 1
            out[f"incoherence c0 {c0:g}"] = p + ((1 - c) / (1 - c0)).clamp(max=1.0) * (g - p)
    for tau in REVERSED_TAUS:
        out[f"reversed tau {tau:g}"] = guided_blend(p, g, member_spread(gk), alpha=1.0, tau=tau, radius=r)
    return out


def cost_by_disagreement(p, g, gk, hr_t) -> tuple[np.ndarray, np.ndarray]:
    """Per D_BINS bin: summed PSNR cost of G over P and summed texture energy, over 7x7 windows (8-bit levels^2)."""
    r = CONSENSUS_RADIUS
    d = local_mean(member_spread(gk).float() * PEAK, r).flatten()
    cost = local_mean(((g - hr_t).square() - (p - hr_t).square()).mean(1, keepdim=True), r).flatten() * PEAK ** 2
    energy = local_mean((g - p).square().mean(1, keepdim=True), r).flatten() * PEAK ** 2
    idx = np.digitize(d.numpy(), D_BINS[1:-1])
    return (np.bincount(idx, cost.numpy(), len(D_BINS) - 1), np.bincount(idx, energy.numpy(), len(D_BINS) - 1))


def table(means: dict[str, tuple[float, float]]) -> list[str]:
    """Markdown rows: each output's (PSNR, ST-LPIPS-Alex) against the global blend's curve, both ways."""
    versus = against_global(means)
    lines = ["| output | PSNR (dB) | ST-LPIPS-Alex | global blend's ST-LPIPS-Alex at this PSNR: difference | "
             "global blend's PSNR at this ST-LPIPS-Alex: difference (dB) |", "| --- | ---: | ---: | ---: | ---: |"]
    return lines + [f"| {name} | {db:.4f} | {alex:.4f} | {versus[name][0]} | {versus[name][1]} |"
                    for name, (db, alex) in means.items()]


def score_set(name: str, paths: list[Path], pixel, gan, weights, distance) -> dict:
    """Mean (PSNR, ST-LPIPS-Alex) of every probe over the images, and the cost-by-disagreement sums."""
    rows: dict[str, list[tuple[float, float]]] = {}
    cost, energy = np.zeros(len(D_BINS) - 1), np.zeros(len(D_BINS) - 1)
    scale = pixel[0].scale
    for path in tqdm(paths, desc=name, unit="img"):
        hr, lr = load_pair(path, scale)
        pk, gk = _run(pixel, lr, torch.float32), _run(gan, lr, torch.float32)
        p = pk.mean(0)
        g = combine(gk, "texture", weights, 0, reference=p)
        c_, e_ = cost_by_disagreement(p, g, gk, torch.from_numpy(hr.copy()).permute(2, 0, 1)[None].float() / PEAK)
        cost, energy = cost + c_, energy + e_
        for probe, out in probes(p, g, gk).items():
            sr, s = tensor_to_uint8(out), scale
            rows.setdefault(probe, []).append((psnr(sr, hr, crop_border=s), distance(
                np.ascontiguousarray(sr[s:-s, s:-s]), np.ascontiguousarray(hr[s:-s, s:-s]))))
    means = {k: (float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v]))) for k, v in rows.items()}
    return {"means": means, "cost_by_d": cost.tolist(), "energy_by_d": energy.tolist()}


def markdown(saved: dict) -> str:
    """OUT.md from OUT.json: per set, the probes against the global curve, then the cost-by-disagreement table."""
    lines = ["Alpha 1 for every probe; PSNR on Y of three channels for every image (as fusion_curve.py).", ""]
    for set_name, result in saved["sets"].items():
        lines += [f"### {set_name}", ""] + table({name: tuple(v) for name, v in result["means"].items()})
        cost, energy = np.array(result["cost_by_d"]), np.array(result["energy_by_d"])
        lines += ["", "| adaptive d (levels) | share of windows' texture energy | PSNR cost / texture energy |",
                  "| --- | ---: | ---: |"]
        for i in range(len(D_BINS) - 1):
            lines.append(f"| {D_BINS[i]:g} - {D_BINS[i + 1]:g} | {energy[i] / energy.sum():.3f} | "
                         f"{cost[i] / max(energy[i], 1e-12):.3f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="run folder (or weights/x2) with pretrain and gan members")
    parser.add_argument("--held-out", type=Path, metavar="CONFIG", help="the config whose held-out images to score")
    parser.add_argument("--sets", type=Path, nargs="*", default=[], help="HR folders to check a probe on")
    parser.add_argument("--out", type=Path, default=REPO / "research/results/adaptive_probe")
    parser.add_argument("--replot", action="store_true", help="rewrite OUT.md from OUT.json, no networks")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        args.out.with_suffix(".md").write_text(markdown(saved))
        return 0
    if args.run is None or (args.held_out is None and not args.sets):
        parser.error("give --run RUN and --held-out CONFIG and/or --sets FOLDER [...] (or --replot)")
    pixel = [m for m, _ in load_members(run_member_paths(args.run, "pretrain"))]
    loaded = load_members(run_member_paths(args.run, "gan"))
    gan, weights = [m for m, _ in loaded], perceptual_weights(alex_scores([meta for _, meta in loaded]))
    distance = ReferenceSTLPIPS(STLPIPS(net="alex"))
    sets = {}
    if args.held_out is not None:
        cfg = load_config(args.held_out)
        sets["held-out"] = holdout_paths(cfg.data.train_dirs, cfg.data.val_holdout)
    sets.update({folder.name: benchmark_images(folder) for folder in args.sets})
    results = {name: score_set(name, paths, pixel, gan, weights, distance) for name, paths in sets.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"run": str(args.run), "sets": results,
                                                         "d_bins": [str(b) for b in D_BINS]}, indent=1))
    text = markdown(json.loads(args.out.with_suffix(".json").read_text()))
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
