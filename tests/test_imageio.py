"""Image modes in and out (RGB, RGBA, L, LA, P, CMYK, 16-bit), EXIF orientation, bad files, atomic writes."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mgsrgan.errors import UserError
from mgsrgan.imageio import (VIRIDIS_ANCHORS, BadImageError, ImageWriteError, colorize_uncertainty,
                             format_for_extension, from_pil, output_format, read_image, to_pil, write_image)

EXIF_ORIENTATION_TAG = 0x0112  # EXIF 2.3, tag 274
ROTATE_90_CW = 6  # EXIF orientation value: the stored image must be turned 90 degrees clockwise to be upright


def rng_image(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8).squeeze()


def upscale_nearest(lr_img: torch.Tensor, scale: int) -> torch.Tensor:
    return lr_img.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)


def test_rgb_round_trip_exact():
    arr = rng_image(5, 7, 3)
    lr_img, info = from_pil(Image.fromarray(arr))
    assert lr_img.shape == (3, 5, 7) and lr_img.dtype == torch.float32 and info.mode == "RGB" and info.alpha is None
    assert np.array_equal(np.asarray(to_pil(lr_img, info)), arr)


def test_rgba_alpha_is_upscaled_bicubic_and_reattached():
    arr = rng_image(6, 4, 4)
    lr_img, info = from_pil(Image.fromarray(arr))
    assert info.mode == "RGBA" and np.allclose(lr_img.numpy().transpose(1, 2, 0), arr[..., :3] / 255.0, atol=1e-7)
    out = to_pil(upscale_nearest(lr_img, 2), info)
    expected_alpha = Image.fromarray(arr[..., 3]).resize((8, 12), Image.BICUBIC)
    assert out.mode == "RGBA" and out.size == (8, 12)
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(expected_alpha))
    assert np.array_equal(np.asarray(out)[::2, ::2, :3], arr[..., :3])


@pytest.mark.parametrize("mode", ["L", "LA", "1"])
def test_gray_runs_replicated_and_comes_back_single_channel(mode):
    base = Image.fromarray(rng_image(5, 6, 2)).convert("LA") if mode == "LA" else Image.fromarray(rng_image(5, 6, 1))
    img = base if mode == "LA" else base.convert(mode)
    lr_img, info = from_pil(img)
    assert torch.equal(lr_img[0], lr_img[1]) and torch.equal(lr_img[1], lr_img[2])
    out = to_pil(lr_img, info)
    assert out.mode == ("LA" if mode == "LA" else "L")
    assert np.array_equal(np.asarray(out.getchannel(0)), np.asarray(img.convert("L")))


def test_palette_and_cmyk_become_rgb_or_rgba():
    rgb = Image.fromarray(rng_image(6, 6, 3))
    palette = rgb.convert("P")
    lr_img, info = from_pil(palette)
    assert info.mode == "RGB" and np.array_equal(np.asarray(to_pil(lr_img, info)), np.asarray(palette.convert("RGB")))
    palette.info["transparency"] = 0
    assert from_pil(palette)[1].mode == "RGBA"
    cmyk = rgb.convert("CMYK")
    lr_img, info = from_pil(cmyk)
    assert info.mode == "RGB" and np.array_equal(np.asarray(to_pil(lr_img, info)), np.asarray(cmyk.convert("RGB")))


def test_sixteen_bit_png_keeps_its_precision(tmp_path):
    values = np.array([[0, 1000, 1001, 65535], [12345, 257, 40000, 2]], dtype=np.uint16)  # 1000/1001: one 8-bit level
    Image.fromarray(values).save(tmp_path / "in.png")
    lr_img, info = read_image(tmp_path / "in.png")
    assert info.mode == "I;16" and info.format == "PNG"
    assert torch.allclose(lr_img[0].double(), torch.from_numpy(values / 65535.0), atol=1e-7)
    write_image(to_pil(lr_img, info), tmp_path / "out.png", fmt="PNG")
    back = Image.open(tmp_path / "out.png")
    assert back.mode.startswith("I") and np.array_equal(np.asarray(back), values)
    write_image(to_pil(lr_img, info), tmp_path / "out.jpg", fmt="JPEG")  # JPEG holds 8 bits: degraded, not refused
    assert Image.open(tmp_path / "out.jpg").mode == "L"


def test_exif_orientation_is_applied(tmp_path):
    arr = rng_image(4, 10, 3)  # stored 10 wide, 4 high; orientation 6 means upright is 4 wide, 10 high
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = ROTATE_90_CW
    Image.fromarray(arr).save(tmp_path / "rot.png", exif=exif)
    lr_img, _ = read_image(tmp_path / "rot.png")
    assert lr_img.shape == (3, 10, 4)
    expected = np.rot90(arr, k=-1)  # 90 degrees clockwise
    assert np.array_equal(np.round(lr_img.numpy().transpose(1, 2, 0) * 255).astype(np.uint8), expected)


def test_bad_inputs_name_the_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image at all")
    Image.fromarray(rng_image(64, 64, 3)).save(tmp_path / "good.png")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    cases = {"empty.png": "empty file", "text.png": "not an image", "cut.png": "corrupt", "nope.png": "No such file"}
    for name, reason in cases.items():
        with pytest.raises(BadImageError, match=reason) as info:
            read_image(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)
    Image.fromarray(np.ones((4, 4), dtype=np.float32)).save(tmp_path / "float.tif")  # mode F: no RGB meaning
    with pytest.raises(BadImageError, match="float.tif: image mode 'F'"):
        read_image(tmp_path / "float.tif")
    with pytest.raises(BadImageError, match="decompression bomb"):
        read_image(tmp_path / "good.png", max_pixels=64 * 64 - 1)
    assert read_image(tmp_path / "good.png", max_pixels=64 * 64)[0].shape == (3, 64, 64)


def test_writes_are_atomic_and_failures_name_the_file(tmp_path):
    img = Image.fromarray(rng_image(8, 8, 4))
    write_image(img, tmp_path / "sub" / "a.jpg", fmt="JPEG")  # creates the folder; JPEG drops the alpha
    assert Image.open(tmp_path / "sub" / "a.jpg").mode == "RGB"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.jpg"]  # no temp file left behind
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(ImageWriteError, match="cannot write") as info:
        write_image(img, tmp_path / "file" / "a.png", fmt="PNG")
    assert str(tmp_path / "file" / "a.png") in str(info.value)

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    original_save = Image.Image.save
    Image.Image.save = boom
    try:
        with pytest.raises(ImageWriteError, match="No space left"):
            write_image(img, tmp_path / "full.png", fmt="PNG")
    finally:
        Image.Image.save = original_save
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "sub"]  # no partial file


def test_format_for_extension():
    assert format_for_extension("png") == "PNG" and format_for_extension(".JPG") == "JPEG"
    assert output_format(Path("a.jpeg"), "PNG") == "JPEG" and output_format(Path("a.dat"), "PNG") == "PNG"
    assert format_for_extension("webp") == "WEBP"
    with pytest.raises(UserError, match="xyz"):
        format_for_extension("xyz")


def test_uncertainty_colormap_scale():
    std = torch.tensor([[0.0, 0.025, 0.05, 0.5]])  # full scale 0.05: bottom, middle, top, clipped
    rgb = np.asarray(colorize_uncertainty(std, full_scale=0.05))
    assert rgb.shape == (1, 4, 3)
    assert tuple(rgb[0, 0]) == VIRIDIS_ANCHORS[0] and tuple(rgb[0, 1]) == VIRIDIS_ANCHORS[2]
    assert tuple(rgb[0, 2]) == tuple(rgb[0, 3]) == VIRIDIS_ANCHORS[-1]
