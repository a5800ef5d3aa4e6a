#!/usr/bin/env python
"""A/B of lmforge's ``data.chunk_mb`` (work-unit size) on one corpus, interleaved rounds.

    .venv/bin/python benchmarks/bench_chunk_ab.py --mb 300 --chunks 16,32 --repeat 2

Uses the corpus, tokenizer and config of ``bench_data.py`` (run that first) and its measuring
helpers; per run it records wall time, lmforge's ``timings_s``, the unit count, peak memory and
the main process's VmHWM after find_duplicates / leak_check / merge / write_report. Also runs
the raw ``tok_baseline.py`` once per round for the tokenize+pack overhead. Writes
``benchmarks/work/chunk_ab_<mb>mb.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_data as B  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=300)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--chunks", default="16,32")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--wait-quiet", type=float, default=300)
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args(argv)
    B.QUIET_WAIT_S = args.wait_quiet
    corpus, _ = B.corpus_for(args.mb, args.seed)
    tok, _ = B.train_tokenizer(corpus, 20, 8000, args.seed)
    chunks = [int(x) for x in args.chunks.split(",")]
    out = {"machine": B.machine_info(), "lmforge_state": B.lmforge_state(), "runs": [], "baseline": []}
    path = B.WORK / f"chunk_ab_{args.mb:g}mb.json"
    for rnd in range(args.repeat):
        for c in chunks:
            print(f"- round {rnd + 1}: chunk_mb={c}", flush=True)
            r = B.run_lmforge(corpus, tok, f"chunkab_{c}", args.workers, c)
            r["round"] = rnd + 1
            out["runs"].append(r)
            print(f"    wall {r['wall_s']} s, units {r['units']}, other load {r['foreign_cores_during']}, {r['timings_s']}",
                  flush=True)
            path.write_text(json.dumps(out, indent=1, default=str))
        if not args.no_baseline:
            log = B.WORK / "logs" / f"chunkab_tok_baseline_r{rnd + 1}.log"
            m = B.measured([B.PY, str(B.HERE / "tok_baseline.py"), "--splits-dir",
                            str(Path(out["runs"][-1]["run_dir"]) / "data" / "splits"), "--tokenizer", str(tok),
                            "--threads", str(args.workers)], log)
            out["baseline"].append({**json.loads(log.read_text().strip().splitlines()[-1]), "wall_s": m["wall_s"],
                                    "foreign_cores_during": m["foreign_cores_during"]})
            path.write_text(json.dumps(out, indent=1, default=str))
    for c in chunks:  # leave no big run folders behind
        shutil.rmtree(B.WORK / "runs" / f"lmforge_chunkab_{c}", ignore_errors=True)
    print("\n| round | chunk_mb | units | wall s | ingest s | tokenize_pack s | other load | tree PSS MB | main VmHWM after "
          "find_dup / leak / merge / report MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in out["runs"]:
        h = r["extra_timings_s"].get("main_vm_hwm_after_mb", {})
        print(f"| {r['round']} | {r['chunk_mb']} | {r['units']} | {r['wall_s']:.1f} | {r['timings_s']['ingest']:.1f} | "
              f"{r['timings_s']['tokenize_pack']:.1f} | {r['foreign_cores_during']:.2f} | {r['tree_peak_pss_mb']:.0f} | "
              f"{h.get('find_duplicates')} / {h.get('leak_check')} / {h.get('merge')} / {h.get('write_report')} |")
    for i, b in enumerate(out["baseline"]):
        print(f"baseline round {i + 1}: encode_batch {b['encode_batch_s']} s, encode_batch_fast {b['encode_batch_fast_s']} s, "
              f"fast_plus_flatten {b['fast_plus_flatten_s']} s (other load {b['foreign_cores_during']})")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
