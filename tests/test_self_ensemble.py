"""Geometric self-ensemble: exactly equivariant, a no-op on an equivariant generator, tiles exactly, and the
evaluate/inference CLIs use it."""
import json

import pytest
import torch

from mgsrgan.cli.evaluate import main as evaluate_main
from mgsrgan.models.generator import Generator
from mgsrgan.infer.self_ensemble import SelfEnsemble
from mgsrgan.infer.tiling import upscale_tiled
from tests.conftest import save_tiny_images, save_tiny_run, scores_by_hand


def tiny_generator(skip: str = "none") -> Generator:
    torch.manual_seed(3)
    return Generator(scale=2, num_blocks=1, channels=8, global_skip=skip).eval()


def test_self_ensemble_is_equivariant_where_the_generator_is_not():
    generator = tiny_generator()
    wrapped = SelfEnsemble(generator)
    x = torch.rand(1, 3, 12, 9)
    with torch.no_grad():
        plain_gap = (generator(x.flip(-1)) - generator(x).flip(-1)).abs().max()
        for transform in (lambda t: t.flip(-1), lambda t: t.flip(-2), lambda t: t.transpose(-2, -1),
                          lambda t: torch.rot90(t, 1, dims=(-2, -1))):
            gap = (wrapped(transform(x)) - transform(wrapped(x))).abs().max()
            assert gap < 1e-6
    assert plain_gap > 1e-3  # the test can fail: the bare generator is not flip-equivariant


def test_self_ensemble_of_an_equivariant_generator_changes_nothing():
    generator = tiny_generator("bicubic")
    with torch.no_grad():
        generator.tail.weight.zero_()
        generator.tail.bias.zero_()  # output = bicubic, which commutes with flips and rotations
        x = torch.rand(2, 3, 10, 7)
        assert (SelfEnsemble(generator)(x) - generator(x)).abs().max() < 1e-6


def test_self_ensemble_tiles_exactly():
    wrapped = SelfEnsemble(tiny_generator("bicubic"))
    x = torch.rand(1, 3, 23, 19)
    with torch.no_grad():
        assert (upscale_tiled(wrapped, x, tile=10) - wrapped(x)).abs().max() < 1e-5


def test_evaluate_self_ensemble_rows(tmp_path, capsys):
    generators = save_tiny_run(tmp_path / "run")
    images = save_tiny_images(tmp_path / "Tiny")
    out = tmp_path / "res.json"
    assert evaluate_main(["--run", str(tmp_path / "run"), "--data", str(tmp_path / "Tiny"), "--device", "cpu",
                          "--out", str(out), "--no-perceptual", "--strategies", "mean", "--self-ensemble"]) == 0
    report = json.loads(out.read_text())
    assert report["self_ensemble"] is True
    assert list(report["sets"]["Tiny"]["models"]) == ["member_0+x8", "member_1+x8", "ensemble-mean+x8", "bicubic"]
    for name, hr_img in images.items():
        row = next(r for r in report["images"] if r["image"] == name and r["model"] == "member_1+x8")
        assert (row["psnr"], row["ssim"]) == pytest.approx(scores_by_hand(SelfEnsemble(generators[1]), hr_img), abs=1e-6)


def test_symmetry_outputs_are_the_eight_passes_the_self_ensemble_averages():
    from mgsrgan.infer.self_ensemble import symmetry_outputs

    generator = tiny_generator()
    x = torch.rand(1, 3, 10, 7)
    with torch.no_grad():
        outputs = list(symmetry_outputs(generator, x))
        assert len(outputs) == 8 and all(o.shape == (1, 3, 20, 14) for o in outputs)
        assert torch.allclose(torch.stack(outputs).mean(0), SelfEnsemble(generator)(x), atol=1e-6)
        assert torch.equal(outputs[0], generator(x))  # the identity comes first
        assert torch.stack(outputs).std(0).max() > 1e-4  # a generator that is not equivariant disagrees with itself
        nearest = torch.nn.Upsample(scale_factor=2, mode="nearest")
        assert torch.stack(list(symmetry_outputs(nearest, x))).std(0).max() == 0  # an equivariant one does not
