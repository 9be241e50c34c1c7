"""`python evaluate.py`: score a training run's members, its ensembles and bicubic on folders of HR images.

    python evaluate.py --run RUN_DIR --data ../shared/data/Set5 ../shared/data/Set14 [--checkpoint best]
                       [--strategies mean median ...] [--out results.json] [--device auto] [--tile 0]
                       [--precision fp32]
                       [--self-ensemble] [--no-perceptual] [--stlpips-alex-weights F] [--stlpips-weights F]
                       [--lpips-backbone F] [--lpips-heads F]

Protocol (PROTOCOL.md): HR cropped to a multiple of the scale, LR by PIL antialiased bicubic, SR clipped and
rounded to 8 bits, PSNR/SSIM on Y (BT.601) with `scale` border pixels cropped; gray images scored on gray.
Perceptual distances (lower is better) on the RGB SR vs HR with the same border crop, gray as 3 equal channels:
ST-LPIPS with its AlexNet trunk (column ST-LPIPS-Alex, the headline one) and with its VGG16 trunk (column ST-LPIPS;
stlpips-pytorch's weight files, a requirement) and LPIPS v0.1 VGG16 (torchvision's vgg16-397923af.pth in the torch
hub cache + lpips/weights/v0.1/vgg.pth of `pip install --no-deps lpips`); each one whose files are not found is
skipped with a one-line note. Every network is loaded once per run.
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

from mgsrgan.io.atomic import atomic_write
from mgsrgan.io.checkpoint import CHECKPOINT_NAMES
from mgsrgan.device import PRECISIONS, resolve_device, resolve_precision
from mgsrgan.io.photo_degradation import parse_spec
from mgsrgan.infer.ensemble import (DEFAULT_SHIPPED_SCALE, SHIPPED_SCALES, STRATEGIES, existing_shipped_dir,
                                    shipped_root)
from mgsrgan.errors import UserError
from mgsrgan.evaluate.protocol import (ARTIFACTS, BICUBIC, PERCEPTUAL, ImageScore, PairDistance, benchmark_images,
                                bicubic_upscaler, charge_shared_passes, evaluate_folder, load_run_models,
                                markdown_table, summarize)
from mgsrgan.evaluate.lpips import LPIPS, LPIPSError, default_backbone_path, default_heads_path, lpips_distance
from mgsrgan.evaluate.stlpips import STLPIPS, ReferenceSTLPIPS, STLPIPSError, default_weight_path

PROTOCOL = ("HR modcrop(scale); LR = PIL BICUBIC (antialiased) downscale; SR clipped to [0, 1] and rounded to 8 bits; "
            "PSNR (peak 255) and SSIM (Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03) on Y = MATLAB rgb2ycbcr "
            "(BT.601), float64, crop = scale px per border; gray images scored on raw gray values; ST-LPIPS / "
            "LPIPS (lower is better) on 8-bit RGB, crop = scale px per border, gray as 3 equal channels")
CSV_FIELDS = ("dataset", "image", "model", "psnr", "ssim", "seconds", *ARTIFACTS)  # then one per perceptual metric


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None,
                        help="training run folder (holds member_<k>/); default: the shipped ensemble "
                             "weights/x<--scale> ($MGSRGAN_WEIGHTS/x<--scale> when set)")
    parser.add_argument("--scale", type=int, choices=SHIPPED_SCALES, default=None,
                        help=f"which shipped ensemble without --run (default x{DEFAULT_SHIPPED_SCALE}); with --run "
                             "it must match the run's scale")
    parser.add_argument("--real", action="store_true",
                        help="evaluate the shipped real-photo model of --scale (weights/x<scale>-real) instead of the "
                             "clean one; pair it with --degrade to score it on the inputs it is for. Not with --run")
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
    parser.add_argument("--degrade", metavar="SPEC", default="",
                        help="degrade each LR after the bicubic downscale, as photos are: comma-separated steps run "
                             "in order, e.g. jpeg:75 or noise:5,jpeg:50 (blur:SIGMA px, noise:SIGMA 8-bit levels, "
                             "jpeg:QUALITY); image i's noise is drawn from seed i, so every run sees the same LR")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    parser.add_argument("--tile", type=int, default=0,
                        help="run the generators tile by tile, TILE x TILE LR pixels, to bound memory on large "
                             "images; identical output (pad = receptive radius). 0 = whole image (default)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="dtype of the generator passes (strategies and scoring stay float32). Default fp32, so "
                             "the scores do not depend on the machine; auto = bf16 on CUDA cards and CPUs with "
                             "native bf16 (faster; tools/precision_parity.py measures how far its scores move)")
    parser.add_argument("--self-ensemble", action="store_true",
                        help="run every member on the 8 flips/rotations of the input and average (EDSR+); rows get "
                             "the suffix +x8; 8x the generator time")
    parser.add_argument("--no-perceptual", action="store_true",
                        help="skip ST-LPIPS (AlexNet and VGG16) and LPIPS (each costs about one trunk pass per row "
                             "and image, several times the upscaling of a small generator on CPU)")
    parser.add_argument("--no-stlpips-vgg", action="store_true",
                        help="skip ST-LPIPS with the VGG16 trunk only (2.5x the AlexNet trunk's time; the VGG16 "
                             "trunk is also the shipped content loss's, so not an independent judge of it)")
    parser.add_argument("--stlpips-alex-weights", type=Path, default=None,
                        help="ST-LPIPS alex_shift_tolerant.pth (default: the one in the installed stlpips-pytorch)")
    parser.add_argument("--stlpips-weights", type=Path, default=None,
                        help="ST-LPIPS vgg_shift_tolerant.pth (default: the one in the installed stlpips-pytorch)")
    parser.add_argument("--lpips-backbone", type=Path, default=None,
                        help="torchvision's vgg16-397923af.pth for LPIPS (default: the torch hub cache, "
                             "$TORCH_HOME/hub/checkpoints; never downloaded)")
    parser.add_argument("--lpips-heads", type=Path, default=None,
                        help="LPIPS v0.1 linear heads, lpips/weights/v0.1/vgg.pth (default: the one in the "
                             "installed `lpips` package)")
    return parser


def load_perceptual(args: argparse.Namespace, device) -> tuple[dict[str, PairDistance], dict[str, str]]:
    """The perceptual metrics to run (loaded once, on `device`) and, per metric, a one-line status: the file(s)
    used or why it was skipped. A default file that is absent means "skip"; a path given on the command line that
    is absent or wrong is a UserError."""
    given = [flag for flag, value in (("--stlpips-alex-weights", args.stlpips_alex_weights),
                                      ("--stlpips-weights", args.stlpips_weights),
                                      ("--lpips-backbone", args.lpips_backbone), ("--lpips-heads", args.lpips_heads))
             if value is not None]
    if args.no_perceptual:
        if given:
            raise UserError(f"--no-perceptual contradicts {', '.join(given)}")
        return {}, {key: "skipped: --no-perceptual" for key in PERCEPTUAL}
    metrics: dict[str, PairDistance] = {}
    status: dict[str, str] = {}
    if args.no_stlpips_vgg and args.stlpips_weights is not None:
        raise UserError("--no-stlpips-vgg contradicts --stlpips-weights")
    for key, net, given_weights in (("stlpips_alex", "alex", args.stlpips_alex_weights),
                                    ("stlpips", "vgg", args.stlpips_weights)):  # PERCEPTUAL's order (CSV columns)
        if key == "stlpips" and args.no_stlpips_vgg:
            status[key] = "skipped: --no-stlpips-vgg"
            continue
        try:
            weights = given_weights or default_weight_path(net)
        except STLPIPSError as err:
            status[key] = f"skipped: {err}"
        else:
            stlpips_model = STLPIPS(net=net, path=str(weights)).to(device)
            metrics[key] = ReferenceSTLPIPS(stlpips_model)  # HR taps reused across the rows of an image
            status[key] = f"on: {weights}"
    try:
        backbone = args.lpips_backbone or default_backbone_path()
        heads = args.lpips_heads or default_heads_path()
    except LPIPSError as err:
        status["lpips"] = f"skipped: {err}"
    else:
        lpips_model = LPIPS(backbone=str(backbone), heads=str(heads)).to(device)
        metrics["lpips"] = lambda sr_img, hr_img: lpips_distance(sr_img, hr_img, model=lpips_model)
        status["lpips"] = f"on: {backbone} + {heads}"
    return metrics, status


def check_out_folder(path: Path) -> None:
    if not path.parent.is_dir():
        raise UserError(f"--out {path}: folder {path.parent} does not exist")


def score_dict(score: ImageScore) -> dict:
    """An ImageScore as a flat dict without the metrics that were not computed (None)."""
    return {k: v for k, v in asdict(score).items() if v is not None}


def csv_text(results: list[ImageScore], perceptual: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS + tuple(perceptual), lineterminator="\n")
    writer.writeheader()
    for score in results:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in score_dict(score).items()})
    return buffer.getvalue()


def write_text(path: Path, text: str) -> None:
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    except OSError as err:
        raise UserError(f"{path}: cannot write ({err.strerror})") from None


def default_out(run_dir: Path, checkpoint: str) -> Path:
    """RUN/eval_<checkpoint>.json; for a shipped ensemble runs/shipped-<its folder: x2, x4-real>/..., so that
    evaluating it leaves the shipped weights' folder as it was."""
    try:
        shipped = shipped_root().resolve()
    except UserError:  # no shipped weights anywhere: run_dir is not one of them
        shipped = None
    if shipped is not None and shipped in (run_dir.resolve(), *run_dir.resolve().parents):
        return Path("runs") / f"shipped-{run_dir.name}" / f"eval_{checkpoint}.json"
    return run_dir / f"eval_{checkpoint}.json"


def run(args: argparse.Namespace) -> int:
    if args.tile < 0:
        raise UserError(f"--tile {args.tile}: expected 0 (whole image) or a positive LR tile size")
    names = [folder.name for folder in args.data]
    if len(set(names)) != len(names):
        raise UserError(f"--data: two folders share a name ({', '.join(names)}); set names come from folder names")
    degrade = parse_spec(args.degrade) if args.degrade else []
    counts = {folder: len(benchmark_images(folder)) for folder in args.data}  # fail on a bad folder before loading models
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    shipped_scale = DEFAULT_SHIPPED_SCALE if args.scale is None else args.scale
    if args.real and args.run is not None:
        raise UserError("--real picks the shipped real-photo model; with --run the run folder is the model")
    run_dir = args.run if args.run is not None else existing_shipped_dir(shipped_scale, real=args.real)
    models = load_run_models(run_dir, checkpoint=args.checkpoint, strategies=args.strategies, device=device,
                             tile=args.tile, self_ensemble=args.self_ensemble, precision=precision)
    if args.scale is not None and models.scale != args.scale:
        raise UserError(f"--scale {args.scale}, but {run_dir} holds x{models.scale} members")
    out = args.out
    if out is None:
        out = default_out(run_dir, args.checkpoint)
        out.parent.mkdir(parents=True, exist_ok=True)
    check_out_folder(out)
    perceptual, perceptual_status = load_perceptual(args, device)
    for key, line in perceptual_status.items():
        if line.startswith("skipped") and not args.no_perceptual:
            print(f"note: {PERCEPTUAL[key]} {line}", file=sys.stderr)
    upscalers = {**models.upscalers, BICUBIC: bicubic_upscaler(models.scale)}
    results: list[ImageScore] = []
    for folder, count in counts.items():
        with tqdm(total=count, desc=folder.name, unit="img", file=sys.stderr, leave=False) as bar:
            scores = evaluate_folder(folder, upscalers, scale=models.scale, on_image=lambda _name: bar.update(),
                                     perceptual=perceptual, degrade=degrade)
        results.extend(charge_shared_passes(scores, models.uses))
    summary = summarize(results)
    if degrade:
        print(f"LR degraded after the bicubic downscale: {args.degrade}\n")
    for dataset, rows in summary.items():
        print(markdown_table(dataset, rows, scale=models.scale) + "\n")
    report = {"run": str(run_dir), "checkpoint": args.checkpoint, "self_ensemble": args.self_ensemble,
              "scale": models.scale, "device": str(device), "precision": str(precision).removeprefix("torch."),
              "tile": args.tile, "protocol": PROTOCOL, "degrade": args.degrade, "perceptual": perceptual_status,
              "members": models.members,
              "ensembles": {name: {"members": used} for name, used in models.uses.items()},
              "seconds": "mean wall-clock seconds per image of upscaling; ensemble rows include their member passes",
              "sets": {dataset: {"folder": str(folder), "models": summary[dataset]}
                       for folder, dataset in zip(args.data, names)},
              "images": [score_dict(score) for score in results]}
    write_text(out, json.dumps(report, indent=2) + "\n")  # PSNR of identical images is written as Infinity
    write_text(out.with_suffix(".csv"), csv_text(results, list(perceptual)))
    print(f"wrote {out} and {out.with_suffix('.csv')}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no results written", file=sys.stderr)
        return 130
