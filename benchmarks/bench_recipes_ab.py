"""The training recipes now vs a reference checkout (by default the commit before the training
refactor): same config, same data, same seed, run in turn A B A B ... in separate processes.

    git worktree add /tmp/lmforge-ref d5e6052
    python benchmarks/bench_recipes_ab.py --ref /tmp/lmforge-ref --rounds 3

Side "now" imports lmforge from this checkout, side "ref" from ``--ref`` (via PYTHONPATH). The
job is quickstart-sized CLM pretraining (4 layers, 128 dim, 256-token windows, batch 8) on the
stdlib docstring corpus, prepared once. Per run: median tokens/s over the logged intervals
after the first (warm-up) one, and the final train loss (the two sides must agree exactly).
Prints one JSON line per run and a summary line with the median ratio now/ref.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "recipes_ab"


def run(side: str, src: Path, cfg: Path, steps: int) -> dict:
    out = WORK / f"{side}_pretrain"
    env = dict(os.environ, PYTHONPATH=str(src))
    sets = ["--set", f"pretrain.max_steps={steps}", "--set", f"pretrain.out_dir={out}", "--set", "pretrain.log_every=10",
            "--set", f"pretrain.eval_every={steps}", "--set", f"pretrain.save_every={steps}", "--set", "pretrain.threads=2"]
    if out.exists():
        import shutil

        shutil.rmtree(out)
    r = subprocess.run([sys.executable, "-m", "lmforge", "pretrain", str(cfg), "--no-progress", *sets],
                       env=env, capture_output=True, text=True, cwd=WORK)
    if r.returncode != 0:
        raise SystemExit(f"{side} failed:\n{r.stderr[-3000:]}")
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    tps = [x["tokens_per_s"] for x in recs[1:]]
    return {"side": side, "tokens_per_s": statistics.median(tps), "final_loss": recs[-1]["loss"], "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", required=True, type=Path, help="a checkout of the reference commit")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    cfg = HERE.parent / "configs" / "quickstart.yaml"
    run_dir = WORK / "run"
    if not (run_dir / "data" / "tokens" / "index.json").is_file():
        subprocess.run([sys.executable, "-m", "lmforge", "data", "prepare", str(cfg), "--no-progress",
                        "--set", f"run_dir={run_dir}"], check=True, cwd=WORK, env=dict(os.environ, PYTHONPATH=str(HERE.parent)))
    job = WORK / "job.yaml"
    job.write_text(cfg.read_text() + f"\nrun_dir: {run_dir}\n")
    rows = []
    for i in range(args.rounds):
        order = [("now", HERE.parent), ("ref", args.ref)]
        for side, src in order if i % 2 == 0 else order[::-1]:
            rows.append(run(side, src, job, args.steps))
            print(json.dumps(rows[-1]), flush=True)
    now = [r["tokens_per_s"] for r in rows if r["side"] == "now"]
    ref = [r["tokens_per_s"] for r in rows if r["side"] == "ref"]
    same = len({r["final_loss"] for r in rows}) == 1
    print(json.dumps({"summary": True, "now_tokens_per_s": statistics.median(now), "ref_tokens_per_s": statistics.median(ref),
                      "ratio_now_over_ref": statistics.median(now) / statistics.median(ref), "final_losses_identical": same}))


if __name__ == "__main__":
    main()
