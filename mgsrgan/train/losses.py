"""SRGAN losses (Ledig et al., CVPR 2017, sec. 2.2): pixel, VGG content and adversarial terms.

All images are (B, 3, H, W) float RGB in [0, 1]; logits are (B,) raw discriminator outputs (no sigmoid).
Every loss returns a 0-dim float32 tensor, a mean over the batch (and pixels / features).
Combining the terms (l_X + 1e-3 l_Gen, eq. 3) is the trainer's job, with the weights from LossConfig.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mgsrgan.evaluate.artifacts import period_lowpass_kernel
from mgsrgan.config import LossConfig
from mgsrgan.io.weightfiles import resolve_vgg_file
from mgsrgan.models.trunks import layer_index
from mgsrgan.models.vgg import VGGFeatures

CONTENT_RESCALE = 1.0 / 12.75  # VGG feature maps scaled by 1/12.75 (Ledig et al. 2017, sec. 3.2)


def pixel_loss(sr: torch.Tensor, hr: torch.Tensor, kind: Literal["mse", "l1"] = "mse") -> torch.Tensor:
    """Pixel-wise loss between sr and hr (same shape): "mse" is eq. 4 of the paper, "l1" the EDSR choice."""
    if sr.shape != hr.shape:
        raise ValueError(f"pixel_loss: sr {tuple(sr.shape)} and hr {tuple(hr.shape)} differ in shape")
    if kind == "mse":
        return F.mse_loss(sr.float(), hr.float())
    if kind == "l1":
        return F.l1_loss(sr.float(), hr.float())
    raise ValueError(f"pixel_loss: kind must be 'mse' or 'l1', got {kind!r}")


class ContentLoss(nn.Module):
    """VGG loss l_VGG/i.j (Ledig et al. 2017, eq. 5): MSE between rescale * phi_{i,j}(sr) and rescale * phi_{i,j}(hr).

    The mean is over B * C * H' * W' feature values, so the value is rescale^2 times the plain feature MSE.
    With several `layer_weights` (ESRGAN/Real-ESRGAN's multi-layer perceptual loss) the loss is the weighted sum
    of each tapped layer's MSE, all from one pass through the trunk (cut at the deepest tapped layer).
    The trunk is frozen: gradients reach `sr` (and so the generator) but never the VGG weights.
    """

    def __init__(self, features: VGGFeatures, *, rescale: float = CONTENT_RESCALE,
                 layer_weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.vgg = features
        self.rescale = rescale
        self.layer_weights = dict(layer_weights or {features.layer: 1.0})
        index = layer_index(features.blocks, anti_aliased=features.weights == "stlpips")
        # Sequential position whose output is each tapped layer (conv before the ReLU, or the ReLU)
        self.taps = {name: index[name][0 if features.before_relu else 1] for name in self.layer_weights}
        if max(self.taps.values()) >= len(features.features):
            raise ValueError(f"ContentLoss: the trunk stops at {features.layer}, before a tapped layer")

    @classmethod
    def from_config(cls, cfg: LossConfig) -> ContentLoss:
        """The content loss a LossConfig describes (layer(s), before/after ReLU, weights, file, rescale); finds
        (or, for VGG19, downloads) the weight file."""
        weights = dict(zip(cfg.content_layers, cfg.content_layer_weights)) or {cfg.content_layer: 1.0}
        deepest = max(weights, key=lambda name: tuple(int(p) for p in name.split("_")))
        trunk = VGGFeatures(layer=deepest, before_relu=cfg.content_before_relu,
                            weights=cfg.vgg_weights, path=resolve_vgg_file(cfg.vgg_weights, cfg.vgg_path))
        return cls(trunk, rescale=cfg.content_rescale, layer_weights=weights)

    def features(self, img: torch.Tensor) -> list[torch.Tensor]:
        """img (B, 3, H, W) in [0, 1] -> rescaled phi per tapped layer, [(B, C_l, H_l, W_l)] float32.

        Call it under torch.no_grad() for HR targets, once per batch, and pass the result as `hr_features`.
        """
        x = (img - self.vgg.mean) / self.vgg.std
        wanted = {position: name for name, position in self.taps.items()}
        out: dict[str, torch.Tensor] = {}
        for position, module in enumerate(self.vgg.features):
            x = module(x)
            if position in wanted:
                out[wanted[position]] = x.float() * self.rescale
            if len(out) == len(wanted):
                break
        return [out[name] for name in self.layer_weights]

    def forward(self, sr: torch.Tensor, hr: torch.Tensor | None = None,
                hr_features: list[torch.Tensor] | None = None) -> torch.Tensor:
        """sr (B, 3, H, W) in [0, 1]; exactly one of hr (same shape) or hr_features (from `features`)."""
        if (hr is None) == (hr_features is None):
            raise ValueError("ContentLoss: pass exactly one of hr and hr_features")
        if hr_features is None:
            with torch.no_grad():  # the target carries no gradient; skip building its graph
                hr_features = self.features(hr)
        total = torch.zeros((), device=sr.device)
        for weight, sr_f, hr_f in zip(self.layer_weights.values(), self.features(sr), hr_features):
            if sr_f.shape != hr_f.shape:
                raise ValueError(f"ContentLoss: sr features {tuple(sr_f.shape)} and hr features "
                                 f"{tuple(hr_f.shape)} differ in shape")
            total = total + weight * F.mse_loss(sr_f, hr_f)
        return total


def adversarial_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator's l_Gen = mean of -log D(G(lr)) (Ledig et al. 2017, eq. 6), as BCE-with-logits against 1.

    The non-saturating form (Goodfellow et al. 2014, sec. 3): strong gradients while D still wins.
    """
    logits = fake_logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def discriminator_real_loss(real_logits: torch.Tensor) -> torch.Tensor:
    """-log D(hr): BCE-with-logits of real images against 1. With `discriminator_fake_loss`, the discriminator's
    loss mean -log D(hr) + mean -log(1 - D(sr)) (Ledig et al. 2017, eq. 2, as a minimisation); training
    back-propagates the two terms one after the other (one forward, one backward each), which gives the gradient
    of their sum and is the pattern DistributedDataParallel supports."""
    real = real_logits.float()
    return F.binary_cross_entropy_with_logits(real, torch.ones_like(real))


def discriminator_fake_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log(1 - D(sr)): BCE-with-logits of (detached) SR images against 0."""
    fake = fake_logits.float()
    return F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))


def relativistic_g_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator's relativistic average loss (ESRGAN, Wang et al. 2018, eq. 2): SR should look more real than the
    average HR and HR less real than the average SR. real_logits from HR without gradient; (B,) each."""
    real, fake = real_logits.float().detach(), fake_logits.float()
    return 0.5 * (F.binary_cross_entropy_with_logits(real - fake.mean(), torch.zeros_like(real))
                  + F.binary_cross_entropy_with_logits(fake - real.mean(), torch.ones_like(fake)))


def relativistic_real_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator's relativistic average term for HR (Wang et al. 2018, eq. 1): HR more real than mean SR."""
    real = real_logits.float()
    return 0.5 * F.binary_cross_entropy_with_logits(real - fake_logits.float().detach().mean(),
                                                    torch.ones_like(real))


def relativistic_fake_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator's relativistic average term for SR: SR less real than mean HR (the other half of eq. 1)."""
    fake = fake_logits.float()
    return 0.5 * F.binary_cross_entropy_with_logits(fake - real_logits.float().detach().mean(),
                                                    torch.zeros_like(fake))


def grid_phase_means(img: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, s*s): per image, the mean of its high-pass luma at each output-grid phase
    (row mod s, column mod s), luma = BT.601 weights, high-pass = luma minus its [one-period] box low-pass (the
    differentiable counterpart of mgsrgan.evaluate.artifacts.periodic_artifact, in [0, 1] units, phases counted from the
    patch corner, which training patches keep aligned to the output grid since they start on LR pixels)."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
    luma = (img * weights).sum(dim=1, keepdim=True)  # (B, 1, H, W)
    taps = torch.as_tensor(period_lowpass_kernel(scale), dtype=img.dtype, device=img.device)  # one period
    low = F.conv2d(F.conv2d(luma, taps.view(1, 1, 1, -1)), taps.view(1, 1, -1, 1))  # valid: (H - s, W - s)
    half = scale // 2
    high = luma[..., half: half + low.shape[-2], half: half + low.shape[-1]] - low
    rows, cols = (high.shape[-2] // scale) * scale, (high.shape[-1] // scale) * scale
    high = high[..., :rows, :cols]  # whole periods only; phase (i, j) of `high` is grid phase (i + h, j + h)
    b = high.shape[0]
    phases = high.reshape(b, rows // scale, scale, cols // scale, scale).mean(dim=(1, 3))  # (B, s, s)
    return phases.reshape(b, scale * scale)


def grid_pattern_loss(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Mean squared difference of SR's and HR's grid-phase means (grid_phase_means): zero when SR carries no
    pattern locked to the sub-pixel grid beyond what HR itself has (a checkerboard at x2). 0-dim, [0, 1]^2 units."""
    return F.mse_loss(grid_phase_means(sr.float(), scale), grid_phase_means(hr.float(), scale))
