#!/usr/bin/env python
"""FSDP2 vs DDP pretraining on CPU: 2 processes under torchrun (gloo), the same model, data,
global batch and steps; one JSON line per side, then the ratios.

    .venv/bin/python benchmarks/bench_fsdp.py [--steps 40] [--layers 6] [--d-model 384]

Data: the standard-library docstrings (``builtin: stdlib_docstrings``, what the quickstart
trains on), BPE 8k, 256-token windows, prepared once under ``benchmarks/work/fsdp``. Model: a
decoder of ``--layers`` x ``--d-model`` (default 6 x 384, about 3x the quickstart's 4 x 128 in
non-embedding width and depth). Per side the script reads lmforge's own outputs:

* ``ms_per_step``: median over the logged windows after the first (warm-up) one;
* ``memory_per_rank`` from ``summary.json``: parameters + optimizer state each rank holds (the
  FSDP target is ~1/world of DDP's), and each rank's peak RSS (whole process: Python, torch,
  data, activations — the part FSDP does not shard).

Run it alone (``uptime`` first): two torch processes use both cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "fsdp"


def config(name: str, args, **pretrain) -> Path:
    cfg = {"name": name, "run_dir": str(WORK / name), "seed": 7,
           "data": {"sources": [{"builtin": "stdlib_docstrings"}], "dedup": {"near": False},
                    "split": {"val": 0.05, "test": 0.0}, "pack": {"seq_len": 256}},
           "tokenizer": {"type": "bpe", "vocab_size": 8000},
           "model": {"arch": "decoder", "n_layer": args.layers, "n_head": args.d_model // 64, "d_model": args.d_model,
                     "max_seq_len": 256, "dropout": 0.0},
           "pretrain": {"data_dir": str(WORK / "data" / "data" / "tokens"), "max_steps": args.steps,
                        "batch_size": args.batch, "lr": 6e-4, "warmup_steps": 5, "eval_every": 10_000,
                        "save_every": 10_000, "log_every": 5, "sample_tokens": 0, **pretrain}}
    path = WORK / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_side(name: str, args) -> dict:
    cfg = config(name, args, parallel=name)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "lmforge",
           "pretrain", str(cfg), "--no-progress", "--overwrite"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if r.returncode:
        sys.exit(f"{name} failed:\n{r.stderr[-3000:]}")
    out = WORK / name / "pretrain"
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    ms = [x["ms_per_step"] for x in recs if x["kind"] == "train"][1:]
    summary = json.loads((out / "summary.json").read_text())
    mem = summary["memory_per_rank"]
    return {"side": name, "world": summary["world_size"], "params": summary["params"], "steps": summary["steps"],
            "ms_per_step": round(statistics.median(ms), 1), "last_loss": round(summary["last_train_loss"], 4),
            "params_and_optimizer_mb_per_rank": [m["params_and_optimizer_mb"] for m in mem],
            "peak_rss_mb_per_rank": [m["peak_rss_mb"] for m in mem]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=4, help="sequences per rank per step")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--d-model", type=int, default=384)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if not (WORK / "data" / "data" / "tokens").is_dir():
        subprocess.run([sys.executable, "-m", "lmforge", "data", "prepare", str(config("data", args)), "--no-progress"],
                       check=True, stdout=subprocess.DEVNULL)
    rows = [run_side("ddp", args), run_side("fsdp", args)]
    for row in rows:
        print(json.dumps(row))
    ddp, fsdp = rows
    print(json.dumps({
        "fsdp_over_ddp_ms_per_step": round(fsdp["ms_per_step"] / ddp["ms_per_step"], 3),
        "fsdp_over_ddp_params_and_optimizer": round(max(fsdp["params_and_optimizer_mb_per_rank"])
                                                    / max(ddp["params_and_optimizer_mb_per_rank"]), 3),
        "fsdp_over_ddp_peak_rss": round(max(fsdp["peak_rss_mb_per_rank"]) / max(ddp["peak_rss_mb_per_rank"]), 3),
        "same_last_loss": abs(fsdp["last_loss"] - ddp["last_loss"]) <= 1e-3}))


if __name__ == "__main__":
    main()
