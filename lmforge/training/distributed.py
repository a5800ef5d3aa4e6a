"""torch.distributed setup for ``torchrun`` (NCCL on GPU, gloo on CPU; no-op for one process) and
the one place a model is wrapped for parallel training."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Dist:
    """This process's place in the job: rank, world size, local rank, device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup() -> Dist:
    """Read torchrun's environment, pick the device, and join the process group when there are several ranks."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local, device)


def wrap(model: nn.Module, d: Dist, strategy: Literal["ddp"] = "ddp", compile: bool = False) -> nn.Module:
    """The module the training loop calls: optionally compiled, and DDP-wrapped under torchrun
    (``strategy`` is where FSDP will plug in). The unwrapped ``model`` keeps owning the weights."""
    net: nn.Module = torch.compile(model) if compile else model
    if d.enabled and strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(net, device_ids=[d.local_rank] if d.device.type == "cuda" else None)
    return net


def all_reduce_mean(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """The mean of ``x`` over ranks (``x`` itself for one process)."""
    if d.enabled:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x = x / d.world
    return x


def any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank when ``flag`` is true on any (e.g. a stop signal seen by one rank)."""
    if not d.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(d: Dist) -> None:
    """Wait for every rank. Called at the end of a successful run, so no rank tears its gloo
    connections down while rank 0 still writes the last checkpoint (the early rank was then
    aborted by gloo in about 1 run in 5 of the 2-process test); not on error paths, where the
    other ranks may never arrive."""
    if d.enabled and dist.is_initialized():
        dist.barrier()


def teardown(d: Dist) -> None:
    """Leave the process group (if one was joined)."""
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
