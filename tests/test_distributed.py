"""torchrun on CPU (gloo): data-parallel equals one process, ensemble-parallel spreads members, a lost rank resumes."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mgsrgan.io.checkpoint import load_tensors, read_meta
from mgsrgan.config import config_from_dict
from mgsrgan.train.distributed import World
from mgsrgan.cli.train import main as train_main
from mgsrgan.train.loop import Context

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--config", str(ROOT / "configs" / "smoke.yaml"), "--no-progress",
         "--set", f"data.train_dirs=[{ROOT / 'data' / 'smoke'}]", "--set", f"data.val_dir={ROOT / 'data' / 'smoke'}",
         "--set", "train.log_every=1"]

KILL_RANK_1 = """
import os, signal, sys
import mgsrgan.cli.train as cli
import mgsrgan.train.loop as training
real, calls = training.pixel_step, [0]
def step(*args, **kwargs):
    calls[0] += 1
    if calls[0] == 5 and os.environ["RANK"] == "1":
        os._exit(3)  # a rank lost mid-run: no cleanup, no goodbye
    return real(*args, **kwargs)
training.pixel_step = step
summary = cli.resume_summary
def torchrun_stops_me_now(*args, **kwargs):
    # torchrun's SIGTERM to the survivor, landing while it words its resume message (the race CI lost once)
    os.kill(os.getpid(), signal.SIGTERM)
    return summary(*args, **kwargs)
cli.resume_summary = torchrun_stops_me_now
sys.exit(cli.main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(nproc: int, args: list[str], script: str = str(ROOT / "train.py")) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(free_port()), script, *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def losses(run: Path) -> list[tuple]:
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [(e["member"], e["phase"], e["step"], e.get("pixel", e.get("loss_d", e.get("content"))))
            for e in events if e["event"] == "train"]


def networks(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_tensors(path).items() if not k.startswith("rng.")}


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    result = torchrun(2, SMOKE + ["--set", f"train.out_dir={out}", "--name", "two", "--set", "train.members=1"])
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "two"


def test_two_processes_train_like_one(two_process_run, tmp_path):
    torch.set_num_threads(1)
    assert train_main(SMOKE + ["--set", f"train.out_dir={tmp_path}", "--name", "one",
                               "--set", "train.members=1"]) == 0
    one, two = losses(tmp_path / "one"), losses(two_process_run)
    assert [row[:3] for row in one] == [row[:3] for row in two] and len(one) == 12
    for a, b in zip(one, two):  # same global batch of 4 (2 + 2), global-batch BatchNorm: float rounding only
        assert b[3] == pytest.approx(a[3], rel=1e-4, abs=1e-7), (a, b)
    written = sorted(p.name for p in two_process_run.iterdir() if p.name != "tensorboard")  # optional extra
    assert written == ["config.yaml", "log.jsonl", "member_0"]  # rank 0 only: no per-rank logs, no other members


@pytest.mark.parametrize("members,world,expected", [
    (3, 3, [[0], [1], [2]]), (5, 2, [[0, 2, 4], [1, 3]]), (2, 3, [[0], [1], []])])
def test_ensemble_parallel_assigns_members_round_robin(members, world, expected, tmp_path):
    raw = {"data": {"train_dirs": ["x"]}, "train": {"members": members}, "runtime": {"distributed": "ensemble"}}
    cfg = config_from_dict(raw)
    owned = [Context(cfg=cfg, run_dir=tmp_path, device=torch.device("cpu"), dataset=None, validation=[], log=None,
                     world=World(rank, world)).own_members() for rank in range(world)]
    assert owned == expected


def test_ensemble_parallel_run_trains_each_member_on_its_rank(tmp_path):
    result = torchrun(2, SMOKE + ["--set", f"train.out_dir={tmp_path}", "--name", "ens", "--set", "train.members=3",
                                  "--set", "runtime.distributed=ensemble", "--set", "train.gan_iterations=1",
                                  "--set", "train.pretrain_steps=2"])
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "ens"
    for k in range(3):
        assert read_meta(run / f"member_{k}" / "gan.safetensors")["member"] == k
    ranks = {0: {row[0] for row in losses(run)}}
    events = [json.loads(line) for line in (run / "log.rank1.jsonl").read_text().splitlines()]
    ranks[1] = {e["member"] for e in events if e["event"] == "train"}
    assert ranks == {0: {0, 2}, 1: {1}}


def test_a_lost_rank_stops_clearly_and_the_run_resumes_exactly(two_process_run, tmp_path):
    script = tmp_path / "kill_rank_1.py"
    script.write_text(KILL_RANK_1)
    args = SMOKE + ["--set", f"train.out_dir={tmp_path}", "--name", "lost", "--set", "train.members=1"]
    crashed = torchrun(2, args, str(script))
    assert crashed.returncode != 0
    run = tmp_path / "lost"
    said = crashed.stderr[-4000:]
    assert "--resume" in crashed.stderr and str(run) in crashed.stderr, said  # rank 0 says how to continue
    assert read_meta(run / "member_0" / "last.safetensors")["step"] == 3  # checkpoint_every: 3
    resumed = torchrun(2, SMOKE + ["--resume", str(run)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = networks(two_process_run / "member_0" / "last.safetensors")
    again = networks(run / "member_0" / "last.safetensors")
    for key in straight:
        assert torch.equal(straight[key], again[key]), key
