"""Generator and discriminator shapes, parameter counts and the receptive field."""
import pytest
import torch

from mgsrgan.models.discriminator import Discriminator
from mgsrgan.models.generator import Generator


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_generator_upscales_by_scale(scale):
    generator = Generator(scale=scale, num_blocks=1, channels=8)
    assert generator(torch.rand(2, 3, 7, 5)).shape == (2, 3, 7 * scale, 5 * scale)


def test_generator_rejects_other_scales():
    with pytest.raises(ValueError, match="scale must be 2, 4 or 8"):
        Generator(scale=3)


def test_srresnet_has_the_papers_size():
    # SRResNet x4 with 16 blocks of 64 channels: 1.55M parameters (Ledig et al. 2017 report ~1.5M)
    assert sum(p.numel() for p in Generator().parameters()) == 1_550_659


@pytest.mark.parametrize("size", [16, 32, 96, 128, 200])
def test_discriminator_takes_any_patch_size(size):
    discriminator = Discriminator(channels=8, dense=16)
    assert discriminator(torch.rand(3, 3, size, size)).shape == (3,)


def test_discriminator_is_the_papers_at_96px():
    d = Discriminator()
    convs = [m for m in d.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.features) == 7  # none after the first conv
    assert d.classifier[1].in_features == 512 * 6 * 6 and d.classifier[1].out_features == 1024


@pytest.mark.parametrize("scale,blocks,skip", [(2, 1, "none"), (4, 2, "none"), (2, 1, "bicubic")])
def test_receptive_radius_bounds_the_influence_of_one_input_pixel(scale, blocks, skip):
    torch.manual_seed(0)
    generator = Generator(scale=scale, num_blocks=blocks, channels=8, global_skip=skip).eval()
    size, centre = 41, 20
    base = torch.rand(1, 3, size, size)
    poked = base.clone()
    poked[..., centre, centre] += 1.0
    with torch.no_grad():
        diff = (generator(poked) - generator(base)).abs().amax(dim=(0, 1))  # (H, W) on the HR grid
    rows = torch.nonzero(diff.amax(dim=1) > 0).flatten()
    reach_lr = max(centre - int(rows.min()) // scale, int(rows.max()) // scale - centre)
    assert reach_lr <= generator.receptive_radius()
    assert reach_lr >= generator.receptive_radius() - 1  # and the bound is tight


@pytest.mark.parametrize("scale", [2, 4])
def test_bicubic_skip_adds_the_residual_to_a_bicubic_upscale(scale):
    torch.manual_seed(0)
    generator = Generator(scale=scale, num_blocks=1, channels=8, global_skip="bicubic").eval()
    x = torch.rand(2, 3, 9, 7)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    with torch.no_grad():
        residual = Generator(scale=scale, num_blocks=1, channels=8).eval()
        residual.load_state_dict(generator.state_dict())  # the same weights without the skip
        assert torch.allclose(generator(x), residual(x) + bicubic, atol=1e-6)
        generator.tail.weight.zero_()
        generator.tail.bias.zero_()
        assert torch.equal(generator(x), bicubic)  # a zero residual is exactly bicubic


def test_unknown_global_skip_is_rejected():
    with pytest.raises(ValueError, match="global_skip"):
        Generator(scale=2, global_skip="bilinear")
