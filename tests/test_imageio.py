"""Image modes in and out (RGB, RGBA, L, LA, P, CMYK, 16-bit gray and colour), EXIF orientation, bad files,
atomic writes."""
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torch import nn

from mgsrgan.io.checkpoint import save_checkpoint
from mgsrgan.errors import UserError
from mgsrgan.models.generator import Generator
from mgsrgan.io.images import (VIRIDIS_ANCHORS, BadImageError, ImageWriteError, Rgb16Image, colorize_uncertainty,
                             format_for_extension, from_pil, orient, output_format, read_image, to_pil, write_image)
from mgsrgan.cli.infer import main as inference_main
from mgsrgan.io.png16 import is_png16_color, read_png16, write_png16
from mgsrgan.infer.upscaler import Upscaler

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


def test_uncertainty_map_by_default_spans_the_palette():
    """The members' std is small almost everywhere and large on a few edges (here exponential, mean 0.2 levels): a
    fixed top colour left such a map almost uniformly dark; the default range is the image's own spread."""
    std = torch.from_numpy(np.random.default_rng(0).exponential(0.2 / 255, (1, 64, 64)))
    green = np.asarray(colorize_uncertainty(std))[..., 1]  # viridis' green rises monotonically, 1 -> 231
    assert green.min() == VIRIDIS_ANCHORS[0][1] and green.max() == VIRIDIS_ANCHORS[-1][1]
    assert (green > VIRIDIS_ANCHORS[1][1]).mean() > 0.25  # over a quarter of the pixels past the first quarter
    assert np.asarray(colorize_uncertainty(torch.zeros(1, 8, 8)))[..., 1].max() == VIRIDIS_ANCHORS[0][1]  # agree


def rng_image16(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, (h, w, channels), dtype=np.uint16)


class NearestX2(nn.Module):
    """A stand-in generator that copies each pixel to a 2x2 block: the output must hold the input's exact values."""

    scale = 2

    def receptive_radius(self) -> int:
        return 0

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        return lr_img.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_color_png_in_and_out(tmp_path, channels):
    values = rng_image16(5, 6, channels)
    values[0, 0, :3] = (1000, 1001, 65535)  # 1000/1001: one 8-bit level
    profile = b"an ICC profile, carried as bytes"
    write_png16(tmp_path / "in.png", values, icc_profile=profile)
    lr_img, info = read_image(tmp_path / "in.png")
    assert info.mode == ("RGB;16" if channels == 3 else "RGBA;16") and info.format == "PNG"
    assert info.icc_profile == profile
    assert torch.allclose(lr_img.double().permute(1, 2, 0), torch.from_numpy(values[..., :3] / 65535.0), atol=1e-7)
    out = to_pil(lr_img, info)  # same size: the alpha resize is the identity
    assert isinstance(out, Rgb16Image) and out.size == (6, 5) and np.array_equal(out.pixels, values)
    write_image(out, tmp_path / "out.png", fmt="PNG", icc_profile=info.icc_profile)
    assert is_png16_color(tmp_path / "out.png") and np.array_equal(read_png16(tmp_path / "out.png"), values)
    assert Image.open(tmp_path / "out.png").info["icc_profile"] == profile
    write_image(out, tmp_path / "out.tif", fmt="TIFF")  # other formats: 8 bits, round(value / 257)
    with Image.open(tmp_path / "out.tif") as back:
        assert back.mode == ("RGB" if channels == 3 else "RGBA")
        assert np.array_equal(np.asarray(back), np.round(values / 257.0).astype(np.uint8))
    write_image(out, tmp_path / "out.jpg", fmt="JPEG")
    assert Image.open(tmp_path / "out.jpg").mode == "RGB"


@pytest.mark.parametrize("channels", [3, 4])
def test_upscaler_keeps_sixteen_bit_precision(tmp_path, channels):
    values = rng_image16(4, 5, channels, seed=channels)
    write_png16(tmp_path / "in.png", values)
    lr_img, info = read_image(tmp_path / "in.png")
    sr_img = Upscaler(NearestX2()).upscale_tensor(lr_img)
    write_image(to_pil(sr_img, info), tmp_path / "out.png", fmt="PNG")
    out = read_png16(tmp_path / "out.png")
    assert out.shape == (8, 10, channels)
    assert np.array_equal(out[::2, ::2, :3], values[..., :3]) and np.array_equal(out[1::2, 1::2, :3], values[..., :3])
    if channels == 4:
        expected_alpha = Image.fromarray(values[..., 3]).resize((10, 8), Image.BICUBIC)
        assert np.array_equal(out[..., 3], np.asarray(expected_alpha))
    assert np.any(out % 257 != 0)


def test_inference_writes_sixteen_bit_png(tmp_path, capsys):
    torch.manual_seed(0)
    generator = Generator(scale=2, num_blocks=1, channels=8)
    meta = {"arch": {"scale": 2, "num_blocks": 1, "channels": 8}, "member": 0, "seed": 0, "phase": "pretrain",
            "step": 1, "val": {"psnr": 30.0, "ssim": 0.9}, "config": {}}
    save_checkpoint(tmp_path / "m.safetensors", {f"generator.{k}": v for k, v in generator.state_dict().items()}, meta)
    (tmp_path / "in").mkdir()
    write_png16(tmp_path / "in" / "a.png", rng_image16(6, 5, 3))
    code = inference_main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                           "--weights", str(tmp_path / "m.safetensors"), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert is_png16_color(tmp_path / "out" / "a.png")
    out = read_png16(tmp_path / "out" / "a.png")
    assert out.shape == (12, 10, 3) and np.any(out % 257 != 0)  # real 16-bit levels, not 8-bit ones scaled up


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow_exif_transpose(orientation):
    arr = rng_image(3, 5, 3)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(buffer)))
    assert np.array_equal(orient(arr, orientation), expected)


def test_sixteen_bit_color_png_exif_orientation(tmp_path):
    values = rng_image16(4, 10, 3)
    write_png16(tmp_path / "plain.png", values)
    data = (tmp_path / "plain.png").read_bytes()
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = ROTATE_90_CW
    body = exif.tobytes()[len(b"Exif\0\0"):]  # the eXIf chunk holds the TIFF structure without the JPEG prefix
    chunk = struct.pack(">I4s", len(body), b"eXIf") + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    ihdr_end = 8 + 8 + 13 + 4
    (tmp_path / "rot.png").write_bytes(data[:ihdr_end] + chunk + data[ihdr_end:])
    lr_img, _ = read_image(tmp_path / "rot.png")
    assert lr_img.shape == (3, 10, 4)
    assert np.array_equal(np.round(lr_img.numpy().transpose(1, 2, 0) * 65535).astype(np.uint16),
                          np.rot90(values, k=-1))


def test_corrupt_sixteen_bit_color_png_names_the_file(tmp_path):
    write_png16(tmp_path / "good.png", rng_image16(32, 32, 3))
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    with pytest.raises(BadImageError, match="truncated") as info:
        read_image(tmp_path / "cut.png")
    assert str(tmp_path / "cut.png") in str(info.value)
    with pytest.raises(BadImageError, match="decompression bomb"):
        read_image(tmp_path / "good.png", max_pixels=32 * 32 - 1)


def test_damaged_metadata_reads_without_pillow_warnings(tmp_path):
    """A TIFF tag whose data lies past the end of the file: Pillow skips it with a UserWarning (a source line on the
    user's terminal); read_image reads the pixels and says nothing (tests/test_fuzz_images.py found it)."""
    import warnings

    pixels = rng_image(4, 5, 3, seed=3)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="TIFF")
    data = bytearray(buffer.getvalue())
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if struct.unpack_from("<H", data, entry)[0] == 284:  # PlanarConfiguration: 1000 values, stored past the end
            struct.pack_into("<II", data, entry + 4, 1000, len(data) + 64)
    (tmp_path / "a.tif").write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tensor, info = read_image(tmp_path / "a.tif")
    assert [str(w.message) for w in caught] == []
    assert info.mode == "RGB" and torch.equal((tensor * 255).round().to(torch.uint8).permute(1, 2, 0),
                                              torch.from_numpy(pixels))
