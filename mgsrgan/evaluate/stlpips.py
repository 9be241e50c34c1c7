"""ST-LPIPS (shift-tolerant LPIPS, AlexNet and VGG16 variants): a learned perceptual distance, computed offline.

Ghildyal & Liu, "Shift-tolerant Perceptual Similarity Metric", ECCV 2022. The weights ship in the PyPI wheel
`stlpips-pytorch==0.0.2` as `stlpips_pytorch/weights/vST0.0/{alex,vgg}_shift_tolerant.pth`: a trunk plus five linear
heads, trained on BAPPS human 2AFC similarity judgements (not ImageNet classification). Importing that package pulls
torchvision, so this module only reads its weight files and rebuilds the networks; the architectures below follow the
package's source (`invariant_networks.alexnet / vggnet(variant="shift_tolerant")`, `models_lpf/vgg.py`,
`models_lpf/downsample.py`, `stlpips.LPIPS.forward`), which is also what its README constructor
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

Measured against the package itself (`benchmarks/make_stlpips_reference.py`):
- vgg (torch 2.14.1 + torchvision 0.29.1, fixture `tests/fixtures/stlpips_reference.json`): max |difference| 6e-08
  over 8 image pairs (64x64 and 48x80 crops of Set5 / Set14), e.g. 1-pixel shift 0.0123, Gaussian blur (sigma 1)
  0.138, bicubic x4 down-up 0.298, another image 0.793. A *plain* VGG16 trunk (torchvision layout: 2x2/stride-2 max
  pooling, no blur) loaded with the same conv and head weights is not this metric: on the same pairs it gives 1-pixel
  shift 0.0203 (1.66x the ST-LPIPS value), blur 0.142, bicubic 0.372, another image 0.748 (max |difference| 0.074);
  identity is 0 in both.
- alex (torch 2.13.0, the package run with torchvision stubbed out, which its shift-tolerant AlexNet never calls;
  fixture `tests/fixtures/stlpips_alex_reference.json`): max |difference| 1.2e-07 over 11 pairs (the 8 above plus
  61x53, 21x21 and 21x47 crops), each of the five layer terms within 6e-08; e.g. 1-pixel shift 0.0037, Gaussian
  blur 0.181, bicubic x4 down-up 0.411, another image 0.837. Its scale differs from the VGG one: compare a column
  with itself, not across trunks.

Images smaller than the trunk's `min_side` on a side are rejected (18 for vgg, 21 for alex): the reflection padding
of 2 needs at least 3 pixels at every blur.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mgsrgan.errors import UserError

# VGG16 (Simonyan & Zisserman 2015, config D): conv widths per block; LPIPS taps the last ReLU of each block
# (Zhang et al. 2018, sec. 3; same taps in the ST-LPIPS package's `vggnet.forward`).
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
PACKAGE_NAME = "stlpips_pytorch"
# Weight files inside the stlpips-pytorch 0.0.2 wheel (its `LPIPS.__init__` builds weights/vST0.0/<net>_<variant>.pth).
PACKAGE_WEIGHTS = Path("weights") / "vST0.0" / "vgg_shift_tolerant.pth"
ALEX_PACKAGE_WEIGHTS = Path("weights") / "vST0.0" / "alex_shift_tolerant.pth"
INSTALL_HINT = "pip install stlpips-pytorch==0.0.2"
# Blur pool (Zhang 2019 "Making CNNs shift-invariant again"; package `Downsample(filt_size=3, pad_more=True)`):
# 3x3 binomial filter, stride 2, reflection padding filt_size - 1 = 2 on each side.
BLUR_TAPS = (1.0, 2.0, 1.0)
BLUR_PAD = len(BLUR_TAPS) - 1
BLUR_STRIDE = 2
# Package `utils.normalize_tensor`: eps added to the channel norm before dividing.
UNIT_NORM_EPS = 1e-10
# Smallest H or W the VGG trunk accepts: each blur pool maps s -> s // 2 + 1 and needs s - 1 >= BLUR_PAD + 1 after
# the 2x2 stride-1 max pool (reflection padding must be smaller than the input); four pools: 18 -> 10 -> 6 -> 4 -> 3.
MIN_SIDE = 18
# Smallest H or W the AlexNet trunk accepts: conv1 (11x11, pad 2) s -> s - 6, blur -> (s - 5) // 2 + 1, then twice
# a 3x3 stride-1 max pool (-2; must leave >= 3 for the reflection padding) and a blur -> (s - 1) // 2 + 1:
# 21 -> 15 -> 9 -> 7 -> 5 -> 3 -> 3; at 20 the last max pool leaves 2.
ALEX_MIN_SIDE = 21
NETS = ("vgg", "alex")


class STLPIPSError(UserError):
    """The ST-LPIPS weight file is missing or unreadable, or the inputs have the wrong shape."""


# ---- the two trunks, as the package's flat `features` lists ---------------------------------------------------------

@dataclass(frozen=True)
class Conv:
    """nn.Conv2d(in_channels, out_channels, kernel, stride 1, zero padding), with bias."""
    in_channels: int
    out_channels: int
    kernel: int
    padding: int


@dataclass(frozen=True)
class MaxPool:
    """Max pool kernel x kernel with stride 1, no padding: (H, W) -> (H - kernel + 1, W - kernel + 1)."""
    kernel: int


@dataclass(frozen=True)
class Blur:
    """The package's `Downsample(filt_size=3, stride=2, pad_more=True)` on `channels` channels."""
    channels: int


@dataclass(frozen=True)
class ReLU:
    pass


Layer = Conv | MaxPool | Blur | ReLU


@dataclass(frozen=True)
class Trunk:
    """One shift-tolerant trunk: `layers` is the package's flat `features` list up to the last tap (index i of this
    tuple is the index i in its state-dict keys `net.slice<k>.<i>.*`); `taps` are the indices whose outputs the
    metric compares, the last layer of each package slice `net.slice1..5`."""
    net: str
    layers: tuple[Layer, ...]
    taps: tuple[int, ...]
    weights: Path  # relative to the installed package
    min_side: int


def _vgg16_trunk() -> Trunk:
    layers: list[Layer] = []
    taps, in_channels = [], 3
    for block, widths in enumerate(VGG16_BLOCKS):
        if block > 0:  # package `models_lpf/vgg.py`: MaxPool2d(kernel_size=2, stride=1), then Downsample
            layers += [MaxPool(2), Blur(in_channels)]
        for width in widths:
            layers += [Conv(in_channels, width, kernel=3, padding=1), ReLU()]
            in_channels = width
        taps.append(len(layers) - 1)  # relu<block>_<last>
    return Trunk("vgg", tuple(layers), tuple(taps), PACKAGE_WEIGHTS, MIN_SIDE)


# Package `invariant_networks.alexnet(variant="shift_tolerant")` ("antialiased_blurpoolReflectionPad2_conv1stride1_
# blurAfter"), features[0:15]; its slices end at indices 2, 6, 10, 12, 14 (the five ReLUs).
ALEX_TRUNK = Trunk(
    "alex",
    (Conv(3, 64, kernel=11, padding=2), Blur(64), ReLU(),  # slice1: 0..2
     MaxPool(3), Blur(64), Conv(64, 192, kernel=5, padding=2), ReLU(),  # slice2: 3..6
     MaxPool(3), Blur(192), Conv(192, 384, kernel=3, padding=1), ReLU(),  # slice3: 7..10
     Conv(384, 256, kernel=3, padding=1), ReLU(),  # slice4: 11..12
     Conv(256, 256, kernel=3, padding=1), ReLU()),  # slice5: 13..14
    (2, 6, 10, 12, 14), ALEX_PACKAGE_WEIGHTS, ALEX_MIN_SIDE)
TRUNKS = {"vgg": _vgg16_trunk(), "alex": ALEX_TRUNK}


def trunk_of(net: str) -> Trunk:
    if net not in TRUNKS:
        raise ValueError(f"ST-LPIPS net must be one of {NETS}, got {net!r}")
    return TRUNKS[net]


def default_weight_path(net: str = "vgg") -> Path:
    """Path of `<net>_shift_tolerant.pth` in the installed stlpips-pytorch wheel, found without importing the
    package; STLPIPSError when it is not installed."""
    relative = trunk_of(net).weights
    spec = importlib.util.find_spec(PACKAGE_NAME)  # top-level name: locates the package, runs none of its code
    locations = [] if spec is None or spec.submodule_search_locations is None else spec.submodule_search_locations
    for location in locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise STLPIPSError(f"ST-LPIPS weights not found ({PACKAGE_NAME}/{relative.as_posix()}): "
                       f"run `{INSTALL_HINT}` or pass path= to the .pth file")


class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 step: reflection pad 2, depthwise 3x3 binomial blur with stride 2.

    (B, C, H, W) -> (B, C, (H + 1) // 2 + 1, (W + 1) // 2 + 1); needs H, W >= 3 (reflection padding of 2).
    The blur kernel is a buffer so that it is loaded (and checked) from the weight file like every other tensor.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor(BLUR_TAPS)
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("kernel", (kernel / kernel.sum()).expand(channels, 1, -1, -1).clone())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        padded = F.pad(features, (BLUR_PAD,) * 4, mode="reflect")
        return F.conv2d(padded, self.kernel, stride=BLUR_STRIDE, groups=features.shape[1])


def package_key_names(net: str = "vgg") -> dict[str, str]:
    """Map each tensor name in the package's state dict for `net` to its name in `STLPIPS`.

    The package files the layers of one flat `features` list under `net.slice1..5` (split after each tapped ReLU) with
    their index in that list; we walk the same list to reproduce the names, so a file with any other layout fails the
    strict load instead of being silently half-loaded.
    """
    trunk = trunk_of(net)
    names = {"scaling_layer.shift": "input_shift", "scaling_layer.scale": "input_scale"}
    conv_index, blur_index = 0, 0
    for index, layer in enumerate(trunk.layers):
        slice_name = f"net.slice{1 + sum(tap < index for tap in trunk.taps)}"
        if isinstance(layer, Conv):
            names[f"{slice_name}.{index}.weight"] = f"convs.{conv_index}.weight"
            names[f"{slice_name}.{index}.bias"] = f"convs.{conv_index}.bias"
            conv_index += 1
        elif isinstance(layer, Blur):
            names[f"{slice_name}.{index}.filt"] = f"blur_pools.{blur_index}.kernel"
            blur_index += 1
    for head in range(len(trunk.taps)):
        names[f"lin{head}.model.1.weight"] = f"heads.{head}.weight"  # model.0 is a Dropout (no tensors)
    return names


def _tap_widths(trunk: Trunk) -> list[int]:
    """Channels of each tap: the width of the last conv before it."""
    widths, width = [], 3
    for index, layer in enumerate(trunk.layers):
        if isinstance(layer, Conv):
            width = layer.out_channels
        if index in trunk.taps:
            widths.append(width)
    return widths


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
        self.trunk = trunk_of(net)
        self.net, self.min_side = net, self.trunk.min_side
        self.register_buffer("input_shift", torch.zeros(1, 3, 1, 1))
        self.register_buffer("input_scale", torch.ones(1, 3, 1, 1))
        layers = self.trunk.layers
        self.convs = nn.ModuleList(nn.Conv2d(c.in_channels, c.out_channels, kernel_size=c.kernel, padding=c.padding)
                                   for c in layers if isinstance(c, Conv))
        self.blur_pools = nn.ModuleList(BlurDownsample(b.channels) for b in layers if isinstance(b, Blur))
        self.heads = nn.ModuleList(nn.Conv2d(width, 1, kernel_size=1, bias=False) for width in _tap_widths(self.trunk))
        self._load(Path(path) if path else default_weight_path(net))
        self.requires_grad_(False)
        self.eval()

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise STLPIPSError(f"{path}: ST-LPIPS weight file not found (`{INSTALL_HINT}` installs it)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # pickle/zip errors come in many types; all mean "not this weight file"
            raise STLPIPSError(f"{path}: not a readable ST-LPIPS weight file "
                               f"({type(error).__name__}: {error})") from None
        if not isinstance(state, dict):
            raise STLPIPSError(f"{path}: not an ST-LPIPS weight file (holds a {type(state).__name__}, "
                               "not a state dict)")
        names = package_key_names(self.net)
        missing, unexpected = sorted(set(names) - set(state)), sorted(set(state) - set(names))
        if missing or unexpected:
            raise STLPIPSError(f"{path}: not the {self.net} shift-tolerant ST-LPIPS weights "
                               f"(missing keys {missing[:3]}, unexpected keys {unexpected[:3]})")
        try:
            self.load_state_dict({names[key]: tensor for key, tensor in state.items()}, strict=True)
        except RuntimeError as error:  # shape mismatch
            raise STLPIPSError(f"{path}: tensor shapes do not match the {self.net} ST-LPIPS layout "
                               f"({error})") from None

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) scaled input -> the five unit-normalised taps, (B, C_k, h_k, w_k) each."""
        taps, conv_index, blur_index, features = [], 0, 0, images
        for index, layer in enumerate(self.trunk.layers):
            if isinstance(layer, Conv):
                features = self.convs[conv_index](features)
                conv_index += 1
            elif isinstance(layer, Blur):
                features = self.blur_pools[blur_index](features)
                blur_index += 1
            elif isinstance(layer, MaxPool):
                features = F.max_pool2d(features, kernel_size=layer.kernel, stride=1)
            else:
                features = F.relu(features)
            if index in self.trunk.taps:
                norm = features.pow(2).sum(dim=1, keepdim=True).sqrt()
                taps.append(features / (norm + UNIT_NORM_EPS))
        return taps

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
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise STLPIPSError(f"ST-LPIPS needs two (B, 3, H, W) tensors of one shape, got {tuple(x.shape)} "
                               f"and {tuple(y.shape)}")
        check_side(x.shape[2:], self.min_side)
        batch = x.shape[0]
        taps = self.features(self.scaled(torch.cat([x, y])))
        return self.compare([t[:batch] for t in taps], [t[batch:] for t in taps])


def check_side(size: tuple[int, ...] | torch.Size, min_side: int = MIN_SIDE) -> None:
    """STLPIPSError when the smaller of (H, W) is under `min_side` (the trunk's `min_side`; default the VGG one)."""
    if min(size) < min_side:
        raise STLPIPSError(f"ST-LPIPS needs images of at least {min_side}x{min_side}, got {tuple(size)}")


def _uint8_tensor(image: np.ndarray, name: str, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1] on `device` (a copy, so the tensor may be written)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise STLPIPSError(f"ST-LPIPS: image {name} must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    return torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)


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
