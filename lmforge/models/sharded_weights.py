"""Reading the weights of a sharded (DCP) checkpoint, for everything that loads a model:
evaluation, generation, export and fine-tuning read it as whole tensors in one process; a
resumed training run reads it resharded (:mod:`lmforge.training.sharded_checkpoint` writes
these checkpoints and documents their layout)."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

from torch import nn

from lmforge.models.weights import CheckpointError

DCP_DIR = "dcp"  # the DCP folder inside a checkpoint: .metadata + __<rank>_0.distcp


@contextlib.contextmanager
def single_process_ok():
    """DCP warns whenever it runs without a process group; reading (or writing) a checkpoint in
    one process is intended here, so that warning is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def is_sharded_checkpoint(path: Path) -> bool:
    """True for a checkpoint folder written by ``ShardedSaver``."""
    return (path / DCP_DIR / ".metadata").is_file()


def load_full_model(path: Path, model: nn.Module) -> None:
    """Whole weights of a sharded checkpoint into an unsharded ``model`` in this process alone
    (no process group needed; the optimizer state is not read)."""
    target = {"model": model.state_dict()}
    read_dcp(path, target, no_dist=True)
    model.load_state_dict(target["model"])


def read_dcp(path: Path, target: dict, no_dist: bool = False) -> None:
    """DCP load of ``target`` (filled in place) with errors that name the cause."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException  # a BaseException, not an Exception

    try:
        with single_process_ok():
            dcp.load(target, checkpoint_id=str(path / DCP_DIR), no_dist=no_dist)
    except (Exception, CheckpointException) as exc:  # per-rank errors, wrapped: say what they mean
        text = str(exc)
        misfit = ("Missing key", "ize mismatch")  # DCP's words for a key or a shape the model lacks
        if any(m in text for m in misfit):
            first = next((ln.strip() for ln in text.splitlines() if any(m in ln for m in misfit)), text)
            raise CheckpointError(f"{path}: the sharded checkpoint does not fit the current model ({first[:300]}); "
                                  "did the model section change since it was written?") from None
        raise CheckpointError(f"{path}: cannot read the sharded checkpoint ({type(exc).__name__}: "
                              f"{text.strip().splitlines()[0][:300] if text.strip() else ''})") from None
