import pytest
import torch

from mgsrgan.models.fuse import fold_batchnorm
from mgsrgan.models.generator import Generator
from mgsrgan.models.prelu import PReLU


def trained_looking_generator(scale: int = 2, global_skip: str = "none") -> Generator:
    """A generator whose BatchNorm layers hold non-trivial running statistics and affine parameters, and whose
    PReLU slopes differ per channel (so a wrong channel order in the sub-pixel tail would show)."""
    torch.manual_seed(0)
    generator = Generator(scale=scale, num_blocks=2, channels=8, global_skip=global_skip)
    for module in generator.modules():
        if isinstance(module, PReLU):
            module.weight.data.uniform_(-0.5, 0.5)
    for module in generator.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return generator.eval()


@pytest.mark.parametrize("scale,skip", [(2, "none"), (4, "none"), (8, "none"), (2, "bicubic"), (4, "bicubic")])
def test_folded_generator_gives_the_same_output(scale, skip):
    generator = trained_looking_generator(scale, skip)
    fused = fold_batchnorm(generator)
    x = torch.rand(2, 3, 13, 11)
    with torch.no_grad():
        expected, got = generator(x), fused(x)
    assert got.shape == expected.shape == (2, 3, 13 * scale, 11 * scale)
    assert (got - expected).abs().max() < 1e-5


def test_folding_removes_every_batchnorm_and_leaves_the_original_alone():
    generator = trained_looking_generator()
    fused = fold_batchnorm(generator)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert fused.tail[0].kernel_size == (5, 5) and fused.tail[0].out_channels == 12
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in generator.modules()) == 2 * 2 + 1
    assert fused.receptive_radius() == generator.receptive_radius()


def test_a_float64_generator_folds_in_float64():
    generator = trained_looking_generator(2).double()
    fused = fold_batchnorm(generator)
    assert {p.dtype for p in fused.parameters()} == {torch.float64}
    x = torch.rand(1, 3, 9, 7, dtype=torch.float64)
    with torch.no_grad():
        assert (fused(x) - generator(x)).abs().max() < 1e-12  # float64 rounding, not float32's
