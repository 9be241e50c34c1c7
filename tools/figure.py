"""Comparison figure: one crop of one image through bicubic, the OpenCV peers, each member, the ensembles, and the
members' disagreement, as a single labelled PNG grid.

    python -m tools.figure --run RUN_DIR --image ../shared/data/Set5/butterfly.png --crop Y X H W
        [--checkpoint pretrain] [--gan-checkpoint gan] [--peers ../shared/peers/opencv_dnn_superres]
        [--columns 4] [--zoom 0] [--device auto] [--tile 0] --out tools/results/figure_ppt3.png

Pipeline as evaluate.py's: HR cropped to a multiple of the run's scale, LR by PIL antialiased bicubic, every model
upscales the whole LR image (so the crop has its real context), outputs rounded to 8 bits, then the crop (Y X H W,
HR pixels of the modcropped image) is cut from each. A gray image is shown and scored as three equal channels.
Each tile's label gives its PSNR on the crop, Y channel (BT.601, peak 255) with no border removed: the crop is
inside the image, so its edges are not image borders.

Tiles, in order: HR crop; bicubic; each OpenCV dnn_superres peer at the run's scale (with --peers; needs
opencv-contrib-python-headless, skipped with a note if cv2 is missing or a model file is absent); member_<k> at
--checkpoint; the mean ensemble; the mean ensemble of the --gan-checkpoint members when every member has one
(skipped with a note otherwise; "none" skips it); adaptive (--adaptive) and guided (--guided) fusion of the two; the
uncertainty map, `colorize_uncertainty` of the per-pixel std across the --checkpoint members
(`Ensemble.forward_with_uncertainty`). Small crops are enlarged by an integer nearest-neighbour factor (--zoom;
0 = the largest that keeps a tile within TARGET_TILE_SIDE) so pixels stay visible.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from mgsrgan.io.checkpoint import CHECKPOINT_NAMES
from mgsrgan.io.degradation import bicubic_downscale, bicubic_upscale, modcrop
from mgsrgan.device import resolve_device
from mgsrgan.infer.ensemble import (Ensemble, EnsembleSourceError, alex_scores, gan_ensemble,
                                    load_members, one_if_identical, run_member_paths)
from mgsrgan.infer.fusion import adaptive_blend, guided_blend
from mgsrgan.errors import UserError
from mgsrgan.evaluate.protocol import SharedMember, gray_to_rgb, load_hr
from mgsrgan.io.images import UNCERTAINTY_FULL_SCALE, colorize_uncertainty
from mgsrgan.evaluate.metrics import PEAK, psnr, tensor_to_uint8


TARGET_TILE_SIDE = 256  # px: auto zoom enlarges a crop up to this side (readable labels, visible pixels)
GAP = 6  # px of white around and between tiles
LABEL_HEIGHT = 30  # px under each tile: two lines of Pillow's default font (10 px, ~12 px line) plus padding
LABEL_LINE = 13  # px from one label line to the next
NO_GAN = "none"


class Crop(NamedTuple):
    """Rows y:y+h, columns x:x+w of the modcropped HR image (pixels)."""
    y: int
    x: int
    h: int
    w: int

    def of(self, img: np.ndarray) -> np.ndarray:
        return img[self.y:self.y + self.h, self.x:self.x + self.w]


class Tile(NamedTuple):
    """A labelled crop: (h, w, 3) uint8 RGB, and up to two label lines."""
    image: np.ndarray
    label: tuple[str, ...]


def check_crop(crop: Crop, height: int, width: int) -> None:
    if crop.h < 1 or crop.w < 1 or crop.y < 0 or crop.x < 0 or crop.y + crop.h > height or crop.x + crop.w > width:
        raise UserError(f"--crop {' '.join(map(str, crop))}: not inside the {width}x{height} (W x H) image "
                        "after cropping to a multiple of the scale")


def auto_zoom(crop: Crop) -> int:
    """Largest integer factor keeping the crop's longer side within TARGET_TILE_SIDE (at least 1)."""
    return max(1, TARGET_TILE_SIDE // max(crop.h, crop.w))


def grid_size(count: int, *, tile_h: int, tile_w: int, columns: int) -> tuple[int, int]:
    """(width, height) in px of a grid of `count` tiles of tile_h x tile_w (already zoomed), `columns` wide."""
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    return columns * tile_w + (columns + 1) * GAP, rows * (tile_h + LABEL_HEIGHT) + (rows + 1) * GAP


def render_grid(tiles: list[Tile], *, zoom: int, columns: int) -> Image.Image:
    """Tiles enlarged `zoom` times (nearest neighbour), row by row, each with its label below, on white."""
    tile_h, tile_w = tiles[0].image.shape[0] * zoom, tiles[0].image.shape[1] * zoom
    canvas = Image.new("RGB", grid_size(len(tiles), tile_h=tile_h, tile_w=tile_w, columns=columns), "white")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for index, tile in enumerate(tiles):
        row, column = divmod(index, min(columns, len(tiles)))
        left, top = GAP + column * (tile_w + GAP), GAP + row * (tile_h + LABEL_HEIGHT + GAP)
        enlarged = Image.fromarray(tile.image).resize((tile_w, tile_h), Image.Resampling.NEAREST)
        canvas.paste(enlarged, (left, top))
        for line, text in enumerate(tile.label):
            draw.text((left + 2, top + tile_h + 3 + line * LABEL_LINE), text, fill="black", font=font)
    return canvas


def scored(name: str, sr_img: np.ndarray, hr_crop: np.ndarray, crop: Crop) -> Tile:
    """The crop of a full SR image, labelled with its Y PSNR against the HR crop."""
    sr_crop = np.ascontiguousarray(crop.of(sr_img))
    value = psnr(sr_crop, hr_crop, crop_border=0)
    return Tile(sr_crop, (name, f"PSNR {value:.2f} dB" if math.isfinite(value) else "PSNR inf (identical)"))


def peer_outputs(peers: Path, lr_img: np.ndarray, scale: int, notes: list[str]) -> dict[str, np.ndarray]:
    """Each OpenCV peer's SR of lr_img at `scale`; what cannot run is skipped with a note."""
    try:
        import cv2  # noqa: F401  (benchmark-only extra)
    except ImportError:
        notes.append("peers skipped: cv2 not importable (pip install \"opencv-contrib-python-headless<5\")")
        return {}
    from tools.peers import PEERS, opencv_upscaler  # after the cv2 check: builds the peers with it
    outputs = {}
    for name, (algorithm, pattern) in PEERS.items():
        model_file = peers / pattern.format(scale=scale)
        if not model_file.is_file():
            notes.append(f"{name} skipped: {model_file} not found")
            continue
        outputs[f"{name} (OpenCV)"] = opencv_upscaler(model_file, algorithm, scale)(lr_img)
    return outputs


def network_tiles(args: argparse.Namespace, lr_img: np.ndarray, hr_crop: np.ndarray, crop: Crop, scale: int,
                  generators: list[torch.nn.Module], notes: list[str]) -> list[Tile]:
    """member_<k>, the mean ensemble, the GAN ensemble (as --checkpoint gan) and the uncertainty map, as tiles."""
    device = resolve_device(args.device)
    lr = torch.from_numpy(lr_img.copy()).permute(2, 0, 1)[None].to(device, torch.float32) / PEAK  # (1, 3, h, w)
    shared = [SharedMember(g.to(device).eval(), tile=args.tile) for g in generators]  # one pass per member
    tiles = []
    with torch.no_grad():
        # one network: its spread over the 8 flips/rotations, as inference.py --uncertainty draws it
        both = Ensemble(shared, strategy="mean", symmetry_map=True).forward_with_uncertainty(lr)
        mean, std = both  # (1, 3, H, W), (1, 1, H, W)
        for k, member in enumerate(shared):
            name = f"member_{k}" if len(shared) > 1 else "the network"
            tiles.append(scored(f"{name} ({args.checkpoint})", tensor_to_uint8(member(lr)), hr_crop, crop))
        if len(shared) > 1:
            tiles.append(scored(f"ensemble mean (K={len(shared)})", tensor_to_uint8(mean), hr_crop, crop))
        if args.gan_checkpoint != NO_GAN:
            try:
                gan_paths = run_member_paths(args.run, args.gan_checkpoint)
            except EnsembleSourceError as err:
                notes.append(f"GAN ensemble skipped: {err}")
            else:
                gan_loaded = load_members(gan_paths)
                gan = [SharedMember(g.to(device).eval(), tile=args.tile) for g, _ in gan_loaded]
                if gan[0].scale != scale:
                    raise UserError(f"{gan_paths[0]}: x{gan[0].scale}, but the members are x{scale}")
                # as --checkpoint gan builds it: the texture mean around the pixel-loss members when scored
                reference = Ensemble(shared).eval() if args.checkpoint == "pretrain" else None
                gan_model = gan_ensemble(gan, alex_scores([meta for _, meta in gan_loaded]), reference=reference)
                gan_mean = gan_model(lr)
                tiles.append(scored(f"GAN ensemble {gan_model.strategy} ({args.gan_checkpoint})",
                                    tensor_to_uint8(gan_mean), hr_crop, crop))
                if args.adaptive > 0 and len(gan) > 1:
                    gan_stack = torch.stack([g(lr) for g in gan])  # remembered outputs: no second pass
                    fused = adaptive_blend(mean, gan_mean, gan_stack, alpha=1.0, c0=args.adaptive)
                    tiles.append(scored(f"adaptive fusion (c0 {args.adaptive:g})", tensor_to_uint8(fused), hr_crop,
                                        crop))
                if args.guided > 0 and len(shared) > 1:
                    fused = guided_blend(mean, gan_mean, std, alpha=1.0, tau=args.guided)
                    tiles.append(scored(f"guided fusion (tau {args.guided:g})", tensor_to_uint8(fused), hr_crop,
                                        crop))
    std_crop = crop.of(std[0, 0].cpu())
    heat = np.asarray(colorize_uncertainty(std_crop, UNCERTAINTY_FULL_SCALE))
    spread = "member std" if len(shared) > 1 else "std over 8 flips"
    tiles.append(Tile(heat, (f"uncertainty: {spread}, mean {float(std_crop.mean()) * PEAK:.1f}/255",
                             f"(yellow >= {UNCERTAINTY_FULL_SCALE * PEAK:.0f}/255)")))
    return tiles


def build_tiles(args: argparse.Namespace, notes: list[str]) -> tuple[list[Tile], Crop]:
    generators = [g for g, _ in load_members(one_if_identical(run_member_paths(args.run, args.checkpoint)))]
    scale = generators[0].scale
    hr_img = load_hr(args.image)
    hr_img = modcrop(gray_to_rgb(hr_img) if hr_img.ndim == 2 else hr_img, scale)  # (H, W, 3) uint8
    crop = Crop(*args.crop)
    check_crop(crop, *hr_img.shape[:2])
    lr_img = bicubic_downscale(hr_img, scale)
    hr_crop = np.ascontiguousarray(crop.of(hr_img))
    tiles = [Tile(hr_crop, (f"HR {args.image.name}", f"crop y={crop.y} x={crop.x} {crop.h}x{crop.w}, x{scale}")),
             scored("bicubic (PIL)", bicubic_upscale(lr_img, scale), hr_crop, crop)]
    if args.peers is not None:
        tiles += [scored(name, sr_img, hr_crop, crop)
                  for name, sr_img in peer_outputs(args.peers, lr_img, scale, notes).items()]
    return tiles + network_tiles(args, lr_img, hr_crop, crop, scale, generators, notes), crop


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.figure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="training run folder (holds member_<k>/)")
    parser.add_argument("--image", type=Path, required=True, help="HR image file")
    parser.add_argument("--crop", type=int, nargs=4, required=True, metavar=("Y", "X", "H", "W"),
                        help="region of the HR image (after cropping to a multiple of the scale), in pixels")
    parser.add_argument("--checkpoint", choices=CHECKPOINT_NAMES, default="pretrain",
                        help="members' checkpoint (default pretrain: end of the pixel-loss phase)")
    parser.add_argument("--gan-checkpoint", choices=CHECKPOINT_NAMES + (NO_GAN,), default="gan",
                        help="checkpoint of the GAN ensemble tile (default gan; skipped with a note when missing)")
    parser.add_argument("--peers", type=Path, default=None,
                        help="folder of OpenCV dnn_superres models (e.g. ../shared/peers/opencv_dnn_superres)")
    parser.add_argument("--adaptive", type=float, default=0.0, metavar="C0",
                        help="also show adaptive fusion (mgsrgan/infer/fusion.py) of the pixel and GAN ensembles at "
                             "this c0 (texture coherence, (0, 1])")
    parser.add_argument("--guided", type=float, default=0.0, metavar="TAU",
                        help="also show guided fusion (mgsrgan/infer/fusion.py) at this tau (8-bit levels)")
    parser.add_argument("--columns", type=int, default=4, help="tiles per row (default 4)")
    parser.add_argument("--zoom", type=int, default=0, help="nearest-neighbour enlargement; 0 = automatic")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    parser.add_argument("--tile", type=int, default=0, help="run generators tile by tile (LR px); 0 = whole image")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.columns < 1 or args.zoom < 0 or args.tile < 0:
            raise UserError("--columns must be >= 1, --zoom and --tile >= 0")
        if not args.out.parent.is_dir():
            raise UserError(f"--out {args.out}: folder {args.out.parent} does not exist")
        notes: list[str] = []
        tiles, crop = build_tiles(args, notes)
        zoom = args.zoom or auto_zoom(crop)
        figure = render_grid(tiles, zoom=zoom, columns=args.columns)
        figure.save(args.out, format="PNG")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for tile in tiles:
        print(" | ".join(tile.label))
    print(f"wrote {args.out} ({figure.width}x{figure.height}, {len(tiles)} tiles, zoom {zoom})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
