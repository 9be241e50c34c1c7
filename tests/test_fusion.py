"""Per-pixel fusions (mgsrgan/infer/fusion.py): guided fusion follows the pixel-loss members' disagreement, adaptive
fusion the coherence of the GAN members' texture; and the GAN members' texture-preserving mean."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mgsrgan.errors import UserError
from mgsrgan.infer.ensemble import Ensemble
from mgsrgan.infer.fusion import adaptive_blend, guided_blend, member_spread, texture_coherence
from mgsrgan.infer.upscaler import Upscaler
from tests.test_upscaler import make_run


class Constant(nn.Module):
    """A fake member: a fixed (1, 3, 8, 8) image whatever the (1, 3, 4, 4) input; scale 2."""

    def __init__(self, value: float | torch.Tensor) -> None:
        super().__init__()
        self.image = value if isinstance(value, torch.Tensor) else torch.full((1, 3, 8, 8), value)
        self.scale = 2

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        return self.image.expand(lr_img.shape[0], -1, -1, -1)

    def receptive_radius(self) -> int:
        return 1


def test_guided_blend_adds_texture_only_where_the_pixel_members_disagree():
    pixel, gan = torch.full((1, 3, 16, 16), 0.2), torch.full((1, 3, 16, 16), 0.6)
    spread = torch.zeros(1, 1, 16, 16)
    torch.testing.assert_close(guided_blend(pixel, gan, spread, alpha=1.0, tau=0.5), pixel)  # agreement: P only
    spread[..., :, 8:] = 0.5 / 255.0  # right half: the pixel-loss members differ by tau levels
    out = guided_blend(pixel, gan, spread, alpha=0.8, tau=0.5, radius=1)
    assert torch.allclose(out[..., :, :7], pixel[..., :, :7])
    torch.testing.assert_close(out[..., :, 9:], torch.full_like(out[..., :, 9:], 0.2 + 0.4 * 0.4))  # share 0.8 / 2
    far = guided_blend(pixel, gan, torch.full((1, 1, 16, 16), 1.0), alpha=0.8, tau=0.5)
    torch.testing.assert_close(far, 0.2 + 0.8 * 0.4 * torch.ones_like(far), atol=1e-5, rtol=0)  # alpha's share


def test_member_spread_is_the_population_std_over_members_averaged_over_channels():
    stack = torch.stack([torch.full((1, 3, 2, 2), v) for v in (0.1, 0.3)])
    stack[1, :, 0] = 0.1  # channel 0 agrees
    torch.testing.assert_close(member_spread(stack), torch.full((1, 1, 2, 2), 0.1 * 2 / 3))


def test_guided_ensemble_reads_the_pixel_members_disagreement_and_refuses_what_it_cannot_do():
    x = torch.zeros(1, 3, 4, 4)
    gan = Constant(0.7)
    agree = Ensemble([Constant(0.3), Constant(0.3)], gan_side=gan, alpha=1.0, guided_tau=0.5)
    torch.testing.assert_close(agree(x), torch.full((1, 3, 8, 8), 0.3))  # members agree: no texture at all
    apart = Ensemble([Constant(0.28), Constant(0.32)], gan_side=gan, alpha=1.0, guided_tau=0.5, strategy="best",
                     val_psnr=[30.0, 31.0])  # "best" still runs every member: the map needs them all
    d2 = (0.02 * 255) ** 2  # their std, 5.1 levels
    torch.testing.assert_close(apart(x), 0.32 + d2 / (d2 + 0.25) * (0.7 - 0.32) * torch.ones(1, 3, 8, 8))
    assert apart.receptive_radius() == 1 + 2  # the 7x7 window at x2: 2 LR pixels
    out, std = apart.forward_with_uncertainty(x)
    torch.testing.assert_close(out, apart(x))
    torch.testing.assert_close(std, torch.full((1, 1, 8, 8), 0.02))
    with pytest.raises(UserError, match="several pixel-loss members"):
        Ensemble([Constant(0.3)], gan_side=gan, alpha=1.0, guided_tau=0.5)
    with pytest.raises(UserError, match="not both"):
        Ensemble([Constant(0.3), Constant(0.3)], gan_side=Ensemble([gan, gan]), alpha=1.0, guided_tau=0.5,
                 adaptive_c0=0.8)
    with pytest.raises(UserError, match=">= 0"):
        Ensemble([Constant(0.3), Constant(0.3)], gan_side=gan, alpha=1.0, guided_tau=-1.0)


# ---- adaptive fusion: the coherence of the GAN members' texture -------------------------------------------------

def _white(seed: int, shape: tuple[int, ...], amplitude: float = 0.05) -> torch.Tensor:
    return amplitude * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_texture_coherence_is_one_for_shared_texture_one_over_k_for_independent_and_zero_for_cancelling():
    pixel = torch.full((1, 3, 64, 64), 0.5)
    inner = (..., slice(8, -8), slice(8, -8))  # away from the border windows
    shared = pixel + _white(0, pixel.shape)
    torch.testing.assert_close(texture_coherence(pixel, torch.stack([shared] * 3)), torch.ones(1, 1, 64, 64))
    independent = torch.stack([pixel + _white(k, pixel.shape) for k in range(3)])
    c = texture_coherence(pixel, independent)
    assert float(c[inner].mean()) == pytest.approx(1 / 3, abs=0.02)  # E|mean|^2 / E|h|^2 = 1/K
    assert float(c.max()) <= 1.0 + 1e-6 and float(c.min()) >= 0.0
    opposite = torch.stack([shared, 2 * pixel - shared])
    assert float(texture_coherence(pixel, opposite).max()) < 1e-6
    offset = torch.stack([pixel + 0.1, pixel - 0.05])  # colour only, no texture: nothing shared, c = 0, not 0 / 0
    assert float(texture_coherence(pixel, offset).abs().max()) < 1e-6


def test_adaptive_blend_keeps_shared_texture_and_moves_toward_p_where_each_member_draws_its_own():
    pixel = torch.full((1, 3, 48, 96), 0.4)
    base = _white(0, pixel.shape)
    stack = torch.stack([pixel + _white(k + 1, pixel.shape) for k in range(3)])  # right half: each its own draw
    stack[..., :48] = (pixel + base)[..., :48]  # left half: the same texture in every member
    gan = stack.mean(0)
    left, right = (..., slice(8, -8), slice(8, 40)), (..., slice(8, -8), slice(56, -8))
    out = adaptive_blend(pixel, gan, stack, alpha=0.5, c0=0.8)
    torch.testing.assert_close(out[left], (pixel + 0.5 * (gan - pixel))[left])  # c = 1 >= c0: all of alpha
    share = ((out - pixel)[right] / (gan - pixel)[right]).median()
    c = texture_coherence(pixel, stack)[right]
    assert 0.5 * float(c.mean()) / 0.8 == pytest.approx(float(share), rel=0.15)  # alpha * c / c0 there
    assert float(share) < 0.5 * 0.5  # c ~ 1/3: clearly toward P where the texture parts ways
    assert torch.equal(adaptive_blend(pixel, gan, stack, alpha=0.0, c0=0.8), pixel)


def test_adaptive_ensemble_reads_the_gan_members_texture_and_refuses_what_it_cannot_do():
    x = torch.zeros(1, 3, 4, 4)
    pixel = [Constant(0.3), Constant(0.3)]
    textured = torch.full((1, 3, 8, 8), 0.3) + _white(0, (1, 3, 8, 8))
    same = Ensemble([Constant(textured)] * 3)
    adaptive = Ensemble(pixel, gan_side=same, alpha=0.7, adaptive_c0=0.8)
    global_blend = Ensemble(pixel, gan_side=same, alpha=0.7)
    torch.testing.assert_close(adaptive(x), global_blend(x))  # one texture shared by all: the global blend
    members = [Constant(torch.full((1, 3, 8, 8), 0.3) + _white(k, (1, 3, 8, 8))) for k in range(3)]
    apart = Ensemble(members)
    stack = torch.stack([m.image for m in members])
    out = Ensemble(pixel, gan_side=apart, alpha=1.0, adaptive_c0=0.8)(x)
    p = torch.full((1, 3, 8, 8), 0.3)
    torch.testing.assert_close(out, adaptive_blend(p, stack.mean(0), stack, alpha=1.0, c0=0.8))
    assert adaptive.receptive_radius() == 1 + 3  # texture local mean + energy window: 2 x 3 HR px = 3 LR px at x2
    with pytest.raises(UserError, match="several GAN members"):
        Ensemble(pixel, gan_side=Constant(0.7), alpha=0.5, adaptive_c0=0.8)
    for bad in (-0.1, 1.5):
        with pytest.raises(UserError, match=r"\(0, 1\]"):
            Ensemble(pixel, gan_side=same, alpha=0.5, adaptive_c0=bad)


@pytest.mark.parametrize("fusion, flag", [({"guided_tau": 0.5}, "--guided"), ({"adaptive_c0": 0.8}, "--adaptive")])
def test_per_pixel_fusion_tiles_exactly_and_needs_alpha(tmp_path, fusion, flag):
    make_run(tmp_path / "run", members=2)
    lr_img = torch.rand(1, 3, 21, 17)
    whole = Upscaler.from_run(tmp_path / "run", alpha=1.0, precision="fp32", **fusion)
    plain = Upscaler.from_run(tmp_path / "run", alpha=1.0, precision="fp32").upscale_tensor(lr_img)
    expected = whole.upscale_tensor(lr_img)
    assert not torch.equal(expected, plain)  # the map changes the output
    for tile in (5, 9):  # its windows are inside the receptive radius: tiles stitch exactly
        tiled = Upscaler.from_run(tmp_path / "run", alpha=1.0, precision="fp32", tile=tile, **fusion)
        assert torch.equal(tiled.upscale_tensor(lr_img), expected), tile
    with pytest.raises(UserError, match=f"{flag} needs --alpha"):
        Upscaler.from_run(tmp_path / "run", **fusion)


# ---- the texture-preserving mean of the GAN members ---------------------------------------------------------------

def _textured(seed: int, base: torch.Tensor, amplitude: float = 0.05) -> torch.Tensor:
    """base + zero-mean white texture of the given std (an independent draw per seed)."""
    generator = torch.Generator().manual_seed(seed)
    return base + amplitude * torch.randn(base.shape, generator=generator)


def _energy(x: torch.Tensor) -> float:
    return float((x - x.mean()).square().mean())


def test_texture_mean_restores_independent_texture_and_keeps_what_members_share():
    from mgsrgan.infer.fusion import texture_mean

    pixel = torch.full((1, 3, 48, 48), 0.5)
    shift = 0.02  # a colour offset every member shares: low frequency, kept as the weighted mean keeps it
    stack = torch.stack([_textured(k, pixel + shift) for k in range(3)])
    weights = torch.full((3,), 1 / 3)
    mean = stack.mean(0)
    out = texture_mean(pixel, stack, weights)
    inner = (..., slice(8, -8), slice(8, -8))  # away from the border windows
    member_energy = _energy(stack[0][inner])
    assert _energy(mean[inner]) == pytest.approx(member_energy / 3, rel=0.15)  # averaging shrinks it by sum w^2
    assert _energy(out[inner]) == pytest.approx(member_energy, rel=0.15)  # restored to one member's
    assert float(out.mean() - pixel.mean()) == pytest.approx(shift, abs=2e-3)  # the shared offset stays, not x1.7
    assert float((out - pixel).mean()) == pytest.approx(float((mean - pixel).mean()), abs=1e-3)


def test_texture_mean_of_agreeing_members_is_their_mean_and_the_gain_is_capped():
    from mgsrgan.infer.fusion import texture_mean

    pixel = torch.full((1, 3, 32, 32), 0.4)
    one = _textured(0, pixel)
    same = torch.stack([one, one, one])
    torch.testing.assert_close(texture_mean(pixel, same, torch.tensor([0.2, 0.3, 0.5])), one)  # gain 1
    # members that cancel (t and -t): the mean has no texture left; the gain cannot exceed 1 / sqrt(sum w^2)
    opposite = torch.stack([one, 2 * pixel - one])
    out = texture_mean(pixel, opposite, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(out, pixel)
    flat = texture_mean(pixel, torch.stack([pixel, pixel]), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(flat, pixel)  # no texture at all: nothing to restore, nothing divided by zero


def test_texture_strategy_needs_its_pixel_reference_and_is_the_default_for_scored_gan_members(tmp_path):
    from mgsrgan.infer.ensemble import build_ensemble, run_member_paths
    from mgsrgan.io.checkpoint import update_val

    made = make_run(tmp_path / "run", members=3)
    lr_img = torch.rand(1, 3, 19, 15)
    with pytest.raises(UserError, match="texture"):
        Ensemble(made["gan"], strategy="texture")
    gan_paths = run_member_paths(tmp_path / "run", "gan")
    assert build_ensemble(gan_paths).strategy == "mean"  # unscored GAN members: the plain mean, as before
    for path, score in zip(gan_paths, (0.02, 0.03, 0.04)):
        update_val(path, {"stlpips_alex": score})
    model = build_ensemble(gan_paths)
    assert model.strategy == "texture" and model.reference is not None
    with torch.no_grad():
        pixel = torch.stack([g(lr_img) for g in made["pretrain"]]).mean(0)
        stack = torch.stack([g(lr_img) for g in made["gan"]])
        from mgsrgan.infer.fusion import texture_mean
        expected = texture_mean(pixel, stack, torch.tensor([6.0, 4.0, 3.0]) / 13.0)  # 1/d weights
        torch.testing.assert_close(model(lr_img), expected)
    # the GAN side of a blend is the same texture mean around the blend's own P: alpha 1 = --checkpoint gan
    whole = Upscaler.from_run(tmp_path / "run", checkpoint="gan", precision="fp32").upscale_tensor(lr_img)
    blend = Upscaler.from_run(tmp_path / "run", alpha=1.0, precision="fp32").upscale_tensor(lr_img)
    torch.testing.assert_close(blend, whole)
    for tile in (5, 8):  # its windows are inside the receptive radius: tiles stitch exactly
        tiled = Upscaler.from_run(tmp_path / "run", checkpoint="gan", precision="fp32", tile=tile)
        assert torch.equal(tiled.upscale_tensor(lr_img), whole), tile
    (tmp_path / "run" / "member_1" / "pretrain.safetensors").unlink()  # no reference beside a member
    assert build_ensemble(gan_paths).strategy == "perceptual"
    with pytest.raises(UserError, match="pretrain"):
        build_ensemble(gan_paths, strategy="texture")
