"""The Python API: sources (run, files), the alpha knob, tiling, device checks, PIL modes in and out."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mgsrgan import Upscaler
from mgsrgan.checkpoint import save_checkpoint
from mgsrgan.errors import UserError
from mgsrgan.generator import Generator
from mgsrgan.upscaler import ensemble_from_source

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("best", "pretrain", "gan")


def save_member(path: Path, generator: Generator, psnr: float) -> None:
    meta = {"arch": {"scale": generator.scale, "num_blocks": generator.num_blocks, "channels": generator.channels},
            "member": 0, "seed": 0, "phase": "pretrain", "step": 1, "val": {"psnr": psnr, "ssim": 0.9}, "config": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {f"generator.{k}": v for k, v in generator.state_dict().items()}, meta)


def make_run(root: Path, *, members: int = 2, scale: int = 2) -> dict[str, list[Generator]]:
    """RUN/member_<k>/{best,pretrain,gan}.safetensors with distinct tiny generators; returns them by phase."""
    torch.manual_seed(1)
    made: dict[str, list[Generator]] = {phase: [] for phase in PHASES}
    for k in range(members):
        for phase in PHASES:
            generator = Generator(scale=scale, num_blocks=1, channels=8).eval()
            save_member(root / f"member_{k}" / f"{phase}.safetensors", generator, psnr=30.0 + k)
            made[phase].append(generator)
    return made


def test_import_is_light():
    code = "import sys, mgsrgan; assert 'torch' not in sys.modules; print(mgsrgan.Upscaler.__name__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Upscaler"


def test_from_run_mean_and_tiling(tmp_path):
    made = make_run(tmp_path / "run")
    lr_img = torch.rand(2, 3, 13, 11)
    with torch.no_grad():
        expected = ((made["best"][0](lr_img) + made["best"][1](lr_img)) / 2).clamp(0, 1)
    up = Upscaler.from_run(tmp_path / "run", strategy="mean", checkpoint="best", device="cpu")
    assert up.scale == 2
    assert torch.allclose(up.upscale_tensor(lr_img), expected, atol=1e-6)
    single = up.upscale_tensor(lr_img[0])
    assert single.shape == (3, 26, 22) and torch.allclose(single, expected[0], atol=1e-6)
    tiled = Upscaler.from_run(tmp_path / "run", tile=6).upscale_tensor(lr_img)
    assert float((tiled - expected).abs().max()) < 1e-5
    sr_img, std = up.upscale_with_uncertainty(lr_img)
    assert std.shape == (2, 1, 26, 22) and float(std.min()) >= 0 and float(std.max()) > 0


def test_alpha_blends_pretrain_mean_with_a_gan_member(tmp_path):
    made = make_run(tmp_path / "run")
    lr_img = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        distortion = (made["pretrain"][0](lr_img) + made["pretrain"][1](lr_img)) / 2
        expected = (0.75 * distortion + 0.25 * made["gan"][1](lr_img)).clamp(0, 1)
        got = Upscaler.from_run(tmp_path / "run", alpha=0.25, gan_index=1).upscale_tensor(lr_img)
    assert torch.allclose(got, expected, atol=1e-6)
    with pytest.raises(UserError, match="--gan-index 5"):
        ensemble_from_source(run=tmp_path / "run", alpha=0.5, gan_index=5)
    weights = [tmp_path / "run" / f"member_{k}" / "pretrain.safetensors" for k in range(2)]
    with pytest.raises(UserError, match="--gan-member"):
        Upscaler.from_weights(weights, alpha=0.5)
    gan = tmp_path / "run" / "member_1" / "gan.safetensors"
    got = Upscaler.from_weights(weights, alpha=0.25, gan_member=gan).upscale_tensor(lr_img)
    assert torch.allclose(got, expected, atol=1e-6)


def test_pil_modes_round_trip(tmp_path):
    make_run(tmp_path / "run", members=1)
    up = Upscaler.from_run(tmp_path / "run")
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (6, 5, 4), dtype=np.uint8))
    cases = {"RGBA": (rgba, "RGBA"), "L": (rgba.convert("L"), "L"), "P": (rgba.convert("RGB").convert("P"), "RGB"),
             "I;16": (Image.fromarray(rng.integers(0, 65536, (6, 5), dtype=np.uint16)), "I;16")}
    for name, (image, mode) in cases.items():
        out = up(image)
        assert out.mode == mode and out.size == (10, 12), name
    # The colour channels come from the model; the alpha from bicubic upscaling of the input's alpha.
    assert np.array_equal(np.asarray(up(rgba).getchannel("A")),
                          np.asarray(rgba.getchannel("A").resize((10, 12), Image.BICUBIC)))
    # L in: the model saw the gray image replicated, and the output is the luma of its RGB output.
    gray = rgba.convert("L")
    rgb_of_gray = up(gray.convert("RGB"))
    assert np.abs(np.asarray(up(gray), dtype=int) - np.asarray(rgb_of_gray.convert("L"), dtype=int)).max() <= 1


def test_device_and_argument_errors(tmp_path):
    make_run(tmp_path / "run", members=1)
    with pytest.raises(UserError, match="--half"):
        Upscaler.from_run(tmp_path / "run", device="cpu", half=True)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="cuda"):
            Upscaler.from_run(tmp_path / "run", device="cuda")
    with pytest.raises(UserError, match="either --run or --weights"):
        ensemble_from_source(run=tmp_path / "run", weights=[tmp_path / "x.safetensors"])
    with pytest.raises(UserError, match="no such checkpoint file"):
        Upscaler.from_weights([tmp_path / "missing.safetensors"])
    up = Upscaler.from_run(tmp_path / "run")
    with pytest.raises(UserError, match="shape"):
        up.upscale_tensor(torch.rand(1, 4, 5, 5))
