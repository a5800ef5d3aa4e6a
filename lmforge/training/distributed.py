"""torch.distributed setup for ``torchrun`` (NCCL on GPU, gloo on CPU; no-op for one process) and
the one place a model is wrapped for parallel training.

Strategies (``pretrain.parallel``):

* ``ddp`` — every rank holds the whole model and optimizer; gradients are all-reduced.
* ``fsdp`` — FSDP2 (``torch.distributed.fsdp.fully_shard``): each Transformer block and then the
  root are sharded over the ranks, so parameters, gradients and optimizer state take about
  1/world of DDP's memory per rank; a block's full weights exist only while it runs. On CUDA
  with ``precision: bf16`` the shards are gathered in bf16 and gradients reduced in fp32.
  Optional CPU offload of the shards (CUDA only) and activation checkpointing per block.

With one process either strategy is the plain model: there is nothing to shard or reduce.
The training loop is the same for all of them; :func:`grad_sync` is the one place it asks for
"accumulate without communicating".
"""

from __future__ import annotations

import contextlib
import functools
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


Strategy = Literal["ddp", "fsdp"]


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of our models (the unit FSDP shards and activation checkpointing
    recomputes): ``model.body.blocks``; an empty list for a model without them."""
    body = getattr(model, "body", None)
    return list(getattr(body, "blocks", []))


def checkpoint_activations(model: nn.Module) -> None:
    """Recompute each block's activations in the backward pass instead of keeping them (less
    memory, about one more forward of compute). Dropout is replayed identically (RNG state is
    restored by ``torch.utils.checkpoint``); the state dict keeps its names."""
    from torch.utils.checkpoint import checkpoint

    for block in transformer_blocks(model):
        block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)


def wrap(model: nn.Module, d: Dist, strategy: Strategy = "ddp", compile: bool = False, *,
         precision: str = "fp32", cpu_offload: bool = False, activation_checkpointing: bool = False) -> nn.Module:
    """The module the training loop calls. ``model`` keeps owning the weights (under FSDP it is
    sharded in place and is itself the module called). Build the optimizer *after* this call:
    FSDP replaces the parameters with sharded ones."""
    if activation_checkpointing:
        checkpoint_activations(model)
    if d.enabled and strategy == "fsdp":
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

        mp = MixedPrecisionPolicy()
        if d.device.type == "cuda" and precision == "bf16":
            mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        offload = CPUOffloadPolicy() if cpu_offload and d.device.type == "cuda" else OffloadPolicy()
        blocks = transformer_blocks(model)
        for i, block in enumerate(blocks):
            if compile:
                block.compile()  # per block, before sharding: the FSDP hooks stay outside the graphs
            # the last block's weights are needed again first in backward: keep them gathered
            fully_shard(block, mp_policy=mp, offload_policy=offload, reshard_after_forward=i < len(blocks) - 1)
        fully_shard(model, mp_policy=mp, offload_policy=offload)  # embeddings, final norm, head
        return model
    net: nn.Module = torch.compile(model) if compile else model
    if d.enabled and strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(net, device_ids=[d.local_rank] if d.device.type == "cuda" else None)
    return net


def is_sharded(model: nn.Module) -> bool:
    """True when ``model`` was sharded by :func:`wrap` (FSDP2)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def grad_sync(net: nn.Module, sync: bool):
    """Context for one micro-batch's backward: gradients are reduced across ranks only when
    ``sync`` (the last micro-batch of a step); earlier ones accumulate locally."""
    from torch.distributed.fsdp import FSDPModule
    from torch.nn.parallel import DistributedDataParallel as DDP

    if isinstance(net, DDP):
        return contextlib.nullcontext() if sync else net.no_sync()
    if isinstance(net, FSDPModule):
        net.set_requires_gradient_sync(sync)
    return contextlib.nullcontext()


def full_value(x: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a DTensor (e.g. the gradient norm of sharded parameters), else ``x``."""
    from torch.distributed.tensor import DTensor

    return x.full_tensor() if isinstance(x, DTensor) else x


def local_bytes(t: torch.Tensor) -> int:
    """Bytes this rank holds for ``t`` (its shard, for a DTensor)."""
    from torch.distributed.tensor import DTensor

    local = t.to_local() if isinstance(t, DTensor) else t
    return local.numel() * local.element_size()


def rank_memory(model: nn.Module, optimizer: torch.optim.Optimizer, d: Dist) -> list[dict]:
    """Per rank: MB of parameters and optimizer state it holds (shards under FSDP; the same on
    every rank under DDP), its peak resident memory, and on CUDA its peak allocated memory. A
    collective: every rank calls it; every rank gets the whole list."""
    from lmforge.data.executor import vm_hwm_mb

    state = sum(local_bytes(p) for p in model.parameters())
    state += sum(local_bytes(v) for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v))
    mine = [state / 2**20, vm_hwm_mb() or 0.0,
            torch.cuda.max_memory_allocated(d.device) / 2**20 if d.device.type == "cuda" else 0.0]
    t = torch.tensor(mine, dtype=torch.float64, device=d.device)
    rows = [t]
    if d.enabled:
        rows = [torch.zeros_like(t) for _ in range(d.world)]
        dist.all_gather(rows, t)
    out = []
    for r, row in enumerate(rows):
        rec = {"rank": r, "params_and_optimizer_mb": round(float(row[0]), 2), "peak_rss_mb": round(float(row[1]), 1)}
        if d.device.type == "cuda":
            rec["peak_cuda_mb"] = round(float(row[2]), 1)
        out.append(rec)
    return out


def all_reduce_sum(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """The sum of ``x`` over ranks, in place (``x`` itself for one process)."""
    if d.enabled:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_reduce_mean(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """The mean of ``x`` over ranks (``x`` itself for one process)."""
    return all_reduce_sum(x, d) / d.world if d.enabled else x


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
