"""Atomic, verified training checkpoints; resume-latest; save-and-prune; the fresh-start guard.

A checkpoint is a folder ``step_NNNNNNN/`` holding ``model.safetensors``, ``optimizer.pt``,
``rng.pt`` and ``state.json`` (step, loop state, the resolved config, the sha256 of every other
file). It is written to ``.tmp-step_NNNNNNN/`` and renamed into place, so a crash never leaves a
half-written checkpoint under a real name. Loading verifies every checksum and reads tensors
only (safetensors, ``torch.load(weights_only=True)``) — no arbitrary unpickling.

Resuming compares the config stored in the checkpoint with the current one: keys that cannot
change without breaking the run's exactness (model shape, batch size, learning rate, data, ...)
stop the resume with the list of changes unless the user accepts them (``--resume-changed``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from lmforge import faults
from lmforge.errors import LmforgeError, StorageError, TrainingError, nearly_full, writing
from lmforge.layout import checkpoint_name, list_checkpoints, older_checkpoint_hint
from lmforge.models.load import read_checkpoint_state
from lmforge.models.sharded_weights import is_sharded_checkpoint
from lmforge.models.weights import CheckpointError, load_into, sha256, unique_state
from lmforge.training.distributed import is_sharded
from lmforge.training.sharded_checkpoint import load_sharded

__all__ = ["CheckpointError", "ResumeError", "check_fresh_start", "config_changes", "list_checkpoints", "load",
           "prune", "resume_latest", "save", "start_or_resume"]


ADDED_KEYS = ("global_batch",)  # see resume_latest


class ResumeError(TrainingError):
    """Starting over existing checkpoints, resuming without one, or resuming with a changed config."""

    exit_code = 2


def save(ckpt_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> Path:
    """Write checkpoint ``step`` atomically (an existing one of that step is replaced): every file
    goes into a temporary folder, which is renamed once complete; a crash before the rename leaves
    the earlier checkpoints as they were (fault point ``checkpoint.before_rename``)."""
    with writing(ckpt_dir):  # disk full: a clear error; the earlier checkpoints stay as they are
        return _save(ckpt_dir, step, model, optimizer, state)


def _save(ckpt_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / checkpoint_name(step)
    tmp = ckpt_dir / f".tmp-{final.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_file(unique_state(model), str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        files = {f.name: sha256(f) for f in sorted(tmp.iterdir())}
        with open(tmp / "state.json", "w") as fh:
            json.dump({"step": step, "files": files, **state}, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
    except Exception as exc:  # e.g. disk full: give the space back, leave the earlier checkpoints alone
        full = not isinstance(exc, OSError) and nearly_full(tmp)  # torch.save says "iostream error", no errno
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise StorageError(f"cannot write {tmp}: No space left on device, most likely ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:200]}); free some space and run the same command again "
                               "with --resume (--overwrite if no checkpoint was written yet): the earlier checkpoints "
                               "are intact") from None
        raise
    faults.point("checkpoint.before_rename")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def load(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
         restore_rng: bool = True) -> dict[str, Any]:
    """Verify and load a checkpoint into ``model`` (and ``optimizer``); returns its state."""
    state = read_checkpoint_state(path)
    if is_sharded_checkpoint(path):  # DCP shards (pretrain.parallel: fsdp): resharded to this job
        load_sharded(path, model, optimizer)
        return state  # no RNG state saved: pretraining reseeds every micro-batch
    if is_sharded(model):
        raise CheckpointError(f"{path} holds whole weights (written with parallel: ddp); an FSDP job resumes "
                              "from sharded checkpoints only: resume this run with pretrain.parallel: ddp (any "
                              "number of processes)")
    load_into(model, path / "model.safetensors", path)
    if optimizer is not None:
        optimizer.load_state_dict(_tensors(path / "optimizer.pt"))
    if restore_rng:
        rng = _tensors(path / "rng.pt")
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    return state


def _tensors(file: Path):
    """A torch file of tensors and plain containers; anything else (a pickled object that could
    run code) is refused by ``weights_only`` and reported as a damaged checkpoint."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{file}: refused to load ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                              "a checkpoint file holds tensors only — this one is damaged or was replaced") from None


def prune(ckpt_dir: Path, keep_last: int, keep: Iterable[str] = ()) -> None:
    """Delete all but the newest ``keep_last`` checkpoints and those named in ``keep`` (the best)."""
    keep = set(keep)
    cks = list_checkpoints(ckpt_dir)
    for p in cks[:-keep_last] if keep_last else cks:
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)


def check_fresh_start(out_dir: Path, ckpt_dir: Path, overwrite: bool) -> None:
    """A run without ``--resume`` must not mix with an earlier run's checkpoints: refuse, or (with
    ``--overwrite``) delete them first."""
    cks = list_checkpoints(ckpt_dir)
    if not cks:
        return
    if not overwrite:
        raise ResumeError(f"{out_dir} already holds checkpoints of an earlier run ({cks[0].name} … {cks[-1].name}); "
                          "continue it with --resume, or start over with --overwrite (deletes them)")
    shutil.rmtree(ckpt_dir)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict → ``{dotted.key: value}`` (empty dicts stay as values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def config_changes(saved: dict, now: dict) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, current value)`` for every dotted key that differs."""
    a, b = flatten(saved), flatten(now)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def is_resume_safe(key: str, safe_keys: Iterable[str]) -> bool:
    """``key`` (dotted) is one of ``safe_keys``, or under one that ends with ``.``."""
    return any(key == s or (s.endswith(".") and key.startswith(s)) for s in safe_keys)


def start_or_resume(out, model: nn.Module, optimizer: torch.optim.Optimizer, best, config: dict, *,
                    resume: bool, overwrite: bool, resume_changed: bool, safe_keys: Iterable[str], say,
                    main: bool = True) -> int:
    """The step a run starts at: 0 for a fresh run (after :func:`check_fresh_start` on the main
    process), or the latest checkpoint's, with model, optimizer, RNG and ``best`` restored."""
    if not resume:
        if main:
            check_fresh_start(out.root, out.checkpoints, overwrite)
        return 0
    last, state = resume_latest(out.checkpoints, model, optimizer, config, safe_keys, resume_changed, say)
    best.load_state_dict(state["best"])
    say(f"resumed from {last}")
    return state["step"]


def resume_latest(ckpt_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: dict,
                  safe_keys: Iterable[str], accept_changes: bool, say) -> tuple[Path, dict]:
    """Load the newest checkpoint after comparing its stored config with ``config``.

    Changed keys in ``safe_keys`` (dotted; a trailing ``.`` matches a prefix) are reported and
    accepted; any other change stops the resume unless ``accept_changes``."""
    cks = list_checkpoints(ckpt_dir)
    if not cks:
        raise ResumeError(f"--resume: no checkpoint in {ckpt_dir}")
    last = cks[-1]
    try:
        saved = read_checkpoint_state(last).get("config")
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; {older_checkpoint_hint(last)}") from None
    if saved is not None:
        # keys added to the stored config after earlier checkpoints were written: absent there,
        # taken as unchanged
        saved = {**{k: config[k] for k in ADDED_KEYS if k in config}, **saved}
        changes = config_changes(saved, config)
        safe = tuple(safe_keys)

        def is_safe(k: str) -> bool:
            return is_resume_safe(k, safe)

        risky = [c for c in changes if not is_safe(c[0])]
        for k, old, new in changes:
            say(f"config changed since {last.name}: {k}: {old!r} → {new!r}" + ("" if is_safe(k) else " (not resume-safe)"))
        if risky and not accept_changes:
            keys = ", ".join(k for k, _, _ in risky)
            hint = ""
            batch_change = next(((o, n) for k, o, n in risky if k == "global_batch"), None)
            if batch_change is not None:
                old, new = batch_change
                hint = (f" (global batch = batch_size x grad_accum x processes was {old}, is now {new}: with a "
                        "different number of processes, scale grad_accum or batch_size to keep it)")
            raise ResumeError(f"--resume: the config changed since {last} in keys that break an exact resume: {keys}"
                              f"{hint}; restore them, or pass --resume-changed to continue anyway")
    try:
        state = load(last, model, optimizer)
    except (RuntimeError, ValueError) as exc:  # e.g. a size mismatch after a model change
        if isinstance(exc, CheckpointError):
            raise CheckpointError(f"{exc}; {older_checkpoint_hint(last)}") from None
        if isinstance(exc, LmforgeError):
            raise
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"{last}: cannot load into the current model/optimizer ({first[-1] if first else exc}); "
                              "did the model section change?") from None
    return last, state

