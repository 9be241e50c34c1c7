"""ST-LPIPS (shift-tolerant LPIPS, AlexNet and VGG16 variants): a learned perceptual distance, computed offline.

Ghildyal & Liu, "Shift-tolerant Perceptual Similarity Metric", ECCV 2022. The weights ship in the PyPI wheel
`stlpips-pytorch==0.0.2` as `stlpips_pytorch/weights/vST0.0/{alex,vgg}_shift_tolerant.pth`: a trunk plus five linear
heads, trained on BAPPS human 2AFC similarity judgements (not ImageNet classification). Importing that package pulls
torchvision, so this module only reads its weight files (found by mgsrgan.io.weightfiles) and rebuilds the networks
(trunk layer lists in mgsrgan.models.trunks); the architectures below follow the package's source
(`invariant_networks.alexnet / vggnet(variant="shift_tolerant")`, `models_lpf/vgg.py`, `models_lpf/downsample.py`,
`stlpips.LPIPS.forward`), which is also what its README constructor
`LPIPS(net="alex" | "vgg", variant="shift_tolerant")` runs:

1. input in [-1, 1], then the LPIPS scaling layer `(v - shift) / scale` (shift/scale are stored in the weight file;
   the package applies it because its `version` argument defaults to "0.1"; passing version="0.0" skips it and moves
   the VGG distances by up to 0.064 on the fixture pairs, so that is not the README's metric);
2. the trunk, every stride-2 step replaced by an anti-aliased "blur pool": a fixed 3x3 binomial blur
   ([1,2,1] outer [1,2,1] / 16) applied with stride 2 after *reflection* padding of 2 on every side (the package's
   `pad_more=True`; a plain blur pool pads 1), after a stride-1 max pool where the classic net had a max pool:
   - "vgg": VGG16 convolutions (3x3, zero padding 1, ReLU); each 2x2/stride-2 max pool -> 2x2/stride-1 max pool +
     blur; taps after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (widths 64, 128, 256, 512, 512);
   - "alex": AlexNet (conv 11x11 pad 2 -> 64, 5x5 pad 2 -> 192, then 3x3 pad 1 -> 384, 256, 256) with the first
     conv at stride 1 (not 4) followed by a blur with stride 2 *before* its ReLU, and each 3x3/stride-2 max pool ->
     3x3/stride-1 max pool + blur; taps after the five ReLUs (widths 64, 192, 384, 256, 256); the trailing max pool
     of AlexNet's `features` is not used (nothing is tapped after it, and the weight file has no tensor for it);
3. each tap is unit-normalised over channels (`f / (||f||_2 + 1e-10)`), the squared difference goes through a 1x1
   conv head (no bias, non-negative weights), is averaged over space and summed over the five layers.

Checked against the package itself (`tools/make_stlpips_reference.py` writes the fixtures
`tests/fixtures/stlpips_reference.json` and `stlpips_alex_reference.json`; tests/test_stlpips.py compares every pair
and layer term). A *plain* VGG16 trunk (torchvision layout: 2x2/stride-2 max pooling, no blur) loaded with the same
weights is not this metric: it is far less tolerant of a 1-pixel shift. The AlexNet and VGG scales differ: compare a
column with itself, not across trunks.

Images smaller than the trunk's `min_side` on a side are rejected (18 for vgg, 21 for alex): the reflection padding
of 2 needs at least 3 pixels at every blur.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from mgsrgan.errors import STLPIPSError
from mgsrgan.evaluate.lpips import check_heads, check_pair, image_tensor, tap_outputs, unit_normalize
from mgsrgan.evaluate.lpips import check_side as check_min_side
from mgsrgan.io.weightfiles import default_weight_path
from mgsrgan.models.trunks import (ST_ALEXNET, ST_VGG16, Trunk, build, load_stlpips_state, stlpips_key, tap_widths,
                                   trunk_shapes)

# The two shift-tolerant trunks (layer lists in mgsrgan.models.trunks, after the package's source); their taps are
# the last layer of each package slice net.slice1..5.
TRUNKS = {"vgg": ST_VGG16, "alex": ST_ALEXNET}
NETS = tuple(TRUNKS)
# Smallest H or W the VGG trunk accepts: each blur pool maps s -> s // 2 + 1 and needs s - 1 >= BLUR_PAD + 1 after
# the 2x2 stride-1 max pool (reflection padding must be smaller than the input); four pools: 18 -> 10 -> 6 -> 4 -> 3.
MIN_SIDE = 18
# Smallest H or W the AlexNet trunk accepts: conv1 (11x11, pad 2) s -> s - 6, blur -> (s - 5) // 2 + 1, then twice
# a 3x3 stride-1 max pool (-2; must leave >= 3 for the reflection padding) and a blur -> (s - 1) // 2 + 1:
# 21 -> 15 -> 9 -> 7 -> 5 -> 3 -> 3; at 20 the last max pool leaves 2.
ALEX_MIN_SIDE = 21
MIN_SIDES = {"vgg": MIN_SIDE, "alex": ALEX_MIN_SIDE}


def trunk_of(net: str) -> Trunk:
    if net not in TRUNKS:
        raise ValueError(f"ST-LPIPS net must be one of {NETS}, got {net!r}")
    return TRUNKS[net]


def package_key_names(net: str = "vgg") -> dict[str, str]:
    """Map each tensor name in the package's state dict for `net` to its name in `STLPIPS`.

    The package files the layers of one flat `features` list under `net.slice1..5` (split after each tap) with their
    index in that list, which is the index in `features_stack` too (`mgsrgan.models.trunks.stlpips_key`).
    """
    trunk = trunk_of(net)
    names = {"scaling_layer.shift": "input_shift", "scaling_layer.scale": "input_scale"}
    names.update({stlpips_key(trunk, key): f"features_stack.{key}" for key in trunk_shapes(trunk)})
    for head in range(len(trunk.taps)):
        names[f"lin{head}.model.1.weight"] = f"heads.{head}.weight"  # model.0 is a Dropout (no tensors)
    return names


class STLPIPS(nn.Module):
    """ST-LPIPS distance with the shift-tolerant `net` trunk ("vgg": VGG16, "alex": AlexNet); frozen, in eval mode.

    forward(x, y): x, y (B, 3, H, W) float RGB in [0, 1] (H, W >= self.min_side: 18 vgg, 21 alex) -> (B,) float
    distances, >= 0, 0 for identical inputs; typical values (vgg) 0.01 (1-pixel shift) to 0.8 (unrelated 64x64 crops).
    Inputs are mapped to the package's [-1, 1] convention with 2 * x - 1 (its `normalize=True`; its `utils.im2tensor`
    gives the same from uint8: u / 127.5 - 1). Gradients flow to the inputs, so it can also serve as a loss.
    path: the weight file; "" = `default_weight_path(net)`.
    """

    def __init__(self, *, net: str = "vgg", path: str = "") -> None:
        super().__init__()
        trunk = trunk_of(net)
        self.net, self.min_side, self.tap_indices = net, MIN_SIDES[net], trunk.taps
        with torch.device("meta"):  # built without memory or init, then given the file's tensors
            self.features_stack = build(trunk.layers, trunk.taps[-1] + 1)
            self.heads = nn.ModuleList(nn.Conv2d(width, 1, kernel_size=1, bias=False) for width in tap_widths(trunk))
            self.register_buffer("input_shift", torch.zeros(1, 3, 1, 1))
            self.register_buffer("input_scale", torch.ones(1, 3, 1, 1))
        self._load(Path(path) if path else default_weight_path(net), trunk)
        self.requires_grad_(False)
        self.eval()

    def _load(self, path: Path, trunk: Trunk) -> None:
        what = f"the {self.net} shift-tolerant ST-LPIPS weights"
        features, others = load_stlpips_state(path, trunk, what=what, error=STLPIPSError)
        check_heads(path, {k: v for k, v in others.items() if k.startswith("lin")}, tap_widths(trunk), what=what,
                    error=STLPIPSError)
        filed = {**{stlpips_key(trunk, key): tensor for key, tensor in features.items()}, **others}
        names = package_key_names(self.net)
        self.load_state_dict({names[key]: tensor for key, tensor in filed.items()}, strict=True, assign=True)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) scaled input -> the five unit-normalised taps, (B, C_k, h_k, w_k) each (the package's
        `utils.normalize_tensor`: same eps as LPIPS's)."""
        return [unit_normalize(tap) for tap in tap_outputs(self.features_stack, self.tap_indices, images)]

    def scaled(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> the trunk's input: the package's [-1, 1], then its scaling layer."""
        return (images * 2.0 - 1.0 - self.input_shift) / self.input_scale

    def layer_terms(self, taps_x: list[torch.Tensor], taps_y: list[torch.Tensor]) -> list[torch.Tensor]:
        """The five per-tap terms, (B,) each (the package's `retPerLayer` values): mean over pixels of
        sum_c w_c (x_c - y_c)^2 on unit-normalised taps; a batch of 1 on either side broadcasts."""
        terms = []
        for head, tap_x, tap_y in zip(self.heads, taps_x, taps_y):
            squared = (tap_x - tap_y).pow(2)  # (B, C, h, w)
            terms.append(head(squared).mean(dim=(1, 2, 3)))  # head: (B, 1, h, w); spatial average
        return terms

    def compare(self, taps_x: list[torch.Tensor], taps_y: list[torch.Tensor]) -> torch.Tensor:
        """Distances (B,) between two lists of `features` taps of one shape: the sum of `layer_terms`, added in
        tap order as the package does."""
        distance = torch.zeros((), dtype=taps_x[0].dtype, device=taps_x[0].device)
        for term in self.layer_terms(taps_x, taps_y):
            distance = distance + term
        return distance

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_pair(x, y, what="ST-LPIPS", min_side=self.min_side, error=STLPIPSError)
        batch = x.shape[0]
        taps = self.features(self.scaled(torch.cat([x, y])))
        return self.compare([t[:batch] for t in taps], [t[batch:] for t in taps])


def check_side(size: tuple[int, ...] | torch.Size, min_side: int = MIN_SIDE) -> None:
    """STLPIPSError when the smaller of (H, W) is under `min_side` (the trunk's `min_side`; default the VGG one)."""
    check_min_side(size, min_side, what="ST-LPIPS", error=STLPIPSError)


def _uint8_tensor(image: np.ndarray, name: str, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1] on `device`."""
    return image_tensor(image, name, device, what="ST-LPIPS", error=STLPIPSError)


def stlpips_distance(a_uint8: np.ndarray, b_uint8: np.ndarray, *, model: STLPIPS | None = None,
                     net: str | None = None) -> float:
    """ST-LPIPS between two (H, W, 3) uint8 RGB images of one size (a float >= 0).

    Loads the default `net` weights (None = "vgg"; about 0.5 s) unless `model` is given; pass one when scoring many
    pairs. Giving both `model` and a `net` it was not built with is a ValueError.
    """
    if model is None:
        model = STLPIPS(net=net or "vgg")
    elif net is not None and net != model.net:
        raise ValueError(f"stlpips_distance: net={net!r} but the model given is the {model.net!r} one")
    device = model.input_shift.device
    a, b = _uint8_tensor(a_uint8, "a", device), _uint8_tensor(b_uint8, "b", device)
    with torch.no_grad():
        return float(model(a, b)[0])


class ReferenceSTLPIPS:
    """ST-LPIPS (either trunk: the model's) as a PairDistance (sr, hr) for tables that score many SR images against
    the same HR.

    The trunk pass over the HR image is the cost (vgg: ~1 s for a 481x321 BSD100 image on 2 CPU cores; alex about
    0.4x that) and evaluate_image scores every row of a table against one HR: the HR's taps are kept while the next
    call brings an HR with equal pixels, so a table of R rows costs R + 1 passes per image instead of 2R. Equal to
    stlpips_distance to float rounding (the two images go through the trunk separately instead of as one batch).
    """

    def __init__(self, model: STLPIPS) -> None:
        self.model = model
        self._reference: np.ndarray | None = None  # a private copy of the last HR, compared pixel for pixel
        self._taps: list[torch.Tensor] = []

    def __call__(self, sr_uint8: np.ndarray, hr_uint8: np.ndarray) -> float:
        device = self.model.input_shift.device
        sr = _uint8_tensor(sr_uint8, "sr", device)
        if sr_uint8.shape != hr_uint8.shape:
            raise STLPIPSError(f"ST-LPIPS needs two images of one size, got {sr_uint8.shape} and {hr_uint8.shape}")
        check_side(sr.shape[2:], self.model.min_side)
        with torch.no_grad():
            if self._reference is None or not np.array_equal(self._reference, hr_uint8):
                self._taps = self.model.features(self.model.scaled(_uint8_tensor(hr_uint8, "hr", device)))
                self._reference = hr_uint8.copy()
            return float(self.model.compare(self.model.features(self.model.scaled(sr)), self._taps)[0])
