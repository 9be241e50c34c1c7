"""Feature trunks as data: one layer-spec language, one builder, the VGG and ST-LPIPS specs, strict state-dict loading.

A trunk is a flat list of layers (`Conv`, `MaxPool`, `Blur`, `ReLU`); `build` turns it into an nn.Sequential in
which module i is layer i, so its state-dict keys are `<i>.weight` / `<i>.bias` (convs) and `<i>.filt` (blur pools).
The lists reproduce the weight files' own flat layouts, so a file's tensors load key for key:

- plain VGG16 / VGG19 (Simonyan & Zisserman 2015, configs D / E): torchvision's `vgg16().features` /
  `vgg19().features` (3x3 conv with zero padding 1, ReLU, one 2x2/stride-2 max pool per block); the files
  (vgg16-397923af.pth, vgg19-dcbb9e9d.pth) name them `features.<i>.*` and add `classifier.*`, dropped on purpose.
- ST VGG16, the trunk of ST-LPIPS (Ghildyal & Liu 2022, `stlpips-pytorch==0.0.2`, vgg_shift_tolerant.pth; package
  `models_lpf/vgg.py`): each 2x2/stride-2 max pool becomes a 2x2/stride-1 max pool then a blur pool, so a pool takes
  two slots. The package cuts one flat `features` list into `net.slice1..5` after each tap and keeps the flat index,
  `net.slice<k>.<i>.*`: i is the index here too. The file adds `scaling_layer.{shift,scale}` and heads `lin<k>.*`.
- ST AlexNet (same package, `invariant_networks.alexnet(variant="shift_tolerant")`, alex_shift_tolerant.pth):
  conv1 at stride 1 followed by a blur pool before its ReLU, each 3x3/stride-2 max pool -> 3x3/stride-1 max pool +
  blur pool; same file layout.

Blur pool (Zhang 2019 "Making CNNs shift-invariant again"; package `Downsample(filt_size=3, pad_more=True)`): reflect
padding 2 on every side, depthwise [1,2,1] outer [1,2,1] / 16 blur with stride 2.
Loading is strict: every expected tensor present with its shape, nothing unexplained; errors name the file.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mgsrgan.errors import UserError, VGGWeightsError

# Convs per block: VGG19 = config E, VGG16 = config D (Simonyan & Zisserman 2015, table 1).
VGG19_BLOCKS = (2, 2, 4, 4, 4)
VGG16_BLOCKS = (2, 2, 3, 3, 3)
BLOCK_WIDTHS = (64, 128, 256, 512, 512)  # output channels of each block's convs (same table)
BLUR_TAPS = (1.0, 2.0, 1.0)  # ST-LPIPS anti-aliasing filter, filt_size=3 (models_lpf/downsample.py in the package)
BLUR_PAD = len(BLUR_TAPS) - 1  # reflect padding per side: pad_more=True gives filt_size - 1 (same file)
BLUR_STRIDE = 2  # the blur pool is the stride-2 step the max pool no longer takes (same file)
SCALING_KEYS = ("scaling_layer.shift", "scaling_layer.scale")  # LPIPS ScalingLayer tensors in ST-LPIPS files


def layer_names(blocks: tuple[int, ...]) -> tuple[str, ...]:
    """phi_{i,j} names "i_j": block i (1..5), conv j within it."""
    return tuple(f"{i}_{j}" for i, count in enumerate(blocks, start=1) for j in range(1, count + 1))


VGG19_LAYERS = layer_names(VGG19_BLOCKS)
VGG16_LAYERS = layer_names(VGG16_BLOCKS)


def _blur_kernel() -> torch.Tensor:
    taps = torch.tensor(BLUR_TAPS)
    kernel = taps[:, None] * taps[None, :]
    return kernel / kernel.sum()


# made once at import, on the CPU, so modules built under torch.device("meta") copy it instead of computing it
BLUR_KERNEL = _blur_kernel()  # (3, 3), sums to 1


@dataclass(frozen=True)
class Conv:
    """nn.Conv2d(in_channels, out_channels, kernel x kernel, stride 1, zero padding `padding`), with bias."""
    in_channels: int
    out_channels: int
    kernel: int
    padding: int


@dataclass(frozen=True)
class MaxPool:
    """nn.MaxPool2d(kernel, stride), no padding: (H, W) -> ((H - kernel) // stride + 1, (W - kernel) // stride + 1)."""
    kernel: int
    stride: int


@dataclass(frozen=True)
class Blur:
    """BlurDownsample(channels), the anti-aliased stride-2 step."""
    channels: int


@dataclass(frozen=True)
class ReLU:
    """nn.ReLU()."""


Layer = Conv | MaxPool | Blur | ReLU


@dataclass(frozen=True)
class Trunk:
    """A flat layer list and its taps: the indices whose outputs the perceptual metrics compare, the last ReLU of each
    stage (LPIPS's taps, Zhang et al. 2018 sec. 3; the ST-LPIPS package ends its slices net.slice1..5 there)."""
    layers: tuple[Layer, ...]
    taps: tuple[int, ...]


@functools.cache
def vgg_trunk(blocks: tuple[int, ...], *, anti_aliased: bool) -> Trunk:
    """Plain VGG (torchvision's `features`) or the anti-aliased ST-LPIPS one, with every block's pool."""
    layers: list[Layer] = []
    taps, in_channels = [], 3
    for count, width in zip(blocks, BLOCK_WIDTHS):
        for _ in range(count):
            layers += [Conv(in_channels, width, kernel=3, padding=1), ReLU()]
            in_channels = width
        taps.append(len(layers) - 1)
        # torchvision: MaxPool2d(2, 2); the ST package (models_lpf/vgg.py): MaxPool2d(2, stride=1), then Downsample
        layers += [MaxPool(2, stride=1), Blur(in_channels)] if anti_aliased else [MaxPool(2, stride=2)]
    return Trunk(tuple(layers), tuple(taps))


ST_VGG16 = vgg_trunk(VGG16_BLOCKS, anti_aliased=True)
# Package `invariant_networks.alexnet(variant="shift_tolerant")` ("antialiased_blurpoolReflectionPad2_conv1stride1_
# blurAfter"), features[0:15]; its slices end at the five ReLUs. The trailing max pool of its `features` is left out:
# nothing is tapped after it and the file has no tensor for it.
ST_ALEXNET = Trunk(
    (Conv(3, 64, kernel=11, padding=2), Blur(64), ReLU(),  # slice1: 0..2
     MaxPool(3, stride=1), Blur(64), Conv(64, 192, kernel=5, padding=2), ReLU(),  # slice2: 3..6
     MaxPool(3, stride=1), Blur(192), Conv(192, 384, kernel=3, padding=1), ReLU(),  # slice3: 7..10
     Conv(384, 256, kernel=3, padding=1), ReLU(),  # slice4: 11..12
     Conv(256, 256, kernel=3, padding=1), ReLU()),  # slice5: 13..14
    taps=(2, 6, 10, 12, 14))


class BlurDownsample(nn.Module):
    """Blur pool: (B, C, H, W) -> (B, C, (H + 1) // 2 + 1, (W + 1) // 2 + 1); needs H, W >= 3 (reflection padding 2).

    The filter is a buffer named `filt` because the ST-LPIPS files store it under that name (and so it is loaded and
    checked like every other tensor).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("filt", BLUR_KERNEL.expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (BLUR_PAD,) * 4, mode="reflect")
        return F.conv2d(padded, self.filt, stride=BLUR_STRIDE, groups=x.shape[1])


def _module(layer: Layer) -> nn.Module:
    match layer:
        case Conv(in_channels, out_channels, kernel, padding):
            return nn.Conv2d(in_channels, out_channels, kernel, padding=padding)
        case MaxPool(kernel, stride):
            return nn.MaxPool2d(kernel, stride=stride)
        case Blur(channels):
            return BlurDownsample(channels)
        case ReLU():
            return nn.ReLU()
    raise TypeError(f"not a trunk layer: {layer!r}")


def build(layers: Sequence[Layer], length: int | None = None) -> nn.Sequential:
    """nn.Sequential of `layers[:length]` (all when None); module i is layer i: keys `<i>.weight/bias/filt`."""
    return nn.Sequential(*(_module(layer) for layer in layers[:length]))


def layer_index(blocks: tuple[int, ...], *, anti_aliased: bool) -> dict[str, tuple[int, int]]:
    """Per layer name "i_j", the index of its conv and of its ReLU in `vgg_trunk(blocks, anti_aliased=...)`."""
    layers = vgg_trunk(blocks, anti_aliased=anti_aliased).layers
    convs = [index for index, layer in enumerate(layers) if isinstance(layer, Conv)]
    return {name: (conv, conv + 1) for name, conv in zip(layer_names(blocks), convs)}  # a ReLU follows each conv


def tap_widths(trunk: Trunk) -> tuple[int, ...]:
    """Channels at each tap: the width of the last conv before it."""
    convs = [(index, layer.out_channels) for index, layer in enumerate(trunk.layers) if isinstance(layer, Conv)]
    return tuple([width for index, width in convs if index < tap][-1] for tap in trunk.taps)


def trunk_shapes(trunk: Trunk) -> dict[str, torch.Size]:
    """Tensor name ("0.weight", ...) -> shape, of the trunk up to its last tap (the files stop there).

    Built on the meta device: no memory, no init.
    """
    with torch.device("meta"):
        built = build(trunk.layers, trunk.taps[-1] + 1)
    return {name: tensor.shape for name, tensor in built.state_dict().items()}


def expected_shapes(blocks: tuple[int, ...], *, anti_aliased: bool) -> dict[str, torch.Size]:
    """`trunk_shapes` of `vgg_trunk(blocks, anti_aliased=...)`: up to the last ReLU."""
    return trunk_shapes(vgg_trunk(blocks, anti_aliased=anti_aliased))


def read_state_dict(file: Path, *, what: str = "a PyTorch weight file",
                    error: type[UserError] = VGGWeightsError) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True (no pickled code runs); anything but a flat name -> tensor map is an error.

    what: the file expected, for the message when there is none; error: the caller's error class.
    """
    if not Path(file).is_file():
        raise error(f"{file}: not found (expected {what})")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have many types; all mean "not a weight file we can read"
        raise error(f"{file}: not a readable PyTorch weight file ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise error(f"{file}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def check_exact(file: Path, found: dict[str, torch.Tensor], expected: dict[str, torch.Size], *, what: str,
                prefix: str, foreign: list[str], error: type[UserError] = VGGWeightsError) -> None:
    """Strict key and shape check of a trunk state dict against the full trunk's spec.

    prefix: how the file names trunk keys, for messages; foreign: file keys that fit nowhere.
    """
    missing = [prefix + k for k in expected if k not in found]
    unexpected = foreign + [prefix + k for k in found if k not in expected]
    if missing or unexpected:
        raise error(f"{file}: not {what}: missing keys {missing[:4] or 'none'}, unexpected keys "
                    f"{unexpected[:4] or 'none'} ({len(missing)} missing, {len(unexpected)} unexpected)")
    for key, shape in expected.items():
        if found[key].shape != shape:
            raise error(f"{file}: not {what}: {prefix}{key} has shape {tuple(found[key].shape)}, "
                        f"expected {tuple(shape)}")


def load_torchvision_state(file: Path, blocks: tuple[int, ...], *, what: str,
                           error: type[UserError] = VGGWeightsError) -> dict[str, torch.Tensor]:
    """torchvision vgg16/vgg19 file -> the plain trunk's state dict up to its last ReLU ("0.weight", ...).

    `classifier.*` (the ImageNet head, never used by a feature trunk) is dropped on purpose; any other key is an error.
    """
    trunk, foreign = {}, []
    for key, tensor in read_state_dict(file, what=what, error=error).items():
        if key.startswith("features."):
            trunk[key.removeprefix("features.")] = tensor
        elif not key.startswith("classifier."):
            foreign.append(key)
    check_exact(file, trunk, expected_shapes(blocks, anti_aliased=False), what=what, prefix="features.",
                foreign=foreign, error=error)
    return trunk


def stlpips_key(trunk: Trunk, key: str) -> str:
    """Our "<i>.<name>" -> the ST-LPIPS package's "net.slice<k>.<i>.<name>" (slice k ends at tap k)."""
    index = int(key.split(".")[0])
    return f"net.slice{1 + sum(tap < index for tap in trunk.taps)}.{key}"


def load_stlpips_state(file: Path, trunk: Trunk = ST_VGG16, *, what: str = "ST-LPIPS's VGG16",
                       error: type[UserError] = VGGWeightsError) -> tuple[dict[str, torch.Tensor],
                                                                           dict[str, torch.Tensor]]:
    """ST-LPIPS <net>_shift_tolerant.pth -> (trunk state dict "<i>.<name>", the other tensors by their file names).

    The others are `scaling_layer.{shift,scale}` (checked: (1, 3, 1, 1) each) and the heads `lin<k>.*` (not checked
    here: a feature trunk does not need them, the metric checks them); any other key is an error.
    """
    raw = read_state_dict(file, what=what, error=error)
    found: dict[str, torch.Tensor] = {}
    filed_as, others, foreign = {}, {}, []
    for key, tensor in raw.items():
        parts = key.split(".")
        if parts[0] == "net" and len(parts) == 4 and parts[1].startswith("slice"):
            local = f"{parts[2]}.{parts[3]}"
            if local in found:
                raise error(f"{file}: {local} appears in two slices")
            found[local], filed_as[local] = tensor, key
        elif key.startswith("lin") or key in SCALING_KEYS:
            others[key] = tensor
        else:
            foreign.append(key)
    check_exact(file, found, trunk_shapes(trunk), what=what, prefix="net.slice*.", foreign=foreign, error=error)
    for local, key in filed_as.items():
        if key != stlpips_key(trunk, local):
            raise error(f"{file}: not {what}: {key} should be {stlpips_key(trunk, local)} (slices end at the taps)")
    for key in SCALING_KEYS:
        if key not in others or others[key].shape != (1, 3, 1, 1):
            raise error(f"{file}: not {what}: {key} missing or not of shape (1, 3, 1, 1)")
    return found, others
