"""`python inference.py -i IN [IN ...] -o OUT_DIR [--run RUN | --weights F ...]`: upscale files and folders.

Bad inputs (not an image, corrupt, empty, over --max-pixels) and unwritable outputs each print one line
`error: <file>: <why>` and the run goes on; it ends with `N written, S skipped, M failed ...`. Exit codes: 0 all
fine, 1 some file failed, 2 usage or configuration error (nothing processed).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mgsrgan.cli.args import add_model_arguments, model_from_args
from mgsrgan.device import PRECISIONS
from mgsrgan.errors import UserError
from mgsrgan.io.images import (UNCERTAINTY_PERCENTILE, ImageInfo, colorize_uncertainty, format_for_extension,
                             list_images, output_format, read_image, to_pil, write_image)
from mgsrgan.infer.upscaler import Upscaler

DEFAULT_BATCH_SIZE = 4  # same-size images per forward pass: amortises per-call overhead on small images; memory
#                        grows with batch x pixels, so large images want --tile (and --batch-size 1) instead
UNCERTAINTY_SUFFIX = "_uncertainty"
MAX_OUTSCALE = 16.0  # beyond 4x the x4 model's output the resize only adds blur and pixels: refuse obvious typos


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inference.py", description="Upscale image files and folders with an "
                                     "mgsrgan ensemble; names (and with --recursive, subfolders) are kept.")
    parser.add_argument("-i", "--input", "--input_dir", "--input-dir", dest="input", type=Path, nargs="+",
                        required=True, help="image files and/or folders")
    parser.add_argument("-o", "--output", "--output_dir", "--output-dir", dest="output", type=Path, required=True,
                        help="output folder (names are kept)")
    add_model_arguments(parser)
    parser.add_argument("--uncertainty", action="store_true",
                        help="also write <name>_uncertainty.png: per-pixel std across members, viridis colours (one "
                             "network: its std over the 8 flips/rotations of the input, 8x the time)")
    parser.add_argument("--uncertainty-max", type=float, default=None,
                        help="std (image units, [0, 1]) shown as the top (yellow) colour; 0 is dark purple. Default: "
                             f"each image's own {UNCERTAINTY_PERCENTILE:g}th percentile of std, so every map spans "
                             "the palette; give a value to compare maps across images")
    parser.add_argument("--tile", type=int, default=0, help="tile size in LR pixels (default 0 = whole image); bounds memory")
    parser.add_argument("--tile-pad", type=int, default=None,
                        help="LR pixels of context around each tile (default: the receptive radius: seamless)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="dtype of the network passes (fusion, uncertainty and quantising stay float32): auto "
                             "(default) = bf16 on CUDA cards and on CPUs with native bf16 (AVX512-BF16/AMX: faster "
                             "than fp32), else fp32 (fp16 on CUDA cards without bf16); bf16 rounds the network's "
                             "activations, fp32 computes exactly what the model computes (tools/precision_parity.py "
                             "compares them)")
    parser.add_argument("--half", action="store_true", help="alias of --precision fp16 (CUDA only)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="same-size images per pass (default %(default)s)")
    parser.add_argument("--ext", help="output format by extension (png, jpg, webp, ...; default: the input's); "
                                      "alpha is dropped for formats without it, 16-bit becomes 8-bit")
    parser.add_argument("--outscale", type=float, default=None, metavar="F",
                        help="output size F x the input (any factor > 0, e.g. 3 or 1.5): the model's x2/x4 output, "
                             "then an antialiased bicubic resize to round(F * width) x round(F * height) "
                             "(as Real-ESRGAN's --outscale); default: the model's own scale")
    parser.add_argument("--recursive", action="store_true", help="descend into subfolders, keeping the layout")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="refuse inputs with more pixels (decompression bomb guard; default Pillow's ~89M)")
    return parser


@dataclass(frozen=True)
class FileJob:
    """One input file and the files its output and uncertainty map go to."""

    source: Path
    target: Path
    uncertainty: Path


def collect_jobs(inputs: list[Path], output: Path, *, recursive: bool, ext: str | None) -> list[FileJob]:
    """One job per input image; folders give their image files (by extension, sorted), subfolders if recursive."""
    # an output "folder" that is a file (or lies under one) would fail every write after every upscale: say so now
    for parent in (output, *output.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"--output_dir {output}: {parent} is a file, not a folder")
            break
    jobs = []
    for item in inputs:
        if item.is_file():
            pairs = [(item, Path(item.name))]
        elif item.is_dir():
            # An output folder below the input folder holds outputs, not inputs (a rerun must not upscale them).
            nested_out = output.resolve() if output.resolve() != item.resolve() else None
            pairs = [(f, f.relative_to(item)) for f in list_images(item, recursive=recursive)
                     if nested_out not in f.resolve().parents]
        else:
            raise UserError(f"{item}: no such file or folder")
        for source, rel in pairs:
            target = output / (rel.with_suffix("." + ext.lstrip(".")) if ext else rel)
            if target.resolve() == source.resolve():
                raise UserError(f"{source}: the output would replace the input; choose another --output folder")
            jobs.append(FileJob(source, target, target.with_name(target.stem + UNCERTAINTY_SUFFIX + ".png")))
    if not jobs:
        raise UserError(f"no images found in {', '.join(map(str, inputs))}")
    return jobs


class Runner:
    """Reads, batches same-size images, upscales, writes; counts outcomes."""

    def __init__(self, upscaler: Upscaler, args: argparse.Namespace, progress: tqdm) -> None:
        self.upscaler, self.args, self.progress = upscaler, args, progress
        self.out_format = format_for_extension(args.ext) if args.ext else None
        self.written = self.skipped = self.failed = 0
        self.output_pixels = 0
        self.pending: list[tuple[FileJob, torch.Tensor, ImageInfo]] = []

    def fail(self, message: str) -> None:
        self.failed += 1
        tqdm.write(f"error: {message}", file=sys.stderr)

    def add(self, job: FileJob) -> None:
        if job.target.exists() and not self.args.overwrite:
            self.skipped += 1
            self.progress.update(1)
            return
        try:
            lr_img, info = read_image(job.source, max_pixels=self.args.max_pixels)
        except UserError as err:
            self.fail(str(err))
            self.progress.update(1)
            return
        if self.pending and (lr_img.shape != self.pending[0][1].shape or len(self.pending) >= self.args.batch_size):
            self.flush()
        self.pending.append((job, lr_img, info))

    def flush(self) -> None:
        if not self.pending:
            return
        batch = torch.stack([lr_img for _, lr_img, _ in self.pending])  # (B, 3, h, w) in [0, 1]
        try:
            if self.args.uncertainty:
                sr_batch, std_batch = self.upscaler.upscale_with_uncertainty(batch)
            else:
                sr_batch, std_batch = self.upscaler.upscale_tensor(batch), None
        except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as err:
            if not is_out_of_memory(err):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            for job, _, _ in self.pending:
                self.fail(f"{job.source}: out of memory; pass --tile 256 (or smaller) or a smaller --batch-size")
            self.progress.update(len(self.pending))
            self.pending.clear()
            return
        for index, (job, _, info) in enumerate(self.pending):
            try:
                self.write(job, info, sr_batch[index], None if std_batch is None else std_batch[index])
                self.written += 1
                self.output_pixels += sr_batch.shape[-1] * sr_batch.shape[-2]
            except UserError as err:
                self.fail(str(err))
        self.progress.update(len(self.pending))
        self.pending.clear()

    def write(self, job: FileJob, info: ImageInfo, sr_img: torch.Tensor, std: torch.Tensor | None) -> None:
        fmt = self.out_format or output_format(job.target, info.format)
        if self.args.outscale is not None:
            size = outscale_size(sr_img.shape[-2:], self.upscaler.scale, self.args.outscale)
            sr_img = resize_antialiased(sr_img, size)
            std = None if std is None else resize_antialiased(std, size)
        if std is not None:  # first, so an existing image always has its map (skip logic looks at the image)
            write_image(colorize_uncertainty(std, self.args.uncertainty_max), job.uncertainty, fmt="PNG")
        write_image(to_pil(sr_img, info), job.target, fmt=fmt, icc_profile=info.icc_profile)


def outscale_size(sr_size: tuple[int, int], scale: int, outscale: float) -> tuple[int, int]:
    """(H, W) of the model's x`scale` output -> (round(outscale * h), round(outscale * w)) of its LR input (h, w),
    at least 1 x 1."""
    height, width = sr_size[0] // scale, sr_size[1] // scale
    return max(1, round(outscale * height)), max(1, round(outscale * width))


def resize_antialiased(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, H, W) float in [0, 1] -> (C, size[0], size[1]): bicubic with antialiasing when shrinking (Pillow's
    filter support), clipped back to [0, 1]; the same tensor when the size already matches."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    return F.interpolate(img[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0].clamp_(0, 1)


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA OOM, Python's MemoryError, or the CPU allocator's RuntimeError ("can't allocate memory")."""
    return isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)) or "allocate memory" in str(err)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        if args.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.uncertainty_max is not None and args.uncertainty_max <= 0:
            raise UserError(f"--uncertainty-max must be > 0, got {args.uncertainty_max}")
        if args.ext:
            format_for_extension(args.ext)
        if args.outscale is not None and not 0 < args.outscale <= MAX_OUTSCALE:
            raise UserError(f"--outscale must be in (0, {MAX_OUTSCALE}], got {args.outscale}")
        jobs = collect_jobs(args.input, args.output, recursive=args.recursive, ext=args.ext)
        upscaler = Upscaler(model_from_args(args), device=args.device, tile=args.tile, tile_pad=args.tile_pad,
                            half=args.half, precision=args.precision)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    with tqdm(total=len(jobs), unit="img", file=sys.stderr, disable=None) as progress:
        runner = Runner(upscaler, args, progress)
        try:
            for job in jobs:
                runner.add(job)
            runner.flush()
        except KeyboardInterrupt:  # every file written so far is whole (atomic writes); nothing half-written
            print(f"interrupted: {runner.written} written; outputs of unfinished images were not created",
                  file=sys.stderr)
            return 130
    elapsed = max(time.perf_counter() - start, 1e-9)
    if runner.skipped:  # say why, or a rerun that writes nothing looks like a silent failure
        print(f"{runner.skipped} skipped: the output already exists in {args.output} (pass --overwrite to replace "
              "it, or choose another --output_dir)", file=sys.stderr)
    print(f"{runner.written} written, {runner.skipped} skipped, {runner.failed} failed in {elapsed:.1f} s "
          f"({runner.written / elapsed:.2f} images/s, {runner.output_pixels / 1e6 / elapsed:.2f} output Mpx/s)")
    return 1 if runner.failed else 0
