#!/usr/bin/env python
"""Run ``lmforge data prepare`` exactly as the CLI does, timing two sub-steps of the
corpus-wide stage that the manifest reports only together (``timings_s.dedup_split``).

    python benchmarks/lmforge_run.py CONFIG.yaml [--set key=value ...]

It wraps ``find_duplicates``, ``resolve_leaks`` (the leak check), ``merge`` (the single-process packing into shards)
and ``write_report`` as seen by ``lmforge.data.prepare`` with a timer (no change in behaviour)
and writes ``<run_dir>/data/bench_extra_timings.json``: ``{"find_duplicates": s, "resolve_leaks":
s, "merge": s, "write_report": s, "wrapper_start_s": time from process start to the call of
prepare (interpreter start-up + imports), "main_vm_hwm_after_mb": {step: the main process's
VmHWM right after it}}``.
"""

from __future__ import annotations

import json
import sys
import time

T0 = time.time()


def main(argv: list[str]) -> int:
    import lmforge.data.prepare as prep
    from lmforge import cli
    from lmforge.config import load_config

    import lmforge.data.report as report

    extra: dict = {}
    hwm: dict[str, float] = {}

    def vm_hwm_mb() -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        return -1.0

    def timed(name, fn):
        def wrapper(*a, **kw):
            hwm[f"before_{name}"] = vm_hwm_mb()
            t = time.time()
            try:
                return fn(*a, **kw)
            finally:
                extra[name] = extra.get(name, 0.0) + time.time() - t
                hwm[name] = vm_hwm_mb()
        return wrapper

    for name in ("find_duplicates", "resolve_leaks", "merge"):
        if hasattr(prep, name):
            setattr(prep, name, timed(name, getattr(prep, name)))
    report.write_report = timed("write_report", report.write_report)
    args = cli.build_parser().parse_args(["data", "prepare", *argv, "--no-progress"])
    extra["wrapper_start_s"] = time.time() - T0
    rc = args.func(args)
    cfg = load_config(args.config, args.set)
    out = cfg.run_path / "data" / "bench_extra_timings.json"
    extra = {k: round(v, 3) for k, v in extra.items()}
    extra["main_vm_hwm_after_mb"] = hwm
    out.write_text(json.dumps(extra, indent=2))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
