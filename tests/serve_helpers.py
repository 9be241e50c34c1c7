"""Tiny x2 ensembles and images for the server tests (test_serve.py, test_serve_browser.py): a run folder with
pretrain and gan checkpoints, loaded as the server loads the shipped weights."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from mgsrgan.io.checkpoint import save_checkpoint
from mgsrgan.serve.members import Bank, load_bank
from tests.conftest import SCALE, tiny_generator

PIXEL_PSNR = (24.0, 25.0, 24.5)
GAN_ALEX = (0.02, 0.03, 0.05)


def save_serve_run(run: Path, seed_offset: int = 0) -> Path:
    """run/member_<k>/{pretrain,gan}.safetensors for 3 tiny x2 members (gan ones scored with ST-LPIPS-Alex);
    `seed_offset` shifts every member's seed (another ensemble, other outputs)."""
    for member in range(3):
        folder = run / f"member_{member}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, seed, val in (("pretrain", seed_offset + 10 + member, {"psnr": PIXEL_PSNR[member], "ssim": 0.5}),
                                ("gan", seed_offset + 20 + member, {"psnr": PIXEL_PSNR[member] - 0.5,
                                                                   "stlpips_alex": GAN_ALEX[member]})):
            generator = tiny_generator(seed)
            meta = {"arch": {"scale": SCALE, "num_blocks": 1, "channels": 8}, "member": member, "seed": seed,
                    "phase": name, "step": 5, "val": val, "config": {}}
            save_checkpoint(folder / f"{name}.safetensors",
                            {f"generator.{k}": v for k, v in generator.state_dict().items()}, meta)
    return run


def tiny_bank(run: Path, tile: int = 8) -> Bank:
    return load_bank(scale=SCALE, run=save_serve_run(run), device="cpu", precision="fp32", tile=tile)


def image_bytes(size: tuple[int, int] = (20, 14), mode: str = "RGB", fmt: str = "PNG", seed: int = 0) -> bytes:
    """A smooth colour image with some noise, `size` = (width, height), in `mode`, encoded as `fmt`."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = 0.5 + 0.35 * np.sin(x / 3.0 + y / 4.0)[..., None] * np.array([1.0, 0.6, -0.4])
    rgb = np.clip(rgb + rng.normal(0, 0.04, rgb.shape), 0, 1)
    img = Image.fromarray((rgb * 255).round().astype(np.uint8))
    if mode == "RGBA":
        img.putalpha(Image.fromarray(((x * 255) // max(width - 1, 1)).astype(np.uint8)))
    elif mode == "L":
        img = img.convert("L")
    elif mode == "I;16":
        img = Image.fromarray((np.asarray(img.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def decode(content: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(content))
    img.load()
    return img
