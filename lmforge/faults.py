"""Fault injection points for the reliability tests (SQLite-style: the product names the places
where a crash is worst, a test chooses one).

``LMFORGE_FAULT=NAME[:N]`` in the environment makes the process kill itself with SIGKILL the
N-th time (default 1) it reaches ``point(NAME)`` — exactly what ``kill -9`` does, at a moment
chosen by name instead of by timing luck. Without the variable a point costs one dictionary
lookup. Names in use: ``ingest.mid_unit``, ``<stage>.before_marker`` / ``<stage>.after_marker``
(stage = ingest, split, tokens: a unit's outputs written, its completion marker not yet / just
written), ``dedup.done``, ``plan.unit``, ``tokenizer.trained``, ``merge.split``,
``manifest.before`` (data prepare); ``checkpoint.before_rename`` (a checkpoint's files written
to its temporary folder, not yet renamed into place).
"""

from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get("LMFORGE_FAULT")
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
