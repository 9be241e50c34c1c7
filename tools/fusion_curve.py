"""Perception-distortion curves of the three ways to add the GAN members to the pixel-loss ensemble.

    python -m tools.fusion_curve --run weights/x2 --sets ../shared/data/Set14 ../shared/data/BSD100 \
        [--alphas 0 0.25 0.5 0.6 0.7 0.8 0.9 1] [--c0s 0.5 0.7 0.8 0.9 1] [--guided-taus 0.25 0.5 1 2] \
        [--out tools/results/fusion_curve]
    python -m tools.fusion_curve --run weights/x2 --held-out config_scaled.yaml \
        --out tools/results/fusion_curve_holdout     # where a setting is chosen: the validation images

Per image: P = mean of the members' `pretrain` outputs, G_k = each member's `gan` output, G = their combination as
inference.py makes it (the texture-preserving mean around P with perceptual weights for scored members;
--gan-side perceptual: the perceptual-weights mean; --gan-side mean: the plain mean) and s = their
per-pixel std. Global blend: P + alpha (G - P) for each --alphas; adaptive fusion (mgsrgan.infer.fusion.
adaptive_blend, alpha 1): P + w (G - P), w = min(1, c / c0), c = the coherence of the GAN members' texture around P
over a 7x7 window, for each --c0s; guided fusion (mgsrgan.infer.fusion.guided_blend, alpha 1): P + w (G - P),
w = d^2 / (d^2 + tau^2), d = the pixel-loss members' std in 8-bit levels over a 7x7 window, for each --guided-taus.
Every output is scored like evaluate.py does (Y PSNR crop = scale, ST-LPIPS-Alex on RGB, periodic-artifact
amplitude and colour shift); every GAN member alone is scored too, and every fusion is read against the global
curve (its ST-LPIPS-Alex at the same PSNR, its PSNR at the same ST-LPIPS-Alex). Writes OUT.json, OUT.md and
OUT.png (PSNR across, ST-LPIPS-Alex up: a curve further down-right is better). The members run once per image; the
blends are cheap tensor ops on their outputs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from mgsrgan.device import autocast_to, resolve_precision
from mgsrgan.config import load_config
from mgsrgan.infer.ensemble import (alex_scores, combine, load_members, perceptual_weights,
                                    run_member_paths)
from mgsrgan.train.data import holdout_paths
from mgsrgan.infer.fusion import adaptive_blend, guided_blend, member_spread
from mgsrgan.evaluate.protocol import artifact_scores, benchmark_images, gray_to_rgb, load_hr
from mgsrgan.io.degradation import bicubic_downscale, modcrop
from mgsrgan.evaluate.metrics import PEAK, psnr, tensor_to_uint8
from mgsrgan.evaluate.stlpips import STLPIPS, ReferenceSTLPIPS

REPO = Path(__file__).resolve().parents[1]


def _run(generators, lr: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(K, 1, 3, H, W) float32 outputs of every generator on lr."""
    with torch.no_grad(), autocast_to(dtype, lr.device):
        return torch.stack([g(lr).float() for g in generators])


def load_pair(path: Path, scale: int) -> tuple[np.ndarray, torch.Tensor]:
    """HR (H, W, 3) uint8 RGB, modcropped (gray as three equal channels) and its LR (1, 3, H/s, W/s) in [0, 1]
    by the protocol's bicubic downscale."""
    hr = load_hr(path)
    hr = modcrop(gray_to_rgb(hr) if hr.ndim == 2 else hr, scale)
    lr = torch.from_numpy(np.array(bicubic_downscale(hr, scale))).permute(2, 0, 1)[None].float() / PEAK
    return hr, lr


def settings(args: argparse.Namespace) -> list[tuple[str, str, float]]:
    return ([("global", f"alpha {a:g}", a) for a in args.alphas]
            + [("adaptive", f"c0 {c:g}", c) for c in args.c0s]
            + [("guided", f"tau {t:g}", t) for t in args.guided_taus])


def score_set(name: str, paths: list[Path], pixel, gan, args, distance, dtype
              ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[float]]]]:
    """(per output, the mean of each score over the images; per output, PSNR and ST-LPIPS-Alex image by image)."""
    rows: dict[str, list[dict[str, float]]] = {}
    scale = pixel[0].scale
    for path in tqdm(paths, desc=name, unit="img"):
        hr, lr = load_pair(path, scale)
        pk = _run(pixel, lr, dtype)
        p, pixel_spread = pk.mean(0), member_spread(pk)
        gk = _run(gan, lr, dtype)
        g = combine(gk, args.gan_strategy, args.gan_weights, 0, reference=p)
        outputs = {f"GAN member {k}": gk[k] for k in range(len(gan))}
        for kind, name, value in settings(args):
            if kind == "global":
                outputs[f"{kind} {name}"] = p + value * (g - p)
            elif kind == "adaptive":
                outputs[f"{kind} {name}"] = adaptive_blend(p, g, gk, alpha=1.0, c0=value)
            else:
                outputs[f"{kind} {name}"] = guided_blend(p, g, pixel_spread, alpha=1.0, tau=value)
        for name, out in outputs.items():
            sr = tensor_to_uint8(out)
            c = scale
            rows.setdefault(name, []).append({"psnr": psnr(sr, hr, crop_border=scale),
                                              "stlpips_alex": distance(np.ascontiguousarray(sr[c:-c, c:-c]),
                                                                       np.ascontiguousarray(hr[c:-c, c:-c])),
                                              **artifact_scores(sr, hr, scale=scale)})
    means = {name: {k: float(np.mean([r[k] for r in values])) for k in values[0]} for name, values in rows.items()}
    per_image = {name: {k: [r[k] for r in values] for k in ("psnr", "stlpips_alex")} for name, values in rows.items()}
    return means, per_image


def images_ahead(per_image: dict[str, dict[str, list[float]]]) -> dict[str, tuple[int, int]]:
    """Per output: (images where its PSNR is above that image's own global curve at its ST-LPIPS-Alex, images
    where its ST-LPIPS-Alex lies inside that curve's range): a sign test of the mean's margin."""
    alphas = [k for k in per_image if k.startswith("global alpha")]
    out = {}
    for name, scores in per_image.items():
        ahead = compared = 0
        for i, (db, alex) in enumerate(zip(scores["psnr"], scores["stlpips_alex"])):
            curve = sorted((per_image[a]["stlpips_alex"][i], per_image[a]["psnr"][i]) for a in alphas)
            if curve[0][0] <= alex <= curve[-1][0]:
                compared += 1
                ahead += db > float(np.interp(alex, [c[0] for c in curve], [c[1] for c in curve]))
        out[name] = (ahead, compared)
    return out


KINDS = {"global": (30, 80, 200), "adaptive": (200, 40, 40), "guided": (20, 140, 60)}  # curve colours
LEGEND = {"global": "global alpha", "adaptive": "adaptive c0 (alpha 1)", "guided": "guided tau (alpha 1)"}


AXES = (("psnr", "PSNR (dB, across)", "{:.3f}"), ("artifact", "grid-pattern amplitude (levels, across)", "{:.3f}"))


def plot(results: dict, args: argparse.Namespace, path: Path) -> None:
    """One panel per set and x axis (PSNR; grid-pattern amplitude), ST-LPIPS-Alex up; global blend in blue,
    adaptive in red, guided in green. Axes span the points: the differences are small."""
    width, height, pad = 520, 400, 60
    canvas = Image.new("RGB", (width * len(results), height * len(AXES)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (name, rows) in enumerate(results.items()):
        curves = {kind: [rows[f"{kind} {label}"] for k, label, _ in settings(args) if k == kind]
                  for kind in KINDS}
        points = [r for c in curves.values() for r in c]
        for j, (key, title, fmt) in enumerate(AXES):
            draw_panel(draw, i * width, j * height, (width, height, pad), f"{name}: {title} vs ST-LPIPS-Alex (up)",
                       curves, points, key, fmt, args)
    canvas.save(path)


def draw_panel(draw: ImageDraw.ImageDraw, ox: int, oy: int, size: tuple[int, int, int], title: str,
               curves: dict, points: list[dict], key: str, fmt: str, args: argparse.Namespace) -> None:
    width, height, pad = size
    xs, ys = [r[key] for r in points], [r["stlpips_alex"] for r in points]
    x_pad, y_pad = 0.08 * (max(xs) - min(xs)) + 1e-4, 0.08 * (max(ys) - min(ys)) + 1e-4
    x0, x1, y0, y1 = min(xs) - x_pad, max(xs) + x_pad, min(ys) - y_pad, max(ys) + y_pad

    def at(r):
        return (ox + pad + (r[key] - x0) / (x1 - x0) * (width - 2 * pad),
                oy + height - pad - (r["stlpips_alex"] - y0) / (y1 - y0) * (height - 2 * pad))
    draw.rectangle([ox + pad, oy + pad, ox + width - pad, oy + height - pad], outline="black")
    draw.text((ox + pad, oy + 20), title, fill="black")
    draw.text((ox + pad, oy + height - pad + 8), fmt.format(x0), fill="black")
    draw.text((ox + width - pad - 40, oy + height - pad + 8), fmt.format(x1), fill="black")
    draw.text((ox + 5, oy + height - pad - 10), f"{y0:.4f}", fill="black")
    draw.text((ox + 5, oy + pad), f"{y1:.4f}", fill="black")
    for kind, colour in KINDS.items():
        pts = [at(r) for r in curves[kind]]
        draw.line(pts, fill=colour, width=2)
        for (x, y), (_k, label, _v) in zip(pts, [s for s in settings(args) if s[0] == kind]):
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
            draw.text((x + 5, y - 12 if kind != "adaptive" else y + 2), label, fill=colour)
    for row, (kind, colour) in enumerate(KINDS.items()):
        draw.text((ox + width - pad - 150, oy + pad + 8 + 14 * row), LEGEND[kind], fill=colour)


def against_global(points: dict[str, tuple[float, float]]) -> dict[str, tuple[str, str]]:
    """points: name -> (PSNR dB, ST-LPIPS-Alex), the global blend's named "global alpha A". Per name: (its
    ST-LPIPS-Alex minus the global blend's at the same PSNR, interpolated on the branch where PSNR falls as alpha
    grows (from the peak-PSNR alpha on): below 0 is better; its PSNR minus the global blend's at the same
    ST-LPIPS-Alex, interpolated along every alpha: above 0 is better), as text."""
    alphas = sorted((float(k.split()[-1]), v) for k, v in points.items() if k.startswith("global alpha"))
    peak = max(range(len(alphas)), key=lambda i: alphas[i][1][0])
    branch = sorted(v for _, v in alphas[peak:])  # by PSNR
    by_alex = sorted((v[1], v[0]) for _, v in alphas)
    out = {}
    for name, (db, alex) in points.items():
        if branch[0][0] <= db <= branch[-1][0]:
            at_psnr = f"{alex - float(np.interp(db, [b[0] for b in branch], [b[1] for b in branch])):+.4f}"
        else:
            at_psnr = "above every alpha's PSNR" if db > branch[-1][0] else "outside the curve"
        if by_alex[0][0] <= alex <= by_alex[-1][0]:
            at_alex = f"{db - float(np.interp(alex, [b[0] for b in by_alex], [b[1] for b in by_alex])):+.4f}"
        else:
            at_alex = "outside the curve"
        if name.startswith("global alpha") and float(name.split()[-1]) < alphas[peak][0]:
            at_psnr = "rising branch"  # PSNR still grows with alpha here: not the branch compared
        out[name] = (at_psnr, at_alex)
    return out


def markdown(results: dict, args: argparse.Namespace, per_image: dict | None = None) -> str:
    """per_image (set -> output -> scores image by image), when given, adds the sign-test column."""
    out = []
    for name, rows in results.items():
        versus = against_global({k: (r["psnr"], r["stlpips_alex"]) for k, r in rows.items()})
        ahead = images_ahead(per_image[name]) if per_image else {}
        out += [f"### {name} x{args.scale}", "",
                "| output | PSNR (dB) | ST-LPIPS-Alex | artifact (HR) | shift R / G / B | global's ST-LPIPS-Alex at "
                "this PSNR: difference | global's PSNR at this ST-LPIPS-Alex: difference (dB) | images above their "
                "own global curve |", "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
        for row_name, r in rows.items():
            at_psnr, at_alex = versus[row_name]
            count = ("-" if row_name.startswith("global") or row_name not in ahead
                     else "{} of {}".format(*ahead[row_name]))
            out.append(f"| {row_name} | {r['psnr']:.4f} | {r['stlpips_alex']:.4f} | {r['artifact']:.3f} "
                       f"({r['artifact_hr']:.3f}) | {r['shift_r']:+.2f} / {r['shift_g']:+.2f} / {r['shift_b']:+.2f} "
                       f"| {at_psnr} | {at_alex} | {count} |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder (or weights/) with pretrain and gan")
    parser.add_argument("--sets", type=Path, nargs="+", default=[], help="HR image folders")
    parser.add_argument("--held-out", type=Path, metavar="CONFIG",
                        help="also score the validation images this config holds out of training (data.val_holdout)")
    # dense past 0.5, where PSNR peaks and starts to fall: the branch every fusion is read against
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    # coherence is 1/K (1/3) for independent texture and 1 for the same: 0.5 .. 1 spans where the members' own
    # draws start to count (docs/experiments.md, section 6: 0.7 .. 1 chosen on the held-out images)
    parser.add_argument("--c0s", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9, 1.0])
    # 0.25 .. 2 levels: the pixel-loss members' std is 0.6-1.5 levels on average (tools/results/figure_*.png)
    parser.add_argument("--guided-taus", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0])
    parser.add_argument("--gan-side", choices=("cli", "perceptual", "mean"), default="cli",
                        help="G: as inference.py builds it (texture-preserving mean with perceptual weights for "
                             "scored members; default), the perceptual-weights mean, or the plain mean")
    parser.add_argument("--precision", default="auto", help="auto|fp32|bf16 for the generator passes")
    parser.add_argument("--out", type=Path, default=REPO / "tools/results/fusion_curve")
    parser.add_argument("--replot", action="store_true", help="redraw OUT.md and OUT.png from OUT.json, no networks")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        args.scale = saved["scale"]
        args.out.with_suffix(".md").write_text(markdown(saved["results"], args, saved.get("per_image")))
        plot(saved["results"], args, args.out.with_suffix(".png"))
        return 0
    pixel = [g for g, _ in load_members(run_member_paths(args.run, "pretrain"))]
    gan_loaded = load_members(run_member_paths(args.run, "gan"))
    gan = [g for g, _ in gan_loaded]
    scores = alex_scores([meta for _, meta in gan_loaded])  # as inference.py's GAN side: perceptual when scored
    args.gan_weights = (perceptual_weights(scores) if scores and args.gan_side != "mean"
                        else torch.full((len(gan),), 1 / len(gan)))
    args.gan_strategy = "texture" if scores and args.gan_side == "cli" else "weighted"
    args.scale = pixel[0].scale
    dtype = resolve_precision(args.precision, torch.device("cpu"))
    distance = ReferenceSTLPIPS(STLPIPS(net="alex"))
    sets = {folder.name: benchmark_images(folder) for folder in args.sets}
    if args.held_out is not None:  # the run's validation images: where settings may be chosen (never a test set)
        cfg = load_config(args.held_out)
        sets["held-out"] = holdout_paths(cfg.data.train_dirs, cfg.data.val_holdout)
    if not sets:
        parser.error("give --sets FOLDER [...] and/or --held-out CONFIG")
    scored = {name: score_set(name, paths, pixel, gan, args, distance, dtype) for name, paths in sets.items()}
    results = {name: means for name, (means, _) in scored.items()}
    per_image = {name: images for name, (_, images) in scored.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"run": str(args.run), "precision": str(dtype),
                                                         "scale": args.scale, "gan_side": args.gan_side,
                                                         "gan_weights": args.gan_weights.tolist(),
                                                         "results": results, "per_image": per_image}, indent=1))
    text = markdown(results, args, per_image)
    args.out.with_suffix(".md").write_text(text)
    plot(results, args, args.out.with_suffix(".png"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
