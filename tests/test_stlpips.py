"""ST-LPIPS: our rebuild against distances computed by the stlpips-pytorch package (fixture), plus its properties.

The fixture (tests/fixtures/stlpips_reference.json + stlpips/*.png crops) comes from
benchmarks/make_stlpips_reference.py run in a throwaway venv with torchvision. Tests that need the real weights skip
when stlpips-pytorch is not installed.
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
from mgsrgan.stlpips import (MIN_SIDE, STLPIPS, VGG16_BLOCKS, ReferenceSTLPIPS, STLPIPSError, default_weight_path,
                             package_key_names, stlpips_distance)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REFERENCE = json.loads((FIXTURES / "stlpips_reference.json").read_text())
PAIRS = {pair["name"]: pair for pair in REFERENCE["pairs"]}
TOLERANCE = 1e-5  # the task's bar; measured max |difference| is 6e-08 (float32 summation order)

try:
    WEIGHTS = default_weight_path()
except STLPIPSError:
    WEIGHTS = None
needs_weights = pytest.mark.skipif(WEIGHTS is None, reason="ST-LPIPS weights not installed "
                                   "(pip install stlpips-pytorch==0.0.2)")


def load_png(relative: str) -> np.ndarray:
    return np.asarray(Image.open(FIXTURES / relative).convert("RGB"))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def model() -> STLPIPS:
    return STLPIPS()


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


@needs_weights
def test_reference_cache_matches_package_and_saves_hr_passes(model: STLPIPS, monkeypatch) -> None:
    passes = []
    features = model.features
    monkeypatch.setattr(model, "features", lambda images: passes.append(images.shape[0]) or features(images))
    scorer = ReferenceSTLPIPS(model)
    # Pairs grouped by their second image, as evaluate_image scores every row against one HR; the pair list
    # comes back to an earlier HR later, so a stale cache would give a wrong distance there.
    pairs = sorted(REFERENCE["pairs"], key=lambda pair: pair["image1"]) + REFERENCE["pairs"][:2]
    references = 0
    for index, pair in enumerate(pairs):
        references += index == 0 or pair["image1"] != pairs[index - 1]["image1"]
        ours = scorer(load_png(pair["image0"]), load_png(pair["image1"]))
        assert ours == pytest.approx(pair["distance"], abs=TOLERANCE), pair["name"]
    assert passes == [1] * (len(pairs) + references)  # one pass per SR image, one per change of HR
    hr = load_png("stlpips/a.png")
    changed = hr.copy()
    changed[0, 0, 0] ^= 1  # one pixel differs: the cached taps must not be reused
    before = len(passes)
    scorer(hr, hr)
    assert scorer(hr, changed) > 0.0 and len(passes) == before + 4  # (SR, new HR) twice
    with pytest.raises(STLPIPSError, match="one size"):
        scorer(hr, load_png("stlpips/c.png"))


@needs_weights
def test_ranking_identity_shift_blur_different(model: STLPIPS) -> None:
    a = load_png("stlpips/a.png")
    distance = {name: stlpips_distance(a, load_png(f"stlpips/{other}.png"), model=model)
                for name, other in (("identity", "a"), ("shift", "a_shift"), ("blur", "a_blur"), ("different", "b"))}
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
    assert names["net.slice2.5.filt"] == "blur_pools.0.kernel"
    assert names["net.slice5.32.bias"] == "convs.12.bias"
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
    assert torch.equal(model.convs[12].bias, template["net.slice5.32.bias"])
    assert torch.equal(model.blur_pools[0].kernel, template["net.slice2.5.filt"])
    image = torch.rand(2, 3, 24, 20, generator=generator)
    assert torch.equal(model(image, image), torch.zeros(2))
    different = model(image, image.flip(-1))
    assert torch.isfinite(different).all() and (different > 0).all()


def _package_shapes() -> dict[str, tuple[int, ...]]:
    """Shape of every tensor in the package's vgg_shift_tolerant.pth, from its VGG16 layout."""
    shapes = {"scaling_layer.shift": (1, 3, 1, 1), "scaling_layer.scale": (1, 3, 1, 1)}
    by_ours = {ours: package for package, ours in package_key_names().items()}
    in_channels, conv_index = 3, 0
    for block, widths in enumerate(VGG16_BLOCKS):
        if block > 0:
            shapes[by_ours[f"blur_pools.{block - 1}.kernel"]] = (in_channels, 1, 3, 3)
        for width in widths:
            shapes[by_ours[f"convs.{conv_index}.weight"]] = (width, in_channels, 3, 3)
            shapes[by_ours[f"convs.{conv_index}.bias"]] = (width,)
            in_channels, conv_index = width, conv_index + 1
        shapes[f"lin{block}.model.1.weight"] = (1, in_channels, 1, 1)
    return shapes
