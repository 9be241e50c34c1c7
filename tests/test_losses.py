"""SRGAN losses on hand-computable inputs; content loss on a small random-weight VGG trunk."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mgsrgan.config import LossConfig
from mgsrgan.train.losses import (ContentLoss, adversarial_g_loss, discriminator_fake_loss, discriminator_real_loss,
                                  grid_pattern_loss, grid_phase_means, pixel_loss, relativistic_fake_loss,
                                  relativistic_g_loss, relativistic_real_loss)
from mgsrgan.models.vgg import VGGFeatures

LOG2 = math.log(2.0)


@pytest.fixture(scope="module")
def trunk():
    return VGGFeatures(layer="2_2", weights="random")


def images(seed: int, shape=(2, 3, 16, 16)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_pixel_loss_values():
    sr, hr = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert pixel_loss(sr, hr, "mse").item() == pytest.approx(0.25)
    assert pixel_loss(sr, hr, "l1").item() == pytest.approx(0.5)
    hr[0, 0, 0, 0] = 1.5  # one value off by 1.5 of 48: mse = (47 * 0.25 + 2.25) / 48
    assert pixel_loss(sr, hr, "mse").item() == pytest.approx((47 * 0.25 + 2.25) / 48)
    with pytest.raises(ValueError, match="kind"):
        pixel_loss(sr, hr, "l2")
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_loss(sr, hr[..., :2], "mse")


def test_adversarial_generator_loss_is_minus_log_d():
    assert adversarial_g_loss(torch.zeros(4)).item() == pytest.approx(LOG2)  # D = 1/2
    logits = torch.tensor([-2.0, 0.5, 3.0])
    expected = -torch.log(torch.sigmoid(logits)).mean()
    assert adversarial_g_loss(logits).item() == pytest.approx(expected.item(), rel=1e-6)
    assert adversarial_g_loss(torch.full((2,), 30.0)).item() < 1e-12  # D fooled completely


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss as training makes it: the real term plus the fake term (two backward passes)."""
    return discriminator_real_loss(real_logits) + discriminator_fake_loss(fake_logits)


def test_discriminator_loss_values():
    assert discriminator_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(2 * LOG2)
    real, fake = torch.tensor([1.0, -0.5]), torch.tensor([0.25, -3.0])
    expected = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    assert discriminator_loss(real, fake).item() == pytest.approx(expected.item(), rel=1e-6)
    assert discriminator_loss(torch.full((2,), 30.0), torch.full((2,), -30.0)).item() < 1e-12  # perfect D


def test_adversarial_losses_are_float32_under_bf16_logits():
    logits = torch.zeros(4, dtype=torch.bfloat16)
    assert adversarial_g_loss(logits).dtype == torch.float32
    assert discriminator_loss(logits, logits).dtype == torch.float32


def test_content_loss_is_rescaled_feature_mse(trunk):
    """By default, the paper's loss (Ledig et al. 2017, sec. 3.2): the MSE of the VGG feature maps, each divided by
    12.75, computed here from the features directly."""
    sr, hr = images(0), images(1)
    loss = ContentLoss(trunk)(sr, hr=hr)
    with torch.no_grad():
        paper = F.mse_loss(trunk(sr) / 12.75, trunk(hr) / 12.75)
    assert loss.item() == pytest.approx(paper.item(), rel=1e-5)
    doubled = ContentLoss(trunk, rescale=2 / 12.75)(sr, hr=hr)
    assert doubled.item() == pytest.approx(4 * loss.item(), rel=1e-5)  # rescale enters squared
    assert ContentLoss(trunk)(hr, hr=hr).item() == 0.0


def test_precomputed_hr_features_give_the_same_loss(trunk):
    content = ContentLoss(trunk)
    sr, hr = images(2), images(3)
    with torch.no_grad():
        hr_features = content.features(hr)
    assert [f.shape for f in hr_features] == [(2, 128, 8, 8)]
    torch.testing.assert_close(content(sr, hr_features=hr_features), content(sr, hr=hr))
    with pytest.raises(ValueError, match="exactly one"):
        content(sr, hr=hr, hr_features=hr_features)
    with pytest.raises(ValueError, match="exactly one"):
        content(sr)
    with pytest.raises(ValueError, match="differ in shape"):
        content(sr, hr_features=[hr_features[0][..., :4]])


def test_gradient_reaches_sr_not_vgg(trunk):
    sr = images(4).requires_grad_(True)
    ContentLoss(trunk)(sr, hr=images(5)).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in trunk.parameters())


def test_from_config_builds_the_configured_trunk():
    cfg = LossConfig(content_layer="2_1", content_before_relu=True, vgg_weights="random", content_rescale=0.5)
    content = ContentLoss.from_config(cfg)
    assert content.rescale == 0.5 and content.vgg.layer == "2_1" and content.vgg.before_relu
    (features,) = content.features(images(6, (1, 3, 8, 8)))
    assert features.shape == (1, 128, 4, 4) and features.min() < 0  # before the ReLU: negatives remain


def test_multi_layer_loss_is_the_weighted_sum_of_single_layer_losses():
    sr, hr = images(7), images(8)
    single = {layer: ContentLoss.from_config(LossConfig(content_layer=layer, vgg_weights="random"))(sr, hr=hr)
              for layer in ("1_2", "2_2")}
    both = ContentLoss.from_config(LossConfig(content_layers=["1_2", "2_2"], content_layer_weights=[0.25, 2.0],
                                              vgg_weights="random"))
    assert both.vgg.layer == "2_2"  # one trunk, cut at the deepest tap
    torch.testing.assert_close(both(sr, hr=hr), 0.25 * single["1_2"] + 2.0 * single["2_2"])
    assert single["1_2"] > 0 and single["2_2"] > 0


def test_relativistic_losses_prefer_the_right_ordering():
    real, fake = torch.tensor([2.0, 3.0]), torch.tensor([-1.0, 0.0])
    # D is right (real above fake): small D loss, large G loss; swapped logits flip both
    d_loss = relativistic_real_loss(real, fake) + relativistic_fake_loss(real, fake)
    d_swapped = relativistic_real_loss(fake, real) + relativistic_fake_loss(fake, real)
    assert d_loss < 0.1 < d_swapped
    assert relativistic_g_loss(real, fake) > 1.0 > relativistic_g_loss(fake, real)
    # equal logits: every term is log 2, halves summing to log 2
    same = torch.zeros(2)
    torch.testing.assert_close(relativistic_g_loss(same, same), torch.tensor(0.6931471805599453))


def test_grid_pattern_loss_sees_a_checkerboard_and_not_a_shifted_texture():
    import numpy as np
    from mgsrgan.evaluate.artifacts import periodic_artifact
    yy, xx = np.mgrid[0:32, 0:32]
    board = np.repeat(np.clip(120 + 6 * ((yy + xx) % 2 * 2 - 1), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    as_tensor = torch.from_numpy(board).permute(2, 0, 1)[None].float() / 255
    phases = grid_phase_means(as_tensor, 2) * 255
    torch.testing.assert_close(phases, torch.tensor([[-6.0, 6.0, 6.0, -6.0]]))  # luma amplitude of the board
    # the same measure as artifacts.periodic_artifact, up to its Y scaling (219 / 255) and rounding
    assert float(phases.square().mean().sqrt()) * 219 / 255 == pytest.approx(periodic_artifact(board, 2), rel=1e-3)
    flat = torch.full_like(as_tensor, 120 / 255)
    assert grid_pattern_loss(as_tensor, flat, 2) == pytest.approx((6 / 255) ** 2, rel=1e-4)
    assert grid_pattern_loss(flat, flat, 2) == 0
    smooth = images(9, (2, 3, 32, 32))
    assert grid_pattern_loss(smooth, smooth, 2) == 0  # HR's own phase means cancel
    sr = as_tensor.clone().requires_grad_(True)
    grid_pattern_loss(sr, flat, 2).backward()
    assert sr.grad.abs().sum() > 0
