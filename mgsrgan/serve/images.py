"""Uploaded bytes -> tensors and tensors -> response bytes, through the same readers and writers as the CLI, so an
upload keeps its kind (alpha, gray, 16-bit) exactly as `inference.py` keeps a file's. Temporary files live in a
private folder removed before the call returns, whatever happens."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from mgsrgan.errors import UserError
from mgsrgan.io.images import (UNCERTAINTY_FULL_SCALE, BadImageError, ImageInfo, colorize_uncertainty, read_image,
                               to_pil, write_image)

FORMATS = {"png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp"), "jpeg": ("JPEG", "image/jpeg"),
           "jpg": ("JPEG", "image/jpeg")}  # ?format= value -> (Pillow format, media type)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def response_format(name: str) -> tuple[str, str]:
    """'png' | 'webp' | 'jpeg' (any case) -> (Pillow format, media type); UserError listing the valid ones."""
    try:
        return FORMATS[name.lower()]
    except KeyError:
        raise UserError(f"unknown format {name!r}; choose one of png, webp, jpeg") from None


def display_name(filename: str | None) -> str:
    """The client's file name, reduced to safe characters, for messages only (it never names a server file)."""
    name = _SAFE_NAME.sub("_", Path(filename or "upload").name)[:80]
    return name or "upload"


def decode_upload(data: bytes, filename: str | None, *, max_pixels: int) -> tuple[torch.Tensor, ImageInfo]:
    """Uploaded bytes -> ((3, h, w) float32 RGB in [0, 1], ImageInfo). BadImageError naming the upload (not the
    temporary file) for an empty, corrupt or non-image upload, or one over `max_pixels` (checked from the header,
    before any pixel is decoded)."""
    name = display_name(filename)
    if not data:
        raise BadImageError(f"{name}: empty upload (0 bytes)")
    with tempfile.TemporaryDirectory(prefix="mgsrgan-upload-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        try:
            return read_image(path, max_pixels=max_pixels)
        except BadImageError as err:
            raise BadImageError(str(err).replace(str(path), name).replace("--max-pixels", "serve --max-pixels")) \
                from None


def encode(sr_img: torch.Tensor, info: ImageInfo, fmt: str) -> bytes:
    """(3, H, W) in [0, 1] -> file bytes in Pillow format `fmt`, in the input's kind (what write_image keeps)."""
    with tempfile.TemporaryDirectory(prefix="mgsrgan-out-") as folder:
        path = Path(folder) / "out"
        write_image(to_pil(sr_img, info), path, fmt=fmt, icc_profile=info.icc_profile)
        return path.read_bytes()


def encode_uncertainty(std: torch.Tensor, fmt: str) -> bytes:
    """(1, H, W) std in image units -> the viridis map as file bytes, on the fixed scale the page's legend names
    (UNCERTAINTY_FULL_SCALE), so views and images compare."""
    with tempfile.TemporaryDirectory(prefix="mgsrgan-out-") as folder:
        path = Path(folder) / "out"
        write_image(colorize_uncertainty(std, UNCERTAINTY_FULL_SCALE), path, fmt=fmt)
        return path.read_bytes()


def bicubic(lr_img: torch.Tensor, scale: int) -> torch.Tensor:
    """(3, h, w) -> (3, h*s, w*s) bicubic upscale, clipped: the page's "before" side."""
    return F.interpolate(lr_img[None], scale_factor=scale, mode="bicubic", align_corners=False)[0].clamp(0.0, 1.0)
