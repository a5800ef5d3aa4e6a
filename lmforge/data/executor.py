"""Run a per-unit task over all work units, in parallel, resumably.

A task is a top-level function ``task(unit, ctx) -> dict``. It must write its outputs for
that unit only, so a unit is the unit of parallelism and of restart: after a task succeeds
the executor writes ``<stage_dir>/<unit>.done`` holding the task's result and the stage's
config hash, and a rerun with the same hash skips the unit and reuses the result.

:class:`LocalExecutor` uses a process pool on this machine;
:class:`lmforge.data.ray_executor.RayExecutor` runs the same :func:`_run_one` as one Ray task per
unit, so steps don't change when the executor does.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from lmforge import faults
from lmforge.data.sources import WorkUnit
from lmforge.errors import writing


def _marker(stage_dir: Path, unit: WorkUnit) -> Path:
    return stage_dir / f"{unit.name}.done"


def _unit_hash(unit: WorkUnit, config_hash: str) -> str:
    """A marker is valid only for the same stage config and the same unit (path, range, size)."""
    return hashlib.sha256((config_hash + json.dumps(unit.to_json(), sort_keys=True)).encode()).hexdigest()[:16]


def read_marker(stage_dir: Path, unit: WorkUnit, config_hash: str) -> dict | None:
    path = _marker(stage_dir, unit)
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return d["result"] if d.get("hash") == _unit_hash(unit, config_hash) else None


def write_marker(stage_dir: Path, unit: WorkUnit, config_hash: str, result: dict) -> None:
    path = _marker(stage_dir, unit)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"hash": _unit_hash(unit, config_hash), "result": result}))
    os.replace(tmp, path)


def vm_hwm_mb() -> float | None:
    """This process's own peak resident memory (``VmHWM``; unlike ``ru_maxrss`` it is not
    inherited from the parent across fork/exec); None where /proc is absent."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def stage_name(stage_dir: Path) -> str:
    """ingest, split, tokens: the stage a folder of markers belongs to (fault points are named by it)."""
    return stage_dir.name.split("_")[0]


def show_progress(progress: bool) -> bool:
    """Progress bars when asked for and stderr is a terminal, or always with ``LMFORGE_PROGRESS=1``."""
    return progress and sys.stderr.isatty() or os.environ.get("LMFORGE_PROGRESS") == "1"


def split_done(units: list[WorkUnit], stage_dir: Path, config_hash: str, desc: str) -> tuple[dict[int, dict], list[WorkUnit]]:
    """The results of units an earlier run finished (by unit index, from their markers) and the
    units still to run; says how many were reused, so a resume is visible."""
    results: dict[int, dict] = {}
    todo = []
    for u in units:
        prev = read_marker(stage_dir, u, config_hash)
        if prev is not None:
            results[u.index] = prev
        else:
            todo.append(u)
    if results:
        print(f"[data] {desc}: {len(results)} of {len(units)} unit(s) already done by an earlier run (reused)",
              flush=True)
    return results, todo


def _run_one(task: Callable, unit: WorkUnit, ctx: Any, stage_dir: Path, config_hash: str) -> tuple[dict, float | None]:
    with writing(stage_dir / unit.name):  # a full disk names the file, not a traceback
        result = task(unit, ctx)
    stage = stage_name(stage_dir)
    faults.point(f"{stage}.before_marker")
    with writing(_marker(stage_dir, unit)):
        write_marker(stage_dir, unit, config_hash, result)
    faults.point(f"{stage}.after_marker")
    return result, vm_hwm_mb()


class LocalExecutor:
    """Process-pool executor; ``workers=1`` runs in-process (handy for tests and debugging)."""

    def __init__(self, workers: int, progress: bool = True):
        self.workers = max(1, workers)
        self.peak_rss_mb: float | None = None  # the largest VmHWM of a process that ran a task
        self.progress = show_progress(progress)

    def close(self) -> None:
        """Nothing to release: the pool lives only inside :meth:`map`."""

    def map(self, task: Callable, units: list[WorkUnit], ctx: Any, stage_dir: Path, config_hash: str,
            desc: str) -> list[dict]:
        stage_dir.mkdir(parents=True, exist_ok=True)
        results, todo = split_done(units, stage_dir, config_hash, desc)
        total = sum(max(u.size, 1) for u in units)
        bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not self.progress,
                   initial=sum(max(u.size, 1) for u in units if u.index in results))
        def done(u: WorkUnit, out: tuple[dict, float | None]) -> None:
            results[u.index], peak = out
            if peak is not None:
                self.peak_rss_mb = max(self.peak_rss_mb or 0.0, peak)
            bar.update(max(u.size, 1))

        if len(todo) <= 1 or self.workers == 1:
            for u in todo:
                done(u, _run_one(task, u, ctx, stage_dir, config_hash))
        else:
            with ProcessPoolExecutor(min(self.workers, len(todo)), mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(_run_one, task, u, ctx, stage_dir, config_hash): u for u in todo}
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
        bar.close()
        return [results[u.index] for u in units]
