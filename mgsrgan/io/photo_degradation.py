"""The degradation of real photos, for training and measuring the real-world models: HR -> LR with blur, resizing,
noise and JPEG, twice over.

The model is the second-order one of Real-ESRGAN (Wang et al., ICCVW 2021, sec. 3), in the spirit of BSRGAN's
random shuffle of degradations (Zhang et al., ICCV 2021): each order blurs with a random kernel (isotropic or
anisotropic Gaussian, or a generalised Gaussian), resizes by a random factor with a random method, adds Gaussian
or Poisson noise (colour or gray) and compresses to JPEG at a random quality; the second order ends at the LR size.
Every draw comes from one `numpy.random.Generator`, so the same seed gives the same LR, bit for bit.

Also here: fixed degradations from a spec (`noise:5,jpeg:50`), applied after the protocol's bicubic downscale when
evaluating (`evaluate.py --degrade`).

Images are float32 arrays (H, W, 3) in [0, 1] between the stages, uint8 at the ends.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from mgsrgan.errors import UserError

RESAMPLE = {"area": Image.BOX, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


@dataclass
class OrderRanges:
    """The draws of one order. Ranges are [low, high]; sigmas in pixels, noise sigma in 8-bit levels."""
    blur_prob: float = 1.0  # chance of blurring at all
    kernel_sizes: list[int] = field(default_factory=lambda: [7, 21])  # odd sizes in this range
    blur_sigma: list[float] = field(default_factory=lambda: [0.2, 3.0])  # kernel standard deviations, px
    generalized_prob: float = 0.15  # generalised Gaussian (plateau or heavy-tailed) instead of a Gaussian
    generalized_beta: list[float] = field(default_factory=lambda: [0.5, 4.0])  # shape: 2 Gaussian, <2 tails, >2 plateau
    isotropic_prob: float = 0.5  # else two sigmas and a rotation
    resize_probs: list[float] = field(default_factory=lambda: [0.2, 0.7, 0.1])  # up, down, keep
    resize_scale: list[float] = field(default_factory=lambda: [0.15, 1.5])  # factor range of a resize
    gaussian_noise_prob: float = 0.5  # else Poisson
    noise_sigma: list[float] = field(default_factory=lambda: [1.0, 30.0])  # Gaussian noise, 8-bit levels
    poisson_scale: list[float] = field(default_factory=lambda: [0.05, 3.0])  # shot-noise strength
    gray_noise_prob: float = 0.4  # one noise draw for all channels
    jpeg_quality: list[int] = field(default_factory=lambda: [30, 95])  # PIL quality range


def range_problems(ranges: OrderRanges) -> list[tuple[str, str]]:
    """(field, why) for each impossible value of `ranges`: probabilities outside [0, 1], ranges that are not
    [low, high] with 0 <= low <= high (JPEG qualities 1..100, kernel sizes >= 1), resize odds not summing to 1."""
    problems = []
    for name in ("blur_prob", "generalized_prob", "isotropic_prob", "gaussian_noise_prob", "gray_noise_prob"):
        if not 0.0 <= getattr(ranges, name) <= 1.0:
            problems.append((name, "must be a probability in [0, 1]"))
    for name in ("kernel_sizes", "blur_sigma", "generalized_beta", "resize_scale", "noise_sigma", "poisson_scale",
                 "jpeg_quality"):
        pair = getattr(ranges, name)
        if len(pair) != 2 or not 0 <= pair[0] <= pair[1]:
            problems.append((name, f"must be [low, high] with 0 <= low <= high, got {pair}"))
    if ranges.kernel_sizes[0] < 1 or not 1 <= ranges.jpeg_quality[0] <= ranges.jpeg_quality[-1] <= 100:
        problems.append(("kernel_sizes/jpeg_quality", "kernel sizes start at 1, JPEG qualities lie in 1..100"))
    if ranges.blur_sigma[0] <= 0 or ranges.resize_scale[0] <= 0 or ranges.poisson_scale[0] <= 0:
        problems.append(("blur_sigma/resize_scale/poisson_scale", "must be above 0"))
    if len(ranges.resize_probs) != 3 or abs(sum(ranges.resize_probs) - 1) > 1e-6 or min(ranges.resize_probs) < 0:
        problems.append(("resize_probs", f"three odds (up, down, keep) summing to 1, got {ranges.resize_probs}"))
    return problems


def second_order_defaults() -> OrderRanges:
    """Real-ESRGAN's second order: milder blur and noise."""
    return OrderRanges(blur_prob=0.8, blur_sigma=[0.2, 1.5], resize_probs=[0.3, 0.4, 0.3], resize_scale=[0.3, 1.2],
                       noise_sigma=[1.0, 25.0], poisson_scale=[0.05, 2.5])


def kernel_taps(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float = 2.0) -> np.ndarray:
    """(size, size) float64 kernel summing to 1: exp(-(x' C^-1 x)^(beta/2) / 2), C the covariance with standard
    deviations sigma_x, sigma_y (pixels) rotated by theta (radians). beta 2: a Gaussian; beta < 2 heavier tails,
    beta > 2 a plateau (the generalised Gaussian)."""
    half = size // 2
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    cos, sin = math.cos(theta), math.sin(theta)
    u, v = cos * x + sin * y, -sin * x + cos * y  # coordinates along the kernel's own axes
    dist2 = (u / sigma_x) ** 2 + (v / sigma_y) ** 2
    taps = np.exp(-0.5 * dist2 ** (beta / 2))
    return taps / taps.sum()


def random_kernel(rng: np.random.Generator, ranges: OrderRanges) -> np.ndarray:
    low, high = ranges.kernel_sizes
    size = int(rng.choice(np.arange(low | 1, high + 1, 2)))
    sigma_x = rng.uniform(*ranges.blur_sigma)
    isotropic = rng.random() < ranges.isotropic_prob
    sigma_y = sigma_x if isotropic else rng.uniform(*ranges.blur_sigma)
    theta = 0.0 if isotropic else rng.uniform(0, math.pi)
    beta = rng.uniform(*ranges.generalized_beta) if rng.random() < ranges.generalized_prob else 2.0
    return kernel_taps(size, sigma_x, sigma_y, theta, beta)


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """(H, W, 3) float -> the same, convolved with `kernel` (reflected borders), by shifted sums (kernels are small)."""
    half = kernel.shape[0] // 2
    padded = np.pad(img, ((half, half), (half, half), (0, 0)), mode="reflect")
    out = np.zeros_like(img, dtype=np.float32)
    h, w = img.shape[:2]
    for dy in range(kernel.shape[0]):
        for dx in range(kernel.shape[1]):
            if kernel[dy, dx] > 1e-6:
                out += np.float32(kernel[dy, dx]) * padded[dy:dy + h, dx:dx + w]
    return out


def resize(img: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> (size[1], size[0], 3), PIL per channel in float (no 8-bit rounding)."""
    channels = [np.asarray(Image.fromarray(img[..., c]).resize(size, RESAMPLE[method])) for c in range(3)]
    return np.stack(channels, axis=-1)


def gaussian_noise(img: np.ndarray, rng: np.random.Generator, sigma: float, gray: bool) -> np.ndarray:
    """Add N(0, sigma / 255), one draw per pixel shared by the channels when gray."""
    shape = img.shape[:2] + ((1,) if gray else (3,))
    return img + rng.normal(0.0, sigma / 255.0, shape).astype(np.float32)


def poisson_noise(img: np.ndarray, rng: np.random.Generator, scale: float, gray: bool) -> np.ndarray:
    """Shot noise: counts ~ Poisson(x * 255 * 10 / scale) rescaled, so `scale` grows the noise like sqrt(scale);
    gray draws it on the luminance and adds the same change to every channel."""
    source = np.clip(img, 0, 1)
    if gray:
        source = (source @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    peak = 255.0 * 10.0 / scale
    noisy = rng.poisson(source * peak) / peak
    return img + (noisy - source).astype(np.float32)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round to 8 bits, compress with PIL's JPEG (4:2:0, as cameras and the web) at `quality`, decode."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def one_order(img: np.ndarray, rng: np.random.Generator, ranges: OrderRanges, base: tuple[int, int],
              *, final_size: tuple[int, int] | None = None) -> np.ndarray:
    """Blur, resize (relative to the current size, within [1/4, 1] of `base` (W, H)), noise, JPEG. With
    `final_size` the resize is to that size instead, and the JPEG comes before or after it (a coin)."""
    if rng.random() < ranges.blur_prob:
        img = blur(img, random_kernel(rng, ranges))
    method = str(rng.choice(list(RESAMPLE)))
    if final_size is None:
        kind = rng.choice(3, p=ranges.resize_probs)
        factor = (rng.uniform(1.0, ranges.resize_scale[1]) if kind == 0 else
                  rng.uniform(ranges.resize_scale[0], 1.0) if kind == 1 else 1.0)
        h, w = img.shape[:2]
        target = (int(np.clip(round(w * factor), base[0] // 4, base[0])),
                  int(np.clip(round(h * factor), base[1] // 4, base[1])))
        img = resize(img, target, method) if target != (w, h) else img
    gray = rng.random() < ranges.gray_noise_prob
    if rng.random() < ranges.gaussian_noise_prob:
        img = gaussian_noise(img, rng, rng.uniform(*ranges.noise_sigma), gray)
    else:
        img = poisson_noise(img, rng, rng.uniform(*ranges.poisson_scale), gray)
    quality = int(rng.integers(ranges.jpeg_quality[0], ranges.jpeg_quality[1] + 1))
    if final_size is None:
        return jpeg(img, quality)
    if rng.random() < 0.5:
        return jpeg(resize(img, final_size, method), quality)
    return resize(jpeg(img, quality), final_size, method)


def degrade(hr: np.ndarray, scale: int, rng: np.random.Generator, first: OrderRanges,
            second: OrderRanges, second_prob: float = 0.8) -> np.ndarray:
    """(H, W, 3) uint8 HR, H and W multiples of `scale` -> (H/scale, W/scale, 3) uint8 LR, two orders of random
    degradation (the second with probability `second_prob`; without it the first order ends at the LR size)."""
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"HR size {w}x{h} is not a multiple of scale {scale}")
    final = (w // scale, h // scale)
    img = hr.astype(np.float32) / 255.0
    if rng.random() < second_prob:
        img = one_order(img, rng, first, (w, h))
        img = one_order(img, rng, second, (w, h), final_size=final)
    else:
        img = one_order(img, rng, first, (w, h), final_size=final)
    return to_uint8(img)


@dataclass(frozen=True)
class PhotoDegrader:
    """degrade() with its ranges bound: (hr uint8 (H, W, 3), rng) -> LR uint8 (H/scale, W/scale, 3). A plain
    object, so DataLoader workers receive it by fork or pickle alike."""
    scale: int
    first: OrderRanges
    second: OrderRanges
    second_prob: float = 0.8

    def __call__(self, hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return degrade(hr, self.scale, rng, self.first, self.second, self.second_prob)


@dataclass(frozen=True)
class FixedStep:
    kind: str  # "blur" (sigma, px), "noise" (Gaussian sigma, 8-bit levels) or "jpeg" (quality)
    value: float


FIXED_KINDS = ("blur", "noise", "jpeg")


def parse_spec(spec: str) -> list[FixedStep]:
    """"noise:5,jpeg:50" -> [FixedStep("noise", 5), FixedStep("jpeg", 50)], applied in that order; UserError with
    the accepted form on anything else."""
    steps = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, _, value = part.partition(":")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if kind not in FIXED_KINDS or not math.isfinite(number) or number < 0:
            raise UserError(f"--degrade {spec!r}: expected steps like jpeg:75, noise:5, blur:1.2, comma-separated "
                            f"(kinds: {', '.join(FIXED_KINDS)}; values >= 0)")
        if kind == "jpeg" and not 1 <= number <= 100:
            raise UserError(f"--degrade {spec!r}: a JPEG quality is 1..100")
        steps.append(FixedStep(kind, number))
    if not steps:
        raise UserError(f"--degrade {spec!r}: no degradation given")
    return steps


def apply_fixed(lr: np.ndarray, steps: list[FixedStep], seed: int) -> np.ndarray:
    """(h, w, 3) uint8 -> the same size, each step in order; the noise draws from `seed` (same seed, same LR)."""
    rng = np.random.default_rng(seed)
    img = lr.astype(np.float32) / 255.0
    for step in steps:
        if step.kind == "blur":
            size = 2 * math.ceil(3 * step.value) + 1
            img = blur(img, kernel_taps(size, step.value, step.value, 0.0)) if step.value > 0 else img
        elif step.kind == "noise":
            img = gaussian_noise(img, rng, step.value, gray=False)
        else:
            img = jpeg(img, int(step.value))
    return to_uint8(img)
