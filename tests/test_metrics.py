import math

import numpy as np
import pytest
import torch

from mgsrgan.evaluate.metrics import psnr, rgb_to_y, ssim, tensor_to_uint8


def _random_rgb(seed: int, shape=(40, 48, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_rgb_to_y_hand_values():
    white = np.full((2, 2, 3), 255, np.uint8)
    black = np.zeros((2, 2, 3), np.uint8)
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    np.testing.assert_allclose(rgb_to_y(white), 235.0, atol=1e-9)  # 16 + 65.481 + 128.553 + 24.966
    np.testing.assert_allclose(rgb_to_y(black), 16.0, atol=1e-12)
    np.testing.assert_allclose(rgb_to_y(red), 16.0 + 65.481, atol=1e-9)
    assert rgb_to_y(white).dtype == np.float64


def test_rgb_to_y_gray_is_raw():
    gray = np.array([[0, 7], [128, 255]], np.uint8)
    np.testing.assert_array_equal(rgb_to_y(gray), gray.astype(np.float64))


def test_psnr_constant_offset_on_gray_is_exact():
    hr = np.full((20, 20), 100, np.uint8)
    for d in (1, 3, 10):
        sr = hr + np.uint8(d)
        assert psnr(sr, hr, crop_border=2) == pytest.approx(20 * math.log10(255 / d), abs=1e-12)


def test_psnr_constant_offset_on_y():
    # Adding d to R, G and B moves Y by d * 219 / 255 (the weights sum to 219).
    hr = np.full((16, 16, 3), 90, np.uint8)
    sr = hr + np.uint8(5)
    d_y = 5 * 219 / 255
    assert psnr(sr, hr, crop_border=0) == pytest.approx(20 * math.log10(255 / d_y), abs=1e-12)
    assert psnr(sr, hr, crop_border=0, y_channel=False) == pytest.approx(20 * math.log10(255 / 5), abs=1e-12)


def test_psnr_identical_is_inf():
    img = _random_rgb(0)
    assert psnr(img, img, crop_border=4) == math.inf


def test_crop_border_ignores_the_frame():
    hr = np.full((20, 20), 50, np.uint8)
    sr = hr.copy()
    sr[:2, :] = 0  # damage only the 2-pixel frame
    sr[:, -2:] = 0
    assert psnr(sr, hr, crop_border=2) == math.inf
    assert ssim(sr, hr, crop_border=2) == pytest.approx(1.0)
    # crop_border=1 keeps 18x18, of which 1 row + 1 column (35 pixels) are off by 50.
    expected = 10 * math.log10(255**2 / (35 * 50**2 / 18**2))
    assert psnr(sr, hr, crop_border=1) == pytest.approx(expected, abs=1e-12)


def test_ssim_identical_is_one():
    img = _random_rgb(1)
    assert ssim(img, img, crop_border=3) == pytest.approx(1.0, abs=1e-12)
    assert ssim(img, img, crop_border=3, y_channel=False) == pytest.approx(1.0, abs=1e-12)


def test_bad_inputs_raise():
    img = _random_rgb(2)
    with pytest.raises(ValueError, match="differs"):
        psnr(img, img[:-1], crop_border=0)
    with pytest.raises(TypeError, match="uint8"):
        psnr(img.astype(np.float32), img.astype(np.float32), crop_border=0)
    with pytest.raises(ValueError, match="leaves nothing"):
        ssim(img, img, crop_border=20)
    with pytest.raises(ValueError, match="11x11"):
        ssim(img[:14, :14], img[:14, :14], crop_border=2)


def test_tensor_to_uint8_clips_and_rounds():
    x = torch.tensor([-0.5, 0.0, 0.4 / 255, 1.4 / 255, 1.6 / 255, 0.5, 1.0, 2.0]).reshape(1, 1, 8).repeat(3, 1, 1)
    out = tensor_to_uint8(x.unsqueeze(0))
    assert out.shape == (1, 8, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 0, 1, 2, 128, 255, 255])
    np.testing.assert_array_equal(tensor_to_uint8(x), out)
    with pytest.raises(ValueError):
        tensor_to_uint8(torch.zeros(2, 3, 4, 4))


def test_against_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(3)
    hr = _random_rgb(4, (64, 72, 3))
    sr = np.clip(hr.astype(int) + rng.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    border = 4
    y_sr, y_hr = (rgb_to_y(x)[border:-border, border:-border] for x in (sr, hr))
    assert psnr(sr, hr, crop_border=border) == pytest.approx(
        metrics.peak_signal_noise_ratio(y_hr, y_sr, data_range=255), abs=1e-9)
    ref_kwargs = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert ssim(sr, hr, crop_border=border) == pytest.approx(
        metrics.structural_similarity(y_sr, y_hr, **ref_kwargs), abs=1e-9)
    c_sr, c_hr = (x[border:-border, border:-border].astype(np.float64) for x in (sr, hr))
    assert ssim(sr, hr, crop_border=border, y_channel=False) == pytest.approx(
        metrics.structural_similarity(c_sr, c_hr, channel_axis=2, **ref_kwargs), abs=1e-9)
    assert psnr(sr, hr, crop_border=border, y_channel=False) == pytest.approx(
        metrics.peak_signal_noise_ratio(c_hr, c_sr, data_range=255), abs=1e-9)
