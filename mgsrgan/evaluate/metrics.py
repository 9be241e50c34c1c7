"""PSNR and SSIM as the SR papers report them (see PROTOCOL.md), in plain numpy.

Protocol: the SR output is clipped to [0, 1] and rounded to 8 bits (`tensor_to_uint8`); both SR and HR lose
`crop_border` pixels (= the scale) on every side; scores are computed on the Y channel of MATLAB's `rgb2ycbcr`
(BT.601 studio swing, float64, not rounded) with peak 255. A grayscale (H, W) image is scored on its raw gray
values, as the MATLAB scripts do for Set14's `bridge`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

# MATLAB rgb2ycbcr / ITU-R BT.601 "studio swing", with R, G, B in [0, 1]: Y = 16 + 65.481 R + 128.553 G + 24.966 B.
Y_OFFSET = 16.0
Y_WEIGHTS = np.array([65.481, 128.553, 24.966])

PEAK = 255.0  # 8-bit peak signal; the papers' PSNR and SSIM's dynamic range L (Wang et al. 2004, eq. 7)
SSIM_WINDOW = 11  # Gaussian window size (Wang et al. 2004, sec. III-C; MATLAB ssim_index.m)
SSIM_SIGMA = 1.5  # Gaussian window standard deviation, pixels (same sources)
SSIM_K1 = 0.01  # stabiliser for the luminance term, C1 = (K1 L)^2 (Wang et al. 2004, eq. 6-7)
SSIM_K2 = 0.03  # stabiliser for the contrast/structure term, C2 = (K2 L)^2 (same)


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) float RGB in [0, 1] -> (H, W, 3) uint8: clip to [0, 1], x255, round half to even.

    This is the 8-bit image a user would save; every score is computed on it, never on the raw float output.
    """
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got shape {tuple(x.shape)}")
        x = x[0]
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected (3, H, W) or (1, 3, H, W), got shape {tuple(x.shape)}")
    img = torch.round(x.detach().to("cpu", torch.float64).clamp(0.0, 1.0) * PEAK)
    return img.permute(1, 2, 0).numpy().astype(np.uint8)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) float64 Y in [16, 235] (MATLAB rgb2ycbcr, unrounded).

    A (H, W) gray image is returned as its raw gray values in float64 (no 16..235 scaling), as the MATLAB
    evaluation scripts score gray images directly.
    """
    _check_uint8(img)
    if img.ndim == 2:
        return img.astype(np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) or (H, W), got shape {img.shape}")
    return Y_OFFSET + (img.astype(np.float64) / PEAK) @ Y_WEIGHTS


def psnr(sr: np.ndarray, hr: np.ndarray, *, crop_border: int, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB, peak 255, on float64.

    sr, hr: uint8 (H, W, 3) RGB or (H, W) gray, same shape. crop_border: pixels dropped on every side (the scale).
    y_channel: score Y (gray images: raw gray); False scores all RGB channels together (one MSE).
    Identical images give inf (MSE 0), as numpy's log of zero would; callers averaging over a set should expect it.
    """
    a, b = _prepare(sr, hr, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(PEAK**2 / mse)


def ssim(sr: np.ndarray, hr: np.ndarray, *, crop_border: int, y_channel: bool = True) -> float:
    """Structural similarity (Wang et al. 2004; MATLAB ssim_index.m): 11x11 Gaussian window, sigma 1.5,
    K1 0.01, K2 0.03, L 255, population (not sample) statistics, valid region only, mean of the SSIM map.

    Same inputs as `psnr`. With y_channel=False on RGB: SSIM of each channel, then their mean.
    Needs at least 11x11 pixels after cropping.
    """
    a, b = _prepare(sr, hr, crop_border, y_channel)
    if a.ndim == 2:
        return _ssim_plane(a, b)
    return float(np.mean([_ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def _check_uint8(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise TypeError(f"expected a uint8 numpy image, got {type(img).__name__} "
                        f"{getattr(img, 'dtype', '')}; clip and round first (tensor_to_uint8)")


def _prepare(sr: np.ndarray, hr: np.ndarray, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Check, crop and convert both images to float64 planes (Y / gray) or (H, W, 3) RGB."""
    _check_uint8(sr)
    _check_uint8(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"SR shape {sr.shape} differs from HR shape {hr.shape}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    h, w = hr.shape[:2]
    if 2 * crop_border >= min(h, w):
        raise ValueError(f"crop_border {crop_border} leaves nothing of a {w}x{h} image")
    if crop_border:
        sr = sr[crop_border:-crop_border, crop_border:-crop_border]
        hr = hr[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        return rgb_to_y(sr), rgb_to_y(hr)
    return sr.astype(np.float64), hr.astype(np.float64)


def _gaussian_kernel_1d() -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product with itself is MATLAB's fspecial('gaussian', 11, 1.5)."""
    offsets = np.arange(SSIM_WINDOW, dtype=np.float64) - (SSIM_WINDOW - 1) / 2
    kernel = np.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return kernel / kernel.sum()


def _filter_valid(plane: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation with `kernel` (x) `kernel`, 'valid' region: (H, W) -> (H-10, W-10)."""
    n = kernel.size
    rows = sum(kernel[k] * plane[k: plane.shape[0] - n + 1 + k] for k in range(n))
    return sum(kernel[k] * rows[:, k: rows.shape[1] - n + 1 + k] for k in range(n))


def _ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two float64 (H, W) planes."""
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after cropping, got {a.shape}")
    kernel = _gaussian_kernel_1d()
    c1 = (SSIM_K1 * PEAK) ** 2
    c2 = (SSIM_K2 * PEAK) ** 2
    mu_a, mu_b = _filter_valid(a, kernel), _filter_valid(b, kernel)
    var_a = _filter_valid(a * a, kernel) - mu_a**2
    var_b = _filter_valid(b * b, kernel) - mu_b**2
    cov = _filter_valid(a * b, kernel) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())
