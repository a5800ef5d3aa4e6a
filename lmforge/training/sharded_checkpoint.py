"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP): each rank writes its own
shards, and any number of ranks (1, 2, 4, ...) can read them back — DCP reshards on load.

Layout of ``step_NNNNNNN/`` (same folder name and ``state.json`` as a full checkpoint, see
:mod:`lmforge.training.checkpoint`)::

    dcp/.metadata          which slice of which tensor lives where (written last, by rank 0)
    dcp/__<rank>_0.distcp  the shards rank <rank> held: model under ``model.*``, optimizer
                           state under ``optim.*`` (keyed by parameter name, not by position)
    state.json             step, loop state, config, ``"format": "dcp"``, the world size that
                           wrote it, and the sha256 of every file above

Atomic like a full checkpoint: every rank writes into ``.tmp-step_NNNNNNN/``; after a barrier,
rank 0 checksums the files, writes ``state.json`` and renames the folder into place. A save
interrupted at any point leaves the previous checkpoints as they were. Optionally asynchronous
(:class:`ShardedSaver`): the shards are written in the background while training continues.

Reading works with or without a process group: a run resumed under FSDP gets its shards, a
single process (resume on one rank, ``lmforge export``, ``generate``, fine-tuning from the
checkpoint) gets whole tensors. Nothing is unpickled: DCP's files hold tensors and its own
metadata, and state.json is JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from lmforge import faults
from lmforge.errors import writing
from lmforge.layout import checkpoint_name
from lmforge.models.sharded_weights import DCP_DIR, read_dcp, single_process_ok
from lmforge.models.weights import sha256
from lmforge.training.distributed import Dist, barrier


class ShardedSaver:
    """Writes sharded checkpoints; every rank calls :meth:`save` at the same steps.

    With ``async_save`` each rank copies its shards to CPU memory and a background thread writes
    them while training goes on (DCP's ``async_save``, on a gloo group of its own so its
    collectives never interleave with the training's); the checkpoint is completed — state.json
    written, folder renamed into place, ``on_complete(step)`` called (pruning) — at the next save
    or at :meth:`finish`. Until then it stays a ``.tmp-`` folder, which resume ignores."""

    def __init__(self, ckpt_dir: Path, d: Dist, async_save: bool = False,
                 on_complete: Callable[[int], None] | None = None):
        self.ckpt_dir, self.d, self.async_save, self.on_complete = ckpt_dir, d, async_save, on_complete
        self.group = None
        if async_save and d.enabled:
            import torch.distributed as dist

            self.group = dist.new_group(backend="gloo")
        self._pending: tuple | None = None

    def save(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        self.finish()  # one checkpoint in flight at a time
        final = self.ckpt_dir / checkpoint_name(step)
        tmp = self.ckpt_dir / f".tmp-{final.name}"
        with writing(self.ckpt_dir):
            if self.d.main:
                self.ckpt_dir.mkdir(parents=True, exist_ok=True)
                if tmp.exists():
                    shutil.rmtree(tmp)
                tmp.mkdir()
            barrier(self.d)
            model_sd, optim_sd = get_state_dict(model, optimizer)
            target = {"model": model_sd, "optim": optim_sd}
            with single_process_ok():  # one process (parallel: fsdp, no torchrun) writes one shard
                if self.async_save:
                    pending = dcp.async_save(target, checkpoint_id=str(tmp / DCP_DIR), process_group=self.group)
                    self._pending = (getattr(pending, "upload_completion", pending), step, tmp, final, state)
                    return
                dcp.save(target, checkpoint_id=str(tmp / DCP_DIR))
            self._complete(step, tmp, final, state)

    def finish(self) -> None:
        """Wait for the checkpoint in flight (if any) and complete it."""
        if self._pending is None:
            return
        future, step, tmp, final, state = self._pending
        self._pending = None
        with writing(self.ckpt_dir):
            future.result()  # this rank's shards (and, on rank 0, .metadata) are written
            self._complete(step, tmp, final, state)

    def _complete(self, step: int, tmp: Path, final: Path, state: dict[str, Any]) -> None:
        d = self.d
        barrier(d)  # every rank's shards are on disk; .metadata was written after them
        if d.main:
            files = {str(f.relative_to(tmp)): sha256(f) for f in sorted((tmp / DCP_DIR).iterdir()) if f.is_file()}
            with open(tmp / "state.json", "w") as fh:
                json.dump({"step": step, "format": "dcp", "world_size": d.world, "files": files, **state}, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            faults.point("checkpoint.before_rename")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            if self.on_complete is not None:
                self.on_complete(step)
        barrier(d)


def load_sharded(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Load a sharded checkpoint into ``model`` (sharded or not) and ``optimizer``, resharding
    to the current world size. Every rank of a job calls it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict, set_state_dict

    if optimizer is not None:
        model_sd, optim_sd = get_state_dict(model, optimizer)  # the optimizer's state is created if empty
        target = {"model": model_sd, "optim": optim_sd}
    else:
        target = {"model": get_model_state_dict(model)}
    read_dcp(path, target)
    set_state_dict(model, optimizer if optimizer is not None else [], model_state_dict=target["model"],
                   optim_state_dict=target.get("optim", {}))
