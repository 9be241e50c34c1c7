"""The maintainer tools in tools/: shell entry points parse, and refuse clearly where they cannot run; the
training curve's reading of a run log."""
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal; on a GPU the script trains")
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_train_gpu_script_refuses_without_a_gpu_in_one_line(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "tools" / "train_gpu.sh")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: tools/train_gpu.sh needs a CUDA GPU")
    assert "Traceback" not in done.stderr


def test_training_curve_leaves_out_the_gap_between_a_stop_and_its_resume():
    import json

    from tools.training_curve import validation_curve

    def line(t, event, **fields):
        return json.dumps({"time": t, "event": event, **fields})
    lines = [line(0, "start"), line(60, "val", member=0, phase="pretrain", step=100, psnr=25.0),
             line(60, "val", member=1, phase="pretrain", step=100, psnr=27.0),
             line(120, "train", member=0, phase="pretrain", step=150),
             line(3720, "start"),  # an hour stopped: not training time
             line(3780, "val", member=0, phase="pretrain", step=200, psnr=28.0),
             line(3840, "val", member=1, phase="pretrain", step=200, psnr=30.0)]
    curves = validation_curve(lines)
    assert [(m, p) for m, p, _, _ in curves["0"]] == [(1.0, 25.0), (3.0, 28.0)]
    assert [(m, p, step) for m, p, _, step in curves["mean"]] == [(1.0, 26.0, 100), (4.0, 29.0, 200)]


def test_the_campaign_curve_is_psnr_against_the_stages_cpu_hours(tmp_path):
    import json

    from tools.training_curve import main as curve_main

    records = [{"event": "val", "stage": "x2-pixel", "step": 500, "patches": 8000, "cpu_s": 1800.0, "psnr": 29.7},
               {"event": "tick", "stage": "x2-pixel", "cpu_s": 2000.0},
               {"event": "val", "stage": "x4-pixel", "step": 500, "patches": 8000, "cpu_s": 900.0, "psnr": 27.0},
               {"event": "val", "stage": "x2-pixel", "step": 1000, "patches": 16000, "cpu_s": 5400.0, "psnr": 29.9}]
    log = tmp_path / "campaign_log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert curve_main(["--campaign", str(log), "--stage", "x2-pixel", "--out", str(tmp_path / "c.png")]) == 0
    rows = (tmp_path / "c.md").read_text().splitlines()[2:]
    assert rows == ["| 500 | 8,000 | 0.50 | 29.70 |", "| 1000 | 16,000 | 1.50 | 29.90 |"]
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert curve_main(["--campaign", str(log), "--stage", "x8", "--out", str(tmp_path / "c.png")]) == 2
