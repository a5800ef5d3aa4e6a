"""Verified weight files: sha256 checksums of a folder, and safetensors reads that fail clearly.

Checkpoints list their files' sha256 in ``state.json``; exported model folders (``best/``) list
them in ``lmforge_checksums.json``. A reader verifies before it loads, so a truncated or altered
file is reported by name instead of surfacing as a deserializer error. Tensors are read with
safetensors or ``torch.load(weights_only=True)`` only — nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from lmforge.errors import ArtifactError, LmforgeError
from lmforge.layout import CHECKSUMS_FILE


class CheckpointError(LmforgeError, RuntimeError):
    """A checkpoint or model folder that is incomplete, corrupted, or does not fit the model."""


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 8 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def checksums(folder: Path) -> dict[str, str]:
    """``{file name: sha256}`` of the plain files directly in ``folder``."""
    return {f.name: sha256(f) for f in sorted(folder.iterdir())
            if f.is_file() and f.name != CHECKSUMS_FILE}


def write_checksums(folder: Path) -> None:
    """Record the checksums of every file of an exported folder (fsync'd)."""
    with open(folder / CHECKSUMS_FILE, "w") as fh:
        json.dump(checksums(folder), fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())


def verify(folder: Path, files: dict[str, str] | None = None) -> None:
    """Check ``files`` (default: the folder's ``lmforge_checksums.json``, when it has one)."""
    if files is None:
        listing = folder / CHECKSUMS_FILE
        if not listing.is_file():
            return  # a folder written by another tool: nothing to check against
        try:
            files = json.loads(listing.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{listing}: corrupted ({exc})") from None
    for name, digest in files.items():
        f = folder / name
        if not f.is_file():
            raise CheckpointError(f"{folder}: missing {name}")
        if sha256(f) != digest:
            raise CheckpointError(f"{f}: checksum mismatch — the file is corrupted or truncated")


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; a damaged file is a :class:`CheckpointError` naming it."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError, OSError: a file that is not a complete safetensors file
        raise CheckpointError(f"{path}: cannot read the weights ({type(exc).__name__}: {exc}); "
                              "the file is corrupted or truncated") from None


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Weights of an HF-style folder: ``model.safetensors`` or ``pytorch_model.bin`` (tensors only)."""
    st = folder / "model.safetensors"
    if st.is_file():
        return read_safetensors(st)
    pt = folder / "pytorch_model.bin"
    if pt.is_file():
        try:
            return torch.load(str(pt), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{pt}: cannot read the weights ({type(exc).__name__}: {exc})") from None
    raise ArtifactError(f"{folder}: no model.safetensors or pytorch_model.bin")


def tied_keys(model: nn.Module) -> set[str]:
    """State-dict keys that repeat an earlier key's tensor (tied weights: an LM head's projection,
    ELECTRA's generator reading the discriminator's embedding)."""
    seen, tied = set(), set()
    for k, v in model.state_dict().items():
        key = (v.data_ptr(), v.shape, v.dtype)
        if v.numel() and key in seen:
            tied.add(k)
        seen.add(key)
    return tied


def unique_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict without tied duplicates (safetensors refuses shared storage)."""
    tied = tied_keys(model)
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in tied}


def load_into(model: nn.Module, path: Path, where: Path) -> None:
    """Load ``path`` (safetensors) into ``model``; tied weights may be absent."""
    missing, unexpected = model.load_state_dict(read_safetensors(path), strict=False)
    tied = set(missing) & tied_keys(model)
    if set(missing) - tied or unexpected:
        raise CheckpointError(f"{where}: weights do not match the model (missing {sorted(set(missing) - tied)[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]})")
