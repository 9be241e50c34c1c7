"""Image files <-> float tensors, and back to the mode the image came in.

Reading gives a (3, h, w) float32 RGB tensor in [0, 1] plus an ImageInfo saying what to restore:
  RGB, CMYK / YCbCr / LAB / HSV (converted to RGB)     -> RGB
  RGBA, LA, P / PA with transparency                    -> colour upscaled by the model, alpha by bicubic, re-attached
  L, 1 (bilevel)                                        -> the model sees gray replicated to 3 channels; back to L
  I;16 / I (16-bit gray PNG/TIFF)                       -> read as value / 65535, written as round(value * 65535)
  16-bit RGB / RGBA PNG (Pillow would give 8 bits)      -> decoded by mgsrgan.io.png16 as value / 65535; to_pil gives
                                                           an Rgb16Image: 16-bit PNG out, 8-bit for other formats
EXIF orientation is applied first (so the output is upright and carries no orientation tag); for 16-bit RGB(A) PNG
that is an eXIf chunk before the image data (where writers put it; one after IDAT is not looked for). Animated or
multi-page files contribute their first frame. Writes are atomic (temp file in the same folder, then os.replace).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from mgsrgan.io.atomic import atomic_write
from mgsrgan.errors import UserError
from mgsrgan.io.png16 import Png16Error, is_png16_color, read_png16, write_png16

EIGHT_BIT_MAX = 255.0
SIXTEEN_BIT_MAX = 65535.0  # PNG 16-bit samples are 0..65535 (PNG spec, section 4.4)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # Pillow's names for 16-bit (and 32-bit int) gray
SIXTEEN_BIT_FORMATS = ("PNG", "TIFF")  # formats Pillow writes 16-bit gray to
SIXTEEN_BIT_COLOR_MODES = ("RGB;16", "RGBA;16")  # our names (ImageInfo.mode) for 16-bit RGB(A) PNG, not Pillow's
EXIF_ORIENTATION_TAG = 0x0112  # EXIF 2.3, tag 274
EXIF_ORIENTATIONS = {  # EXIF orientation -> (transpose, flip rows, flip columns) that makes the image upright
    1: (False, False, False), 2: (False, False, True), 3: (False, True, True), 4: (False, True, False),
    5: (True, False, False), 6: (True, False, True), 7: (True, True, True), 8: (True, True, False)}
ALPHA_FORMATS = ("PNG", "WEBP", "TIFF", "GIF")  # formats that keep an alpha channel; others get the colour only
TO_RGB_MODES = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX")
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, the weights Pillow's convert("L") uses
SAVE_QUALITY = {"JPEG": 95, "WEBP": 95}  # Pillow's default 75 quantises away much of the detail SR adds
UNCERTAINTY_FULL_SCALE = 0.05  # a fixed top colour (std, image units): ~13 8-bit levels; the page's legend uses it
# The default top colour of an uncertainty map: the std that this percentage of the image's pixels stay under. The
# members' std is small almost everywhere and large on a few edges, so a fixed top leaves most maps dark; the
# image's own spread spans the palette, and the few pixels above it clip to yellow.
UNCERTAINTY_PERCENTILE = 99.0
UNCERTAINTY_MIN_SCALE = 0.5 / 255.0  # never finer than half an 8-bit level: below that the members agree exactly
VIRIDIS_ANCHORS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))  # matplotlib's
#   viridis at 0, 0.25, 0.5, 0.75, 1 (its published 5-step palette); linear in between is within a few levels


# What a folder scan picks up (compared lower-cased): the raster formats Pillow decodes with no extra program. One
# list for training folders, benchmark folders and inference input folders.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"})


class ImageFolderError(UserError):
    """An image folder that does not exist or is not a folder; the message names it."""


class BadImageError(UserError):
    """An input that is not a readable image: empty, corrupt, unknown format, or over the pixel limit."""


class ImageWriteError(UserError):
    """An output that cannot be written (folder not writable, not a folder, disk full, unknown format)."""


@dataclass(frozen=True)
class ImageInfo:
    """What an upscaled tensor needs to become the same kind of image again."""

    mode: str  # output mode: "RGB", "RGBA", "L", "LA", "I;16", or "RGB;16" / "RGBA;16" (16-bit colour PNG)
    format: str | None  # Pillow format of the source ("PNG", "JPEG", ...); None for images made in memory
    alpha: Image.Image | None  # the source alpha (h x w; mode "L", or "I;16" for "RGBA;16"), or None
    icc_profile: bytes | None  # colour profile to carry over (dropped when converted from CMYK etc.)


@dataclass(frozen=True, eq=False)
class Rgb16Image:
    """16 bits per channel RGB or RGBA, which a PIL image cannot hold: write_image writes it as 16-bit PNG, or
    as 8 bits to other formats."""

    pixels: np.ndarray  # (H, W, 3 or 4) uint16

    @property
    def mode(self) -> str:
        return SIXTEEN_BIT_COLOR_MODES[self.pixels.shape[2] - 3]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL's Image.size."""
        return self.pixels.shape[1], self.pixels.shape[0]

    def to_8bit(self) -> Image.Image:
        """PIL RGB / RGBA image with round(value / 257) (integer form: exact, and 4 bytes a sample, not 8)."""
        return Image.fromarray(((self.pixels.astype(np.uint32) + 128) // 257).astype(np.uint8))


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) array stored with EXIF `orientation` -> upright (what ImageOps.exif_transpose does to a PIL image);
    unknown values leave it as it is, as Pillow does."""
    transpose, flip_rows, flip_columns = EXIF_ORIENTATIONS.get(orientation, EXIF_ORIENTATIONS[1])
    if transpose:
        pixels = pixels.transpose(1, 0, 2)
    return np.ascontiguousarray(pixels[::-1 if flip_rows else 1, ::-1 if flip_columns else 1])


def exif_orientation(img: Image.Image) -> int:
    """Orientation from the EXIF Pillow found in the header chunks (img.getexif() would decode the pixels);
    1 (upright) when there is none or it cannot be parsed, as viewers treat it."""
    raw = img.info.get("exif")
    if not raw:
        return 1
    exif = Image.Exif()
    try:
        exif.load(raw)
        return int(exif.get(EXIF_ORIENTATION_TAG, 1))
    except (SyntaxError, ValueError, TypeError, EOFError, KeyError, OSError):
        return 1


def read_png16_color(path: Path, img: Image.Image) -> tuple[torch.Tensor, ImageInfo]:
    """A 16-bit RGB(A) PNG (`img`: Pillow's handle on it, pixels not loaded) -> ((3, h, w) float32 RGB in [0, 1],
    ImageInfo with mode "RGB;16" or "RGBA;16" and a 16-bit alpha)."""
    try:
        pixels = orient(read_png16(path), exif_orientation(img))  # (h, w, 3 or 4) uint16
    except Png16Error as err:
        raise BadImageError(str(err)) from None
    alpha = Image.fromarray(pixels[..., 3]) if pixels.shape[2] == 4 else None  # mode "I;16"
    rgb = torch.from_numpy(np.ascontiguousarray(pixels[..., :3].transpose(2, 0, 1)).astype(np.float32))
    mode = SIXTEEN_BIT_COLOR_MODES[pixels.shape[2] - 3]
    return rgb.div_(SIXTEEN_BIT_MAX), ImageInfo(mode, "PNG", alpha, img.info.get("icc_profile"))


def from_pil(img: Image.Image) -> tuple[torch.Tensor, ImageInfo]:
    """PIL image -> ((3, h, w) float32 RGB in [0, 1], ImageInfo)."""
    img = ImageOps.exif_transpose(img)
    icc = img.info.get("icc_profile")
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode in TO_RGB_MODES:
        icc = icc if img.mode == "RGBX" else None  # a CMYK/LAB profile describes the old space, not the new RGB
        img = img.convert("RGB")
    elif img.mode in ("RGBa", "La"):  # premultiplied alpha
        img = img.convert(img.mode[0:-1] + "A")
    mode = img.mode
    alpha = None
    if mode in SIXTEEN_BIT_MODES:
        gray = np.clip(np.asarray(img, dtype=np.float64), 0, SIXTEEN_BIT_MAX) / SIXTEEN_BIT_MAX
        rgb = np.repeat(gray[..., None], 3, axis=2)
        mode, icc = "I;16", None
    elif mode in ("L", "LA"):
        if mode == "LA":
            alpha = img.getchannel("A")
        rgb = np.repeat(np.asarray(img.getchannel("L"), dtype=np.float64)[..., None], 3, axis=2) / EIGHT_BIT_MAX
    elif mode in ("RGB", "RGBA"):
        if mode == "RGBA":
            alpha = img.getchannel("A")
        rgb = np.asarray(img.convert("RGB"), dtype=np.float64) / EIGHT_BIT_MAX
    else:
        raise BadImageError(f"image mode {mode!r} is not supported (supported: RGB, RGBA, L, LA, P, CMYK, 16-bit gray)")
    tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).to(torch.float32)
    return tensor, ImageInfo(mode=mode, format=img.format, alpha=alpha, icc_profile=icc)


def to_pil(sr_img: torch.Tensor, info: ImageInfo) -> Image.Image | Rgb16Image:
    """(3, H, W) float RGB (clipped to [0, 1] here) -> PIL image in info.mode, alpha upscaled with bicubic; for
    info.mode "RGB;16" / "RGBA;16" an Rgb16Image (16-bit alpha, bicubic too)."""
    sr_img = sr_img.detach().to("cpu", torch.float32)  # float32 keeps 16-bit exact (error < 0.004 of a level)
    height, width = sr_img.shape[-2:]
    if info.mode in SIXTEEN_BIT_COLOR_MODES:
        levels = sr_img.clamp(0.0, 1.0).mul_(SIXTEEN_BIT_MAX).round_().to(torch.int32)
        pixels = np.ascontiguousarray(levels.permute(1, 2, 0).numpy(), dtype=np.uint16)  # (H, W, 3)
        if info.alpha is not None:
            alpha = np.asarray(info.alpha.resize((width, height), Image.BICUBIC), dtype=np.uint16)
            pixels = np.concatenate([pixels, alpha[..., None]], axis=2)
        return Rgb16Image(pixels)
    if info.mode in ("L", "LA", "I;16"):
        gray = (sr_img * torch.tensor(LUMA_WEIGHTS).view(3, 1, 1)).sum(dim=0).clamp_(0.0, 1.0)
        if info.mode == "I;16":
            return Image.fromarray(gray.mul_(SIXTEEN_BIT_MAX).round_().numpy().astype(np.uint16))
        out = Image.fromarray(gray.mul_(EIGHT_BIT_MAX).round_().to(torch.uint8).numpy())
    else:  # one float copy, then uint8: a 8000x8000 output stays within ~1 GB here
        rgb = sr_img.clamp(0.0, 1.0).mul_(EIGHT_BIT_MAX).round_().to(torch.uint8)
        out = Image.fromarray(rgb.permute(1, 2, 0).contiguous().numpy())
    if info.alpha is not None:
        out.putalpha(info.alpha.resize((width, height), Image.BICUBIC))
    return out


def read_image(path: Path, *, max_pixels: int | None = None) -> tuple[torch.Tensor, ImageInfo]:
    """Read a file; BadImageError (naming the file) for anything that is not a usable image.

    `max_pixels` (default Pillow's Image.MAX_IMAGE_PIXELS, about 89 Mpx) guards against decompression bombs: the
    size is checked from the header, before any pixel is decoded.
    """
    path = Path(path)
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        if path.stat().st_size == 0:
            raise BadImageError(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own check below is the guard
            # Pillow warns (with a source line) about metadata it skips in a damaged file ("Corrupt EXIF data",
            # "Tag data larger than file"); the pixels are still read, and an unusable file is one BadImageError
            warnings.simplefilter("ignore", UserWarning)
            saved_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as img:
                    width, height = img.size
                    if limit is not None and width * height > limit:
                        raise BadImageError(f"{path}: {width}x{height} = {width * height} pixels is over the limit of "
                                            f"{limit} (decompression bomb guard; raise it with --max-pixels)")
                    if img.format == "PNG" and is_png16_color(path):  # Pillow would decode it to 8 bits
                        return read_png16_color(path, img)
                    img.load()
                    try:
                        tensor, info = from_pil(img)
                    except BadImageError as err:
                        raise BadImageError(f"{path}: {err}") from None
                    return tensor, ImageInfo(info.mode, img.format, info.alpha, info.icc_profile)
            finally:
                Image.MAX_IMAGE_PIXELS = saved_limit
    except UnidentifiedImageError:
        raise BadImageError(f"{path}: not an image (Pillow cannot identify it)") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise BadImageError(f"{path}: unreadable or corrupt image ({err})") from None


def list_images(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Image files (by IMAGE_EXTENSIONS) in `folder`, and in its subfolders if `recursive`, sorted by relative path;
    hidden files (".name") are skipped. An empty list when there are none; ImageFolderError when `folder` is missing
    or is a file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageFolderError(f"{folder}: image folder does not exist" if not folder.exists()
                               else f"{folder}: is not a folder")
    found = folder.rglob("*") if recursive else folder.iterdir()
    images = [p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()]
    return sorted(images, key=lambda p: p.relative_to(folder).as_posix())


def read_rgb8(path: Path) -> tuple[np.ndarray, ImageInfo]:
    """`read_image`, as 8 bits: ((H, W, 3) uint8 RGB, upright, gray as three equal channels, alpha dropped (it
    stays in the ImageInfo), 16-bit rounded to the nearest 8-bit level: round(v / 257)), ImageInfo)."""
    tensor, info = read_image(path)
    pixels = tensor.mul_(EIGHT_BIT_MAX).round_().to(torch.uint8).permute(1, 2, 0)
    return np.ascontiguousarray(pixels.numpy()), info


def format_for_extension(ext: str) -> str:
    """'png' / '.jpg' -> Pillow format name ('PNG', 'JPEG'); UserError if Pillow cannot write it."""
    Image.init()
    suffix = "." + ext.lower().lstrip(".")
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise UserError(f"cannot write images with extension {suffix!r}")
    return fmt


def output_format(target: Path, source_format: str | None) -> str:
    """Format to write `target` in: the one its extension names, else the source's (a PNG named .dat stays PNG)."""
    Image.init()
    fmt = Image.registered_extensions().get(Path(target).suffix.lower())
    if fmt in Image.SAVE:
        return fmt
    if source_format in Image.SAVE:
        return source_format
    raise ImageWriteError(f"{target}: Pillow cannot write format {source_format}; pass --ext png")


def write_image(img: Image.Image | Rgb16Image, path: Path, *, fmt: str, icc_profile: bytes | None = None) -> None:
    """Save atomically as Pillow format `fmt`; 16-bit and alpha degrade to what the format can hold (an
    Rgb16Image stays 16-bit in PNG, written by mgsrgan.io.png16)."""
    path = Path(path)
    if isinstance(img, Rgb16Image):
        if fmt == "PNG":
            save_atomically(path, lambda tmp: write_png16(tmp, img.pixels, icc_profile=icc_profile))
            return
        img = img.to_8bit()
    if img.mode == "I;16" and fmt not in SIXTEEN_BIT_FORMATS:
        img = Image.fromarray(np.round(np.asarray(img, dtype=np.float64) / 257.0).astype(np.uint8))
    if img.mode in ("RGBA", "LA") and fmt not in ALPHA_FORMATS:
        img = img.convert(img.mode[:-1])
    params: dict = {}
    if fmt in SAVE_QUALITY:
        params["quality"] = SAVE_QUALITY[fmt]
    if icc_profile and img.mode in ("RGB", "RGBA"):
        params["icc_profile"] = icc_profile
    save_atomically(path, lambda tmp: img.save(tmp, format=fmt, **params))


def save_atomically(path: Path, write: Callable[[str], None]) -> None:
    """atomic_write(path, write(tmp_path)) into a folder made as needed; ImageWriteError naming the file on failure."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
    except (OSError, ValueError, KeyError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ImageWriteError(f"{path}: cannot write ({reason})") from None


def uncertainty_scale(std: torch.Tensor) -> float:
    """The default top of an uncertainty map: the std's UNCERTAINTY_PERCENTILE-th percentile over the image (image
    units), at least UNCERTAINTY_MIN_SCALE."""
    values = std.detach().to("cpu", torch.float64).flatten().numpy()
    return max(float(np.percentile(values, UNCERTAINTY_PERCENTILE)), UNCERTAINTY_MIN_SCALE)


def colorize_uncertainty(std: torch.Tensor, full_scale: float | None = None) -> Image.Image:
    """(1, H, W) or (H, W) std in image units -> RGB viridis map: dark purple = members agree, yellow = std at or
    above `full_scale` (linear in between, clipped); None: `uncertainty_scale(std)`, the image's own spread."""
    full_scale = uncertainty_scale(std) if full_scale is None else full_scale
    level = (std.detach().to("cpu", torch.float64).reshape(std.shape[-2:]) / full_scale).clamp(0.0, 1.0).numpy()
    anchors = np.asarray(VIRIDIS_ANCHORS, dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(anchors))
    rgb = np.stack([np.interp(level, positions, anchors[:, c]) for c in range(3)], axis=-1)
    return Image.fromarray(np.round(rgb).astype(np.uint8))
