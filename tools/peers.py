"""Peer SR models (OpenCV dnn_superres: FSRCNN, ESPCN, LapSRN) under mgsrgan's evaluation protocol.

    pip install "opencv-contrib-python-headless<5"   # benchmark-only extra (OpenCV 5 cannot read the .pb peers)
    python -m tools.peers [--peers ../shared/peers/opencv_dnn_superres] [--data ../shared/data]
                          [--sets Set5 Set14 BSD100] [--scales 2 4] [--run RUN_DIR --checkpoint best]
                          [--stlpips] [--out-dir tools/results]

Same pipeline as `evaluate.py` (mgsrgan.evaluate.protocol): HR modcrop, PIL antialiased bicubic LR, SR rounded to 8 bits,
Y PSNR/SSIM with crop = scale, gray images in gray. The peers get BGR uint8 (what dnn_superres expects) and give
BGR back; a gray LR enters as three equal channels and leaves through Pillow's luma. With --run, the run's members
and ensembles join the table at the run's scale. --stlpips adds ST-LPIPS (RGB, crop = scale, lower is better;
about one VGG16 pass per row and image). Writes peers.json and peers.md in --out-dir (default tools/results).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

from mgsrgan.errors import UserError
from mgsrgan.evaluate.stlpips import STLPIPS, ReferenceSTLPIPS
from mgsrgan.evaluate.protocol import (BICUBIC, PERCEPTUAL, Uint8Upscale, bicubic_upscaler, charge_shared_passes,
                                evaluate_folder, gray_to_rgb, load_run_models, rgb_to_gray, summarize)
from mgsrgan.io.weightfiles import default_weight_path

REPO = Path(__file__).resolve().parents[1]

SHARED = REPO.parent / "shared"
# display name -> (dnn_superres algorithm name, model file pattern), as in OpenCV's dnn_superres documentation
PEERS = {"FSRCNN": ("fsrcnn", "FSRCNN_x{scale}.pb"), "ESPCN": ("espcn", "ESPCN_x{scale}.pb"),
         "LapSRN": ("lapsrn", "LapSRN_x{scale}.pb")}
# What the papers report (Y PSNR dB, MATLAB bicubic LR), as tabulated by Lai et al. 2017 (LapSRN, CVPR, table 4):
# (model, scale) -> {set: psnr}; bicubic as in Lim et al. 2017 (EDSR, table 6). ESPCN's paper (Shi et al. 2016)
# reports x3 and ImageNet-trained models mainly; it is left out rather than mixed with a different training set.
PAPER_PSNR = {
    (BICUBIC, 2): {"Set5": 33.66, "Set14": 30.24, "BSD100": 29.56},
    (BICUBIC, 4): {"Set5": 28.42, "Set14": 26.00, "BSD100": 25.96},
    ("FSRCNN", 2): {"Set5": 37.05, "Set14": 32.66, "BSD100": 31.53},
    ("FSRCNN", 4): {"Set5": 30.72, "Set14": 27.61, "BSD100": 26.98},
    ("LapSRN", 2): {"Set5": 37.52, "Set14": 33.08, "BSD100": 31.80},
    ("LapSRN", 4): {"Set5": 31.54, "Set14": 28.19, "BSD100": 27.32},
}


def opencv_upscaler(model_file: Path, algorithm: str, scale: int) -> Uint8Upscale:
    """A dnn_superres model as a Uint8Upscale: RGB (or gray) uint8 LR -> same layout at x scale."""
    try:
        import cv2
    except ImportError:
        raise UserError("tools/peers.py needs OpenCV's contrib modules: "
                        "pip install \"opencv-contrib-python-headless<5\"") from None
    if not model_file.is_file():
        raise UserError(f"{model_file}: peer model file not found (--peers)")
    net = cv2.dnn_superres.DnnSuperResImpl_create()
    net.readModel(str(model_file))
    net.setModel(algorithm, scale)

    def run(lr_img: np.ndarray) -> np.ndarray:
        rgb = gray_to_rgb(lr_img) if lr_img.ndim == 2 else lr_img
        sr_bgr = net.upsample(np.ascontiguousarray(rgb[..., ::-1]))  # dnn_superres works in BGR
        sr_rgb = np.ascontiguousarray(sr_bgr[..., ::-1])
        return rgb_to_gray(sr_rgb) if lr_img.ndim == 2 else sr_rgb
    return run


def measure(args: argparse.Namespace) -> dict:
    """scale -> set -> model -> {"psnr", "ssim", "seconds", "images"}."""
    run_models = None
    if args.run is not None:
        run_models = load_run_models(args.run, checkpoint=args.checkpoint, strategies=None, device="cpu")
        if run_models.scale not in args.scales:
            raise UserError(f"--run {args.run}: a x{run_models.scale} run, but --scales is {args.scales}")
    perceptual = {}
    if args.stlpips_alex:  # before the VGG16 one: the headline column
        perceptual["stlpips_alex"] = ReferenceSTLPIPS(STLPIPS(net="alex"))
    if args.stlpips:
        perceptual["stlpips"] = ReferenceSTLPIPS(STLPIPS(path=str(default_weight_path())))
    results: dict = {}
    for scale in args.scales:
        upscalers = {BICUBIC: bicubic_upscaler(scale)}
        upscalers.update({name: opencv_upscaler(args.peers / pattern.format(scale=scale), algo, scale)
                          for name, (algo, pattern) in PEERS.items()})
        uses = {}
        if run_models is not None and run_models.scale == scale:
            upscalers.update(run_models.upscalers)
            uses = run_models.uses
        for dataset in args.sets:
            print(f"x{scale} {dataset} ...", file=sys.stderr)
            scores = charge_shared_passes(evaluate_folder(args.data / dataset, upscalers, scale=scale,
                                                           perceptual=perceptual), uses)
            results.setdefault(str(scale), {}).update(summarize(scores))
    return results


def markdown(results: dict, sets: list[str]) -> str:
    lines = ["# Peers under the mgsrgan protocol", "",
             "Y-channel PSNR (dB) / SSIM, crop = scale, LR by PIL antialiased bicubic (not MATLAB imresize), CPU "
             "seconds per image over the sets. 'paper' is the PSNR the model's authors report (MATLAB LR, "
             "Lai et al. 2017 table 4); these OpenCV TensorFlow re-implementations were trained with "
             "non-antialiased LR, which is why they sit well under their papers here. A third figure, where "
             "present, is ST-LPIPS (lower is better).", ""]
    for scale, per_set in results.items():
        shown = [key for key in PERCEPTUAL if all(key in row for row in per_set[sets[0]].values())]
        third = "".join(f" / {PERCEPTUAL[key]}" for key in shown)
        header = " | ".join(f"{s} PSNR / SSIM{third} | {s} paper" for s in sets)
        lines += [f"## x{scale}", "", f"| model | {header} | s / image |",
                  "| --- |" + " ---: | ---: |" * len(sets) + " ---: |"]
        for model in per_set[sets[0]]:
            cells = []
            for s in sets:
                row = per_set[s][model]
                paper = PAPER_PSNR.get((model, int(scale)), {}).get(s)
                scores = f"{row['psnr']:.2f} / {row['ssim']:.4f}"
                scores += "".join(f" / {row[key]:.4f}" for key in shown)
                cells.append(f"{scores} | {paper:.2f}" if paper is not None else f"{scores} | n/a")
            seconds = sum(per_set[s][model]["seconds"] * per_set[s][model]["images"] for s in sets) / \
                sum(per_set[s][model]["images"] for s in sets)
            lines.append(f"| {model} | {' | '.join(cells)} | {seconds:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=Path, default=SHARED / "peers" / "opencv_dnn_superres")
    parser.add_argument("--data", type=Path, default=SHARED / "data", help="folder holding the set folders")
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    parser.add_argument("--scales", nargs="+", type=int, choices=(2, 4), default=[2, 4])
    parser.add_argument("--run", type=Path, default=None, help="also score this training run (at its scale)")
    parser.add_argument("--checkpoint", default="best", help="checkpoint of the run's members (default best)")
    parser.add_argument("--stlpips", action="store_true", help="also score ST-LPIPS (stlpips-pytorch's weights)")
    parser.add_argument("--stlpips-alex", action="store_true",
                        help="also score ST-LPIPS with its AlexNet trunk (stlpips-pytorch's weights)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "tools" / "results")
    args = parser.parse_args(argv)
    try:
        results = measure(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import cv2  # present: measure() built the peers
    report = {"protocol": "HR modcrop; LR PIL BICUBIC (antialiased); SR uint8; Y (BT.601) PSNR/SSIM, crop = scale; "
                          "gray images scored gray", "opencv": cv2.__version__, "machine": platform.platform(),
              "processor": platform.processor() or platform.machine(), "paper_psnr": {
                  f"{m} x{s}": v for (m, s), v in PAPER_PSNR.items()}, "results": results}
    if args.run is not None:
        report["run"] = {"path": str(args.run), "checkpoint": args.checkpoint}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "peers.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(results, args.sets)
    (args.out_dir / "peers.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
