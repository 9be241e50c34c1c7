"""ST-LPIPS: our rebuild against distances computed by the stlpips-pytorch package (fixtures), plus its properties.

The fixtures (tests/fixtures/stlpips_reference.json for VGG16, stlpips_alex_reference.json for AlexNet, both on the
stlpips/*.png crops) come from tools/make_stlpips_reference.py: the VGG one run in a throwaway venv with
torchvision, the AlexNet one (`--net alex`) in the project venv with torchvision stubbed. Tests that need the real
weights skip when stlpips-pytorch is not installed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mgsrgan.errors import UserError
from mgsrgan.evaluate.stlpips import (ALEX_MIN_SIDE, MIN_SIDE, NETS, STLPIPS, TRUNKS, ReferenceSTLPIPS, STLPIPSError,
                                     package_key_names, stlpips_distance)
from mgsrgan.io.weightfiles import default_weight_path
from mgsrgan.models.trunks import BLOCK_WIDTHS, VGG16_BLOCKS, Blur, Conv

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REFERENCE = json.loads((FIXTURES / "stlpips_reference.json").read_text())
PAIRS = {pair["name"]: pair for pair in REFERENCE["pairs"]}
ALEX_REFERENCE = json.loads((FIXTURES / "stlpips_alex_reference.json").read_text())
TOLERANCE = 1e-5  # the task's bar; measured max |difference| is 6e-08 vgg, 1.2e-07 alex (float32 summation order)

try:
    WEIGHTS = default_weight_path()
    ALEX_WEIGHTS = default_weight_path("alex")
except STLPIPSError:
    WEIGHTS = ALEX_WEIGHTS = None
needs_weights = pytest.mark.skipif(WEIGHTS is None, reason="ST-LPIPS weights not installed "
                                   "(pip install stlpips-pytorch==0.0.2)")


def load_png(relative: str, crop: dict[str, int] | None = None) -> np.ndarray:
    """A fixture PNG as (H, W, 3) uint8; `crop` (top, left, height, width) as the alex fixture records it."""
    image = np.asarray(Image.open(FIXTURES / relative).convert("RGB"))
    if crop is not None:
        image = np.ascontiguousarray(image[crop["top"]:crop["top"] + crop["height"],
                                           crop["left"]:crop["left"] + crop["width"]])
    return image


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def model() -> STLPIPS:
    return STLPIPS()


@pytest.fixture(scope="module")
def alex() -> STLPIPS:
    return STLPIPS(net="alex")


@needs_weights
def test_weights_are_the_file_the_fixture_was_made_with() -> None:
    assert hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() == REFERENCE["weights_sha256"]


@needs_weights
def test_matches_package_on_every_pair(model: STLPIPS) -> None:
    worst = 0.0
    for pair in REFERENCE["pairs"]:
        ours = stlpips_distance(load_png(pair["image0"]), load_png(pair["image1"]), model=model)
        worst = max(worst, abs(ours - pair["distance"]))
        assert ours == pytest.approx(pair["distance"], abs=TOLERANCE), pair["name"]
    assert worst < TOLERANCE


@needs_weights
def test_batch_equals_one_by_one(model: STLPIPS) -> None:
    square = [pair for pair in REFERENCE["pairs"] if load_png(pair["image0"]).shape == (64, 64, 3)]
    x = torch.cat([to_tensor(load_png(pair["image0"])) for pair in square])  # (B, 3, 64, 64)
    y = torch.cat([to_tensor(load_png(pair["image1"])) for pair in square])
    with torch.no_grad():
        batched = model(x, y)
    assert batched.shape == (len(square),)
    expected = torch.tensor([pair["distance"] for pair in square])
    assert torch.allclose(batched, expected, atol=TOLERANCE, rtol=0.0)


def assert_zero_on_identity_positive_elsewhere(model: STLPIPS, image: torch.Tensor) -> None:
    assert torch.equal(model(image, image), torch.zeros(image.shape[0]))
    different = model(image, image.flip(-1))
    assert torch.isfinite(different).all() and (different > 0).all()


def check_reference_cache(trunk: STLPIPS, pairs: list[dict], monkeypatch, images) -> tuple[list, ReferenceSTLPIPS]:
    """ReferenceSTLPIPS over `pairs` (images(pair) -> (sr, hr)) matches the package, with one trunk pass per SR and
    one per change of HR. Pairs are grouped by their second image, as evaluate_image scores every row against one
    HR, then the list comes back to an earlier HR, where a stale cache would give a wrong distance."""
    passes = []
    features = trunk.features
    monkeypatch.setattr(trunk, "features", lambda batch: passes.append(batch.shape[0]) or features(batch))
    scorer = ReferenceSTLPIPS(trunk)
    pairs = sorted(pairs, key=lambda pair: pair["image1"]) + pairs[:2]
    references = 0
    for index, pair in enumerate(pairs):
        references += index == 0 or pair["image1"] != pairs[index - 1]["image1"]
        assert scorer(*images(pair)) == pytest.approx(pair["distance"], abs=TOLERANCE), pair["name"]
    assert passes == [1] * (len(pairs) + references)
    return passes, scorer


@needs_weights
def test_reference_cache_matches_package_and_saves_hr_passes(model: STLPIPS, monkeypatch) -> None:
    passes, scorer = check_reference_cache(model, REFERENCE["pairs"], monkeypatch,
                                           lambda pair: (load_png(pair["image0"]), load_png(pair["image1"])))
    hr = load_png("stlpips/a.png")
    changed = hr.copy()
    changed[0, 0, 0] ^= 1  # one pixel differs: the cached taps must not be reused
    before = len(passes)
    scorer(hr, hr)
    assert scorer(hr, changed) > 0.0 and len(passes) == before + 4  # (SR, new HR) twice
    with pytest.raises(STLPIPSError, match="one size"):
        scorer(hr, load_png("stlpips/c.png"))


def ranking_distances(model: STLPIPS) -> dict[str, float]:
    """Fixture a.png against itself, its 1-pixel shift, its blur and another image."""
    a = load_png("stlpips/a.png")
    return {name: stlpips_distance(a, load_png(f"stlpips/{other}.png"), model=model)
            for name, other in (("identity", "a"), ("shift", "a_shift"), ("blur", "a_blur"), ("different", "b"))}


@needs_weights
def test_ranking_identity_shift_blur_different(model: STLPIPS) -> None:
    distance = ranking_distances(model)
    assert distance["identity"] == 0.0
    # 1-pixel shift 0.012 << blur 0.138 << another image 0.793 (package values); demand clear gaps, not just order.
    assert 5 * distance["shift"] < distance["blur"]
    assert 3 * distance["blur"] < distance["different"]


@needs_weights
def test_symmetric_and_differentiable(model: STLPIPS) -> None:
    x = to_tensor(load_png("stlpips/a.png"))
    y = to_tensor(load_png("stlpips/a_blur.png")).requires_grad_(True)
    forward = model(x, y)
    assert torch.allclose(forward, model(y, x), atol=1e-7)
    forward.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


@needs_weights
def test_rejects_bad_shapes(model: STLPIPS) -> None:
    image = torch.rand(1, 3, 32, 32)
    with pytest.raises(STLPIPSError, match="of one shape"):
        model(image, torch.rand(1, 3, 32, 33))
    with pytest.raises(STLPIPSError, match=f"at least {MIN_SIDE}"):
        model(image[..., : MIN_SIDE - 1], image[..., : MIN_SIDE - 1])
    assert model(image[..., :MIN_SIDE, :MIN_SIDE], image[..., :MIN_SIDE, :MIN_SIDE]).shape == (1,)
    with pytest.raises(STLPIPSError, match="uint8"):
        stlpips_distance(np.zeros((32, 32, 3), np.float32), np.zeros((32, 32, 3), np.float32), model=model)


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        STLPIPS(path=str(tmp_path / "absent.pth"))


def test_wrong_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wrong.pth"
    torch.save({"net.slice1.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(STLPIPSError, match="missing keys"):
        STLPIPS(path=str(path))


def test_not_a_weight_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "text.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(STLPIPSError, match="not a readable"):
        STLPIPS(path=str(path))


def test_key_map_covers_package_layout() -> None:
    """37 tensors: scaling (2), 13 convs (26), 4 blur kernels, 5 heads; indices follow the package's flat VGG list."""
    names = package_key_names()
    assert len(names) == 37
    assert names["net.slice2.5.filt"] == "features_stack.5.filt"  # the first blur pool
    assert names["net.slice5.32.bias"] == "features_stack.32.bias"  # the 13th conv
    assert names["lin4.model.1.weight"] == "heads.4.weight"


def test_loads_a_synthetic_file_with_the_package_keys(tmp_path: Path) -> None:
    """Without the wheel: a file with the package's names and shapes loads strictly, and identity gives 0."""
    generator = torch.Generator().manual_seed(0)
    template = {}
    for package_key, shape in _package_shapes().items():
        fan_in = torch.Size(shape[1:]).numel() if len(shape) > 1 else 1
        template[package_key] = torch.randn(shape, generator=generator) * fan_in ** -0.5  # keeps activations O(1)
    template["scaling_layer.scale"] = template["scaling_layer.scale"].abs() + 0.5
    for block in range(5):
        template[f"lin{block}.model.1.weight"] = template[f"lin{block}.model.1.weight"].abs()  # heads are >= 0
    path = tmp_path / "synthetic.pth"
    torch.save(template, path)
    model = STLPIPS(path=str(path))
    assert torch.equal(model.features_stack[32].bias, template["net.slice5.32.bias"])
    assert torch.equal(model.features_stack[5].filt, template["net.slice2.5.filt"])
    assert_zero_on_identity_positive_elsewhere(model, torch.rand(2, 3, 24, 20, generator=generator))


def _package_shapes() -> dict[str, tuple[int, ...]]:
    """Shape of every tensor in the package's vgg_shift_tolerant.pth, from its VGG16 layout (written out by hand,
    independently of the layer list in mgsrgan.models.trunks): conv, ReLU, ..., and before every block but the first
    a 2x2 stride-1 max pool and a blur pool (index + 1); slice k runs from the pool before block k to its last ReLU."""
    shapes = {"scaling_layer.shift": (1, 3, 1, 1), "scaling_layer.scale": (1, 3, 1, 1)}
    in_channels, index = 3, 0
    for block, (count, width) in enumerate(zip(VGG16_BLOCKS, BLOCK_WIDTHS)):
        if block > 0:
            shapes[f"net.slice{block + 1}.{index + 1}.filt"] = (in_channels, 1, 3, 3)
            index += 2
        for _ in range(count):
            shapes[f"net.slice{block + 1}.{index}.weight"] = (width, in_channels, 3, 3)
            shapes[f"net.slice{block + 1}.{index}.bias"] = (width,)
            in_channels, index = width, index + 2
        shapes[f"lin{block}.model.1.weight"] = (1, in_channels, 1, 1)
    return shapes


# ---- AlexNet trunk -------------------------------------------------------------------------------------------------

# The shift-tolerant AlexNet's tensors as the package's invariant_networks.alexnet(variant="shift_tolerant") files
# them (written out by hand from its source: conv 0, blur 1, blur 4, conv 5, blur 8, conv 9 / 11 / 13), plus the
# scaling layer and five heads; 20 in all.
ALEX_PACKAGE_SHAPES = {
    "scaling_layer.shift": (1, 3, 1, 1), "scaling_layer.scale": (1, 3, 1, 1),
    "net.slice1.0.weight": (64, 3, 11, 11), "net.slice1.0.bias": (64,), "net.slice1.1.filt": (64, 1, 3, 3),
    "net.slice2.4.filt": (64, 1, 3, 3), "net.slice2.5.weight": (192, 64, 5, 5), "net.slice2.5.bias": (192,),
    "net.slice3.8.filt": (192, 1, 3, 3), "net.slice3.9.weight": (384, 192, 3, 3), "net.slice3.9.bias": (384,),
    "net.slice4.11.weight": (256, 384, 3, 3), "net.slice4.11.bias": (256,),
    "net.slice5.13.weight": (256, 256, 3, 3), "net.slice5.13.bias": (256,),
    **{f"lin{k}.model.1.weight": (1, width, 1, 1) for k, width in enumerate((64, 192, 384, 256, 256))},
}


def _scored_pair(pair: dict) -> tuple[np.ndarray, np.ndarray]:
    return load_png(pair["image0"], pair.get("crop")), load_png(pair["image1"], pair.get("crop"))


@needs_weights
def test_alex_weights_are_the_file_the_fixture_was_made_with() -> None:
    assert ALEX_WEIGHTS.name == "alex_shift_tolerant.pth"
    assert hashlib.sha256(ALEX_WEIGHTS.read_bytes()).hexdigest() == ALEX_REFERENCE["weights_sha256"]


@needs_weights
def test_alex_matches_package_on_every_pair_and_layer(alex: STLPIPS) -> None:
    """Distance and each of the five layer terms, on 64x64, 48x80, 61x53 and minimum-side (21) pairs."""
    assert len(ALEX_REFERENCE["pairs"]) == 11 and sum("crop" in p for p in ALEX_REFERENCE["pairs"]) == 3
    worst = 0.0
    for pair in ALEX_REFERENCE["pairs"]:
        image0, image1 = _scored_pair(pair)
        ours = stlpips_distance(image0, image1, model=alex)
        worst = max(worst, abs(ours - pair["distance"]))
        assert ours == pytest.approx(pair["distance"], abs=TOLERANCE), pair["name"]
        with torch.no_grad():
            terms = alex.layer_terms(alex.features(alex.scaled(to_tensor(image0))),
                                     alex.features(alex.scaled(to_tensor(image1))))
        assert [float(t[0]) for t in terms] == pytest.approx(pair["layers"], abs=TOLERANCE), pair["name"]
    assert worst < TOLERANCE


@needs_weights
def test_alex_is_not_the_vgg_metric(model: STLPIPS, alex: STLPIPS) -> None:
    """The same pair scores differently under the two trunks, each as its own fixture says (a swapped trunk or
    weight file would fail here)."""
    alex_pairs = {pair["name"]: pair for pair in ALEX_REFERENCE["pairs"]}
    image0, image1 = load_png("stlpips/a.png"), load_png("stlpips/a_blur.png")
    assert stlpips_distance(image0, image1, model=alex) == pytest.approx(alex_pairs["gaussian_blur"]["distance"],
                                                                         abs=TOLERANCE)
    assert stlpips_distance(image0, image1, model=model) == pytest.approx(PAIRS["gaussian_blur"]["distance"],
                                                                          abs=TOLERANCE)
    assert abs(alex_pairs["gaussian_blur"]["distance"] - PAIRS["gaussian_blur"]["distance"]) > 0.03


@needs_weights
def test_alex_identity_shift_blur_different_and_symmetry(alex: STLPIPS) -> None:
    a = load_png("stlpips/a.png")
    distance = ranking_distances(alex)
    assert distance["identity"] == 0.0
    assert distance["shift"] > 0.0
    # package values: 1-pixel shift 0.0037 << blur 0.181 << another image 0.837; demand clear gaps, not just order
    assert 10 * distance["shift"] < distance["blur"]
    assert 3 * distance["blur"] < distance["different"]
    x = to_tensor(a)
    y = to_tensor(load_png("stlpips/a_noise.png")).requires_grad_(True)
    forward = alex(x, y)
    assert forward.item() > 0.0
    assert torch.allclose(forward, alex(y, x), atol=1e-7)
    forward.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


@needs_weights
def test_alex_reference_cache_matches_package(alex: STLPIPS, monkeypatch) -> None:
    pairs = [pair for pair in ALEX_REFERENCE["pairs"] if "crop" not in pair]
    _passes, scorer = check_reference_cache(alex, pairs, monkeypatch, _scored_pair)
    small = load_png("stlpips/a.png")[:ALEX_MIN_SIDE - 1, :32]
    with pytest.raises(STLPIPSError, match=f"at least {ALEX_MIN_SIDE}x{ALEX_MIN_SIDE}"):
        scorer(small, small)


@needs_weights
@pytest.mark.parametrize("net", NETS)
def test_min_side_is_tight(net: str, model: STLPIPS, alex: STLPIPS) -> None:
    """min_side passes; one pixel less is refused with an STLPIPSError before the trunk, which would fail there."""
    trunk = {"vgg": model, "alex": alex}[net]
    side = trunk.min_side
    assert side == {"vgg": MIN_SIDE, "alex": ALEX_MIN_SIDE}[net]
    image = torch.rand(2, 3, side, side + 7, generator=torch.Generator().manual_seed(1))
    assert trunk(image, image.flip(-1)).shape == (2,)
    for short in (image[:, :, :-1], image[..., :side - 1]):
        with pytest.raises(STLPIPSError, match=f"at least {side}x{side}"):
            trunk(short, short)
        with pytest.raises(RuntimeError, match="[Pp]adding"):  # the reflection padding of a blur
            trunk.features(trunk.scaled(short))


def test_alex_key_map_is_the_package_layout() -> None:
    names = package_key_names("alex")
    assert {key: None for key in names} == {key: None for key in ALEX_PACKAGE_SHAPES}  # same keys, same order
    assert names["net.slice1.1.filt"] == "features_stack.1.filt"
    assert names["net.slice2.5.weight"] == "features_stack.5.weight"
    assert names["net.slice5.13.bias"] == "features_stack.13.bias"
    assert names["lin2.model.1.weight"] == "heads.2.weight"
    assert [type(layer) for layer in TRUNKS["alex"].layers].count(Conv) == 5
    assert [type(layer) for layer in TRUNKS["alex"].layers].count(Blur) == 3


@needs_weights
def test_alex_file_matches_the_hand_written_layout() -> None:
    state = torch.load(ALEX_WEIGHTS, map_location="cpu", weights_only=True)
    assert {key: tuple(tensor.shape) for key, tensor in state.items()} == ALEX_PACKAGE_SHAPES


@needs_weights
def test_a_file_of_the_other_trunk_is_refused() -> None:
    with pytest.raises(STLPIPSError, match="not the alex shift-tolerant"):
        STLPIPS(net="alex", path=str(WEIGHTS))
    with pytest.raises(STLPIPSError, match="not the vgg shift-tolerant"):
        STLPIPS(net="vgg", path=str(ALEX_WEIGHTS))


def test_alex_loads_a_synthetic_file_with_the_package_keys(tmp_path: Path) -> None:
    """Without the wheel: a file with the package's alex names and shapes loads strictly; identity gives 0."""
    generator = torch.Generator().manual_seed(0)
    template = {}
    for package_key, shape in ALEX_PACKAGE_SHAPES.items():
        fan_in = torch.Size(shape[1:]).numel() if len(shape) > 1 else 1
        template[package_key] = torch.randn(shape, generator=generator) * fan_in ** -0.5
    template["scaling_layer.scale"] = template["scaling_layer.scale"].abs() + 0.5
    for head in range(5):
        template[f"lin{head}.model.1.weight"] = template[f"lin{head}.model.1.weight"].abs()
    path = tmp_path / "synthetic_alex.pth"
    torch.save(template, path)
    model = STLPIPS(net="alex", path=str(path))
    assert model.net == "alex" and model.min_side == ALEX_MIN_SIDE
    assert torch.equal(model.features_stack[0].weight, template["net.slice1.0.weight"])
    assert torch.equal(model.features_stack[8].filt, template["net.slice3.8.filt"])
    assert torch.equal(model.heads[4].weight, template["lin4.model.1.weight"])
    assert_zero_on_identity_positive_elsewhere(model, torch.rand(2, 3, 25, 23, generator=generator))
    with pytest.raises(STLPIPSError, match="missing keys"):
        STLPIPS(net="vgg", path=str(path))


def test_net_argument_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="net must be one of"):
        STLPIPS(net="squeeze", path=str(tmp_path / "absent.pth"))
    with pytest.raises(ValueError, match="net must be one of"):
        default_weight_path("resnet")
    with pytest.raises(UserError, match="not found"):
        STLPIPS(net="alex", path=str(tmp_path / "absent.pth"))


@needs_weights
def test_stlpips_distance_net_must_match_the_model(alex: STLPIPS) -> None:
    image = load_png("stlpips/a.png")
    with pytest.raises(ValueError, match="'vgg' but the model given is the 'alex' one"):
        stlpips_distance(image, image, model=alex, net="vgg")
    assert stlpips_distance(image, load_png("stlpips/a_shift.png"), net="alex") == pytest.approx(
        stlpips_distance(image, load_png("stlpips/a_shift.png"), model=alex), abs=1e-7)
