"""Bicubic baseline on Set5 / Set14 / BSD100 at x2 and x4, against the published (MATLAB imresize) figures.

    python -m tools.bicubic [--data ../shared/data] [--out tools/results/bicubic.json]

Same pipeline as `evaluate.py` (mgsrgan.evaluate.protocol): HR modcrop, PIL antialiased bicubic down and up, Y-channel
PSNR/SSIM with crop = scale, gray images (Set14 bridge) scored on raw gray. Prints a Markdown table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mgsrgan.evaluate.protocol import BICUBIC, bicubic_upscaler, evaluate_folder, summarize

REPO = Path(__file__).resolve().parents[1]

SETS = ("Set5", "Set14", "BSD100")
SCALES = (2, 4)
# Bicubic set means (Y, crop = scale, MATLAB imresize) as tabulated by Lim et al. 2017 (EDSR, table 6) and
# Zhang et al. 2018 (RCAN, table 3): (set, scale) -> (PSNR dB, SSIM).
PUBLISHED_BICUBIC = {
    ("Set5", 2): (33.66, 0.9299), ("Set14", 2): (30.24, 0.8688), ("BSD100", 2): (29.56, 0.8431),
    ("Set5", 4): (28.42, 0.8104), ("Set14", 4): (26.00, 0.7027), ("BSD100", 4): (25.96, 0.6675),
}


def measure(data: Path) -> list[dict]:
    rows = []
    for scale in SCALES:
        for dataset in SETS:
            results = evaluate_folder(data / dataset, {BICUBIC: bicubic_upscaler(scale)}, scale=scale)
            ours = summarize(results)[dataset][BICUBIC]
            pub_psnr, pub_ssim = PUBLISHED_BICUBIC[(dataset, scale)]
            rows.append({"set": dataset, "scale": scale, "images": ours["images"], "psnr": ours["psnr"],
                         "ssim": ours["ssim"], "published_psnr": pub_psnr, "published_ssim": pub_ssim})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| set | scale | PSNR ours | PSNR published | diff (dB) | SSIM ours | SSIM published |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['set']} | x{r['scale']} | {r['psnr']:.2f} | {r['published_psnr']:.2f} | "
                     f"{r['psnr'] - r['published_psnr']:+.3f} | {r['ssim']:.4f} | {r['published_ssim']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding Set5/, Set14/, BSD100/ (default: ../shared/data)")
    parser.add_argument("--out", type=Path, default=REPO / "tools" / "results" / "bicubic.json")
    args = parser.parse_args(argv)
    rows = measure(args.data)
    protocol = ("HR modcrop(scale); LR = PIL BICUBIC (antialiased) downscale; SR = PIL BICUBIC upscale; "
                "PSNR/SSIM on Y (BT.601, MATLAB rgb2ycbcr), float64, peak 255, crop = scale; gray images raw")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"protocol": protocol, "results": rows}, indent=2) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
