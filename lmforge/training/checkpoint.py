"""Atomic, verified checkpoints: safetensors weights + optimizer + RNG + loop state.

A checkpoint is a folder ``step_NNNNNNN/`` holding ``model.safetensors``, ``optimizer.pt``,
``rng.pt`` and ``state.json`` (step, metrics, model config, sha256 of every other file). It is
written to ``.tmp-step_NNNNNNN/`` and renamed into place, so a crash never leaves a half-written
checkpoint under a real name. Loading verifies every checksum and reads tensors only
(safetensors, ``torch.load(weights_only=True)``) — no arbitrary unpickling.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmforge.errors import LmforgeError


class CheckpointError(LmforgeError, RuntimeError):
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def _unique_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict without tied duplicates (safetensors refuses shared storage)."""
    out, seen = {}, {}
    for k, v in model.state_dict().items():
        key = (v.data_ptr(), v.shape, v.dtype)
        if v.numel() and key in seen:
            continue
        seen[key] = k
        out[k] = v.detach().cpu().contiguous()
    return out


def save(ckpt_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"step_{step:07d}"
    tmp = ckpt_dir / f".tmp-step_{step:07d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(_unique_state(model), str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    files = {f.name: _sha256(f) for f in sorted(tmp.iterdir())}
    with open(tmp / "state.json", "w") as fh:
        json.dump({"step": step, "files": files, **state}, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.iterdir() if p.is_dir() and p.name.startswith("step_"))


def load(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
         restore_rng: bool = True) -> dict[str, Any]:
    from safetensors.torch import load_file

    state_file = path / "state.json"
    if not state_file.is_file():
        raise CheckpointError(f"{path}: not a checkpoint (no state.json)")
    try:
        state = json.loads(state_file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{state_file}: corrupted ({exc})") from None
    for name, digest in state.get("files", {}).items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{path}: missing {name}")
        if _sha256(f) != digest:
            raise CheckpointError(f"{f}: checksum mismatch — the checkpoint is corrupted")
    weights = load_file(str(path / "model.safetensors"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = {k for k in missing if k.endswith("head.proj.weight")}
    if set(missing) - tied or unexpected:
        raise CheckpointError(f"{path}: weights do not match the model (missing {sorted(set(missing) - tied)[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]})")
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    if restore_rng:
        rng = torch.load(path / "rng.pt", map_location="cpu", weights_only=True)
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    return state


def prune(ckpt_dir: Path, keep_last: int, keep: set[str]) -> None:
    """Delete all but the newest ``keep_last`` checkpoints and those named in ``keep`` (the best)."""
    cks = list_checkpoints(ckpt_dir)
    for p in cks[:-keep_last] if keep_last else cks:
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)
