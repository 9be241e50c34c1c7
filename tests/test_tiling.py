"""Tile geometry partitions the image; with pad >= receptive radius, tiled output equals untiled output."""
import pytest
import torch
from torch import nn

from mgsrgan.infer.ensemble import Ensemble
from mgsrgan.models.generator import Generator
from mgsrgan.infer.tiling import Tile, plan_tiles, scaled, tiled_apply, upscale_tiled

EQUALITY_TOLERANCE = 1e-5  # max abs difference promised between tiled and untiled output (eval mode)


def tiny_generator(scale: int, seed: int, global_skip: str = "none") -> Generator:
    """1 block, 8 channels, eval mode, with non-trivial BN running statistics and affine parameters."""
    torch.manual_seed(seed)
    generator = Generator(scale=scale, num_blocks=1, channels=8, global_skip=global_skip)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.3, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return generator.eval()


@pytest.mark.parametrize("h,w,tile,pad", [(37, 29, 16, 5), (16, 16, 16, 3), (5, 40, 7, 0), (50, 9, 0, 4)])
def test_plan_partitions_the_image(h, w, tile, pad):
    owner = torch.zeros(h, w, dtype=torch.int64)
    for t in plan_tiles(h, w, tile=tile, pad=pad):
        owner[t.dst] += 1
        for axis, length in enumerate((h, w)):
            src, dst, crop = t.src[axis], t.dst[axis], t.crop[axis]
            assert src.start == max(dst.start - pad, 0) and src.stop == min(dst.stop + pad, length)
            assert crop.stop - crop.start == dst.stop - dst.start
            assert src.start + crop.start == dst.start  # crop lands the owned region exactly
    assert bool((owner == 1).all())


def test_whole_image_tile_and_scaled():
    (only,) = plan_tiles(10, 12, tile=0, pad=4)
    assert only.src == only.dst == (slice(0, 10), slice(0, 12)) and only.crop == (slice(0, 10), slice(0, 12))
    t = Tile(src=(slice(2, 20), slice(0, 9)), dst=(slice(6, 16), slice(0, 5)), crop=(slice(4, 14), slice(0, 5)))
    hr = scaled(t, 4)
    assert hr.src == t.src and hr.dst == (slice(24, 64), slice(0, 20)) and hr.crop == (slice(16, 56), slice(0, 20))


def test_plan_rejects_bad_arguments():
    with pytest.raises(ValueError):
        plan_tiles(10, 10, tile=4, pad=-1)
    with pytest.raises(ValueError):
        plan_tiles(0, 10, tile=4, pad=1)


@pytest.mark.parametrize("scale,skip", [(2, "none"), (4, "none"), (2, "bicubic")])
def test_tiled_equals_untiled_generator(scale, skip):
    generator = tiny_generator(scale, seed=scale, global_skip=skip)
    lr_img = torch.rand(2, 3, 27, 21)  # not multiples of the tile
    with torch.no_grad():
        full = generator(lr_img)
        tiled = upscale_tiled(generator, lr_img, tile=12)
        seamy = upscale_tiled(generator, lr_img, tile=12, pad=0)
    assert tiled.shape == full.shape == (2, 3, 27 * scale, 21 * scale)
    assert float((tiled - full).abs().max()) < EQUALITY_TOLERANCE
    assert float((seamy - full).abs().max()) > 1e-3  # the pad is what makes it exact


@pytest.mark.parametrize("scale,strategy", [(2, "consensus"), (4, "median"), (4, "consensus")])
def test_tiled_equals_untiled_ensemble(scale, strategy):
    ensemble = Ensemble([tiny_generator(scale, seed) for seed in range(3)], strategy=strategy).eval()
    lr_img = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        full_out, full_std = ensemble.forward_with_uncertainty(lr_img)
        tiled_out, tiled_std = tiled_apply(ensemble.forward_with_uncertainty, lr_img, scale=scale, tile=12,
                                           pad=ensemble.receptive_radius())
    assert float((tiled_out - full_out).abs().max()) < EQUALITY_TOLERANCE
    assert float((tiled_std - full_std).abs().max()) < EQUALITY_TOLERANCE
