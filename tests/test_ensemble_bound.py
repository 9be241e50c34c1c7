"""benchmarks/ensemble_bound.py's --members: checkpoints of other depths and widths load side by side."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.ensemble_bound import load_mixed
from mgsrgan.io.checkpoint import arch_of, save_checkpoint
from mgsrgan.models.generator import Generator


def save(path: Path, generator: Generator) -> Path:
    arch = arch_of(generator)
    meta = {"arch": {"scale": arch.scale, "num_blocks": arch.num_blocks, "channels": arch.channels}, "member": 0,
            "seed": 0, "phase": "pretrain", "step": 1, "val": None, "config": {}}
    save_checkpoint(path, {f"generator.{k}": v for k, v in generator.state_dict().items()}, meta)
    return path


def test_load_mixed_keeps_each_architecture_and_its_function(tmp_path):
    torch.manual_seed(0)
    deep = Generator(scale=2, num_blocks=3, channels=6).eval()
    wide = Generator(scale=2, num_blocks=1, channels=12).eval()
    loaded = load_mixed([save(tmp_path / "deep.safetensors", deep), save(tmp_path / "wide.safetensors", wide)])
    lr = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        for original, restored in zip((deep, wide), loaded):
            assert restored.num_blocks == original.num_blocks and restored.channels == original.channels
            # BN folded for inference: the same function to float rounding
            torch.testing.assert_close(restored(lr), original(lr), atol=1e-5, rtol=1e-4)


def test_load_mixed_refuses_two_scales(tmp_path):
    x2 = save(tmp_path / "x2.safetensors", Generator(scale=2, num_blocks=1, channels=4))
    x4 = save(tmp_path / "x4.safetensors", Generator(scale=4, num_blocks=1, channels=4))
    with pytest.raises(SystemExit, match="mix scales"):
        load_mixed([x2, x4])
