"""`mgsrgan download div2k --dest DIR` and `mgsrgan download vgg19`: fetch data sets and weights (the fetching
itself, resumable and checksum-verified, is `mgsrgan.io.download`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mgsrgan.errors import UserError
from mgsrgan.io import download as download_module
from mgsrgan.io.download import DIV2K_ARCHIVES, DIV2K_BASE_URL, DIV2K_DEFAULT_SUBSETS, download_div2k


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mgsrgan")
    download = parser.add_subparsers(dest="command", required=True).add_parser(
        "download", help="fetch data sets and weights", description="Fetch data sets and weights.")
    commands = download.add_subparsers(dest="what", required=True)
    div2k = commands.add_parser("div2k", help="DIV2K HR and bicubic LR zips (train_hr ~3.5 GB, valid_hr ~0.45 GB)",
                                description=download_module.__doc__.split("\n\n")[2], formatter_class=argparse.RawTextHelpFormatter)
    div2k.add_argument("--dest", required=True, type=Path, help="folder that receives the DIV2K_* folders")
    div2k.add_argument("--subset", nargs="+", default=list(DIV2K_DEFAULT_SUBSETS), choices=list(DIV2K_ARCHIVES),
                       metavar="SUBSET", help=f"archives to fetch, from {', '.join(DIV2K_ARCHIVES)} (default: "
                       "%(default)s); the LR ones are only needed to train on the official bicubic LR")
    div2k.add_argument("--base-url", default=DIV2K_BASE_URL, help="mirror to use instead of the official host")
    div2k.add_argument("--keep-zip", action="store_true", help="keep the zips after extracting (default: delete)")
    div2k.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    vgg = commands.add_parser("vgg19", help="torchvision's ImageNet VGG19 weights into the torch hub cache")
    vgg.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """argv = ["download", "div2k", "--dest", DIR, ...] or ["download", "vgg19"] (what follows `mgsrgan`)."""
    args = _parser().parse_args(argv)
    try:
        if args.what == "div2k":
            for folder in download_div2k(args.dest, args.subset, base_url=args.base_url, keep_zip=args.keep_zip,
                                         progress=not args.no_progress):
                print(folder)
        else:
            from mgsrgan.io.weightfiles import resolve_imagenet_file  # local: it imports this module, and torch

            print(resolve_imagenet_file(progress=not args.no_progress))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
