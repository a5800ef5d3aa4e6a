"""Replace a published folder (a fine-tuning run's ``best/``, an export) by a complete new one
without a moment where a crash leaves neither.

:func:`swap_in` renames ``dest`` to ``dest.old``, the finished ``tmp`` to ``dest``, then deletes
``dest.old``. An exception between the two renames (Ctrl-C, a failed rename) puts ``dest.old``
back at once; a kill there (fault point ``swap.between``) leaves ``dest.old``, complete, and no
``dest``, and :func:`recover` — called by whatever reads or rewrites ``dest`` next — puts it back. The earlier folder is the consistent choice: the checkpoint a resumed run starts
from predates the new one, which the resumed run writes again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lmforge import faults


def _old(dest: Path) -> Path:
    return dest.with_name(dest.name + ".old")


def recover(dest: Path) -> None:
    """Put back a folder a crash left mid-swap (``dest`` missing, ``dest.old`` present)."""
    dest = Path(dest)
    old = _old(dest)
    if old.is_dir() and not dest.exists():
        old.rename(dest)


def swap_in(tmp: Path, dest: Path) -> None:
    """Make the complete folder ``tmp`` the new ``dest``."""
    dest = Path(dest)
    recover(dest)
    old = _old(dest)
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        dest.rename(old)
    try:
        faults.point("swap.between")
        Path(tmp).rename(dest)
    except BaseException:  # Ctrl-C, or the rename failed: the earlier folder goes back at once
        recover(dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
