"""torch.distributed, as torchrun sets it up: process group, rank roles, cross-rank BatchNorm, reductions.

Two ways to use a world of W processes (`runtime.distributed`):
  data      every member trains on all ranks with DistributedDataParallel; each rank draws 1/W of each global
            batch (data.batch_size stays the global batch), so the optimisation is that of one process.
  ensemble  members are independent, so member k trains on rank k % W alone, without any gradient traffic.
"""
from __future__ import annotations

import datetime
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce

COLLECTIVE_TIMEOUT_MIN = 10  # a rank silent this long is taken as lost (PyTorch's default is 10 min for gloo too)


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def world_from_env() -> World:
    """The world torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (a single process without them)."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def process_group_backend(device: torch.device) -> str:
    """gloo on CPU; on CUDA, NCCL for CUDA tensors and gloo for CPU ones. A group of NCCL alone has no backend for
    a CPU tensor ("No backend type associated with device type cpu"), and the run log's reductions of Python
    floats and the object broadcasts are CPU tensors."""
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


def init_process_group(world: World, device: torch.device) -> None:
    """gloo on CPU, NCCL (+ gloo for CPU tensors) on CUDA, one GPU per local rank. No-op for a single process."""
    if not world.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(process_group_backend(device), timeout=datetime.timedelta(minutes=COLLECTIVE_TIMEOUT_MIN))


def reduction_device(backend: str, world: World) -> torch.device:
    """Where a small reduction tensor lives in a group of `backend`: the CPU when the group has a CPU backend, this
    rank's GPU when it is NCCL alone (a group made elsewhere, e.g. by a caller of `train`)."""
    return torch.device("cuda", world.local_rank) if backend == "nccl" else torch.device("cpu")


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj, world: World):
    """Rank 0's `obj` on every rank (e.g. the run folder name, which holds a timestamp)."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def all_reduce_sum(values: list[float], world: World) -> list[float]:
    """The element-wise sum over ranks (float64), on a device the process group's backend serves."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=reduction_device(str(dist.get_backend()), world))
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank when `flag` is true on any (e.g. a stop request that reached some ranks only)."""
    if not world.distributed:
        return flag
    return all_reduce_sum([float(flag)], world)[0] > 0


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics cover the global batch on every rank, on any device.

    nn.SyncBatchNorm does this on CUDA only; this version uses the differentiable all-reduce of
    torch.distributed.nn, so the gradients through the shared mean and variance are exact too. With it,
    W processes with 1/W of the batch each compute what one process computes on the whole batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        local = torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)), count])
        with warnings.catch_warnings():
            # deprecated in favour of a private module (_functional_collectives) whose autograd support differs
            warnings.simplefilter("ignore", FutureWarning)
            total = differentiable_all_reduce(local)
        channels = x.shape[1]
        n = total[-1]
        mean = total[:channels] / n
        var = total[channels:2 * channels] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * var.detach() * n / (n - 1))
                self.num_batches_tracked.add_(1)
        shape = (1, channels, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape)


def cross_rank_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d for CrossRankBatchNorm2d in place, keeping parameters and buffers (same keys)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            swapped = CrossRankBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
            swapped.load_state_dict(child.state_dict(), strict=True)
            setattr(module, name, swapped.to(child.weight.device))
        else:
            cross_rank_batchnorm(child)
    return module
