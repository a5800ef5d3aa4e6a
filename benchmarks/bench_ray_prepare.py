#!/usr/bin/env python
"""``lmforge data prepare`` with the local process pool vs ``--executor ray`` (a local Ray instance),
on the same corpus and the same number of CPUs, one subprocess per side.

    python benchmarks/bench_ray_prepare.py --mb 300                 # the measurement
    python benchmarks/bench_ray_prepare.py --mb 5 --chunk-mb 1 --scale-units 200   # a quick check

Per side: wall time of the whole command (interpreter start, imports, Ray start-up and shutdown
included), the driver's peak RSS (``peak_rss_mb`` of the manifest: ``ru_maxrss`` of the driver
process) and the largest worker's (``peak_rss_workers_mb``); then the time ratio local/ray
(target >= 0.9: Ray no more than ~10 % slower) and whether the two run folders hold the same
bytes (manifest and report compared without their timings and RSS figures).

"Simulated scale": ``--scale-units N`` no-op units through ``RayExecutor.map`` (and, for
reference, ``LocalExecutor.map``) in a fresh process each: units/s that the driver schedules,
gathers and marks done (each unit still writes its completion marker), and the driver's VmHWM
before and after, so a driver that holds more than the result dicts would show.

The tokenizer is trained in the driver on both sides (a ``--tok-chars`` sample), like a user's
run. Everything goes to ``benchmarks/work/ray_prepare/``; results to ``results_<mb>mb.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work" / "ray_prepare"
PY = sys.executable
MEASURED = ("timings_s", "peak_rss_mb", "peak_rss_workers_mb")  # manifest keys that differ run to run


def corpus_for(mb: float, seed: int) -> Path:
    """The benchmark corpus of ``mb`` MB (the one bench_data.py builds, reused when present)."""
    name = f"corpus_{mb:g}mb_s{seed}"
    out = HERE / "work" / "corpora" / f"{name}.jsonl"
    truth = out.with_name(f"{name}.truth.json")
    if not out.exists():
        print(f"- building corpus {out.name}", flush=True)
        subprocess.run([PY, str(HERE / "make_corpus.py"), "--mb", str(mb), "--seed", str(seed), "--out", str(out),
                        "--truth", str(truth)], check=True, cwd=ROOT)
    return out


def write_config(corpus: Path, run_dir: Path, workers: int, chunk_mb: int, tok_chars: int) -> Path:
    import yaml

    cfg = {"name": "bench_ray", "run_dir": str(run_dir), "seed": 1234, "workers": workers,
           "data": {"chunk_mb": chunk_mb,
                    "sources": [{"path": str(corpus), "format": "jsonl", "text_field": "text", "id_field": "id"}],
                    "dedup": {"exact": True, "near": True, "threshold": 0.8},
                    "split": {"val": 0.01, "test": 0.01, "leak_check": True},
                    "pack": {"seq_len": 1024}},
           "tokenizer": {"type": "bpe", "vocab_size": 8000, "max_train_chars": tok_chars}}
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_side(executor: str, cfg: Path, run_dir: Path, log: Path) -> dict:
    """One cold ``lmforge data prepare`` in a subprocess: wall time and the manifest's figures."""
    if run_dir.exists():
        shutil.rmtree(run_dir)  # no completion markers left: a cold run
    cmd = [PY, "-m", "lmforge", "data", "prepare", str(cfg), "--no-progress", "--executor", executor]
    t = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    wall = time.perf_counter() - t
    if rc != 0:
        raise SystemExit(f"{executor}: lmforge data prepare failed (exit {rc}); see {log}")
    m = json.loads((run_dir / "data" / "manifest.json").read_text())
    return {"executor": executor, "wall_s": round(wall, 2), "units": m["units"], "timings_s": m["timings_s"],
            "driver_peak_rss_mb": m["peak_rss_mb"], "worker_peak_rss_mb": m["peak_rss_workers_mb"],
            "input_mb": round(sum(i.get("bytes") or 0 for i in m["inputs"]) / 1e6, 1), "log": str(log)}


def fingerprint(run: Path) -> dict[str, str]:
    """sha256 per file of a run folder, the manifest and report with their measurements blanked."""
    out = {}
    for p in sorted(run.rglob("*")):
        if not p.is_file():
            continue
        rel = str(p.relative_to(run))
        data = p.read_bytes()
        if rel == "data/manifest.json":
            m = json.loads(data)
            data = json.dumps({k: v for k, v in m.items() if k not in MEASURED}, sort_keys=True).encode()
        elif rel == "data/report.md":
            text = re.sub(r"[\d.]+ s, peak RSS [^\n]*", "", data.decode())
            data = re.sub(r"\nplan [\d.]+,[^\n]*", "", text).encode()
        out[rel] = hashlib.sha256(data.replace(str(run).encode(), b"RUN")).hexdigest()
    return out


# -- simulated scale: no-op units through the executor ---------------------------------------------------------

def noop(unit, ctx) -> dict:
    """A task with no work: what is left is scheduling, gathering and the completion marker."""
    return {"unit": unit.name}


def scale_child(n: int, executor: str, workers: int) -> None:
    """(In its own process) map ``n`` no-op units; print one JSON line."""
    from lmforge.data.executor import vm_hwm_mb
    from lmforge.data.prepare import make_executor
    from lmforge.data.sources import WorkUnit

    units = [WorkUnit(index=i, source_index=0, path=f"noop/{i}", format="lines", size=1) for i in range(n)]
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        t = time.perf_counter()
        ex = make_executor(executor, workers, progress=False)
        start_s = time.perf_counter() - t
        hwm0 = vm_hwm_mb()
        t = time.perf_counter()
        results = ex.map(noop, units, None, Path(tmp) / "scale", "bench", "scale")
        dt = time.perf_counter() - t
        hwm1 = vm_hwm_mb()
        ex.close()
    assert [r["unit"] for r in results] == [u.name for u in units]
    print(json.dumps({"executor": executor, "units": n, "start_s": round(start_s, 2), "map_s": round(dt, 2),
                      "units_per_s": round(n / dt, 1), "driver_vm_hwm_before_mb": hwm0,
                      "driver_vm_hwm_after_mb": hwm1}))


def run_scale(n: int, executor: str, workers: int) -> dict:
    r = subprocess.run([PY, __file__, "--scale-child", str(n), "--executor", executor, "--workers", str(workers)],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"simulated scale ({executor}) failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# -- the run -------------------------------------------------------------------------------------------------------

def markdown(R: dict) -> str:
    loc, ray = R["local"], R["ray"]
    lines = [f"corpus {loc['input_mb']} MB, {loc['units']} units, {R['workers']} CPUs per side, best of {R['repeat']}",
             "", "| side | wall s | ingest s | split s | tokenize+pack s | driver peak RSS MB | largest worker MB |",
             "|---|---|---|---|---|---|---|"]
    for s in (loc, ray):
        t = s["timings_s"]
        lines.append(f"| {s['executor']} | {s['wall_s']} | {t.get('ingest')} | {t.get('split')} | "
                     f"{t.get('tokenize_pack')} | {s['driver_peak_rss_mb']} | {s['worker_peak_rss_mb']} |")
    lines += ["", f"time ratio local/ray: **{R['ratio_local_over_ray']:.3f}** (target >= 0.9); "
              f"outputs byte-identical: **{R['identical']}**"
              + ("" if R["identical"] else f" (differ: {', '.join(R['differ'][:10])})")]
    if R.get("scale"):
        lines += ["", "| simulated scale | units | start s | map s | units/s | driver VmHWM before → after MB |",
                  "|---|---|---|---|---|---|"]
        for s in R["scale"]:
            lines.append(f"| {s['executor']} | {s['units']} | {s['start_s']} | {s['map_s']} | {s['units_per_s']} | "
                         f"{s['driver_vm_hwm_before_mb']} → {s['driver_vm_hwm_after_mb']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=300, help="corpus size in MB (built by make_corpus.py if absent)")
    ap.add_argument("--corpus", help="use this JSONL corpus instead")
    ap.add_argument("--seed", type=int, default=20261122, help="corpus seed (bench_data.py's default)")
    ap.add_argument("--workers", type=int, default=2, help="pool processes / Ray CPUs per side")
    ap.add_argument("--chunk-mb", type=int, default=32, help="data.chunk_mb: the size of a work unit")
    ap.add_argument("--tok-chars", type=int, default=20_000_000, help="tokenizer.max_train_chars")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds (local, ray, local, ...); the fastest counts")
    ap.add_argument("--scale-units", type=int, default=2000, help="no-op units for the simulated-scale run (0: skip)")
    ap.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--executor", default="ray", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    if a.scale_child is not None:
        scale_child(a.scale_child, a.executor, a.workers)
        return 0

    corpus = Path(a.corpus) if a.corpus else corpus_for(a.mb, a.seed)
    tag = f"{a.mb:g}mb"
    best: dict[str, dict] = {}
    for rnd in range(a.repeat):
        for side in ("local", "ray"):
            run_dir = WORK / "runs" / f"{tag}_{side}"
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            cfg = write_config(corpus.resolve(), run_dir, a.workers, a.chunk_mb, a.tok_chars)
            res = run_side(side, cfg, run_dir, WORK / f"{tag}_{side}_{rnd}.log")
            print(f"- round {rnd + 1}, {side}: {res['wall_s']} s, driver peak RSS {res['driver_peak_rss_mb']} MB",
                  flush=True)
            if side not in best or res["wall_s"] < best[side]["wall_s"]:
                best[side] = res
    fa, fb = (fingerprint(WORK / "runs" / f"{tag}_{side}") for side in ("local", "ray"))
    differ = sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))
    R = {"corpus": str(corpus), "workers": a.workers, "repeat": a.repeat, "chunk_mb": a.chunk_mb,
         "local": best["local"], "ray": best["ray"], "ratio_local_over_ray": best["local"]["wall_s"] / best["ray"]["wall_s"],
         "identical": not differ, "files_compared": len(fa), "differ": differ,
         "loadavg": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M")}
    if a.scale_units:
        R["scale"] = [run_scale(a.scale_units, ex, a.workers) for ex in ("ray", "local")]
    (WORK / f"results_{tag}.json").write_text(json.dumps(R, indent=2))
    print(markdown(R))
    print(f"\n→ {WORK / f'results_{tag}.json'}")
    return 0 if R["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
