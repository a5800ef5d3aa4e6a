"""Time to a target validation loss on character-level tinyshakespeare: lmforge's
``shakespeare_char`` preset vs nanoGPT's CPU reference run, measured in one run.

Peer: nanoGPT's own ``train.py`` from a snapshot you fetch (``--nanogpt DIR``, not shipped),
run with the command its README gives for CPUs (4 layers, 4 heads, 128 dim, block 64,
batch 12, lr 1e-3 cosine to 1e-4 over 2,000 iterations, dropout 0), with three changes that
do not alter its training: evaluation every 100 iterations (``--eval_interval=100``, so the
crossing is seen as finely as ours), its config's default ``--eval_iters=200`` instead of the
README's 20 (a precise estimate; evaluation time is not counted below), and
``--max_iters=3000`` with ``--lr_decay_iters=2000`` kept: iterations 1-2000 are the reference
run unchanged, after which it continues at its floor learning rate so that a run that has not
reached the target by 2,000 can still be timed.

Ours: ``lmforge data prepare shakespeare_char`` + ``lmforge pretrain shakespeare_char``
(configs/shakespeare_char.yaml: the same characters, the same 90/10 split of the text, 64
predicted characters per window), ``--seeds`` runs.

Time to target = training time until the first evaluation at or below ``--target``:
the sum of the step times up to that step (each side's own timer around the optimizer step,
data included; evaluation, checkpointing and start-up excluded), as speedruns count it. The
process wall time until that evaluation is printed line is reported too (it includes start-up
and every side's own evaluation cost). Each side judges the crossing with its own validation
estimate (nanoGPT: 200 random batches of 12 x 64; lmforge: every 64-character window of val).
At the end both final models are re-scored with one function on the same windows (val cut
into consecutive 64-character windows, every position scored).

    python benchmarks/bench_time_to_loss.py --nanogpt /path/to/nanoGPT [--seeds 1337,1,2] [--target 1.88]

Prints one JSON line per run and writes benchmarks/work/time_to_loss/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
WORK = REPO / "benchmarks" / "work" / "time_to_loss"
NANOGPT_ARGS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--log_interval=1",
                "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128",
                "--lr_decay_iters=2000", "--dropout=0.0",
                # changes that leave iterations 1-2000 as in the README's run (see the docstring)
                "--eval_interval=100", "--eval_iters=200", "--max_iters=3000"]


def timed_lines(cmd: list[str], cwd: Path, env: dict, log: Path):
    """Run ``cmd``; yield ``(seconds since start, line)`` as lines arrive; fail loudly on error."""
    t0 = time.perf_counter()
    with open(log, "w") as fh, subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, text=True, bufsize=1) as p:
        for line in p.stdout:
            fh.write(line)
            yield time.perf_counter() - t0, line
    if p.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed (exit {p.returncode}); see {log}")


def run_nanogpt(src: Path, threads: int) -> dict:
    wd = WORK / "nanogpt"
    if wd.exists():
        shutil.rmtree(wd)
    shutil.copytree(src, wd, ignore=shutil.ignore_patterns(".git", "out-*"))
    shutil.copy(TEXT, wd / "data" / "shakespeare_char" / "input.txt")
    subprocess.run([sys.executable, "data/shakespeare_char/prepare.py"], cwd=wd, check=True, capture_output=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    dts: dict[int, float] = {}
    evals = []  # (iter, val loss, process seconds)
    for sec, line in timed_lines([sys.executable, "train.py", *NANOGPT_ARGS], wd, env, WORK / "nanogpt.log"):
        if m := re.match(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", line):
            dts[int(m.group(1))] = float(m.group(2)) / 1000
        elif m := re.match(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)", line):
            evals.append((int(m.group(1)), float(m.group(2)), sec))
    # iteration i's time also holds the evaluation run just before it (i % 100 == 0) and, for
    # i = 0, the first forward: those take the median iteration time instead
    med = statistics.median(dts.values())
    step_s = {i: (med if i % 100 == 0 else dt) for i, dt in dts.items()}
    # nanoGPT evaluates *before* iteration i's update: "step i" is the model after i updates
    # (iterations 0 .. i-1)
    curve = [{"step": s, "val_loss": v, "train_s": sum(step_s[i] for i in range(s)), "process_s": p}
             for s, v, p in evals]
    return {"side": "nanogpt train.py", "curve": curve, "ms_per_step_median": med * 1000,
            "ckpt": str(wd / "out-shakespeare-char" / "ckpt.pt"), "work": str(wd)}


CLI = [sys.executable, "-m", "lmforge"]
DATA_RUN = WORK / "lmforge_data"


def prepare_lmforge(threads: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    subprocess.run(CLI + ["data", "prepare", "shakespeare_char", "--no-progress", "--set", f"data.sources[0].path={TEXT}",
                          "--set", f"run_dir={DATA_RUN}"], cwd=REPO, env=env, check=True)


def run_lmforge(seed: int, threads: int) -> dict:
    out = WORK / f"lmforge_seed{seed}"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    evals = []
    cmd = CLI + ["pretrain", "shakespeare_char", "--overwrite", "--no-progress", "--set", f"run_dir={DATA_RUN}",
                 "--set", f"pretrain.out_dir={out}", "--set", f"seed={seed}"]
    for sec, line in timed_lines(cmd, REPO, env, WORK / f"lmforge_seed{seed}.log"):
        if m := re.search(r"step (\d+): train loss [\d.]+, val_loss ([\d.]+)", line):
            evals.append((int(m.group(1)), float(m.group(2)), sec))
    rows = [json.loads(x) for x in open(out / "metrics.jsonl")]
    # each train record holds the mean step time over the steps since the previous record
    # (log_every = 10 divides eval_every = 100, so every evaluation closes a window)
    windows, prev = [], 0
    for r in rows:
        if r["kind"] == "train":
            windows.append((r["step"], (r["step"] - prev) * r["ms_per_step"] / 1000, r["ms_per_step"]))
            prev = r["step"]
    curve = [{"step": s, "val_loss": v, "train_s": sum(t for k, t, _ in windows if k <= s), "process_s": p}
             for s, v, p in evals]
    return {"side": "lmforge shakespeare_char", "seed": seed, "curve": curve,
            "ms_per_step_median": statistics.median(ms for _, _, ms in windows), "out": str(out)}


def crossing(curve: list[dict], target: float) -> dict | None:
    return next((c for c in curve if c["val_loss"] <= target), None)


@torch.no_grad()
def window_loss(logits_fn, ids: np.ndarray, block: int = 64, batch: int = 64) -> float:
    """Mean next-character loss over consecutive windows x = ids[i:i+block], y = ids[i+1:i+block+1]."""
    starts = np.arange(0, len(ids) - block - 1, block)
    total, count = 0.0, 0
    for k in range(0, len(starts), batch):
        s = starts[k:k + batch]
        x = torch.from_numpy(np.stack([ids[i:i + block] for i in s]).astype(np.int64))
        y = torch.from_numpy(np.stack([ids[i + 1:i + block + 1] for i in s]).astype(np.int64))
        logits = logits_fn(x)
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    return total / count


def rescore_nanogpt(res: dict, val_text: str) -> float:
    sys.path.insert(0, res["work"])
    from model import GPT, GPTConfig  # nanoGPT's model.py, from the snapshot

    ck = torch.load(res["ckpt"], map_location="cpu", weights_only=False)
    model = GPT(GPTConfig(**ck["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ck["model"].items()})
    model.eval()
    chars = sorted(set(TEXT.read_text()))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in val_text])
    # nanoGPT's forward returns logits for the last position only unless targets are given
    return window_loss(lambda x: model(x, x)[0], ids)


def rescore_lmforge(res: dict, val_text: str) -> float:
    sys.path.insert(0, str(REPO))
    from lmforge.models.load import load_checkpoint_model
    from lmforge.tokenizer import io as tok_io

    model, _ = load_checkpoint_model(res["out"], prefer="best")
    tok = tok_io.load(Path(res["out"]) / "tokenizer")
    ids = np.array(tok.encode(val_text).ids)

    def logits(x):
        out = model(x)
        return out[0] if isinstance(out, tuple) else out
    return window_loss(logits, ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nanogpt", type=Path, required=True, help="a nanoGPT checkout (train.py, model.py, config/)")
    ap.add_argument("--seeds", default="1337,1,2")
    ap.add_argument("--target", type=float, default=1.88)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    text = TEXT.read_text()
    val_text = text[int(len(text) * 0.9):]
    prepare_lmforge(args.threads)
    results = [run_nanogpt(args.nanogpt.resolve(), args.threads)]
    results += [run_lmforge(int(s), args.threads) for s in args.seeds.split(",")]
    for r in results:
        r["final_val_loss_rescored"] = (rescore_nanogpt(r, val_text) if r["side"].startswith("nanogpt")
                                        else rescore_lmforge(r, val_text))
    ref = crossing(results[0]["curve"], args.target)
    for r in results:
        c = crossing(r["curve"], args.target)
        line = {"side": r["side"], "seed": r.get("seed"), "target": args.target,
                "ms_per_step_median": round(r["ms_per_step_median"], 2),
                "step_at_target": c and c["step"], "train_s_to_target": c and round(c["train_s"], 2),
                "process_s_to_target": c and round(c["process_s"], 2),
                "val_at_target": c and c["val_loss"], "final_step": r["curve"][-1]["step"],
                "final_val_loss": r["curve"][-1]["val_loss"],
                "final_val_loss_rescored": round(r["final_val_loss_rescored"], 4)}
        if ref and c:
            line["train_time_ratio_vs_nanogpt"] = round(c["train_s"] / ref["train_s"], 3)
            line["process_time_ratio_vs_nanogpt"] = round(c["process_s"] / ref["process_s"], 3)
        r["summary"] = line
        print(json.dumps(line), flush=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "threads": args.threads, "torch": torch.__version__,
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                     text=True).stdout.strip()}
    (WORK / "results.json").write_text(json.dumps({"meta": meta, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
