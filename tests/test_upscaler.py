"""The Python API: sources (run, files), the alpha knob, tiling, device checks, PIL modes in and out."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mgsrgan import Upscaler
from mgsrgan import device as device_module
from mgsrgan.io.checkpoint import save_checkpoint
from mgsrgan.device import cpu_has_bf16
from mgsrgan.errors import UserError
from mgsrgan.models.generator import Generator
from mgsrgan.infer.self_ensemble import SelfEnsemble
from mgsrgan.infer.upscaler import ReducedPrecision, ensemble_from_source

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
    up = Upscaler.from_run(tmp_path / "run", strategy="mean", checkpoint="best", device="cpu", precision="fp32")
    assert up.scale == 2
    assert torch.allclose(up.upscale_tensor(lr_img), expected, atol=1e-6)
    single = up.upscale_tensor(lr_img[0])
    assert single.shape == (3, 26, 22) and torch.allclose(single, expected[0], atol=1e-6)
    tiled = Upscaler.from_run(tmp_path / "run", tile=6, precision="fp32").upscale_tensor(lr_img)
    assert float((tiled - expected).abs().max()) < 1e-5
    sr_img, std = up.upscale_with_uncertainty(lr_img)
    assert std.shape == (2, 1, 26, 22) and float(std.min()) >= 0 and float(std.max()) > 0


def test_alpha_blends_pretrain_mean_with_a_gan_member(tmp_path):
    made = make_run(tmp_path / "run")
    lr_img = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        distortion = (made["pretrain"][0](lr_img) + made["pretrain"][1](lr_img)) / 2
        expected = (0.75 * distortion + 0.25 * made["gan"][1](lr_img)).clamp(0, 1)
        got = Upscaler.from_run(tmp_path / "run", alpha=0.25, gan_index=1, precision="fp32").upscale_tensor(lr_img)
    assert torch.allclose(got, expected, atol=1e-6)
    with pytest.raises(UserError, match="--gan-index 5"):
        ensemble_from_source(run=tmp_path / "run", alpha=0.5, gan_index=5)
    weights = [tmp_path / "run" / f"member_{k}" / "pretrain.safetensors" for k in range(2)]
    with pytest.raises(UserError, match="--gan-member"):
        Upscaler.from_weights(weights, alpha=0.5)
    gan = tmp_path / "run" / "member_1" / "gan.safetensors"
    got = Upscaler.from_weights(weights, alpha=0.25, gan_paths=gan, precision="fp32").upscale_tensor(lr_img)
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


# ---- precision ----------------------------------------------------------------------------------------------------

needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU lacks native bf16 (no AVX512-BF16 or AMX): "
                                                           "--precision bf16 is refused on it")


def test_fp32_is_the_model_alone_bit_for_bit(tmp_path):
    """precision="fp32" adds nothing: the output (and the uncertainty map) is what the model computes without any
    precision machinery, the way Upscaler always ran it (NHWC, no autocast, clamp), bit for bit."""
    make_run(tmp_path / "run")
    lr_img = torch.rand(2, 3, 13, 11)
    model = ensemble_from_source(run=tmp_path / "run", checkpoint="best").to(memory_format=torch.channels_last)
    with torch.no_grad():
        x = lr_img.contiguous(memory_format=torch.channels_last)
        expected, expected_std = model.forward_with_uncertainty(x)
    up = Upscaler.from_run(tmp_path / "run", precision="fp32")
    assert up.dtype == torch.float32
    assert not any(isinstance(m, ReducedPrecision) for m in up.model.modules())
    assert torch.equal(up.upscale_tensor(lr_img), expected.clamp(0, 1))
    sr_img, std = up.upscale_with_uncertainty(lr_img)
    assert torch.equal(sr_img, expected.clamp(0, 1)) and torch.equal(std, expected_std)
    # The default is auto: fp32 exactly where the CPU has no native bf16, bf16 where it has.
    default = Upscaler.from_run(tmp_path / "run")
    assert default.dtype == (torch.bfloat16 if cpu_has_bf16() else torch.float32)
    if default.dtype == torch.float32:
        assert torch.equal(default.upscale_tensor(lr_img), expected.clamp(0, 1))


@needs_bf16
def test_bf16_is_close_to_fp32_and_fuses_in_fp32(tmp_path):
    """bf16 runs the generators under autocast: outputs within a fraction of an 8-bit level of fp32 (measured on
    these tiny random generators: max |diff| ~8e-4 = 0.2 levels) but not identical; the ensemble mean and the
    uncertainty std are computed in float32 from the members' (bf16-rounded) outputs."""
    make_run(tmp_path / "run")
    lr_img = torch.rand(2, 3, 13, 11)
    fp32 = Upscaler.from_run(tmp_path / "run", precision="fp32")
    bf16 = Upscaler.from_run(tmp_path / "run", precision="bf16")
    assert bf16.dtype == torch.bfloat16
    ref, ref_std = fp32.upscale_with_uncertainty(lr_img)
    got, std = bf16.upscale_with_uncertainty(lr_img)
    assert got.dtype == std.dtype == torch.float32
    gap = float((got - ref).abs().max())
    assert 0.0 < gap < 2e-3  # not fp32 in disguise, and well under one 8-bit level (3.9e-3)
    assert float((std - ref_std).abs().max()) < 2e-3
    # Fusion in fp32: each member alone in bf16 (float32 out), stacked, mean/std in fp32 = the ensemble's result.
    members = [Upscaler(g, precision="bf16") for g in ensemble_from_source(run=tmp_path / "run").members]
    with torch.no_grad():
        stack = torch.stack([m.model(lr_img.contiguous(memory_format=torch.channels_last)) for m in members])
    assert stack.dtype == torch.float32
    assert torch.equal(got, stack.mean(dim=0).clamp(0, 1))
    assert torch.equal(std, stack.std(dim=0, correction=0).mean(dim=1, keepdim=True))
    # A self-ensemble averages its 8 passes in fp32: autocast wraps the generator inside it, not the average.
    x8 = Upscaler.from_run(tmp_path / "run", self_ensemble=True, precision="bf16")
    assert all(isinstance(m, SelfEnsemble) and isinstance(m.generator, ReducedPrecision) for m in x8.model.members)


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=needs_bf16)])
def test_tiled_equals_untiled_exactly(tmp_path, precision):
    """With the default pad (the receptive radius) tiles reproduce the untiled output bit for bit in fp32.
    Measured for bf16 too (this CPU: AMX/AVX512-BF16, torch 2.13's oneDNN; tiles 4..30 at x2 and x4, 1..8 blocks):
    equal bit for bit as well: every output pixel's convolutions accumulate in fp32 in an order that does not depend
    on the tile's size, and the bf16 rounding of each activation is per element."""
    make_run(tmp_path / "run", members=2)
    lr_img = torch.rand(1, 3, 23, 19)
    whole = Upscaler.from_run(tmp_path / "run", precision=precision).upscale_tensor(lr_img)
    for tile in (5, 8, 16):
        tiled = Upscaler.from_run(tmp_path / "run", precision=precision, tile=tile).upscale_tensor(lr_img)
        assert torch.equal(tiled, whole), tile
    seamy = Upscaler.from_run(tmp_path / "run", precision=precision, tile=5, tile_pad=1).upscale_tensor(lr_img)
    assert not torch.equal(seamy, whole)  # the comparison can fail: too little context shows at the seams


def test_precision_errors(tmp_path, monkeypatch):
    make_run(tmp_path / "run", members=1)
    with pytest.raises(UserError, match=r"^--precision fp16: float16 is for CUDA only"):
        Upscaler.from_run(tmp_path / "run", device="cpu", precision="fp16")
    with pytest.raises(UserError, match=r"^--precision int8: expected one of auto, fp32, bf16, fp16"):
        Upscaler.from_run(tmp_path / "run", device="cpu", precision="int8")
    with pytest.raises(UserError, match="--half needs a CUDA device"):  # today's message, whatever the precision
        Upscaler.from_run(tmp_path / "run", device="cpu", half=True, precision="bf16")
    monkeypatch.setattr(device_module, "cpu_has_bf16", lambda: False)
    with pytest.raises(UserError, match=r"^--precision bf16: this CPU lacks native bfloat16"):
        Upscaler.from_run(tmp_path / "run", device="cpu", precision="bf16")
    assert Upscaler.from_run(tmp_path / "run", device="cpu").dtype == torch.float32  # auto falls back to fp32


@needs_bf16
def test_bf16_ensemble_of_other_networks_keeps_uncertainty_in_fp32():
    """Members that are not Generators are wrapped one by one, never the Ensemble as a whole."""

    class Conv(torch.nn.Module):
        scale = 2

        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)
            self.shuffle = torch.nn.PixelShuffle(2)

        def receptive_radius(self) -> int:
            return 1

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.shuffle(self.conv(x))

    from mgsrgan.infer.ensemble import Ensemble
    torch.manual_seed(0)
    up = Upscaler(Ensemble([Conv(), Conv()]), precision="bf16")
    assert all(isinstance(m, ReducedPrecision) for m in up.model.members)
    sr_img, std = up.upscale_with_uncertainty(torch.rand(1, 3, 6, 5))
    assert sr_img.dtype == std.dtype == torch.float32 and std.shape == (1, 1, 12, 10)


def test_a_run_without_best_checkpoints_defaults_to_pretrain_with_a_note(tmp_path, capsys):
    """weights/x2 (pretrain and gan only) or a run without validation: the default is pretrain, said on stderr;
    a run with best checkpoints keeps best, silently."""
    made = make_run(tmp_path / "run")
    lr_img = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        want = {phase: ((made[phase][0](lr_img) + made[phase][1](lr_img)) / 2).clamp(0, 1) for phase in PHASES}
    got = Upscaler.from_run(tmp_path / "run", precision="fp32").upscale_tensor(lr_img)
    torch.testing.assert_close(got, want["best"])
    assert "note:" not in capsys.readouterr().err
    for k in range(2):
        (tmp_path / "run" / f"member_{k}" / "best.safetensors").unlink()
    got = Upscaler.from_run(tmp_path / "run", precision="fp32").upscale_tensor(lr_img)
    torch.testing.assert_close(got, want["pretrain"])
    assert "no best checkpoints" in capsys.readouterr().err
    for k in range(2):
        (tmp_path / "run" / f"member_{k}" / "pretrain.safetensors").unlink()
    with pytest.raises(UserError, match="best.safetensors: missing"):  # neither: the error names the usual default
        ensemble_from_source(run=tmp_path / "run")
