"""Make the ST-LPIPS reference fixtures: distances computed by the stlpips-pytorch package itself.

VGG16 trunk (`--net vgg`, the default). Run once, in a throwaway venv where torchvision imports (not the project venv):
    python3 -m venv /tmp/stlpips_ref
    /tmp/stlpips_ref/bin/pip install torch==2.14.1 torchvision==0.29.1 stlpips-pytorch==0.0.2
    /tmp/stlpips_ref/bin/python -m tools.make_stlpips_reference --data ../shared/data
Writes small PNG crops to tests/fixtures/stlpips/ and tests/fixtures/stlpips_reference.json, which
tests/test_stlpips.py compares `mgsrgan.evaluate.stlpips.STLPIPS` against (to 1e-5).

Besides the package's distance (its README constructor `LPIPS(net="vgg", variant="shift_tolerant")`), each pair also
records the distance from a *plain* torchvision VGG16 trunk loaded with the same conv and head weights, to measure how
much the blur pooling changes the numbers. Crops and distortions are fixed below, so a rerun writes the same files.

AlexNet trunk (`--net alex`): runs in the project venv, where torchvision does not import. The package imports
torchvision at module level but its shift-tolerant AlexNet never calls it (only the "vanilla" variants build
torchvision models), so a stub stands in for it, and any use of the stub raises. Reads the PNGs the vgg run wrote
(it does not rewrite them) and writes tests/fixtures/stlpips_alex_reference.json: per pair the package's distance of
`LPIPS(net="alex", variant="shift_tolerant")` and its five per-layer terms, on the same pairs
plus cropped ones (odd sizes, the trunk's minimum side); the package's `retPerLayer=True` cannot give the terms
(its in-place sum overwrites the first one), so `layer_terms` copies them as its forward makes them:
    nice python -m tools.make_stlpips_reference --net alex
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

# The package imports these two debugging helpers at module level and never calls them on the distance path
# (torchsummary.summary in print_network, IPython.embed nowhere); stub them rather than install them.
for _missing, _attribute in (("torchsummary", "summary"), ("IPython", "embed")):
    try:
        __import__(_missing)
    except ImportError:
        sys.modules[_missing] = types.SimpleNamespace(**{_attribute: None})


class _AbsentTorchvisionModels(types.ModuleType):
    """Stands in for torchvision.models where torchvision does not import: any attribute use raises."""

    def __getattr__(self, name: str):
        raise RuntimeError(f"torchvision.models.{name} used, but torchvision is stubbed (not importable here): "
                           "this path of the package needs a venv with torchvision")


try:
    import torchvision  # noqa: F401  (real one: the vgg run uses its plain VGG16)
    TORCHVISION = torchvision.__version__
except ImportError:
    _models = _AbsentTorchvisionModels("torchvision.models")
    sys.modules["torchvision"] = types.SimpleNamespace(models=_models, __version__="stub")
    sys.modules["torchvision.models"] = _models
    TORCHVISION = None

from stlpips_pytorch import stlpips, utils  # noqa: E402  (after the stubs)
from torchvision import models as tv_models  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CROP = 64  # square crops, pixels
NOISE_SIGMA = 8.0  # additive Gaussian noise, uint8 levels
NOISE_SEED = 0
BLUR_RADIUS = 1.0  # PIL GaussianBlur radius (its sigma), pixels
BICUBIC_SCALE = 4  # down-and-up bicubic, the SR degradation of PROTOCOL.md
# (name, Set, file, left, top, width, height): the crops every distortion starts from.
SOURCES = (
    ("a", "Set5", "butterfly.png", 96, 96, CROP, CROP),
    ("b", "Set14", "baboon.png", 200, 150, CROP, CROP),
    ("c", "Set14", "zebra.png", 250, 160, 80, 48),  # non-square: W 80, H 48
)
# (pair name, image 0, image 1): the images are the PNG stems written below.
PAIRS = (
    ("identity", "a", "a"),
    ("shift_1px_x", "a", "a_shift"),
    ("gaussian_blur", "a", "a_blur"),
    ("gaussian_noise", "a", "a_noise"),
    ("bicubic_x4_down_up", "a", "a_bicubic"),
    ("different_image", "a", "b"),
    ("shift_1px_y_nonsquare", "c", "c_shift"),
    ("different_image_b_blur", "b", "a_blur"),
)


def crop(data: Path, set_name: str, file: str, left: int, top: int, width: int, height: int) -> np.ndarray:
    image = Image.open(data / set_name / file).convert("RGB")
    return np.asarray(image.crop((left, top, left + width, top + height)))


def make_images(data: Path) -> dict[str, np.ndarray]:
    """All fixture images, (H, W, 3) uint8 RGB."""
    images = {}
    for name, set_name, file, left, top, width, height in SOURCES:
        images[name] = crop(data, set_name, file, left, top, width, height)
    _, set_name, file, left, top, width, height = SOURCES[0]
    images["a_shift"] = crop(data, set_name, file, left + 1, top, width, height)  # content moves 1 px left
    _, set_name, file, left, top, width, height = SOURCES[2]
    images["c_shift"] = crop(data, set_name, file, left, top + 1, width, height)  # content moves 1 px up
    a = Image.fromarray(images["a"])
    images["a_blur"] = np.asarray(a.filter(ImageFilter.GaussianBlur(BLUR_RADIUS)))
    noise = np.random.default_rng(NOISE_SEED).normal(0.0, NOISE_SIGMA, images["a"].shape)
    images["a_noise"] = np.clip(np.round(images["a"] + noise), 0, 255).astype(np.uint8)
    small = a.resize((CROP // BICUBIC_SCALE, CROP // BICUBIC_SCALE), Image.BICUBIC)
    images["a_bicubic"] = np.asarray(small.resize((CROP, CROP), Image.BICUBIC))
    return images


def plain_vgg16_lpips(package_model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """torchvision's plain VGG16 features (2x2/stride-2 max pool, no blur) with the ST-LPIPS conv weights, in order."""
    features = tv_models.vgg16(weights=None).features[:30]
    conv_weights = [k for k in weights if k.startswith("net.") and k.endswith(".weight")]
    convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(conv_weights) == 13
    for conv, key in zip(convs, conv_weights):
        conv.weight.data.copy_(weights[key])
        conv.bias.data.copy_(weights[key[: -len("weight")] + "bias"])
    taps = (3, 8, 15, 22, 29)  # relu1_2 .. relu5_3 in torchvision's features list

    def distance(in0: torch.Tensor, in1: torch.Tensor) -> torch.Tensor:
        total = 0.0
        feats = []
        for image in (in0, in1):
            h, out = package_model.scaling_layer(image), []
            for index, layer in enumerate(features):
                h = layer(h)
                if index in taps:
                    out.append(utils.normalize_tensor(h))
            feats.append(out)
        for lin, f0, f1 in zip(package_model.lins, *feats):
            total = total + lin((f0 - f1) ** 2).mean(dim=(2, 3))
        return total.flatten()

    return distance


def load_package_model(net: str) -> tuple[torch.nn.Module, Path, dict[str, torch.Tensor], str]:
    """The package's README model for `net` -> (model, its weight file, the file's tensors, a load-check line)."""
    model = stlpips.LPIPS(net=net, variant="shift_tolerant", verbose=False)  # README constructor
    weight_path = Path(stlpips.__file__).parent / "weights" / "vST0.0" / f"{net}_shift_tolerant.pth"
    weights = torch.load(weight_path, map_location="cpu", weights_only=True)
    # The package loads with strict=False; confirm that nothing was left at its random initialisation. Its `lins`
    # ModuleList only aliases lin0..lin4, so those names are the only ones the file may (and does) lack.
    state = model.state_dict()
    unloaded = sorted(k for k in state if k not in weights and not k.startswith("lins."))
    unused = sorted(k for k in weights if k not in state)
    differing = sorted(k for k in weights if k in state and not torch.equal(state[k], weights[k]))
    assert not (unloaded or unused or differing), (unloaded, unused, differing)
    load_check = (f"all {len(weights)} file tensors loaded and equal; "
                  "unloaded model tensors: none besides lins.* aliases")
    return model, weight_path, weights, load_check


def header(net: str, weight_path: Path, load_check: str) -> dict:
    return {
        "what": f"ST-LPIPS ({net}) distances from the stlpips-pytorch package, for tests/test_stlpips.py",
        "made_by": "tools/make_stlpips_reference.py" + ("" if net == "vgg" else f" --net {net}"),
        "package": "stlpips-pytorch==0.0.2",
        "constructor": f'stlpips.LPIPS(net="{net}", variant="shift_tolerant")',
        "input": "utils.im2tensor(uint8 RGB) = u / 127.5 - 1, shape (1, 3, H, W)",
        "torch": torch.__version__, "torchvision": TORCHVISION or "not installed (stubbed; never called)",
        "weights_file": f"stlpips_pytorch/weights/vST0.0/{weight_path.name}",
        "weights_sha256": hashlib.sha256(weight_path.read_bytes()).hexdigest(),
        "load_check": load_check,
    }


def read_png(image_dir: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(image_dir / f"{name}.png").convert("RGB"))


def make_vgg(args: argparse.Namespace) -> None:
    if TORCHVISION is None:
        raise SystemExit("--net vgg needs torchvision (its plain VGG16 is the comparison); see the module docstring")
    model, weight_path, weights, load_check = load_package_model("vgg")
    plain = plain_vgg16_lpips(model, weights)

    images = make_images(args.data)
    image_dir = args.out / "stlpips"
    image_dir.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        Image.fromarray(image).save(image_dir / f"{name}.png", optimize=True)

    pairs = []
    for pair_name, name0, name1 in PAIRS:
        # Reread the PNGs so the distances belong to exactly the stored pixels.
        img0, img1 = read_png(image_dir, name0), read_png(image_dir, name1)
        in0, in1 = utils.im2tensor(img0), utils.im2tensor(img1)  # (1, 3, H, W) in [-1, 1]: u / 127.5 - 1
        pairs.append({"name": pair_name, "image0": f"stlpips/{name0}.png", "image1": f"stlpips/{name1}.png",
                      "distance": float(model(in0, in1).flatten()[0]),
                      "plain_vgg16_distance": float(plain(in0, in1)[0])})
        print(f"{pair_name:24s} st-lpips {pairs[-1]['distance']:.6f}   "
              f"plain vgg16 {pairs[-1]['plain_vgg16_distance']:.6f}")

    reference = {
        **header("vgg", weight_path, load_check),
        "sources": [dict(zip(("name", "set", "file", "left", "top", "width", "height"), s)) for s in SOURCES],
        "pairs": pairs,
    }
    (args.out / "stlpips_reference.json").write_text(json.dumps(reference, indent=1) + "\n")


ALEX_MIN_SIDE = 21  # smallest side the shift-tolerant AlexNet accepts (mgsrgan/evaluate/stlpips.py derives it)
# (pair name, image 0, image 1, (top, left, height, width)): cropped from both stored PNGs before scoring; odd sizes
# change where the stride-2 blurs land, and the trunk's minimum side is the tightest case of the reflection padding.
ALEX_CROPPED_PAIRS = (
    ("odd_size_61x53_blur", "a", "a_blur", (1, 2, 61, 53)),
    ("min_side_21x21_shift", "a", "a_shift", (20, 10, ALEX_MIN_SIDE, ALEX_MIN_SIDE)),
    ("min_side_21x47_noise", "a", "a_noise", (30, 9, ALEX_MIN_SIDE, 47)),
)


def layer_terms(model: torch.nn.Module, in0: torch.Tensor, in1: torch.Tensor) -> list[torch.Tensor]:
    """The package's five per-layer terms, each (1, 1, 1, 1). Not its `retPerLayer=True` output: `LPIPS.forward`
    sums with `val = res[0]; val += res[l]`, so the term of layer 0 it returns has become the total. Its
    module-level `spatial_average` makes each term, so a wrapper copies them as they are made."""
    terms, original = [], stlpips.spatial_average

    def recording(tensor: torch.Tensor, keepdim: bool = True) -> torch.Tensor:
        term = original(tensor, keepdim)
        terms.append(term.clone())  # a copy: the caller adds the later terms into `term` in place
        return term

    stlpips.spatial_average = recording
    try:
        model(in0, in1)
    finally:
        stlpips.spatial_average = original
    assert len(terms) == 5, len(terms)
    return terms


def make_alex(args: argparse.Namespace) -> None:
    model, weight_path, _, load_check = load_package_model("alex")
    image_dir = args.out / "stlpips"
    pairs = []
    for pair_name, name0, name1, window in [(*pair, None) for pair in PAIRS] + list(ALEX_CROPPED_PAIRS):
        img0, img1 = read_png(image_dir, name0), read_png(image_dir, name1)  # the vgg run's PNGs, not rewritten
        record = {"name": pair_name, "image0": f"stlpips/{name0}.png", "image1": f"stlpips/{name1}.png"}
        if window is not None:
            top, left, height, width = window
            img0, img1 = (img[top:top + height, left:left + width] for img in (img0, img1))
            record["crop"] = {"top": top, "left": left, "height": height, "width": width}
        in0, in1 = utils.im2tensor(img0), utils.im2tensor(img1)  # (1, 3, H, W) in [-1, 1]: u / 127.5 - 1
        record["distance"] = float(model(in0, in1).flatten()[0])
        record["layers"] = [float(term.flatten()[0]) for term in layer_terms(model, in0, in1)]
        pairs.append(record)
        print(f"{pair_name:24s} {tuple(img0.shape[:2])}  st-lpips alex {record['distance']:.6f}  layers "
              + " ".join(f"{v:.5f}" for v in record["layers"]))
    reference = {**header("alex", weight_path, load_check), "pairs": pairs}
    (args.out / "stlpips_alex_reference.json").write_text(json.dumps(reference, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=("vgg", "alex"), default="vgg", help="which trunk's fixture to make")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder with Set5, Set14 (vgg only; alex reads the stored PNG crops)")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures", help="fixtures folder")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    make_vgg(args) if args.net == "vgg" else make_alex(args)


if __name__ == "__main__":
    main()
