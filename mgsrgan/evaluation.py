"""Evaluate upscalers on folders of HR images under the standard SR protocol (PROTOCOL.md).

For every HR image: crop to a multiple of the scale (`modcrop`), make the LR with antialiased bicubic
(`bicubic_downscale`), upscale it with each model, clip/round to 8 bits, score PSNR and SSIM on Y with
`crop_border = scale`. Grayscale images stay gray end to end and are scored on raw gray values.

Every model is an `ImageUpscaler`: (h, w, 3) RGB or (h, w) gray uint8 LR -> the same layout at x scale. Networks
that work on tensors (a generator, an ensemble, a tiled wrapper) are adapted with `tensor_upscaler`, so the loop
never needs to know what is behind a name.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image

from mgsrgan.degradation import bicubic_downscale, bicubic_upscale, modcrop
from mgsrgan.errors import UserError
from mgsrgan.metrics import PEAK, Y_OFFSET, Y_WEIGHTS, psnr, rgb_to_y, ssim, tensor_to_uint8

ImageUpscaler = Callable[[np.ndarray], np.ndarray]  # uint8 LR (h, w[, 3]) -> uint8 SR (h*s, w*s[, 3])
TensorUpscaler = Callable[[torch.Tensor], torch.Tensor]  # (1, 3, h, w) in [0, 1] -> (1, 3, h*s, w*s), ~[0, 1]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
BICUBIC = "bicubic"  # the model name of the baseline every SR paper reports
HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # PIL modes with more than 8 bits per sample


class EvaluationError(UserError):
    """A data folder or image the evaluator cannot use."""


@dataclass(frozen=True)
class ImageScore:
    """One model on one image. psnr in dB (inf if SR == HR after cropping), ssim in [-1, 1], seconds of upscaling."""
    dataset: str
    image: str
    model: str
    psnr: float
    ssim: float
    seconds: float


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name; EvaluationError if the folder is missing or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: no such data folder")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise EvaluationError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return paths


def load_hr(path: Path) -> np.ndarray:
    """An HR image as uint8: (H, W) for 8-bit gray files, (H, W, 3) RGB for everything else (alpha dropped).

    Pixels as stored (no EXIF rotation), as MATLAB's imread gives them to the published evaluation scripts.
    """
    try:
        with Image.open(path) as img:
            if img.mode in HIGH_BIT_MODES:
                raise EvaluationError(f"{path}: {img.mode} images (more than 8 bits) are not supported by the "
                                      "8-bit PSNR/SSIM protocol")
            return np.asarray(img if img.mode in ("L", "RGB") else img.convert("RGB")).copy()
    except (OSError, SyntaxError) as err:  # PIL reports unreadable / truncated files as OSError
        raise EvaluationError(f"{path}: not a readable image ({err})") from None


def gray_to_rgb(img: np.ndarray) -> np.ndarray:
    """(h, w) uint8 -> (h, w, 3) uint8 with three equal channels (how a gray image enters an RGB network)."""
    return np.repeat(img[..., None], 3, axis=2)


def rgb_to_gray(img: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 -> (h, w) uint8 full-range BT.601 luma, rounded.

    The Y formula without the studio-swing offset and scale, so three equal channels g map back to g exactly.
    """
    luma = (rgb_to_y(img) - Y_OFFSET) * PEAK / Y_WEIGHTS.sum()
    return np.clip(np.round(luma), 0, PEAK).astype(np.uint8)


def bicubic_upscaler(scale: int) -> ImageUpscaler:
    """The PIL bicubic baseline; works on gray and RGB directly."""
    return lambda lr_img: bicubic_upscale(lr_img, scale)


def tensor_upscaler(upscale: TensorUpscaler, *, device: torch.device | str = "cpu") -> ImageUpscaler:
    """Adapt a tensor model to an ImageUpscaler: uint8 -> [0, 1] float on `device`, no_grad, clip/round to uint8.

    Gray LR enters as three equal channels and the RGB output is turned back to gray with `rgb_to_gray`.
    The caller puts its modules in eval mode (BatchNorm must use running statistics).
    """
    def run(lr_img: np.ndarray) -> np.ndarray:
        rgb = gray_to_rgb(lr_img) if lr_img.ndim == 2 else lr_img
        lr = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0)
        lr = lr.to(device=device, dtype=torch.float32) / PEAK  # (1, 3, h, w) in [0, 1]
        with torch.no_grad():
            sr = upscale(lr)  # (1, 3, h*s, w*s)
        sr_img = tensor_to_uint8(sr)
        return rgb_to_gray(sr_img) if lr_img.ndim == 2 else sr_img
    return run


def evaluate_image(hr_img: np.ndarray, upscalers: dict[str, ImageUpscaler], *, scale: int
                   ) -> dict[str, tuple[float, float, float]]:
    """Score every upscaler on one HR image: model name -> (psnr dB, ssim, seconds). HR is modcropped here."""
    hr_img = modcrop(hr_img, scale)
    lr_img = bicubic_downscale(hr_img, scale)
    scores = {}
    for name, upscale in upscalers.items():
        start = time.perf_counter()
        sr_img = upscale(lr_img)
        seconds = time.perf_counter() - start
        if sr_img.shape != hr_img.shape or sr_img.dtype != np.uint8:
            raise ValueError(f"model {name} returned {sr_img.dtype} {sr_img.shape}, expected uint8 {hr_img.shape}")
        scores[name] = (psnr(sr_img, hr_img, crop_border=scale), ssim(sr_img, hr_img, crop_border=scale), seconds)
    return scores


def evaluate_folder(folder: Path, upscalers: dict[str, ImageUpscaler], *, scale: int,
                    on_image: Callable[[str], None] | None = None) -> list[ImageScore]:
    """Every image of `folder` through every upscaler. The dataset name is the folder name.

    on_image(name) is called before each image (progress display); it has no effect on the scores.
    """
    folder = Path(folder)
    results = []
    for path in list_images(folder):
        if on_image is not None:
            on_image(path.name)
        scores = evaluate_image(load_hr(path), upscalers, scale=scale)
        results.extend(ImageScore(folder.name, path.stem, name, *values) for name, values in scores.items())
    return results


def summarize(results: Iterable[ImageScore]) -> dict[str, dict[str, dict[str, float]]]:
    """dataset -> model -> {"psnr", "ssim", "seconds": means over images, "images": count}; insertion order kept."""
    grouped: dict[str, dict[str, list[ImageScore]]] = {}
    for score in results:
        grouped.setdefault(score.dataset, {}).setdefault(score.model, []).append(score)
    return {dataset: {model: {"psnr": float(np.mean([s.psnr for s in scores])),
                              "ssim": float(np.mean([s.ssim for s in scores])),
                              "seconds": float(np.mean([s.seconds for s in scores])),
                              "images": len(scores)}
                      for model, scores in models.items()}
            for dataset, models in grouped.items()}


def markdown_table(dataset: str, models: dict[str, dict[str, float]], *, scale: int) -> str:
    """One set's summary (from `summarize`) as a Markdown table, with the gain over bicubic when it was run."""
    base = models.get(BICUBIC)
    lines = [f"### {dataset} x{scale} (Y channel, crop {scale}, PIL bicubic LR)", "",
             "| model | PSNR (dB) | SSIM | vs bicubic (dB) | s / image |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, row in models.items():
        gain = f"{row['psnr'] - base['psnr']:+.2f}" if base is not None else "n/a"
        lines.append(f"| {name} | {row['psnr']:.2f} | {row['ssim']:.4f} | {gain} | {row['seconds']:.3f} |")
    return "\n".join(lines)
