"""VGG trunk: layout, truncation, freezing and strict weight loading (offline; weight files made in the tests)."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from mgsrgan.errors import UserError, VGGWeightsError
from mgsrgan.io.weightfiles import resolve_imagenet_file, resolve_stlpips_file
from mgsrgan.models.trunks import (VGG16_BLOCKS, VGG16_LAYERS, VGG19_BLOCKS, VGG19_LAYERS, BlurDownsample,
                                   expected_shapes)
from mgsrgan.models.vgg import IMAGENET_MEAN, IMAGENET_STD, VGGFeatures

# torchvision's vgg19().features puts its 16 convs at these Sequential indices (pools at 4, 9, 18, 27, 36)
TORCHVISION_VGG19_CONVS = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
HAS_STLPIPS = importlib.util.find_spec("stlpips_pytorch") is not None


def torchvision_layout_state(seed: int = 1) -> dict[str, torch.Tensor]:
    """A state dict shaped like vgg19-dcbb9e9d.pth: random features.*, and a (tiny) classifier.* to be ignored."""
    generator = torch.Generator().manual_seed(seed)
    state = {f"features.{k}": torch.randn(shape, generator=generator) * 0.05
             for k, shape in expected_shapes(VGG19_BLOCKS, anti_aliased=False).items()}
    state.update({"classifier.0.weight": torch.zeros(2, 2), "classifier.6.bias": torch.zeros(2)})
    return state


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg19-fake.pth"
    torch.save(torchvision_layout_state(), path)
    return path


def test_layer_names_and_torchvision_indices():
    assert VGG19_LAYERS[:4] == ("1_1", "1_2", "2_1", "2_2") and VGG19_LAYERS[-1] == "5_4" and len(VGG19_LAYERS) == 16
    assert VGG16_LAYERS[-1] == "5_3" and len(VGG16_LAYERS) == 13
    shapes = expected_shapes(VGG19_BLOCKS, anti_aliased=False)
    assert sorted({int(k.split(".")[0]) for k in shapes}) == list(TORCHVISION_VGG19_CONVS)
    assert shapes["0.weight"] == (64, 3, 3, 3) and shapes["34.weight"] == (512, 512, 3, 3)
    assert sum(s.numel() for s in shapes.values()) == 20_024_384  # torchvision vgg19 features parameter count


@pytest.mark.parametrize("layer, channels, factor, modules", [("1_1", 64, 1, 2), ("2_2", 128, 2, 9),
                                                              ("3_4", 256, 4, 18), ("5_4", 512, 16, 36)])
def test_truncation_gives_channels_and_size(layer, channels, factor, modules):
    vgg = VGGFeatures(layer=layer, weights="random")
    assert len(vgg.features) == modules  # nothing past the requested ReLU is built
    out = vgg(torch.rand(1, 3, 32, 48))
    assert out.shape == (1, channels, 32 // factor, 48 // factor)


def test_before_relu_differs_from_after():
    img = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    before = VGGFeatures(layer="2_2", before_relu=True, weights="random")(img)
    after = VGGFeatures(layer="2_2", weights="random")(img)
    assert before.min() < 0 and after.min() >= 0
    torch.testing.assert_close(after, before.clamp(min=0))


def test_frozen_eval_and_deterministic_random_init():
    vgg = VGGFeatures(layer="2_1", weights="random")
    assert all(not p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training and not any(m.training for m in vgg.modules())
    again = VGGFeatures(layer="2_1", weights="random")
    torch.testing.assert_close(vgg.features[0].weight, again.features[0].weight, rtol=0, atol=0)
    assert "mean" not in vgg.state_dict()  # normalisation constants are not checkpoint state


def test_normalisation_uses_imagenet_statistics():
    vgg = VGGFeatures(layer="1_1", before_relu=True, weights="random")
    mean_img = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    out = vgg(mean_img)  # normalised input is exactly 0, so the conv returns its bias (0 for random init)
    assert out.abs().max() == 0
    one = vgg(mean_img + torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))  # normalised input is exactly 1
    conv = vgg.features[0]
    expected = conv.weight[:, :, 1:, 1:].sum(dim=(1, 2, 3))  # top-left pixel: zero padding hides row/col 0
    torch.testing.assert_close(one[0, :, 0, 0], expected, rtol=1e-5, atol=1e-5)


def test_torchvision_layout_loads_strictly(imagenet_file):
    state = torchvision_layout_state()
    vgg = VGGFeatures(layer="2_2", weights="imagenet", path=str(imagenet_file))
    for index in (0, 2, 5, 7):
        torch.testing.assert_close(vgg.features[index].weight, state[f"features.{index}.weight"], rtol=0, atol=0)
        torch.testing.assert_close(vgg.features[index].bias, state[f"features.{index}.bias"], rtol=0, atol=0)
    deep = VGGFeatures(layer="5_4", weights="imagenet", path=str(imagenet_file))
    torch.testing.assert_close(deep.features[34].weight, state["features.34.weight"], rtol=0, atol=0)
    assert deep(torch.rand(1, 3, 32, 32)).shape == (1, 512, 2, 2)


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("features.34.weight"), "missing keys ['features.34.weight']"),
    (lambda s: s.__setitem__("features.3.weight", torch.zeros(1)), "unexpected keys ['features.3.weight']"),
    (lambda s: s.__setitem__("head.weight", torch.zeros(1)), "unexpected keys ['head.weight']"),
    (lambda s: s.__setitem__("features.5.weight", torch.zeros(128, 64, 1, 1)), "features.5.weight has shape"),
])
def test_damaged_torchvision_file_is_a_clear_error(tmp_path, damage, message):
    state = torchvision_layout_state()
    damage(state)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(VGGWeightsError, match="not torchvision's VGG19") as err:
        VGGFeatures(layer="1_1", weights="imagenet", path=str(path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_unreadable_or_missing_file(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(VGGWeightsError, match="not a readable PyTorch weight file"):
        VGGFeatures(layer="1_1", weights="imagenet", path=str(garbage))
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(VGGWeightsError, match="expected a state dict"):
        VGGFeatures(layer="1_1", weights="imagenet", path=str(listing))
    with pytest.raises(UserError, match="loss.vgg_path: .*nowhere.pth does not exist"):
        resolve_imagenet_file(str(tmp_path / "nowhere.pth"))  # callers resolve the path before VGGFeatures


def test_stlpips_layout_maps_into_anti_aliased_vgg16(tmp_path):
    """A fake file with ST-LPIPS's key layout: net.slice<k>.<index>.*, scaling_layer.*, lin<k>.* heads."""
    generator = torch.Generator().manual_seed(2)
    slice_ends = (4, 10, 18, 26, 34)  # the package cuts its flat stack after relu1_2, 2_2, 3_3, 4_3, 5_3
    state = {}
    for key, shape in expected_shapes(VGG16_BLOCKS, anti_aliased=True).items():
        index = int(key.split(".")[0])
        block = 1 + sum(index >= end for end in slice_ends)
        state[f"net.slice{block}.{key}"] = (torch.randn(shape, generator=generator) * 0.05 if "filt" not in key
                                            else BlurDownsample(shape[0]).filt)
    state["scaling_layer.shift"] = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    state["scaling_layer.scale"] = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    state["lin0.model.1.weight"] = torch.zeros(1, 64, 1, 1)
    path = tmp_path / "vgg_shift_tolerant.pth"
    torch.save(state, path)
    vgg = VGGFeatures(layer="2_2", weights="stlpips", path=str(path))
    torch.testing.assert_close(vgg.features[8].weight, state["net.slice2.8.weight"], rtol=0, atol=0)
    torch.testing.assert_close(vgg.mean.flatten(), torch.tensor(IMAGENET_MEAN), rtol=0, atol=1e-6)
    torch.testing.assert_close(vgg.std.flatten(), torch.tensor(IMAGENET_STD), rtol=0, atol=1e-6)
    assert vgg(torch.rand(1, 3, 24, 24)).shape == (1, 128, 13, 13)  # pool: floor(24 / 2) + 1
    del state["net.slice5.32.bias"]
    torch.save(state, path)
    with pytest.raises(VGGWeightsError, match=r"missing keys \['net.slice\*.32.bias'\]"):
        VGGFeatures(layer="1_1", weights="stlpips", path=str(path))
    with pytest.raises(UserError, match="not a layer of the stlpips VGG trunk"):
        VGGFeatures(layer="5_4", weights="stlpips", path=str(path))


def test_blur_downsample_size_and_constant_preserved():
    out = BlurDownsample(2)(torch.full((1, 2, 9, 12), 0.3))
    assert out.shape == (1, 2, 6, 7)  # floor((H + 2 * 2 - 3) / 2) + 1
    torch.testing.assert_close(out, torch.full_like(out, 0.3))


@pytest.mark.skipif(not HAS_STLPIPS, reason="stlpips-pytorch==0.0.2 not installed (it ships the weight file)")
def test_real_stlpips_trunk_matches_the_package():
    """Reference values from the package's own vggnet(variant='shift_tolerant') on the same input (computed once
    with torchvision/IPython stubbed out), seed-0 torch.rand(1, 3, 24, 24)."""
    img = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    relu2_2 = VGGFeatures(layer="2_2", weights="stlpips", path=resolve_stlpips_file())(img)
    assert relu2_2.shape == (1, 128, 13, 13)
    assert relu2_2.mean().item() == pytest.approx(0.080574, abs=2e-6)
    torch.testing.assert_close(relu2_2[0, :3, 0, 0], torch.tensor([0.0, 0.5853830, 0.0]), rtol=0, atol=2e-6)
    relu5_3 = VGGFeatures(layer="5_3", weights="stlpips", path=resolve_stlpips_file())(img)
    assert relu5_3.shape == (1, 512, 3, 3) and relu5_3.mean().item() == pytest.approx(6.095878, rel=1e-5)


def test_stlpips_not_installed_names_the_fix(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"pip install stlpips-pytorch==0.0.2.*loss.vgg_path"):
        resolve_stlpips_file()
