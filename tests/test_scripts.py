"""Shell entry points: they parse, and refuse clearly where they cannot run."""
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal; on a GPU the script trains")
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_train_gpu_script_refuses_without_a_gpu_in_one_line(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "train_gpu.sh")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: scripts/train_gpu.sh needs a CUDA GPU")
    assert "Traceback" not in done.stderr


def test_training_curve_leaves_out_the_gap_between_a_stop_and_its_resume():
    import json

    from scripts.training_curve import validation_curve

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


def _train(raw: dict, run_dir: Path) -> None:
    """A tiny run with its config.yaml, as train.py leaves one."""
    from conftest import make_context

    from mgsrgan.config import dump_config
    from mgsrgan.train.loop import train

    ctx = make_context(raw, run_dir)
    (run_dir / "config.yaml").write_text(dump_config(ctx.cfg))
    train(ctx, resume=False)


def _ship(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["python", str(ROOT / "scripts" / "ship_weights.py"), *args], capture_output=True,
                          text=True, timeout=120)


def test_ship_pretrain_only_replaces_just_the_continued_pixel_members(tmp_path):
    """A phase-1 continuation (train.init_from = the shipped folder) replaces only the pretrain files, each keeping
    the step it continued; gan files and config.yaml stay. A run that continued anything else is refused, untouched."""
    from conftest import tiny_config

    from mgsrgan.io.checkpoint import load_tensors, read_meta

    first, weights = tmp_path / "runs" / "first", tmp_path / "weights"
    _train(tiny_config(tmp_path, pretrain_steps=2, gan_iterations=1), first)
    assert _ship(str(first), "--dest", str(weights)).returncode == 0
    cont = tmp_path / "runs" / "cont"
    _train(tiny_config(tmp_path / "c", init_from=str(weights), pretrain_steps=1, gan_iterations=0, seed=5), cont)
    before = {p: p.read_bytes() for p in (*weights.glob("member_*/gan.safetensors"), weights / "config.yaml")}
    other = tmp_path / "runs" / "other"
    _train(tiny_config(tmp_path / "o", pretrain_steps=1, gan_iterations=0), other)
    refused = _ship(str(other), "--dest", str(weights), "--pretrain-only")
    assert refused.returncode == 2 and "train.init_from" in refused.stderr and "Traceback" not in refused.stderr
    assert read_meta(weights / "member_0" / "pretrain.safetensors")["step"] == 2  # untouched

    done = _ship(str(cont), "--dest", str(weights), "--pretrain-only")
    assert done.returncode == 0, done.stderr
    for k in range(2):
        shipped = weights / f"member_{k}" / "pretrain.safetensors"
        source = cont / f"member_{k}" / "pretrain.safetensors"
        got, want = load_tensors(shipped), load_tensors(source)
        assert got.keys() == want.keys() and all(torch.equal(got[key], want[key]) for key in want)
        meta = read_meta(shipped)
        assert meta["step"] == 1 and meta["continues"]["step"] == 2 and meta["continues"]["config"]["train"]["seed"] == 0
    assert all(path.read_bytes() == data for path, data in before.items())
