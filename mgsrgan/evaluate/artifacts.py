"""Artifact measures a perceptual network cannot hide: grid-locked periodic patterns and colour casts.

A sub-pixel (PixelShuffle) generator makes each of the s x s output phases with its own filters, so a GAN that
drifts leaves a pattern locked to the output grid: a checkerboard at x2. `periodic_artifact` measures it as the
spread of the high-pass luma's mean over each (row mod s, column mod s) phase; a natural image's phases all see
the same statistics, so its own value (the HR's) is small and sets the bar. `colour_shift` is the mean signed
SR - HR difference per RGB channel: a cast, which PSNR on Y and every perceptual distance underweight.
Images are uint8 (H, W, 3) RGB; results are in 8-bit levels.
"""
from __future__ import annotations

import numpy as np

from mgsrgan.evaluate.metrics import rgb_to_y


def period_lowpass_kernel(scale: int) -> np.ndarray:
    """1-D kernel of s + 1 taps, ends halved, summing to 1: its window covers exactly one period of s pixels, so it
    removes every period-s pattern from the low-pass and the high-pass keeps it whole ([1, 2, 1] / 4 at s = 2)."""
    kernel = np.ones(scale + 1)
    kernel[[0, -1]] = 0.5
    return kernel / scale


def highpass_y(img: np.ndarray, scale: int) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> Y minus its separable period-s low-pass, float64 (H - s, W - s), in 8-bit levels
    (the s/2 border rows and columns the filter cannot reach are dropped)."""
    y = rgb_to_y(img).astype(np.float64)  # BT.601 luma in [16, 235]
    kernel = period_lowpass_kernel(scale)
    half = scale // 2
    low = np.apply_along_axis(np.convolve, 0, y, kernel, mode="valid")
    low = np.apply_along_axis(np.convolve, 1, low, kernel, mode="valid")
    return y[half: half + low.shape[0], half: half + low.shape[1]] - low


def periodic_artifact(img: np.ndarray, scale: int, *, crop_border: int = 0) -> float:
    """RMS over the s^2 phases (i mod s, j mod s) of the high-pass luma's mean at that phase, in 8-bit levels.

    Phases are counted on the full image's grid (a crop of `crop_border` pixels keeps the grid aligned when it
    is a multiple of s). A flat image with a +-a checkerboard gives a; a natural photo ~0.1-0.3.
    """
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
    high = highpass_y(img, scale)
    offset = crop_border + scale // 2  # full-image row/column of high[0, 0]
    means = [high[(i - offset) % scale::scale, (j - offset) % scale::scale].mean()
             for i in range(scale) for j in range(scale)]
    return float(np.sqrt(np.mean(np.square(means))))


def colour_shift(sr: np.ndarray, hr: np.ndarray, *, crop_border: int = 0) -> tuple[float, float, float]:
    """Mean signed SR - HR per RGB channel in 8-bit levels (positive = SR brighter in that channel)."""
    if sr.shape != hr.shape or sr.ndim != 3 or sr.shape[2] != 3:
        raise ValueError(f"colour_shift: sr {sr.shape} and hr {hr.shape} must both be (H, W, 3)")
    if crop_border:
        sr = sr[crop_border:-crop_border, crop_border:-crop_border]
        hr = hr[crop_border:-crop_border, crop_border:-crop_border]
    diff = sr.astype(np.float64) - hr.astype(np.float64)
    r, g, b = diff.reshape(-1, 3).mean(axis=0)
    return float(r), float(g), float(b)
