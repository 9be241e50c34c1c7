"""Checkpoint files: atomic writes survive a kill, bad files give clear errors, optimizers round-trip."""
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mgsrgan.io.checkpoint import (CheckpointError, arch_of, load_generator, load_tensors, optimizer_tensors, read_meta,
                                restore_optimizer, save_checkpoint)
from mgsrgan.models.generator import Generator

ROOT = Path(__file__).resolve().parents[1]

WRITER = textwrap.dedent("""
    import sys, torch
    from mgsrgan.io.checkpoint import save_checkpoint
    path = sys.argv[1]
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        save_checkpoint(path, {"w": torch.full((4_000_000,), float(i))}, {"i": i})
""")


def test_a_checkpoint_survives_a_kill_during_writing(tmp_path):
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, {"w": torch.zeros(4_000_000)}, {"i": 0})
    for delay in (0.3, 0.55, 0.8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)  # no cleanup handlers run: the worst case
        proc.wait()
        meta = read_meta(path)
        weights = load_tensors(path)["w"]
        assert torch.all(weights == float(meta["i"]))  # a whole, consistent file: never a half-written one


def test_generator_round_trip(tmp_path):
    generator = Generator(scale=2, num_blocks=1, channels=8)
    tensors = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    save_checkpoint(tmp_path / "g.safetensors", tensors, {"arch": {"scale": 2, "num_blocks": 1, "channels": 8}})
    loaded, meta = load_generator(tmp_path / "g.safetensors")
    assert meta["schema_version"] == 1 and not loaded.training
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(loaded(x), generator.eval()(x))


def test_the_bicubic_skip_is_recorded_and_old_checkpoints_have_none(tmp_path):
    generator = Generator(scale=2, num_blocks=1, channels=8, global_skip="bicubic")
    tensors = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    save_checkpoint(tmp_path / "g.safetensors", tensors, {"arch": dataclasses.asdict(arch_of(generator))})
    loaded, meta = load_generator(tmp_path / "g.safetensors")
    assert meta["arch"]["global_skip"] == "bicubic" and loaded.global_skip == "bicubic"
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(loaded(x), generator.eval()(x))
    save_checkpoint(tmp_path / "old.safetensors", tensors, {"arch": {"scale": 2, "num_blocks": 1, "channels": 8}})
    assert load_generator(tmp_path / "old.safetensors")[0].global_skip == "none"  # written before the field


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_meta(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_meta(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not an mgsrgan checkpoint"):
        read_meta(foreign)


def test_optimizer_state_round_trips_exactly():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.rand(4, 3)).sum().backward()
        optimizer.step()
    tensors, extra = optimizer_tensors(optimizer, "optim")
    fresh = torch.optim.Adam(model.parameters(), lr=1.0)
    restore_optimizer(fresh, {k[len("optim."):]: v for k, v in tensors.items()}, extra)
    a, b = optimizer.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for idx in a["state"]:
        for key in a["state"][idx]:
            assert torch.equal(a["state"][idx][key], b["state"][idx][key])
