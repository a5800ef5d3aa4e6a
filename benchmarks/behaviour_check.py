"""Behaviour check: same seed → the same per-step losses as before the training refactor.

Runs four tiny, fully seeded jobs through the CLI on data it makes itself — CLM pretraining of a
decoder, MLM pretraining of an encoder, sequence classification fine-tuned from the CLM
checkpoint, NER from random init — and compares every logged train loss and every validation
record with ``behaviour_ref.json``, which this same procedure wrote with the code of commit
d5e6052 (before ``recipes/`` and the training library existed; the finetune keys were then flat).

    python benchmarks/behaviour_check.py            # compare; exit 1 on any difference > --tol
    python benchmarks/behaviour_check.py --record   # rewrite the reference (only on purpose)

Prints one JSON line per job: steps compared and the largest absolute difference.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import yaml

from lmforge.cli import main

REF = Path(__file__).with_name("behaviour_ref.json")


def run_jobs(root: Path) -> dict:
    WORDS = "the of and to in is that for it as with was on be by this are or from at which an have not".split() + [f"w{i}" for i in range(150)]
    rng = random.Random(0)
    with open(root / "corpus.jsonl", "w") as f:
        for i in range(400):
            f.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(30, 90)))}) + "\n")
    CLASSES = ["alpha", "beta", "gamma"]
    def seq(path, n, seed):
        r = random.Random(seed)
        with open(path, "w") as f:
            for _ in range(n):
                c = r.randrange(3)
                words = [r.choice(WORDS[:20]) for _ in range(r.randrange(4, 12))]
                for _ in range(2):
                    words.insert(r.randrange(len(words) + 1), f"w{10 * c + r.randrange(10)}")
                f.write(json.dumps({"text": " ".join(words), "label": CLASSES[c]}) + "\n")
    def conll(path, n, seed):
        r = random.Random(seed); lines = []
        for _ in range(n):
            for _ in range(r.randrange(4, 10)):
                x = r.random()
                if x < 0.15: lines.append(f"w{r.randrange(1, 6)} NN O B-PER")
                elif x < 0.25: lines += [f"{r.choice(['which', 'an'])} NN O B-LOC", "not NN O I-LOC"]
                else: lines.append(f"{r.choice(WORDS[:20])} NN O O")
            lines.append("")
        path.write_text("\n".join(lines) + "\n")
    seq(root / "train.jsonl", 200, 1); seq(root / "val.jsonl", 50, 2)
    conll(root / "ner_train.txt", 150, 4); conll(root / "ner_val.txt", 40, 5)
    data = {"name": "data", "run_dir": str(root / "data"), "seed": 11, "workers": 1,
            "data": {"sources": [{"path": str(root / "corpus.jsonl")}], "dedup": {"near": False},
                     "split": {"val": 0.1, "test": 0.05}, "pack": {"seq_len": 32}},
            "tokenizer": {"type": "bpe", "vocab_size": 300, "special_tokens": {"mask": "<mask>"}}}
    def run(name, cfg, *cmd):
        p = root / f"{name}.yaml"; p.write_text(yaml.safe_dump(cfg))
        assert main([*cmd, str(p), "--no-progress"]) == 0, name
    (root / "d.yaml").write_text(yaml.safe_dump(data))
    assert main(["data", "prepare", str(root / "d.yaml"), "--no-progress"]) == 0
    tokens = str(root / "data" / "data" / "tokens")
    pre = {"max_steps": 24, "batch_size": 4, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2, "eval_every": 8,
           "eval_batches": 2, "save_every": 8, "log_every": 1, "threads": 1, "data_dir": tokens}
    dec = {"arch": "decoder", "n_layer": 2, "n_head": 2, "d_model": 32, "max_seq_len": 64}
    enc = {"arch": "encoder", "n_layer": 2, "n_head": 2, "d_model": 32, "max_seq_len": 64, "mlp": "gelu",
           "norm_position": "post", "type_vocab_size": 2, "embedding_norm": True, "final_norm": False}
    run("clm", {"name": "clm", "run_dir": str(root / "clm"), "seed": 11, "model": dec, "pretrain": pre}, "pretrain")
    run("mlm", {"name": "mlm", "run_dir": str(root / "mlm"), "seed": 11, "model": enc,
                "pretrain": {**pre, "objective": "mlm"}}, "pretrain")
    def ft(train, val, **top):
        return {**top, "data": {"max_length": 48, "train_file": str(train), "val_file": str(val)},
                "optim": {"lr": 2e-3, "warmup_ratio": 0.1},
                "loop": {"epochs": 2, "batch_size": 16, "threads": 1, "log_every": 1}}
    run("ft_seq", {"name": "ft_seq", "run_dir": str(root / "ft_seq"), "seed": 5,
                   "finetune": ft(root / "train.jsonl", root / "val.jsonl", init=str(root / "clm" / "pretrain"))}, "finetune")
    run("ft_tok", {"name": "ft_tok", "run_dir": str(root / "ft_tok"), "seed": 5, "model": enc,
                   "finetune": ft(root / "ner_train.txt", root / "ner_val.txt", task="token", init="random",
                                  tokenizer=str(root / "data" / "tokenizer"))}, "finetune")
    res = {}
    for name, path in [("pretrain_clm", "clm/pretrain"), ("pretrain_mlm", "mlm/pretrain"),
                       ("finetune_sequence", "ft_seq/finetune"), ("finetune_token", "ft_tok/finetune")]:
        recs = [json.loads(l) for l in (root / path / "metrics.jsonl").read_text().splitlines() if l]
        res[name] = {"train_loss": [r["loss"] for r in recs if r["kind"] == "train"],
                     "eval": [{k: v for k, v in r.items() if k != "kind"} for r in recs if r["kind"] == "eval"]}
    return res


def compare(ref: dict, got: dict) -> list[dict]:
    rows = []
    for job, want in ref.items():
        have = got[job]
        a, b = want["train_loss"], have["train_loss"]
        diffs = [abs(x - y) for x, y in zip(a, b)]
        ea, eb = want["eval"], have["eval"]
        ev = [abs(x[k] - y[k]) for x, y in zip(ea, eb) for k in x if isinstance(x[k], float) and k in y]
        rows.append({"job": job, "train_steps": [len(a), len(b)], "max_abs_train_loss_diff": max(diffs, default=0.0),
                     "evals": [len(ea), len(eb)], "max_abs_eval_diff": max(ev, default=0.0)})
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--record", action="store_true", help="write the reference instead of comparing")
    ap.add_argument("--tol", type=float, default=1e-6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        got = run_jobs(Path(tmp))
    if args.record:
        REF.write_text(json.dumps(got, indent=1))
        sys.exit(0)
    bad = False
    for row in compare(json.loads(REF.read_text()), got):
        print(json.dumps(row))
        bad |= row["train_steps"][0] != row["train_steps"][1] or row["evals"][0] != row["evals"][1] \
            or row["max_abs_train_loss_diff"] > args.tol or row["max_abs_eval_diff"] > args.tol
    sys.exit(1 if bad else 0)
