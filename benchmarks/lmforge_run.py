#!/usr/bin/env python
"""Run ``lmforge data prepare`` exactly as the CLI does, timing two sub-steps of the
corpus-wide stage that the manifest reports only together (``timings_s.dedup_split``).

    python benchmarks/lmforge_run.py CONFIG.yaml [--set key=value ...]

It wraps ``find_duplicates`` and ``leak_check`` as seen by ``lmforge.data.prepare`` with a
timer (no change in behaviour) and writes ``<run_dir>/data/bench_extra_timings.json``:
``{"find_duplicates": s, "leak_check": s, "wrapper_start_s": time from process start to the
call of prepare (interpreter start-up + imports), ...}``.
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

    extra: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.time()
            try:
                return fn(*a, **kw)
            finally:
                extra[name] = extra.get(name, 0.0) + time.time() - t
        return wrapper

    prep.find_duplicates = timed("find_duplicates", prep.find_duplicates)
    prep.leak_check = timed("leak_check", prep.leak_check)
    args = cli.build_parser().parse_args(["data", "prepare", *argv, "--no-progress"])
    extra["wrapper_start_s"] = time.time() - T0
    rc = args.func(args)
    cfg = load_config(args.config, args.set)
    out = cfg.run_path / "data" / "bench_extra_timings.json"
    out.write_text(json.dumps({k: round(v, 3) for k, v in extra.items()}, indent=2))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
