"""Frozen VGG feature trunk phi_{i,j} for the SRGAN content loss (Ledig et al. 2017, sec. 2.2.1).

Three weight sources; files load strictly (every expected tensor present, shapes checked, nothing unexplained):

- "imagenet": VGG19 (Simonyan & Zisserman 2015, config E) trained for ImageNet classification, as in the paper.
  The module layout matches torchvision's `vgg19().features` (conv i at the same Sequential index) so the file
  torchvision publishes, vgg19-dcbb9e9d.pth, loads key for key; its `classifier.*` keys are dropped on purpose.
- "stlpips": the VGG16 trunk inside ST-LPIPS (Ghildyal & Liu 2022, `stlpips-pytorch==0.0.2`, vgg_shift_tolerant.pth).
  These weights were trained for *perceptual similarity* on human judgements (BAPPS, Zhang et al. 2018), not for
  ImageNet classification. The trunk is anti-aliased: each 2x2/2 max-pool is a 2x2/1 max-pool followed by a
  [1,2,1]^2 blur with stride 2 on a reflect-padded map (pad 2 per side), so it is built that way here too.
  Layer names follow VGG16: 1_1..5_3. Spatial sizes after a pool are floor(H/2)+1, not H/2.
- "random": seeded random init, for tests only.

The layouts and loaders are `mgsrgan.models.trunks`'; finding (or downloading) the file is the caller's job
(`mgsrgan.io.weightfiles.resolve_vgg_file`), so this module reads only the path it is given.
Input of every trunk: (B, 3, H, W) float RGB in [0, 1]; output: phi_{i,j}, (B, C, H', W') float.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from mgsrgan.errors import UserError
from mgsrgan.models.trunks import (ST_VGG16, VGG16_BLOCKS, VGG16_LAYERS, VGG19_BLOCKS, VGG19_LAYERS, build,
                                   layer_index, load_stlpips_state, load_torchvision_state, vgg_trunk)

log = logging.getLogger(__name__)

# ImageNet RGB mean / std of torchvision's pretrained models (torchvision docs, "Models and pre-trained weights").
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0  # fixed so "random" trunks are identical across runs (tests compare values)


class VGGFeatures(nn.Module):
    """Frozen VGG trunk cut at phi_{layer}: (B, 3, H, W) RGB in [0, 1] -> (B, C, H', W') features.

    layer: "i_j" (VGG19 names for imagenet/random, VGG16 names 1_1..5_3 for stlpips). before_relu: return the conv
    output instead of the activation (ESRGAN's choice; SRGAN uses after). path: the weight file, needed for
    "imagenet" and "stlpips" (already found: mgsrgan.io.weightfiles.resolve_vgg_file). Layers past the requested one
    are not built. Parameters have requires_grad=False and the module stays in eval mode; gradients still flow to the
    input.
    """

    def __init__(self, *, layer: str = "5_4", before_relu: bool = False,
                 weights: Literal["imagenet", "stlpips", "random"], path: str | Path | None = None) -> None:
        super().__init__()
        if weights not in ("imagenet", "stlpips", "random"):
            raise ValueError(f"weights must be imagenet, stlpips or random, got {weights!r}")
        if weights != "random" and not path:
            raise ValueError(f"VGGFeatures: weights={weights} needs the weight file's path "
                             "(mgsrgan.io.weightfiles.resolve_vgg_file finds it)")
        anti_aliased = weights == "stlpips"
        names = VGG16_LAYERS if anti_aliased else VGG19_LAYERS
        if layer not in names:
            raise UserError(f"loss.content_layer: {layer!r} is not a layer of the {weights} VGG trunk; "
                            f"choose from {', '.join(names)}")
        self.blocks = VGG16_BLOCKS if anti_aliased else VGG19_BLOCKS
        conv_at, relu_at = layer_index(self.blocks, anti_aliased=anti_aliased)[layer]
        length = (conv_at if before_relu else relu_at) + 1
        # a trunk that will be loaded is built on the meta device (no memory, no wasted init), then assigned
        with torch.device("meta" if weights != "random" else "cpu"):
            self.features = build(vgg_trunk(self.blocks, anti_aliased=anti_aliased).layers, length)
        self.layer, self.before_relu, self.weights = layer, before_relu, weights
        # not persistent: they are constants of the weight source, not state to checkpoint
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights == "random":
            self._random_init()
        else:
            self._load(weights, Path(path))
        for param in self.parameters():
            param.requires_grad_(False)
        self.eval()

    def _random_init(self) -> None:
        generator = torch.Generator().manual_seed(RANDOM_SEED)
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                nn.init.zeros_(module.bias)

    def _load(self, weights: str, file: Path) -> None:
        if weights == "imagenet":
            full = load_torchvision_state(file, VGG19_BLOCKS, what="torchvision's VGG19")
            log.info("VGG trunk: torchvision VGG19 ImageNet weights from %s", file)
        else:
            full, others = load_stlpips_state(file, ST_VGG16, what="ST-LPIPS's VGG16")
            # LPIPS feeds x' = 2x - 1 and computes (x' - shift) / scale = (x - (1 + shift) / 2) / (scale / 2);
            # as [0, 1] statistics these are ImageNet's. The heads lin<k>.* score distances: not needed here.
            self.mean.copy_((1 + others["scaling_layer.shift"]) / 2)
            self.std.copy_(others["scaling_layer.scale"] / 2)
            log.info("VGG trunk: ST-LPIPS VGG16 weights from %s; trained for perceptual similarity (BAPPS), "
                     "not ImageNet classification", file)
        # the file was checked against the whole trunk; the truncated module takes its prefix, strictly
        kept = self.features.state_dict().keys()
        self.features.load_state_dict({k: full[k] for k in kept}, strict=True, assign=True)

    def train(self, mode: bool = True) -> VGGFeatures:
        """Stay in eval mode whatever the parent does: the trunk is a fixed feature extractor."""
        return super().train(False)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img (B, 3, H, W) float RGB in [0, 1] -> phi_{layer} (B, C, H', W')."""
        return self.features((img - self.mean) / self.std)
