"""Run a per-unit task on a Ray cluster: one remote task per work unit not yet done.

Same contract as :class:`lmforge.data.executor.LocalExecutor` (``map(task, units, ctx, stage_dir,
config_hash, desc) -> list[dict]`` in unit order, ``peak_rss_mb``): the worker runs the same
:func:`lmforge.data.executor._run_one`, so a unit's completion marker is written by the worker
only after its task succeeded, and a rerun (with either executor) skips the units it finds done.

Retries: a unit whose worker process dies (SIGKILL, out of memory, a lost node) is run again, up
to ``max_retries`` times. A half-finished attempt never counts (it wrote no marker), and the retry
overwrites its partial files: every per-unit task writes a fixed set of files named after its
unit, each opened for writing from scratch (``"w"``/``"wb"``, ``np.save``), with the same bytes
every time. An exception raised by the task itself (bad data, a full disk) is not retried: it
stops the map, and an :class:`lmforge.errors.LmforgeError` reaches the caller as itself.

Where it runs: ``address=None`` starts a local Ray instance with ``workers`` CPUs and shuts it
down in :meth:`RayExecutor.close`; ``"auto"`` (a node of a cluster started with ``ray start``) or
``"HOST:PORT"`` (the head's GCS address) or ``"ray://HOST:PORT"`` (Ray Client) connects to a
running cluster, which is left running. A process already connected to Ray (``ray.init`` called
earlier) uses that connection as it is, whatever ``address`` says.
Tasks read and write the run folder by its absolute path: on a multi-node cluster that path must
be on a file system every node mounts at the same place.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from lmforge import faults
from lmforge.data.executor import _run_one, show_progress, split_done, stage_name
from lmforge.data.sources import WorkUnit
from lmforge.errors import ClusterError, LmforgeError, UsageError

MAX_RETRIES = 3  # attempts after the first, for a unit whose worker died
PROBE_TIMEOUT_S = 5.0  # how long to wait for a TCP answer at an explicit HOST:PORT before calling it unreachable
START_HINT = ("start a cluster with `ray start --head` on the head node (and `ray start --address=HEAD_IP:6379` "
              "on each other node), then use --address auto on a node of the cluster or --address "
              "ray://HEAD_IP:10001 from elsewhere; or leave out --address to start a local Ray instance")


def import_ray():
    """The ``ray`` module, or a :class:`UsageError` naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray, which is not installed: pip install 'lmforge[ray]'") from None
    return ray


def _endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of ``ray://HOST:PORT`` or ``HOST:PORT``; None for ``auto`` and anything without a port."""
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def _probe(address: str) -> None:
    """Fail in seconds when nothing listens at an explicit address (Ray Client retries for ~30 s)."""
    endpoint = _endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: nothing answers at "
                           f"{endpoint[0]}:{endpoint[1]} ({reason}); {START_HINT}") from None


def _forwarded_env() -> dict[str, str]:
    """Fault-injection settings of the driver, for the workers (a cluster's workers do not
    inherit the driver's environment)."""
    return {k: v for k, v in os.environ.items() if k.startswith("LMFORGE_FAULT")}


class RayExecutor:
    """One Ray task per unit (``num_cpus=1``), results gathered in the driver as they finish."""

    def __init__(self, workers: int, progress: bool = True, address: str | None = None,
                 max_retries: int = MAX_RETRIES):
        ray = import_ray()
        self._ray = ray
        self.address = address
        self.max_retries = max_retries
        self.peak_rss_mb: float | None = None  # the largest VmHWM of a worker process that ran a task
        self.progress = show_progress(progress)
        self._started = False
        if ray.is_initialized():
            where = "the Ray connection this process already has" + (f" (not {address})" if address else "")
        elif address is None:
            ray.init(address="local", num_cpus=max(1, workers), include_dashboard=False, logging_level=logging.WARNING)
            self._started = True
            where = "a local Ray instance"
        else:
            _probe(address)
            try:
                ray.init(address=address, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ClusterError(f"cannot connect to the Ray cluster at {address}: {exc}; {START_HINT}") from None
            where = f"the Ray cluster at {address}"
        # the parallelism a user sees in the log: the cluster's CPUs (one unit per CPU at a time)
        self.workers = int(ray.cluster_resources().get("CPU", 0)) or max(1, workers)
        print(f"[data] executor: {where}, {self.workers} CPU(s)", flush=True)

    def close(self) -> None:
        """Shut down the local Ray instance this executor started; a cluster it connected to stays up."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False

    def map(self, task: Callable, units: list[WorkUnit], ctx: Any, stage_dir: Path, config_hash: str,
            desc: str) -> list[dict]:
        ray = self._ray
        stage_dir.mkdir(parents=True, exist_ok=True)
        results, todo = split_done(units, stage_dir, config_hash, desc)
        sizes = {u.index: max(u.size, 1) for u in units}
        bar = tqdm(total=sum(sizes.values()), desc=desc, unit="B", unit_scale=True, disable=not self.progress,
                   initial=sum(sizes[i] for i in results))
        if todo:
            options: dict[str, Any] = {"num_cpus": 1, "max_retries": self.max_retries, "retry_exceptions": False,
                                       "name": f"lmforge {desc}"}
            env = _forwarded_env()
            if env:
                options["runtime_env"] = {"env_vars": env}
            remote = ray.remote(_run_one).options(**options)
            ctx_ref = ray.put(ctx)  # stored once, not once per task
            pending: dict[Any, WorkUnit] = {remote.remote(task, u, ctx_ref, stage_dir, config_hash): u for u in todo}
            try:
                self._gather(pending, results, bar, stage_name(stage_dir), desc, len(units))
            finally:
                for ref in pending:  # left only when a unit failed: the others need not run on
                    ray.cancel(ref)
        bar.close()
        return [results[u.index] for u in units]

    def _gather(self, pending: dict[Any, WorkUnit], results: dict[int, dict], bar: tqdm, stage: str, desc: str,
                total: int) -> None:
        """Take results as they finish, keeping only the result dicts (each task's object is
        released once read)."""
        ray = self._ray
        waiting = list(pending)
        start, n = time.monotonic(), 0
        while waiting:
            # everything finished within 0.1 s in one call: cheap per unit even with thousands of units
            ready, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=0.1)
            for ref in ready:
                unit = pending.pop(ref)
                try:
                    results[unit.index], peak = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    if isinstance(exc.cause, LmforgeError):
                        raise exc.cause from None
                    raise
                except ray.exceptions.RayError as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    raise ClusterError(f"{desc}: unit {unit.name} did not finish on the Ray cluster (a unit whose "
                                       f"worker dies is retried {self.max_retries} time(s)): {type(exc).__name__}: "
                                       f"{first}; the units finished so far are kept: run the same command again "
                                       "to continue") from None
                if peak is not None:
                    self.peak_rss_mb = max(self.peak_rss_mb or 0.0, peak)
                n += 1
                bar.update(max(unit.size, 1))
                bar.set_postfix_str(f"{total - len(pending)}/{total} units, "
                                    f"{n / max(time.monotonic() - start, 1e-9):.1f} units/s", refresh=False)
                faults.point(f"{stage}.gathered")
