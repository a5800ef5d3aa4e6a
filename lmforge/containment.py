"""Paths read from files (a shard entry in a token index, a tokenizer folder in a checkpoint's
state) must stay inside the folder that file describes."""

from __future__ import annotations

from pathlib import Path

from lmforge.errors import ArtifactError


def within(root: Path, path: Path, what: str) -> Path:
    """``path`` resolved (``..`` and symlinks followed), refused with an :class:`ArtifactError`
    unless it stays inside ``root``: a path read from a file (an index, a state.json) cannot
    reach outside the folder it describes."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if not resolved.is_relative_to(base):
        raise ArtifactError(f"{what} {path} resolves to {resolved}, outside {base}; refusing to read it "
                            "(the file naming it was edited, or a symlink points elsewhere)")
    return resolved
