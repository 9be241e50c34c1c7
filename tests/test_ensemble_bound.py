"""research/ensemble_bound.py's --members: checkpoints of other depths and widths load side by side."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mgsrgan.io.checkpoint import arch_of, save_checkpoint
from mgsrgan.models.generator import Generator
from research.decompose import gram, stacking_weights
from research.ensemble_bound import (TEXTURE_BINS, image_row, load_mixed, markdown, set_summary, stacked,
                                     y_levels)


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


def test_rows_and_table_say_where_the_error_lies():
    gen = torch.Generator().manual_seed(3)
    hr = (40 + torch.rand(64, 96, 3, generator=gen) * 175).round().to(torch.uint8).numpy()  # no clipping below
    hr_t = torch.from_numpy(hr.copy()).permute(2, 0, 1).float() / 255
    lr = torch.nn.functional.avg_pool2d(hr_t[None], 2)
    bias = 0.02 * torch.randn(1, 1, 3, 64, 96, generator=gen)  # shared by both members
    noise = 0.02 * torch.randn(2, 1, 3, 64, 96, generator=gen)
    outputs = hr_t[None, None] + bias + noise
    rows, stats = zip(image_row(outputs, hr, lr, 2, None), image_row(outputs.flip(0), hr, lr, 2, None))
    assert [st["n"] for st in stats] == [60 * 92] * 2  # Y pixels after the 2 px crop, kept for the stacking
    summary = set_summary(list(rows))
    assert len(summary["texture_sse_share"]) == TEXTURE_BINS
    assert sum(summary["texture_sse_share"]) == pytest.approx(1.0)
    # a shared error and an own one of the same size everywhere: per pixel, member error b^2 + s^2 = 2 s^2 and
    # spread (K = 2) s^2 / 2, a quarter of it, in every quartile
    assert summary["texture_spread_share"] == pytest.approx([0.25] * TEXTURE_BINS, abs=0.06)
    assert summary["spread_share"] == pytest.approx(0.25, abs=0.04)
    table = markdown({"tiny": summary}, 2)
    assert "| tiny | " in table.split("quartile 4 |")[1]
    assert table.count(" % / ") == TEXTURE_BINS


def test_stacked_scores_each_member_and_the_fitted_combination():
    gen = torch.Generator().manual_seed(6)
    hr = (40 + torch.rand(32, 48, 3, generator=gen) * 175).round().to(torch.uint8).numpy()
    hr_t = torch.from_numpy(hr.copy()).permute(2, 0, 1).float() / 255
    err = 0.02 * torch.randn(1, 1, 3, 32, 48, generator=gen)
    noise = 0.002 * torch.randn(2, 1, 3, 32, 48, generator=gen)  # each member's own, 10x smaller
    outputs = torch.cat([hr_t[None, None] + err, hr_t[None, None] - 2 * err]) + noise  # errors of opposite sign
    st = [gram(y_levels(outputs[:, 0], 2), y_levels(hr_t.double(), 2))]  # as image_row keeps it
    weights = stacking_weights(st[0])
    assert weights.tolist() == pytest.approx([2 / 3, 1 / 3], abs=0.01)  # 2/3 (t + e) + 1/3 (t - 2e) = t
    result = stacked(st, weights)
    # member 0's error is half member 1's: ~6 dB apart; the stack cancels the shared part, leaving the own noise
    assert result["member_float_psnr"][0] - result["member_float_psnr"][1] == pytest.approx(6.02, abs=0.1)
    assert 15 < result["gain_over_best"] < 25
    plain = stacked(st, torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert plain["gain_over_best"] == pytest.approx(0.0, abs=1e-9)
