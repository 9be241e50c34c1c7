"""LPIPS (VGG16, v0.1): loading, shapes, identity/symmetry, and the math of its pieces on hand-made features.

The backbone is random, written in the test in torchvision's vgg16 layout (the real file is never downloaded); the
heads are the real lpips/weights/v0.1/vgg.pth when the `lpips` package is installed, else random non-negative ones.
Random weights say nothing about perceptual ranking, so only properties and arithmetic are checked, plus the
package's own numbers for these exact weights (PACKAGE_REFERENCE).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mgsrgan.errors import UserError
from mgsrgan.evaluate.lpips import (LPIPS, MIN_SIDE, SCALING_SCALE, SCALING_SHIFT, LPIPSError, layer_distance,
                                   load_heads, lpips_distance, unit_normalize)
from mgsrgan.io.weightfiles import default_backbone_path, default_heads_path
from mgsrgan.models.trunks import BLOCK_WIDTHS, VGG16_BLOCKS, expected_shapes

# Distances computed by the lpips 0.1.4 package itself, `lpips.LPIPS(net="vgg", version="0.1", pnet_rand=True,
# model_path=HEADS)(a, b, normalize=True)`, with its trunk's net.slice<k>.<i>.* set from this file's
# random_backbone_state(seed=0) (features.<i>.*), on reference_pairs(); HEADS = the random heads of the `files` fixture
# ("random_heads") or lpips/weights/v0.1/vgg.pth ("real_heads"). Run in a throwaway venv with torch 2.14.1 +
# torchvision 0.29.1 (scipy/tqdm, imported only by its trainer, stubbed). Ours agreed to 4e-9 on all six.
PACKAGE_REFERENCE = {
    "random_heads": {"shift": 0.028325937688350677, "noise": 0.0021124002523720264, "other": 0.08279655873775482},
    "real_heads": {"shift": 0.05738365650177002, "noise": 0.0038011090364307165, "other": 0.17589907348155975},
}
REFERENCE_TOLERANCE = 1e-6  # float32 summation order across torch versions; measured 4e-9

# torchvision's vgg16().features puts its 13 convs at these Sequential indices (pools at 4, 9, 16, 23, 30)
TORCHVISION_VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def random_backbone_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Shaped like vgg16-397923af.pth: He-scaled random features.*, plus a tiny classifier.* that must be ignored."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in expected_shapes(VGG16_BLOCKS, anti_aliased=False).items():
        fan_in = shape[1] * 9 if len(shape) == 4 else 1
        scale = (2.0 / fan_in) ** 0.5 if len(shape) == 4 else 0.01
        state[f"features.{key}"] = torch.randn(shape, generator=generator) * scale
    state["classifier.0.weight"] = torch.zeros(2, 2)
    return state


def reference_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Three (32, 40, 3) uint8 pairs, fixed by seed: 1-pixel shift, Gaussian noise (sigma 8), another image."""
    rng = np.random.default_rng(7)
    base = np.kron(rng.integers(20, 236, size=(8, 10, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    other = np.kron(rng.integers(20, 236, size=(8, 10, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    noisy = np.clip(base + rng.normal(0.0, 8.0, size=base.shape), 0, 255).round().astype(np.uint8)
    return {"shift": (base, np.roll(base, 1, axis=1)), "noise": (base, noisy), "other": (base, other)}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(backbone file, heads file, "real_heads" or "random_heads")."""
    folder = tmp_path_factory.mktemp("lpips")
    torch.save(random_backbone_state(seed=0), folder / "vgg16-fake.pth")
    try:
        heads, kind = default_heads_path(), "real_heads"
    except LPIPSError:
        kind = "random_heads"
        generator = torch.Generator().manual_seed(1)
        heads = folder / "heads.pth"
        torch.save({f"lin{k}.model.1.weight": torch.rand(1, w, 1, 1, generator=generator) * 0.1
                    for k, w in enumerate(BLOCK_WIDTHS)}, heads)
    return folder / "vgg16-fake.pth", heads, kind


@pytest.fixture(scope="module")
def model(files) -> LPIPS:
    backbone, heads, _ = files
    return LPIPS(backbone=str(backbone), heads=str(heads))


def test_matches_the_lpips_package_on_the_same_weights(files, model):
    reference = PACKAGE_REFERENCE[files[2]]
    for name, (a, b) in reference_pairs().items():
        assert lpips_distance(a, b, model=model) == pytest.approx(reference[name], abs=REFERENCE_TOLERANCE), name


def test_torchvision_layout_and_taps(model):
    convs = sorted({int(k.split(".")[0]) for k in expected_shapes(VGG16_BLOCKS, anti_aliased=False)})
    assert convs == list(TORCHVISION_VGG16_CONVS)
    assert model.tap_indices == (3, 8, 15, 22, 29)  # relu1_2 ... relu5_3, the package's slice ends
    assert all(not p.requires_grad for p in model.parameters()) and not model.training


def test_shapes_identity_and_symmetry(model):
    generator = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 3, 32, 48, generator=generator), torch.rand(2, 3, 32, 48, generator=generator)
    taps = model.features(x)
    assert [tuple(t.shape) for t in taps] == [(2, 64, 32, 48), (2, 128, 16, 24), (2, 256, 8, 12), (2, 512, 4, 6),
                                              (2, 512, 2, 3)]
    d_xy, d_yx = model(x, y), model(y, x)
    assert d_xy.shape == (2,) and bool((d_xy > 0).all())
    torch.testing.assert_close(d_xy, d_yx, rtol=1e-6, atol=0)
    assert model(x, x).abs().max().item() == 0.0
    a = (x[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    b = (y[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert lpips_distance(a, a, model=model) == 0.0 and lpips_distance(a, b, model=model) > 0.0


def test_unit_normalize_by_hand():
    features = torch.zeros(1, 2, 1, 3)
    features[0, :, 0, 0] = torch.tensor([3.0, 4.0])  # norm 5
    features[0, :, 0, 1] = torch.tensor([0.0, -2.0])  # norm 2
    out = unit_normalize(features)  # pixel 2 is all zero: stays zero (eps, no NaN)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([[0.6, 0.0, 0.0], [0.8, -1.0, 0.0]]))


def test_layer_distance_weights_channels_and_averages_space():
    head = torch.nn.Conv2d(2, 1, kernel_size=1, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([1.0, 3.0]).view(1, 2, 1, 1))
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]]).T.reshape(1, 2, 1, 2)  # pixel 0: (1, 0), pixel 1: (0, 2)
    y = torch.tensor([[0.0, 5.0], [1.0, 0.0]]).T.reshape(1, 2, 1, 2)  # pixel 0: (0, 5), pixel 1: (1, 0)
    # normalised: x -> (1, 0), (0, 1); y -> (0, 1), (1, 0); both pixels differ by (+-1, -+1):
    # each pixel 1 * 1 + 3 * 1 = 4, spatial mean 4; scaling x and y changes nothing (unit normalisation)
    assert layer_distance(x, y, head).item() == pytest.approx(4.0, abs=1e-6)
    assert layer_distance(7 * x, 0.5 * y, head).item() == pytest.approx(4.0, abs=1e-6)
    y_same_first = torch.tensor([[2.0, 0.0], [1.0, 0.0]]).T.reshape(1, 2, 1, 2)  # pixel 0 agrees with x
    assert layer_distance(x, y_same_first, head).item() == pytest.approx(2.0, abs=1e-6)


def test_forward_is_scaling_layer_then_sum_of_layer_terms(model):
    generator = torch.Generator().manual_seed(3)
    x, y = torch.rand(1, 3, 16, 16, generator=generator), torch.rand(1, 3, 16, 16, generator=generator)
    shift, scale = torch.tensor(SCALING_SHIFT).view(1, 3, 1, 1), torch.tensor(SCALING_SCALE).view(1, 3, 1, 1)
    feats = []
    for image in (x, y):
        h, taps = (2 * image - 1 - shift) / scale, []
        for index, layer in enumerate(model.features_stack):
            h = layer(h)
            if index in (3, 8, 15, 22, 29):
                taps.append(h)
        feats.append(taps)
    expected = 0.0
    for fx, fy, head in zip(*feats, model.heads):
        nx, ny = fx / (fx.norm(dim=1, keepdim=True) + 1e-10), fy / (fy.norm(dim=1, keepdim=True) + 1e-10)
        expected += (head.weight.view(1, -1, 1, 1) * (nx - ny) ** 2).sum(dim=1).mean()
    assert model(x, y).item() == pytest.approx(float(expected), rel=1e-5)


def test_bad_files_and_inputs_fail_in_one_line(tmp_path, files, model, monkeypatch):
    backbone, heads, _ = files
    with pytest.raises(LPIPSError, match="not found"):
        LPIPS(backbone=str(tmp_path / "none.pth"), heads=str(heads))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    with pytest.raises(LPIPSError, match="vgg16-397923af.pth"):
        default_backbone_path()
    wrong = {k: v for k, v in random_backbone_state().items() if k != "features.28.bias"}
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(UserError, match="features.28.bias"):
        LPIPS(backbone=str(tmp_path / "wrong.pth"), heads=str(heads))
    torch.save({f"lin{k}.model.1.weight": -torch.ones(1, w, 1, 1) for k, w in enumerate(BLOCK_WIDTHS)},
               tmp_path / "neg.pth")
    with pytest.raises(LPIPSError, match="negative"):
        load_heads(tmp_path / "neg.pth")
    with pytest.raises(LPIPSError, match="at least"):
        model(torch.zeros(1, 3, MIN_SIDE - 1, 32), torch.zeros(1, 3, MIN_SIDE - 1, 32))
