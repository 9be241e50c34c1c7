"""Periodic-artifact amplitude and colour shift: exact values on constructed images."""
from __future__ import annotations

import numpy as np
import pytest

from mgsrgan.evaluate.artifacts import colour_shift, period_lowpass_kernel, periodic_artifact
from mgsrgan.evaluate.metrics import rgb_to_y


def test_kernel_covers_one_period():
    np.testing.assert_allclose(period_lowpass_kernel(2), [0.25, 0.5, 0.25])
    for s in (2, 3, 4):
        k = period_lowpass_kernel(s)
        assert k.sum() == pytest.approx(1.0) and len(k) == s + 1


def _gray(level: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(level, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.mark.parametrize("crop", [0, 2, 4])
def test_checkerboard_amplitude_is_its_luma_amplitude(crop):
    yy, xx = np.mgrid[0:64, 0:64]
    board = _gray(128 + 8 * ((yy + xx) % 2 * 2 - 1))  # +-8 RGB levels, period 2
    flat = _gray(np.full((64, 64), 128))
    y_amp = (rgb_to_y(board).astype(float).max() - rgb_to_y(board).astype(float).min()) / 2
    assert periodic_artifact(board, 2, crop_border=crop) == pytest.approx(y_amp, abs=1e-9)
    assert y_amp > 6  # Y scales RGB by 219/255
    assert periodic_artifact(flat, 2, crop_border=crop) == 0.0


def test_smooth_ramp_and_period_3_pattern_at_x2():
    yy, xx = np.mgrid[0:60, 0:60]
    ramp = _gray(40 + 2.0 * xx + 1.0 * yy)  # linear: the high-pass is zero everywhere
    assert periodic_artifact(ramp, 2) < 0.3
    stripes = _gray(128 + 10 * (yy % 2))  # horizontal period-2 stripes: two of four phases bright
    assert periodic_artifact(stripes, 2) > 3


def test_colour_shift_is_the_mean_signed_difference():
    rng = np.random.default_rng(0)
    hr = rng.integers(20, 200, size=(16, 16, 3)).astype(np.uint8)
    sr = hr.copy()
    sr[..., 0] += 5
    sr[..., 2] -= 3
    sr[:4] = hr[:4]  # the first 4 rows unchanged
    r, g, b = colour_shift(sr, hr)
    assert (r, g, b) == pytest.approx((5 * 12 / 16, 0.0, -3 * 12 / 16))
    assert colour_shift(sr, hr, crop_border=4) == pytest.approx((5 * 8 / 8, 0.0, -3.0))
    with pytest.raises(ValueError):
        colour_shift(sr[..., 0], hr[..., 0])
