"""benchmarks/plateau_probe.py on a tiny trained run: both variants start from the checkpoint's own score and train."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mgsrgan.io.checkpoint import read_meta
from mgsrgan.config import config_from_dict, dump_config
from mgsrgan.train.loop import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import plateau_probe  # noqa: E402
from tests.conftest import make_context, tiny_config  # noqa: E402


def test_probe_starts_at_the_checkpoint_score_and_trains(tmp_path: Path) -> None:
    raw = tiny_config(tmp_path, members=1, pretrain_steps=3, gan_iterations=0)
    run_dir = tmp_path / "runs" / "tiny"
    train(make_context(raw, run_dir), resume=False)
    checkpoint = run_dir / "member_0" / "pretrain.safetensors"
    config = tmp_path / "config.yaml"
    config.write_text(dump_config(config_from_dict(raw)))
    out = tmp_path / "probe.json"
    assert plateau_probe.main(["--checkpoint", str(checkpoint), "--config", str(config), "--steps", "3",
                               "--every", "2", "--lr", "1e-2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    batchnorm, folded = report["variants"]["batchnorm"], report["variants"]["folded"]
    assert [row["step"] for row in batchnorm] == [row["step"] for row in folded] == [0, 2, 3]
    # Step 0 is the checkpoint as trained: the score its own phase-end validation recorded; folding BatchNorm
    # keeps the outputs to float rounding.
    assert batchnorm[0]["psnr"] == pytest.approx(read_meta(checkpoint)["val"]["psnr"], abs=1e-9)
    assert folded[0]["psnr"] == pytest.approx(batchnorm[0]["psnr"], abs=0.05)
    for rows in (batchnorm, folded):  # lr 1e-2 moves a tiny network visibly in 2 steps
        assert abs(rows[1]["psnr"] - rows[0]["psnr"]) > 1e-3
    assert folded[-1]["psnr"] != pytest.approx(batchnorm[-1]["psnr"], abs=1e-6)  # two different networks trained


def test_probe_refuses_a_missing_checkpoint(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        plateau_probe.main(["--checkpoint", str(tmp_path / "none.safetensors"), "--config", str(tmp_path / "c.yaml")])
    assert exit_info.value.code == 2 and "none.safetensors: no such file" in capsys.readouterr().err
