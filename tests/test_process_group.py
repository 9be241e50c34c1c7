"""The process group's backends and the end of an ensemble-parallel run, without a GPU or a second process."""
from __future__ import annotations

import threading
import time

import pytest
import torch
import torch.distributed as dist

import mgsrgan.train.distributed as distributed
import mgsrgan.train.loop as training
from mgsrgan.train.distributed import World, all_reduce_sum, init_process_group, reduction_device
from mgsrgan.train.loop import Stopped, train
from mgsrgan.train.member import DONE, build_member, save_training_state
from tests.conftest import make_context, tiny_config


def test_a_cuda_process_group_also_has_a_cpu_backend(monkeypatch):
    """torchrun on GPUs crashed at the first log step: the group was NCCL alone and the loss reduction (a CPU
    float64 tensor) had no backend ("No backend type associated with device type cpu")."""
    made = {}
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kwargs: made.update(backend=backend))
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: made.update(device=index))
    init_process_group(World(1, 2, local_rank=1), torch.device("cuda", 1))
    assert made == {"backend": "cpu:gloo,cuda:nccl", "device": 1}
    init_process_group(World(0, 2), torch.device("cpu"))
    assert made["backend"] == "gloo"


@pytest.mark.parametrize("backend,device", [("gloo", "cpu"), ("cpu:gloo,cuda:nccl", "cpu"), ("nccl", "cuda:1")])
def test_reductions_go_where_the_backend_serves(backend, device, monkeypatch):
    assert reduction_device(backend, World(1, 2, local_rank=1)) == torch.device(device)
    if device == "cpu":  # a CUDA tensor cannot be made here; the CPU case runs through the real function
        monkeypatch.setattr(dist, "get_backend", lambda: backend)
        seen = []
        monkeypatch.setattr(dist, "all_reduce", lambda tensor: (seen.append(tensor.device), tensor.mul_(2)))
        assert all_reduce_sum([1.5, 2.0], World(0, 2)) == [3.0, 4.0] and seen == [torch.device("cpu")]


def ensemble_context(tmp_path, rank: int, **train):
    raw = tiny_config(tmp_path, members=2, **train)
    raw["runtime"]["distributed"] = "ensemble"
    ctx = make_context(raw, tmp_path / "run")
    ctx.world = World(rank, 2)
    return ctx


def test_an_ensemble_rank_that_finishes_early_waits_in_no_collective(tmp_path, monkeypatch):
    """3 members on 2 ranks: the rank with fewer members waited at a final barrier under the process group's
    10-minute timeout and the run died when the other rank needed longer."""
    calls = []

    def barrier(world):  # after this rank's member (k = rank) is trained, the other rank is still at work
        calls.append(world)
        if (tmp_path / "run" / f"member_{world.rank}" / "last.safetensors").exists():
            raise RuntimeError("[gloo] Timed out waiting 600000ms")

    monkeypatch.setattr(training, "barrier", barrier)
    (member,) = train(ensemble_context(tmp_path, rank=1), resume=False)  # member 1 alone
    assert member.index == 1 and member.phase == DONE and len(calls) == 1  # the one at the start
    (member,) = train(ensemble_context(tmp_path, rank=0), resume=False)  # member 1 is done: no waiting
    assert member.index == 0 and member.phase == DONE


def test_rank_0_waits_for_the_other_ranks_members_and_a_stop_ends_the_wait(tmp_path):
    ctx = ensemble_context(tmp_path, rank=0)
    other = build_member(ctx.cfg, 1, ctx.device)
    other.phase = DONE
    path = tmp_path / "run" / "member_1" / "last.safetensors"
    path.parent.mkdir(parents=True)
    writer = threading.Timer(0.3, save_training_state, (other, ctx.cfg, path))  # rank 1 finishing later
    start = time.perf_counter()
    writer.start()
    training._wait_for_all_members(ctx, poll_s=0.02)
    assert time.perf_counter() - start >= 0.3 and path.exists()
    path.unlink()
    ctx.stop.requested = True
    with pytest.raises(Stopped, match="^from scratch: no checkpoint yet$"):
        training._wait_for_all_members(ctx, poll_s=0.02)


def test_data_parallel_ranks_still_meet_at_a_barrier(tmp_path, monkeypatch):
    ctx = ensemble_context(tmp_path, rank=1)
    ctx.cfg.runtime.distributed = "data"
    met = []
    monkeypatch.setattr(training, "barrier", met.append)
    training._wait_for_all_members(ctx)
    assert met == [ctx.world]
    monkeypatch.setattr(distributed.dist, "all_reduce", None)  # single process: no collective at all
    assert distributed.any_rank(True, World()) is True
