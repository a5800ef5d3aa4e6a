"""Earlier outputs of a stage that must run again: kept aside, never deleted without a word.

When ``lmforge run`` has to rerun a stage from scratch (its config or an upstream stage changed,
or ``--force``/``--from``), the stage's output folders are first moved, whole, to::

    <run>/previous/<stage>-<YYYYmmdd-HHMMSS>/<the folder's path relative to the run folder>

A move is a rename on the same filesystem, so it is instant and cannot half-fail into a deleted
folder. ``pipeline.keep_previous`` (default: keep all) prunes the oldest of one stage, each
deletion printed; nothing else deletes them.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable, Optional

PREVIOUS = "previous"


def _has_content(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def set_aside(run_root: Path, stage: str, folders: list[Path], say: Callable[[str], None]) -> Optional[Path]:
    """Move every non-empty folder of ``folders`` under ``<run>/previous/<stage>-<time>/``; the
    destination, or None when there was nothing to keep."""
    present = [f for f in folders if _has_content(f)]
    if not present:
        return None
    stamp = f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}"
    base, n = run_root / PREVIOUS / stamp, 1
    while base.exists():  # two set-asides within one second
        n += 1
        base = base.with_name(f"{stamp}-{n}")
    for folder in present:
        try:
            rel = folder.resolve().relative_to(run_root.resolve())
        except ValueError:  # an output folder outside the run folder (an explicit out_dir)
            rel = Path("outside") / folder.name
        dest = base / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder), str(dest))  # a rename on the same filesystem
    say(f"{stage}: the previous output is kept in {base}")
    return base


def kept(run_root: Path, stage: str) -> list[Path]:
    """This stage's kept outputs, oldest first."""
    folder = run_root / PREVIOUS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and p.name.startswith(stage + "-") and p.name[len(stage) + 1:][:1].isdigit())


def prune(run_root: Path, stage: str, keep: Optional[int], say: Callable[[str], None]) -> list[Path]:
    """Delete all but the newest ``keep`` kept outputs of ``stage`` (None keeps all); the deleted."""
    if keep is None:
        return []
    old = kept(run_root, stage)
    gone = old[:-keep] if keep else old
    for p in gone:
        shutil.rmtree(p)
        say(f"{stage}: deleted the kept output {p} (pipeline.keep_previous={keep})")
    return gone
