"""`python evaluate.py`: score a training run's members, its ensembles and bicubic on folders of HR images.

    python evaluate.py --run RUN_DIR --data ../shared/data/Set5 ../shared/data/Set14 [--checkpoint best]
                       [--strategies mean median ...] [--out results.json] [--device auto] [--tile 0]

Protocol (PROTOCOL.md): HR cropped to a multiple of the scale, LR by PIL antialiased bicubic, SR clipped and
rounded to 8 bits, PSNR/SSIM on Y (BT.601) with `scale` border pixels cropped; gray images scored on gray.
Prints one Markdown table per folder; writes JSON (set means, members, per-image scores) and a per-image CSV.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from mgsrgan.checkpoint import CHECKPOINT_NAMES, atomic_write
from mgsrgan.device import resolve_device
from mgsrgan.ensemble import STRATEGIES
from mgsrgan.errors import UserError
from mgsrgan.evaluation import (BICUBIC, ImageScore, bicubic_upscaler, charge_shared_passes, evaluate_folder,
                                list_images, load_run_models, markdown_table, summarize)

PROTOCOL = ("HR modcrop(scale); LR = PIL BICUBIC (antialiased) downscale; SR clipped to [0, 1] and rounded to 8 bits; "
            "PSNR (peak 255) and SSIM (Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03) on Y = MATLAB rgb2ycbcr "
            "(BT.601), float64, crop = scale px per border; gray images scored on raw gray values")
CSV_FIELDS = ("dataset", "image", "model", "psnr", "ssim", "seconds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="training run folder (holds member_<k>/)")
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="one or more folders of HR images (e.g. Set5 Set14 BSD100); the folder name is the set")
    parser.add_argument("--checkpoint", choices=CHECKPOINT_NAMES, default="best",
                        help="which checkpoint of each member: best (validation PSNR), last, pretrain (end of the "
                             "pixel-loss phase, best PSNR), gan (end of the adversarial phase, best textures, "
                             "lower PSNR). Default: best")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=None,
                        help="ensemble strategies to score besides each member alone (default: all the checkpoints "
                             "support; weighted and best need validation PSNRs). Member passes are shared, so "
                             "extra strategies cost little")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON file to write (default RUN/eval_<checkpoint>.json); the per-image CSV goes "
                             "beside it with the suffix .csv")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    parser.add_argument("--tile", type=int, default=0,
                        help="run the generators tile by tile, TILE x TILE LR pixels, to bound memory on large "
                             "images; identical output (pad = receptive radius). 0 = whole image (default)")
    return parser


def check_out_folder(path: Path) -> None:
    if not path.parent.is_dir():
        raise UserError(f"--out {path}: folder {path.parent} does not exist")


def csv_text(results: list[ImageScore]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for score in results:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in asdict(score).items()})
    return buffer.getvalue()


def write_text(path: Path, text: str) -> None:
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    except OSError as err:
        raise UserError(f"{path}: cannot write ({err.strerror})") from None


def run(args: argparse.Namespace) -> int:
    if args.tile < 0:
        raise UserError(f"--tile {args.tile}: expected 0 (whole image) or a positive LR tile size")
    names = [folder.name for folder in args.data]
    if len(set(names)) != len(names):
        raise UserError(f"--data: two folders share a name ({', '.join(names)}); set names come from folder names")
    counts = {folder: len(list_images(folder)) for folder in args.data}  # fail on a bad folder before loading models
    device = resolve_device(args.device)
    models = load_run_models(args.run, checkpoint=args.checkpoint, strategies=args.strategies, device=device,
                             tile=args.tile)
    out = args.out if args.out is not None else args.run / f"eval_{args.checkpoint}.json"
    check_out_folder(out)
    upscalers = {**models.upscalers, BICUBIC: bicubic_upscaler(models.scale)}
    results: list[ImageScore] = []
    for folder, count in counts.items():
        with tqdm(total=count, desc=folder.name, unit="img", file=sys.stderr, leave=False) as bar:
            scores = evaluate_folder(folder, upscalers, scale=models.scale, on_image=lambda _name: bar.update())
        results.extend(charge_shared_passes(scores, models.uses))
    summary = summarize(results)
    for dataset, rows in summary.items():
        print(markdown_table(dataset, rows, scale=models.scale) + "\n")
    report = {"run": str(args.run), "checkpoint": args.checkpoint, "scale": models.scale, "device": str(device),
              "tile": args.tile, "protocol": PROTOCOL, "members": models.members,
              "ensembles": {name: {"members": used} for name, used in models.uses.items()},
              "seconds": "mean wall-clock seconds per image of upscaling; ensemble rows include their member passes",
              "sets": {dataset: {"folder": str(folder), "models": summary[dataset]}
                       for folder, dataset in zip(args.data, names)},
              "images": [asdict(score) for score in results]}
    write_text(out, json.dumps(report, indent=2) + "\n")  # PSNR of identical images is written as Infinity
    write_text(out.with_suffix(".csv"), csv_text(results))
    print(f"wrote {out} and {out.with_suffix('.csv')}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
