"""LPIPS v0.1 with the VGG16 backbone (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", CVPR 2018): a learned perceptual distance, rebuilt offline from two weight files.

- Backbone: torchvision's ImageNet VGG16, `vgg16-397923af.pth`, taken from a path or from the torch hub cache where
  torchvision keeps it (never downloaded: mgsrgan.io.weightfiles.default_backbone_path says why).
- Linear heads: `lpips/weights/v0.1/vgg.pth` inside the PyPI package `lpips` (0.1.4; BSD-2, Zhang et al.), five
  1x1 convolutions (no bias, non-negative weights) calibrated on the BAPPS 2AFC human judgements. The package is
  not imported; mgsrgan.io.weightfiles.default_heads_path finds its file without running its code.

The computation, as the package's `LPIPS.forward(in0, in1, normalize=True)` for net="vgg", version="0.1" does it
(facts read from lpips/lpips.py and lpips/pretrained_networks.py; the code is ours):
1. input x in [0, 1] -> 2x - 1 in [-1, 1] -> scaling layer (v - SHIFT) / SCALE (constants in ScalingLayer; the
   package's v0.0 skipped this step, a bug its README mentions);
2. a plain VGG16 `features` stack (3x3 convs with zero padding 1, ReLU, 2x2/stride-2 max pooling, torchvision's
   layout, built by `mgsrgan.models.trunks.build`), tapped after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3;
3. per tap: unit-normalise each pixel's feature vector over channels, f / (||f||_2 + EPS); square the difference
   of the two images' normalised features; weight the channels with the head (1x1 conv); average over space;
4. sum the five layer terms.
Not the same numbers as ST-LPIPS (mgsrgan/evaluate/stlpips.py), whose VGG16 has blur pooling and its own trained weights.

Checked against the package itself (`pnet_rand=True` with its trunk set to a seeded random backbone, heads random
or the real v0.1 file: tests/test_lpips.py::PACKAGE_REFERENCE); not against the real ImageNet backbone, which the
offline development machine cannot fetch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from mgsrgan.errors import LPIPSError, UserError
from mgsrgan.io.weightfiles import LPIPS_BACKBONE_FILE, default_backbone_path, default_heads_path
from mgsrgan.models.trunks import (VGG16_BLOCKS, build, load_torchvision_state, read_state_dict, tap_widths,
                                   vgg_trunk)

# lpips/lpips.py ScalingLayer: per-channel shift and scale applied to the [-1, 1] input (v0.1).
SCALING_SHIFT = (-0.030, -0.088, -0.188)
SCALING_SCALE = (0.458, 0.448, 0.450)
UNIT_NORM_EPS = 1e-10  # lpips/__init__.py normalize_tensor: eps added to the channel norm before dividing
MIN_SIDE = 16  # four 2x2/2 max pools before relu5_3: a side under 16 pixels leaves no feature map there
# The plain VGG16 of torchvision; its taps (the last ReLU of each block: relu1_2 ... relu5_3) are LPIPS's
# (pretrained_networks.vgg16 slices end there).
TRUNK = vgg_trunk(VGG16_BLOCKS, anti_aliased=False)


def load_backbone_state(file: Path) -> dict[str, torch.Tensor]:
    """torchvision vgg16 file -> the trunk's state dict up to relu5_3 ("0.weight" ... "28.bias").

    `classifier.*` (the ImageNet head) is dropped on purpose; any other key, a missing key or a wrong shape is an
    error naming the file.
    """
    return load_torchvision_state(Path(file), VGG16_BLOCKS, what=f"torchvision's VGG16, {LPIPS_BACKBONE_FILE}",
                                  error=LPIPSError)


def check_heads(file: Path, state: dict[str, torch.Tensor], widths: tuple[int, ...], *, what: str,
                error: type[UserError]) -> None:
    """The linear heads of an LPIPS-style file: exactly lin<k>.model.1.weight of shape (1, widths[k], 1, 1)
    (model.0 is a Dropout without tensors). Negative weights are rejected: LPIPS clamps them at 0 in training, so a
    file with any is not these heads (and could give negative distances)."""
    expected = {f"lin{k}.model.1.weight": (1, width, 1, 1) for k, width in enumerate(widths)}
    if set(state) != set(expected):
        raise error(f"{file}: not {what} (keys {sorted(state)[:6]}, expected {sorted(expected)})")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise error(f"{file}: {key} has shape {tuple(state[key].shape)}, expected {shape}")
        if bool((state[key] < 0).any()):
            raise error(f"{file}: {key} has negative weights; not {what}")


def load_heads(file: Path) -> list[torch.Tensor]:
    """lpips v0.1 vgg.pth -> five (1, C, 1, 1) head weights for C = 64, 128, 256, 512, 512 (`check_heads`)."""
    what = "the LPIPS vgg heads, lpips/weights/v0.1/vgg.pth"
    state = read_state_dict(Path(file), what=what, error=LPIPSError)
    check_heads(file, state, tap_widths(TRUNK), what=what, error=LPIPSError)
    return [state[f"lin{k}.model.1.weight"].float() for k in range(len(TRUNK.taps))]


def image_tensor(image: np.ndarray, name: str, device: torch.device, *, what: str,
                 error: type[UserError]) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1] on `device` (a copy, so the tensor may be written).

    what / error: the caller's name and error class, for the message when `image` is not (H, W, 3) uint8."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise error(f"{what}: image {name} must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    return torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)


def check_pair(x: torch.Tensor, y: torch.Tensor, *, what: str, min_side: int, error: type[UserError]) -> None:
    """`error` unless x and y are (B, 3, H, W) tensors of one shape with H, W >= min_side."""
    if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
        raise error(f"{what} needs two (B, 3, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    check_side(x.shape[2:], min_side, what=what, error=error)


def check_side(size: tuple[int, ...] | torch.Size, min_side: int, *, what: str, error: type[UserError]) -> None:
    """`error` when the smaller of (H, W) is under `min_side`."""
    if min(size) < min_side:
        raise error(f"{what} needs images of at least {min_side}x{min_side}, got {tuple(size)}")


def tap_outputs(stack: nn.Sequential, taps: tuple[int, ...], images: torch.Tensor) -> list[torch.Tensor]:
    """Run `stack` on (B, 3, H, W) `images`; the outputs of the modules at `taps`, (B, C_k, h_k, w_k) each."""
    outputs, features = [], images
    for index, layer in enumerate(stack):
        features = layer(features)
        if index in taps:
            outputs.append(features)
    return outputs


def unit_normalize(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> each pixel's C-vector divided by (its L2 norm + UNIT_NORM_EPS); zero vectors stay zero."""
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + UNIT_NORM_EPS)


def layer_distance(features_x: torch.Tensor, features_y: torch.Tensor, head: nn.Conv2d) -> torch.Tensor:
    """One tap's LPIPS term: (B, C, H, W) raw features twice -> (B,) = mean over pixels of sum_c w_c (x^_c - y^_c)^2,
    x^ and y^ unit-normalised over channels."""
    squared = (unit_normalize(features_x) - unit_normalize(features_y)).pow(2)
    return head(squared).mean(dim=(1, 2, 3))  # head: (B, 1, H, W); spatial average


class LPIPS(nn.Module):
    """LPIPS v0.1, VGG16; frozen, in eval mode.

    forward(x, y): (B, 3, H, W) float RGB in [0, 1] each, H, W >= MIN_SIDE -> (B,) distances >= 0, 0 for identical
    inputs. Gradients flow to the inputs. backbone / heads: file paths; "" = `default_backbone_path()` /
    `default_heads_path()`.
    """

    def __init__(self, *, backbone: str = "", heads: str = "") -> None:
        super().__init__()
        trunk_state = load_backbone_state(Path(backbone) if backbone else default_backbone_path())
        head_weights = load_heads(Path(heads) if heads else default_heads_path())
        with torch.device("meta"):  # built without memory or init, then given the file's tensors
            self.features_stack = build(TRUNK.layers, TRUNK.taps[-1] + 1)
        self.features_stack.load_state_dict(trunk_state, strict=True, assign=True)
        self.tap_indices = TRUNK.taps
        self.heads = nn.ModuleList(nn.Conv2d(w.shape[1], 1, kernel_size=1, bias=False) for w in head_weights)
        with torch.no_grad():
            for head, weight in zip(self.heads, head_weights):
                head.weight.copy_(weight)
        self.register_buffer("shift", torch.tensor(SCALING_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALING_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> the five raw (not normalised) taps, (B, 64, H, W) ... (B, 512, H/16, W/16)."""
        scaled = (images * 2.0 - 1.0 - self.shift) / self.scale  # [0, 1] -> [-1, 1] -> scaling layer
        return tap_outputs(self.features_stack, self.tap_indices, scaled)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_pair(x, y, what="LPIPS", min_side=MIN_SIDE, error=LPIPSError)
        batch = x.shape[0]
        taps = self.features(torch.cat([x, y]))  # one trunk pass for both images
        return sum(layer_distance(t[:batch], t[batch:], head) for t, head in zip(taps, self.heads))


def lpips_distance(a_uint8: np.ndarray, b_uint8: np.ndarray, *, model: LPIPS) -> float:
    """LPIPS between two (H, W, 3) uint8 RGB images of one size (a float >= 0), on the model's device."""
    tensors = [image_tensor(image, name, model.shift.device, what="lpips_distance", error=LPIPSError)
               for name, image in (("a", a_uint8), ("b", b_uint8))]  # (1, 3, H, W) in [0, 1] each
    with torch.no_grad():
        return float(model(*tensors)[0])
