"""The evaluation pipeline reproduces the published bicubic baselines on the real benchmark sets.

Needs ../shared/data (skipped without it). Runs Set5, Set14 and BSD100 at x2 and x4 in about 6 s on 2 cores.
"""
from pathlib import Path

import pytest

from mgsrgan.evaluate.protocol import BICUBIC, bicubic_upscaler, evaluate_folder, load_hr, summarize

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Bicubic set means (Y, crop = scale, MATLAB imresize) as tabulated by Lim et al. 2017 (EDSR, table 6) and
# Zhang et al. 2018 (RCAN, table 3): (set, scale) -> (PSNR dB, SSIM).
PUBLISHED_BICUBIC = {
    ("Set5", 2): (33.66, 0.9299), ("Set14", 2): (30.24, 0.8688), ("BSD100", 2): (29.56, 0.8431),
    ("Set5", 4): (28.42, 0.8104), ("Set14", 4): (26.00, 0.7027), ("BSD100", 4): (25.96, 0.6675),
}
PSNR_TOLERANCE = 0.05  # dB; PIL bicubic lands within 0.02 dB of MATLAB imresize here (PROTOCOL.md)
SSIM_TOLERANCE = 0.002  # PIL vs MATLAB resampling; measured gaps are under 0.001

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} not present (real benchmark sets)")


@needs_data
@pytest.mark.parametrize("dataset,scale", sorted(PUBLISHED_BICUBIC))
def test_bicubic_reproduces_published(dataset, scale):
    results = evaluate_folder(DATA / dataset, {BICUBIC: bicubic_upscaler(scale)}, scale=scale)
    row = summarize(results)[dataset][BICUBIC]
    published_psnr, published_ssim = PUBLISHED_BICUBIC[(dataset, scale)]
    assert row["images"] == {"Set5": 5, "Set14": 14, "BSD100": 100}[dataset]
    assert row["psnr"] == pytest.approx(published_psnr, abs=PSNR_TOLERANCE)
    assert row["ssim"] == pytest.approx(published_ssim, abs=SSIM_TOLERANCE)


@needs_data
def test_bridge_is_loaded_as_gray():
    assert load_hr(DATA / "Set14" / "bridge.png").ndim == 2
    assert load_hr(DATA / "Set14" / "baboon.png").shape[2] == 3
