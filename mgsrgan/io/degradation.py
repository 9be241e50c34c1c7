"""The degradation model shared by training, validation and evaluation: HR -> LR.

As the SR papers do (see PROTOCOL.md): crop HR to a multiple of the scale, then downscale with antialiased bicubic
(PIL's BICUBIC is antialiased when shrinking, a = -0.5, close to MATLAB's imresize on the standard sets).
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop an (H, W) or (H, W, C) array at the bottom/right so H and W are multiples of `scale`."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """(H, W[, C]) uint8 with H, W multiples of scale -> (H/scale, W/scale[, C]) uint8, PIL antialiased bicubic."""
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"HR size {w}x{h} is not a multiple of scale {scale}; modcrop first")
    return np.asarray(Image.fromarray(hr).resize((w // scale, h // scale), Image.BICUBIC))


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """(h, w[, C]) uint8 -> (h*scale, w*scale[, C]) uint8 with PIL bicubic: the baseline every SR paper reports."""
    h, w = lr.shape[:2]
    return np.asarray(Image.fromarray(lr).resize((w * scale, h * scale), Image.BICUBIC))
