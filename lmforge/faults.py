"""Fault injection points for the reliability tests (SQLite-style: the product names the places
where a crash is worst, a test chooses one).

``LMFORGE_FAULT=NAME[:N]`` in the environment makes the process kill itself with SIGKILL the
N-th time (default 1) it reaches ``point(NAME)`` — exactly what ``kill -9`` does, at a moment
chosen by name instead of by timing luck. Without the variables a point costs two dictionary
lookups. Names in use: ``ingest.mid_unit``, ``<stage>.before_marker`` / ``<stage>.after_marker``
(stage = ingest, split, tokens: a unit's outputs written, its completion marker not yet / just
written; ``<stage>.gathered``: the Ray driver received a unit's result, its marker already
written by the worker), ``dedup.done``, ``plan.unit``, ``tokenizer.trained``, ``merge.split``,
``manifest.before`` (data prepare); ``checkpoint.before_rename`` (a checkpoint's files written
to its temporary folder, not yet renamed into place); ``swap.between`` (a published folder —
fine-tuning's ``best/``, an export — moved to ``.old``, its replacement not yet renamed in);
``run.stage_done`` (``lmforge run``: a stage stamped done, the next not started); ``tune.trial_done``;
``export.verified`` (an export's graph checked, nothing of it published yet).

``LMFORGE_FAULT_HOLD=NAME:PIDFILE`` stops one process at ``point(NAME)`` for a test to kill (or
to interrupt with SIGINT, as Ctrl-C does) from outside: the first process to get there (across processes: the one that creates PIDFILE) writes
its pid to PIDFILE and sleeps until it is killed — or, in the main thread, until SIGUSR1 lets it go on
(so a test can send SIGINT to a command that stops at its next step boundary, then release it);
every later one goes on. A killed Ray worker's
unit is retried in a new process, which then passes the point, so the run finishes.
"""

from __future__ import annotations

import os
import signal
import threading
import time

_hits: dict[str, int] = {}


def point(name: str) -> None:
    hold = os.environ.get("LMFORGE_FAULT_HOLD")
    if hold:
        _hold(name, hold)
    spec = os.environ.get("LMFORGE_FAULT")
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _hold(name: str, spec: str) -> None:
    target, _, pid_file = spec.partition(":")
    if target != name or not pid_file:
        return
    try:
        fd = os.open(pid_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # an earlier process held here already
        return
    released = []
    if threading.current_thread() is threading.main_thread():  # SIGUSR1 lets the held process go on
        signal.signal(signal.SIGUSR1, lambda *_: released.append(True))
    os.write(fd, f"{os.getpid()}\n".encode())  # the newline tells a reader the pid is complete
    os.close(fd)
    while not released:
        time.sleep(0.05)
