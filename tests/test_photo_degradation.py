"""The photo degradation: shapes, ranges, seeding, and each stage's measured effect."""
from __future__ import annotations

import numpy as np
import pytest

from mgsrgan.errors import UserError
from mgsrgan.io.photo_degradation import (FixedStep, OrderRanges, apply_fixed, blur, degrade, gaussian_noise, jpeg,
                                          kernel_taps, parse_spec, poisson_noise, second_order_defaults)


def photo(size: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth colour image with some edges: (size, size, 3) uint8."""
    y, x = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(seed)
    img = np.stack([0.5 + 0.3 * np.sin(6 * x + 2 * y), 0.4 + 0.4 * y, 0.3 + 0.5 * (x > 0.5)], axis=-1)
    return (np.clip(img + rng.normal(0, 0.01, img.shape), 0, 1) * 255).astype(np.uint8)


def high_frequency(img: np.ndarray) -> float:
    """Mean squared 4-neighbour Laplacian: the energy blur removes."""
    img = img.astype(np.float64)
    lap = 4 * img[1:-1, 1:-1] - img[:-2, 1:-1] - img[2:, 1:-1] - img[1:-1, :-2] - img[1:-1, 2:]
    return float((lap ** 2).mean())


def blockiness(img: np.ndarray) -> float:
    """Mean |step| across the 8x8 block boundaries over the mean |step| inside blocks (1 for no blocks)."""
    gray = img.astype(np.float64).mean(axis=-1)
    steps = np.abs(np.diff(gray, axis=1))
    at_edge = np.zeros(steps.shape[1], bool)
    at_edge[7::8] = True
    return float(steps[:, at_edge].mean() / steps[:, ~at_edge].mean())


@pytest.mark.parametrize("scale", [2, 4])
def test_degrade_gives_the_lr_size_in_uint8(scale):
    lr = degrade(photo(), scale, np.random.default_rng(1), OrderRanges(), second_order_defaults())
    assert lr.shape == (96 // scale, 96 // scale, 3) and lr.dtype == np.uint8
    assert 20 < lr.mean() < 230  # still the image, not black or white


def test_the_same_seed_gives_the_same_lr_and_another_seed_another():
    hr = photo()
    draws = [degrade(hr, 2, np.random.default_rng(seed), OrderRanges(), second_order_defaults())
             for seed in (5, 5, 6)]
    assert np.array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], draws[2])


def test_a_size_not_divisible_by_the_scale_is_refused():
    with pytest.raises(ValueError, match="multiple of scale 4"):
        degrade(photo(90), 4, np.random.default_rng(0), OrderRanges(), second_order_defaults())


def test_kernels_sum_to_one_and_have_the_asked_spread():
    iso = kernel_taps(31, 2.0, 2.0, 0.0)
    assert iso.sum() == pytest.approx(1.0) and np.allclose(iso, iso.T)
    half = 15
    axis = np.arange(-half, half + 1)
    assert (iso.sum(axis=0) * axis ** 2).sum() == pytest.approx(4.0, rel=0.01)  # variance sigma^2
    aniso = kernel_taps(31, 3.0, 1.0, np.pi / 2)  # long axis turned to the vertical
    assert (aniso.sum(axis=1) * axis ** 2).sum() == pytest.approx(9.0, rel=0.02)
    assert (aniso.sum(axis=0) * axis ** 2).sum() == pytest.approx(1.0, rel=0.02)
    plateau = kernel_taps(31, 2.0, 2.0, 0.0, beta=4.0)
    assert plateau[15, 15] / plateau[15, 16] < iso[15, 15] / iso[15, 16]  # flatter top than a Gaussian


def test_blur_removes_high_frequencies():
    img = photo().astype(np.float32) / 255
    assert high_frequency(blur(img, kernel_taps(13, 2.0, 2.0, 0.0))) < 0.2 * high_frequency(img)
    assert np.allclose(blur(img, kernel_taps(1, 1.0, 1.0, 0.0)), img)  # a 1x1 kernel changes nothing


def test_gaussian_noise_has_its_sigma_and_gray_noise_is_shared():
    img = np.full((64, 64, 3), 0.5, np.float32)
    colour = gaussian_noise(img, np.random.default_rng(0), 10.0, gray=False) - img
    assert colour.std() * 255 == pytest.approx(10.0, rel=0.05)
    gray = gaussian_noise(img, np.random.default_rng(0), 10.0, gray=True) - img
    assert np.array_equal(gray[..., 0], gray[..., 2]) and not np.array_equal(colour[..., 0], colour[..., 2])


def test_poisson_noise_grows_with_brightness():
    rng = np.random.default_rng(0)
    dark = poisson_noise(np.full((64, 64, 3), 0.05, np.float32), rng, 2.0, gray=False)
    bright = poisson_noise(np.full((64, 64, 3), 0.8, np.float32), rng, 2.0, gray=False)
    assert 2.5 < bright.std() / dark.std() < 5.5  # shot noise: std ~ sqrt(mean): sqrt(16) = 4


def test_jpeg_raises_the_8x8_blockiness():
    img = photo(128).astype(np.float32) / 255
    assert blockiness(jpeg(img, 15) * 255) > 1.3 * blockiness(img * 255)
    assert np.abs(jpeg(img, 95) - img).mean() < np.abs(jpeg(img, 15) - img).mean()


def test_fixed_specs_parse_and_apply_seeded():
    assert parse_spec("noise:5,jpeg:50") == [FixedStep("noise", 5.0), FixedStep("jpeg", 50.0)]
    for bad in ("jpeg:0", "jpeg", "sharpen:2", "noise:-1", ""):
        with pytest.raises(UserError, match="--degrade"):
            parse_spec(bad)
    lr = photo(48)
    steps = parse_spec("blur:1,noise:5,jpeg:75")
    first, again, other = (apply_fixed(lr, steps, seed) for seed in (0, 0, 1))
    assert first.shape == lr.shape and np.array_equal(first, again) and not np.array_equal(first, other)
    noise = apply_fixed(lr, parse_spec("noise:5"), 0).astype(float) - lr
    assert 4.0 < noise.std() < 6.0


def test_training_patches_take_their_lr_from_the_photo_degradation(tmp_path):
    from PIL import Image

    from mgsrgan.io.photo_degradation import PhotoDegrader
    from mgsrgan.train.data import TrainPatches, load_validation

    (tmp_path / "hr").mkdir()
    for i in range(2):
        Image.fromarray(photo(64, seed=i)).save(tmp_path / "hr" / f"img{i}.png")
    degrader = PhotoDegrader(2, OrderRanges(), second_order_defaults())
    plain = TrainPatches(hr_dirs=[str(tmp_path / "hr")], scale=2, hr_patch=32, augment=True, seed=3)
    photos = TrainPatches(hr_dirs=[str(tmp_path / "hr")], scale=2, hr_patch=32, augment=True, seed=3,
                          degrade=degrader)
    (lr_a, hr_a), (lr_b, hr_b), (lr_plain, hr_plain) = photos[7], photos[7], plain[7]
    assert lr_a.shape == (3, 16, 16) and torch_equal(lr_a, lr_b) and torch_equal(hr_a, hr_plain)
    assert (lr_a - lr_plain).abs().mean() > 0.01  # not the bicubic LR
    assert not torch_equal(photos[8][0], photos[7][0])
    val = load_validation(str(tmp_path / "hr"), 2, degrade=degrader)
    again = load_validation(str(tmp_path / "hr"), 2, degrade=degrader)
    assert all(torch_equal(a.lr, b.lr) for a, b in zip(val, again))
    assert (val[0].lr - load_validation(str(tmp_path / "hr"), 2)[0].lr).abs().mean() > 0.01


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())
