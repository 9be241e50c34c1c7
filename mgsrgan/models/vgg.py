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

Input of every trunk: (B, 3, H, W) float RGB in [0, 1]; output: phi_{i,j}, (B, C, H', W') float.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mgsrgan.errors import UserError

log = logging.getLogger(__name__)

# phi_{i,j} names: block i (1..5), conv j within it. VGG19 = config E, VGG16 = config D (Simonyan & Zisserman 2015).
VGG19_BLOCKS = (2, 2, 4, 4, 4)
VGG16_BLOCKS = (2, 2, 3, 3, 3)
VGG19_LAYERS = tuple(f"{i}_{j}" for i, n in enumerate(VGG19_BLOCKS, start=1) for j in range(1, n + 1))
VGG16_LAYERS = tuple(f"{i}_{j}" for i, n in enumerate(VGG16_BLOCKS, start=1) for j in range(1, n + 1))
BLOCK_WIDTHS = (64, 128, 256, 512, 512)  # output channels of each block's convs (Simonyan & Zisserman 2015, table 1)

# ImageNet RGB mean / std of torchvision's pretrained models (torchvision docs, "Models and pre-trained weights").
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0  # fixed so "random" trunks are identical across runs (tests compare values)
BLUR_TAPS = (1.0, 2.0, 1.0)  # ST-LPIPS anti-aliasing filter, filt_size=3 (models_lpf/downsample.py in the package)
BLUR_PAD = 2  # reflect padding per side before the blur: pad_more=True gives filt_size - 1 (same file)


def _blur_kernel() -> torch.Tensor:
    taps = torch.tensor(BLUR_TAPS)
    kernel = taps[:, None] * taps[None, :]
    return kernel / kernel.sum()


# made once at import, on the CPU, so modules built under torch.device("meta") copy it instead of computing it
BLUR_KERNEL = _blur_kernel()  # (3, 3), sums to 1


class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 step of ST-LPIPS (Zhang 2019 "Making CNNs shift-invariant again").

    (B, C, H, W) -> (B, C, floor((H + 2*BLUR_PAD - 3) / 2) + 1, ...): reflect pad, depthwise [1,2,1]^2/16 blur.
    The filter is a buffer named `filt` because the weight file stores it under that name.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("filt", BLUR_KERNEL.expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (BLUR_PAD,) * 4, mode="reflect")
        return F.conv2d(padded, self.filt, stride=2, groups=x.shape[1])


def layer_index(blocks: tuple[int, ...], *, anti_aliased: bool) -> dict[str, tuple[int, int]]:
    """Per layer name "i_j", the `features` Sequential index of its conv and of its ReLU.

    Plain (torchvision layout): conv, ReLU, ..., one MaxPool(2, 2) after each block. Anti-aliased (ST-LPIPS
    layout): MaxPool(2, stride 1) then BlurDownsample, so every pool takes two slots.
    """
    index, position = {}, 0
    for block, count in enumerate(blocks, start=1):
        for j in range(1, count + 1):
            index[f"{block}_{j}"] = (position, position + 1)
            position += 2
        position += 2 if anti_aliased else 1
    return index


def build_trunk(blocks: tuple[int, ...], *, anti_aliased: bool, length: int | None = None) -> nn.Sequential:
    """The VGG `features` stack (layout as in `layer_index`), cut after its first `length` modules."""
    layers: list[nn.Module] = []
    in_ch = 3
    for count, width in zip(blocks, BLOCK_WIDTHS):
        for _ in range(count):
            layers += [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU()]
            in_ch = width
        layers += [nn.MaxPool2d(2, stride=1), BlurDownsample(in_ch)] if anti_aliased else [nn.MaxPool2d(2, 2)]
        if length is not None and len(layers) >= length:
            break
    return nn.Sequential(*layers[:length])


def expected_shapes(blocks: tuple[int, ...], *, anti_aliased: bool) -> dict[str, torch.Size]:
    """Tensor name -> shape of the trunk's state dict ("0.weight", ...) up to its last ReLU (the files stop there).

    Built on the meta device: no memory, no init.
    """
    last_relu = max(relu for _, relu in layer_index(blocks, anti_aliased=anti_aliased).values())
    with torch.device("meta"):
        full = build_trunk(blocks, anti_aliased=anti_aliased, length=last_relu + 1)
    return {name: tensor.shape for name, tensor in full.state_dict().items()}


def read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True (no pickled code runs); anything but a flat name -> tensor map is an error."""
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have many types; all mean "not a weight file we can read"
        raise VGGWeightsError(f"{file}: not a readable PyTorch weight file ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VGGWeightsError(f"{file}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def check_exact(file: Path, found: dict[str, torch.Tensor], expected: dict[str, torch.Size], *, what: str,
                prefix: str, foreign: list[str]) -> None:
    """Strict key and shape check of a trunk state dict against the full trunk's spec.

    prefix: how the file names trunk keys, for messages; foreign: file keys that fit nowhere.
    """
    missing = [prefix + k for k in expected if k not in found]
    unexpected = foreign + [prefix + k for k in found if k not in expected]
    if missing or unexpected:
        raise VGGWeightsError(f"{file}: not {what}: missing keys {missing[:4] or 'none'}, unexpected keys "
                              f"{unexpected[:4] or 'none'} ({len(missing)} missing, {len(unexpected)} unexpected)")
    for key, shape in expected.items():
        if found[key].shape != shape:
            raise VGGWeightsError(f"{file}: not {what}: {prefix}{key} has shape {tuple(found[key].shape)}, "
                                  f"expected {tuple(shape)}")


def load_imagenet_state(file: Path) -> dict[str, torch.Tensor]:
    """torchvision vgg19 file -> the full trunk's state dict ("0.weight", ...); `classifier.*` dropped on purpose."""
    raw = read_state_dict(file)
    trunk, foreign = {}, []
    for key, tensor in raw.items():
        if key.startswith("features."):
            trunk[key.removeprefix("features.")] = tensor
        elif not key.startswith("classifier."):  # classifier.*: the ImageNet head, never used by the content loss
            foreign.append(key)
    check_exact(file, trunk, expected_shapes(VGG19_BLOCKS, anti_aliased=False), what="torchvision's VGG19",
                prefix="features.", foreign=foreign)
    return trunk


def load_stlpips_state(file: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """ST-LPIPS vgg_shift_tolerant.pth -> (full trunk state dict, mean (1,3,1,1), std (1,3,1,1)).

    Keys are `net.slice<k>.<index>.{weight,bias,filt}` (index into the flat anti-aliased VGG16 stack), plus
    `scaling_layer.{shift,scale}` and the linear heads `lin<k>.*`, which are dropped on purpose (they score
    distances; the content loss only needs the trunk).
    """
    raw = read_state_dict(file)
    trunk: dict[str, torch.Tensor] = {}
    foreign = []
    for key, tensor in raw.items():
        parts = key.split(".")
        if parts[0] == "net" and len(parts) == 4 and parts[1].startswith("slice"):
            if f"{parts[2]}.{parts[3]}" in trunk:
                raise VGGWeightsError(f"{file}: {parts[2]}.{parts[3]} appears in two slices")
            trunk[f"{parts[2]}.{parts[3]}"] = tensor
        elif not (key.startswith("lin") or key.startswith("scaling_layer.")):
            foreign.append(key)
    check_exact(file, trunk, expected_shapes(VGG16_BLOCKS, anti_aliased=True), what="ST-LPIPS's VGG16",
                prefix="net.slice*.", foreign=foreign)
    for key in ("scaling_layer.shift", "scaling_layer.scale"):
        if key not in raw or raw[key].shape != (1, 3, 1, 1):
            raise VGGWeightsError(f"{file}: not ST-LPIPS's VGG16: {key} missing or not of shape (1, 3, 1, 1)")
    # LPIPS feeds x' = 2x - 1 and computes (x' - shift) / scale = (x - (1 + shift) / 2) / (scale / 2)
    return trunk, (1 + raw["scaling_layer.shift"]) / 2, raw["scaling_layer.scale"] / 2


IMAGENET_FILE = "vgg19-dcbb9e9d.pth"
IMAGENET_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"  # torchvision VGG19_Weights.IMAGENET1K_V1
IMAGENET_SHA256_PREFIX = "dcbb9e9d"  # torchvision names each file by the first 8 hex digits of its sha256
STLPIPS_RELATIVE = Path("weights") / "vST0.0" / "vgg_shift_tolerant.pth"  # inside stlpips_pytorch 0.0.2


class VGGWeightsError(UserError):
    """A VGG weight file that is missing, unreadable or does not match the trunk; the message names the file."""


def hub_checkpoint_path() -> Path:
    """Where torch.hub (and torchvision) cache vgg19-dcbb9e9d.pth: $TORCH_HOME/hub/checkpoints by default."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE


def resolve_imagenet_file(path: str = "", *, url: str | None = None, sha256_prefix: str | None = None,
                          progress: bool = True) -> Path:
    """`path` if given, else the torch hub cache, else download into that cache (sha256 prefix verified).

    url / sha256_prefix default to IMAGENET_URL / IMAGENET_SHA256_PREFIX, read at call time (tests point them at
    a local server).
    """
    from mgsrgan.io.download import DownloadError, fetch  # local: keeps urllib/tqdm out of plain model imports

    if path:
        if not Path(path).is_file():
            raise UserError(f"loss.vgg_path: {path} does not exist (expected torchvision's {IMAGENET_FILE})")
        return Path(path)
    cached = hub_checkpoint_path()
    if cached.is_file():
        return cached
    url = url or IMAGENET_URL
    log.info("downloading VGG19 ImageNet weights %s -> %s", url, cached)
    try:
        return fetch(url, cached, sha256_prefix=sha256_prefix or IMAGENET_SHA256_PREFIX, progress=progress)
    except DownloadError as err:
        # err names the URL and the exact place (the hub cache) to put the file by hand
        raise VGGWeightsError(f"VGG19 weights {IMAGENET_FILE} are not cached and could not be fetched: {err}; "
                              "or set loss.vgg_path to a copy of the file; offline, the VGG16 trunk of ST-LPIPS "
                              "(pip package stlpips-pytorch, a requirement) works without a download: "
                              "--set loss.vgg_weights=stlpips --set loss.content_layer=5_3") from None


def resolve_stlpips_file(path: str = "") -> Path:
    """`path` if given, else the file shipped in the installed stlpips-pytorch (found without importing it)."""
    if path:
        if not Path(path).is_file():
            raise UserError(f"loss.vgg_path: {path} does not exist (expected ST-LPIPS's vgg_shift_tolerant.pth)")
        return Path(path)
    spec = importlib.util.find_spec("stlpips_pytorch")  # does not run the package (it imports torchvision)
    if spec is None or spec.origin is None:
        raise UserError("loss.vgg_weights=stlpips needs `pip install stlpips-pytorch==0.0.2` "
                        "or loss.vgg_path pointing at vgg_shift_tolerant.pth")
    found = Path(spec.origin).parent / STLPIPS_RELATIVE
    if not found.is_file():
        raise UserError(f"{found}: not found in the installed stlpips-pytorch; install version 0.0.2 "
                        "or set loss.vgg_path")
    return found


class VGGFeatures(nn.Module):
    """Frozen VGG trunk cut at phi_{layer}: (B, 3, H, W) RGB in [0, 1] -> (B, C, H', W') features.

    layer: "i_j" (VGG19 names for imagenet/random, VGG16 names 1_1..5_3 for stlpips). before_relu: return the conv
    output instead of the activation (ESRGAN's choice; SRGAN uses after). Layers past the requested one are not
    built. Parameters have requires_grad=False and the module stays in eval mode; gradients still flow to the input.
    """

    def __init__(self, *, layer: str = "5_4", before_relu: bool = False,
                 weights: Literal["imagenet", "stlpips", "random"], path: str = "") -> None:
        super().__init__()
        if weights not in ("imagenet", "stlpips", "random"):
            raise ValueError(f"weights must be imagenet, stlpips or random, got {weights!r}")
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
            self.features = build_trunk(self.blocks, anti_aliased=anti_aliased, length=length)
        self.layer, self.before_relu, self.weights = layer, before_relu, weights
        # not persistent: they are constants of the weight source, not state to checkpoint
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights == "random":
            self._random_init()
        else:
            self._load(weights, path)
        for param in self.parameters():
            param.requires_grad_(False)
        self.eval()

    def _random_init(self) -> None:
        generator = torch.Generator().manual_seed(RANDOM_SEED)
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                nn.init.zeros_(module.bias)

    def _load(self, weights: str, path: str) -> None:
        if weights == "imagenet":
            file = resolve_imagenet_file(path)
            full = load_imagenet_state(file)
            log.info("VGG trunk: torchvision VGG19 ImageNet weights from %s", file)
        else:
            file = resolve_stlpips_file(path)
            full, mean, std = load_stlpips_state(file)
            # ST-LPIPS maps [-1, 1] input through its own scaling layer; as [0, 1] statistics these are ImageNet's
            self.mean.copy_(mean)
            self.std.copy_(std)
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
