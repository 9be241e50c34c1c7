"""ST-LPIPS (shift-tolerant LPIPS, VGG16 variant): a learned perceptual distance, computed offline.

Ghildyal & Liu, "Shift-tolerant Perceptual Similarity Metric", ECCV 2022. The weights ship in the PyPI wheel
`stlpips-pytorch==0.0.2` as `stlpips_pytorch/weights/vST0.0/vgg_shift_tolerant.pth`: a VGG16 trunk plus five linear
heads, trained on BAPPS human 2AFC similarity judgements (not ImageNet classification). Importing that package pulls
torchvision, so this module only reads its weight file and rebuilds the network; the architecture below follows the
package's source (`invariant_networks.vggnet(variant="shift_tolerant")`, `models_lpf/vgg.py`,
`models_lpf/downsample.py`, `stlpips.LPIPS.forward`), which is also what its README constructor
`LPIPS(net="vgg", variant="shift_tolerant")` runs:

1. input in [-1, 1], then the LPIPS scaling layer `(v - shift) / scale` (shift/scale are stored in the weight file;
   the package applies it because its `version` argument defaults to "0.1"; passing version="0.0" skips it and moves
   the distances by up to 0.064 on the fixture pairs, so that is not the README's metric);
2. VGG16 convolutions (3x3, zero padding 1, ReLU), but every 2x2/stride-2 max pool is replaced by an anti-aliased
   "blur pool": 2x2 max pool with stride 1, then a fixed 3x3 binomial blur ([1,2,1] outer [1,2,1] / 16) applied with
   stride 2 after *reflection* padding of 2 on every side (the package's `pad_more=True`; a plain blur pool pads 1);
3. features taken after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3; each is unit-normalised over channels
   (`f / (||f||_2 + 1e-10)`), the squared difference goes through a 1x1 conv head (no bias, non-negative weights),
   is averaged over space and summed over the five layers.

Measured against the package itself (torch 2.14.1 + torchvision 0.29.1, `benchmarks/make_stlpips_reference.py`, fixture
`tests/fixtures/stlpips_reference.json`): max |difference| 6e-08 over 8 image pairs (64x64 and 48x80 crops of Set5 /
Set14), e.g. 1-pixel shift 0.0123, Gaussian blur (sigma 1) 0.138, bicubic x4 down-up 0.298, another image 0.793.
A *plain* VGG16 trunk (torchvision layout: 2x2/stride-2 max pooling, no blur) loaded with the same conv and head
weights is not this metric: on the same pairs it gives 1-pixel shift 0.0203 (1.66x the ST-LPIPS value), blur 0.142,
bicubic 0.372, another image 0.748 (max |difference| 0.074); identity is 0 in both.

Images smaller than 18 pixels on a side are rejected: the reflection padding of 2 needs at least 3 pixels after each
stride-1 max pool, down to the fourth blur pool.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mgsrgan.errors import UserError

# VGG16 (Simonyan & Zisserman 2015, config D): conv widths per block; LPIPS taps the last ReLU of each block
# (Zhang et al. 2018, sec. 3; same taps in the ST-LPIPS package's `vggnet.forward`).
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
# Weight file inside the stlpips-pytorch 0.0.2 wheel (its `LPIPS.__init__` builds this path for the vgg variant).
PACKAGE_NAME = "stlpips_pytorch"
PACKAGE_WEIGHTS = Path("weights") / "vST0.0" / "vgg_shift_tolerant.pth"
INSTALL_HINT = "pip install stlpips-pytorch==0.0.2"
# Blur pool (Zhang 2019 "Making CNNs shift-invariant again"; package `Downsample(filt_size=3, pad_more=True)`):
# 3x3 binomial filter, stride 2, reflection padding filt_size - 1 = 2 on each side.
BLUR_TAPS = (1.0, 2.0, 1.0)
BLUR_PAD = len(BLUR_TAPS) - 1
BLUR_STRIDE = 2
# Package `utils.normalize_tensor`: eps added to the channel norm before dividing.
UNIT_NORM_EPS = 1e-10
# Smallest H or W the trunk accepts: each blur pool maps s -> s // 2 + 1 and needs s - 1 >= BLUR_PAD + 1 after the
# stride-1 max pool (reflection padding must be smaller than the input); four pools give 18 -> 10 -> 6 -> 4 -> 3.
MIN_SIDE = 18


class STLPIPSError(UserError):
    """The ST-LPIPS weight file is missing or unreadable, or the inputs have the wrong shape."""


def default_weight_path() -> Path:
    """Path of `vgg_shift_tolerant.pth` in the installed stlpips-pytorch wheel, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE_NAME)  # top-level name: locates the package, runs none of its code
    locations = [] if spec is None or spec.submodule_search_locations is None else spec.submodule_search_locations
    for location in locations:
        candidate = Path(location) / PACKAGE_WEIGHTS
        if candidate.is_file():
            return candidate
    raise STLPIPSError(f"ST-LPIPS weights not found ({PACKAGE_NAME}/{PACKAGE_WEIGHTS.as_posix()}): "
                       f"run `{INSTALL_HINT}` or pass path= to the .pth file")


class BlurPool(nn.Module):
    """Anti-aliased downsampling: 2x2 max pool (stride 1), reflection pad 2, 3x3 binomial blur with stride 2.

    (B, C, H, W) -> (B, C, H // 2 + 1, W // 2 + 1): the max pool gives H - 1, the padding H + 3, and the blur
    (H + 3 - 3) // 2 + 1.
    The blur kernel is a buffer so that it is loaded (and checked) from the weight file like every other tensor.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor(BLUR_TAPS)
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("kernel", (kernel / kernel.sum()).expand(channels, 1, -1, -1).clone())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool2d(features, kernel_size=2, stride=1)
        padded = F.pad(pooled, (BLUR_PAD,) * 4, mode="reflect")
        return F.conv2d(padded, self.kernel, stride=BLUR_STRIDE, groups=features.shape[1])


def package_key_names() -> dict[str, str]:
    """Map each tensor name in the package's state dict to its name in `STLPIPS`.

    The package numbers the layers of one flat VGG16 `features` list (conv, relu, ..., then max pool + blur pool per
    block) and files them under `net.slice1..5` split after each tapped ReLU; we walk the same plan to reproduce the
    indices, so a file with any other layout fails the strict load instead of being silently half-loaded.
    """
    names = {"scaling_layer.shift": "input_shift", "scaling_layer.scale": "input_scale"}
    layer_index, conv_index = 0, 0
    for block, widths in enumerate(VGG16_BLOCKS):
        slice_name = f"net.slice{block + 1}"
        if block > 0:  # the previous block's max pool (layer_index) and blur pool (layer_index + 1) open this slice
            names[f"{slice_name}.{layer_index + 1}.filt"] = f"blur_pools.{block - 1}.kernel"
            layer_index += 2
        for _ in widths:
            names[f"{slice_name}.{layer_index}.weight"] = f"convs.{conv_index}.weight"
            names[f"{slice_name}.{layer_index}.bias"] = f"convs.{conv_index}.bias"
            layer_index += 2  # conv, relu
            conv_index += 1
        names[f"lin{block}.model.1.weight"] = f"heads.{block}.weight"  # model.0 is a Dropout (no tensors)
    return names


class STLPIPS(nn.Module):
    """ST-LPIPS distance with the VGG16 shift-tolerant trunk; frozen, in eval mode.

    forward(x, y): x, y (B, 3, H, W) float RGB in [0, 1] (H, W >= MIN_SIDE) -> (B,) float distances, >= 0, 0 for
    identical inputs; typical values 0.01 (1-pixel shift) to 0.8 (unrelated 64x64 crops). Inputs are mapped to the
    package's [-1, 1] convention with 2 * x - 1 (its `normalize=True`; its `utils.im2tensor` gives the same from uint8:
    u / 127.5 - 1). Gradients flow to the inputs, so it can also serve as a loss.
    """

    def __init__(self, *, path: str = "") -> None:
        super().__init__()
        self.register_buffer("input_shift", torch.zeros(1, 3, 1, 1))
        self.register_buffer("input_scale", torch.ones(1, 3, 1, 1))
        convs, in_channels = [], 3
        for widths in VGG16_BLOCKS:
            for width in widths:
                convs.append(nn.Conv2d(in_channels, width, kernel_size=3, padding=1))
                in_channels = width
        self.convs = nn.ModuleList(convs)
        self.blur_pools = nn.ModuleList(BlurPool(widths[-1]) for widths in VGG16_BLOCKS[:-1])
        self.heads = nn.ModuleList(nn.Conv2d(widths[-1], 1, kernel_size=1, bias=False) for widths in VGG16_BLOCKS)
        self._load(Path(path) if path else default_weight_path())
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
        names = package_key_names()
        missing, unexpected = sorted(set(names) - set(state)), sorted(set(state) - set(names))
        if missing or unexpected:
            raise STLPIPSError(f"{path}: not the vgg shift-tolerant ST-LPIPS weights "
                               f"(missing keys {missing[:3]}, unexpected keys {unexpected[:3]})")
        try:
            self.load_state_dict({names[key]: tensor for key, tensor in state.items()}, strict=True)
        except RuntimeError as error:  # shape mismatch
            raise STLPIPSError(f"{path}: tensor shapes do not match the VGG16 ST-LPIPS layout ({error})") from None

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) scaled input -> five unit-normalised feature maps at relu1_2 ... relu5_3."""
        taps, conv_index, features = [], 0, images
        for block, widths in enumerate(VGG16_BLOCKS):
            if block > 0:
                features = self.blur_pools[block - 1](features)
            for _ in widths:
                features = F.relu(self.convs[conv_index](features))
                conv_index += 1
            norm = features.pow(2).sum(dim=1, keepdim=True).sqrt()
            taps.append(features / (norm + UNIT_NORM_EPS))
        return taps

    def scaled(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> the trunk's input: the package's [-1, 1], then its scaling layer."""
        return (images * 2.0 - 1.0 - self.input_shift) / self.input_scale

    def compare(self, taps_x: list[torch.Tensor], taps_y: list[torch.Tensor]) -> torch.Tensor:
        """Distances (B,) between two lists of `features` taps of one shape (a batch of 1 on either side
        broadcasts)."""
        distance = torch.zeros((), dtype=taps_x[0].dtype, device=taps_x[0].device)
        for head, tap_x, tap_y in zip(self.heads, taps_x, taps_y):
            squared = (tap_x - tap_y).pow(2)  # (B, C, h, w)
            distance = distance + head(squared).mean(dim=(1, 2, 3))  # head: (B, 1, h, w); spatial average
        return distance

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise STLPIPSError(f"ST-LPIPS needs two (B, 3, H, W) tensors of one shape, got {tuple(x.shape)} "
                               f"and {tuple(y.shape)}")
        check_side(x.shape[2:])
        batch = x.shape[0]
        taps = self.features(self.scaled(torch.cat([x, y])))
        return self.compare([t[:batch] for t in taps], [t[batch:] for t in taps])


def check_side(size: tuple[int, ...] | torch.Size) -> None:
    if min(size) < MIN_SIDE:
        raise STLPIPSError(f"ST-LPIPS needs images of at least {MIN_SIDE}x{MIN_SIDE}, got {tuple(size)}")


def _uint8_tensor(image: np.ndarray, name: str, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1] on `device` (a copy, so the tensor may be written)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise STLPIPSError(f"ST-LPIPS: image {name} must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    return torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)


def stlpips_distance(a_uint8: np.ndarray, b_uint8: np.ndarray, *, model: STLPIPS | None = None) -> float:
    """ST-LPIPS between two (H, W, 3) uint8 RGB images of one size (a float >= 0).

    Loads the default weights (about 0.5 s) unless `model` is given; pass one when scoring many pairs.
    """
    model = STLPIPS() if model is None else model
    device = model.input_shift.device
    a, b = _uint8_tensor(a_uint8, "a", device), _uint8_tensor(b_uint8, "b", device)
    with torch.no_grad():
        return float(model(a, b)[0])


class ReferenceSTLPIPS:
    """ST-LPIPS as a PairDistance (sr, hr) for tables that score many SR images against the same HR.

    The trunk pass over the HR image is the cost (one VGG16 pass per image; ~1 s for a 481x321 BSD100 image on 2 CPU
    cores) and evaluate_image scores every row of a table against one HR: the HR's taps are kept while the next call
    brings an HR with equal pixels, so a table of R rows costs R + 1 passes per image instead of 2R. Equal to
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
        check_side(sr.shape[2:])
        with torch.no_grad():
            if self._reference is None or not np.array_equal(self._reference, hr_uint8):
                self._taps = self.model.features(self.model.scaled(_uint8_tensor(hr_uint8, "hr", device)))
                self._reference = hr_uint8.copy()
            return float(self.model.compare(self.model.features(self.model.scaled(sr)), self._taps)[0])
