"""Distillation on SST-2: a 3-layer student from the 6-layer MiniLM teacher that
``bench_finetune.py --task sst2 --sides lmforge`` trains, distilled vs trained on hard labels.

    python benchmarks/bench_distill.py [--teacher benchmarks/work/finetune/sst2_lmforge] [--seeds 1]
                                       [--transfer 20000 --teacher-logits cache]

Both students: the teacher's layers 0, 2, 4 (+ embeddings, pooler, head) as the start, the same
20k SST-2 subset and settings as the teacher's fine-tuning (max length 128, batch 32, AdamW lr
1e-4, weight decay 0.01, 10 % warmup, 1 epoch, packing); the distilled one with alpha 0.5, T 2;
the other with alpha 0 (cross-entropy only). Dev = SST-2 dev (872). Prints one JSON line per run
with dev accuracy, parameters and CPU latency at batch 1 and 32 (from ``distill.json``).

``--transfer N``: the distilled students also learn from N unlabeled SST-2 train sentences that
are not in the 20k subset (the next N of the same seeded permutation, labels dropped), on the
teacher's soft labels only; ``--teacher-logits cache`` computes those once before training.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
WORK = HERE / "work" / "distill"


def transfer_file(n: int) -> Path:
    """N SST-2 train sentences outside the 20k subset, without labels, as JSONL (written once)."""
    import csv

    import numpy as np

    out = WORK / f"sst2_unlabeled_{n}.jsonl"
    if not out.exists():
        with open(SHARED / "sst2" / "train.tsv", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
        order = np.random.default_rng(0).permutation(len(rows))  # the permutation bench_finetune's subset takes
        WORK.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as fh:
            for i in np.sort(order[20000:20000 + n]):
                fh.write(json.dumps({"sentence": rows[i]["sentence"]}) + "\n")  # finetune.data.text_field
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", type=Path, default=HERE / "work" / "finetune" / "sst2_lmforge")
    ap.add_argument("--train", type=Path, default=HERE / "work" / "finetune" / "sst2_train_20000.tsv")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--alphas", default="0.5,0.0")
    ap.add_argument("--transfer", type=int, default=0, help="unlabeled SST-2 train sentences outside the subset")
    ap.add_argument("--teacher-logits", choices=["on_the_fly", "cache"], default="on_the_fly")
    a = ap.parse_args()
    transfer = transfer_file(a.transfer) if a.transfer else None
    from lmforge.config.experiment import load_config
    from lmforge.recipes.distill import distill

    teacher_acc = json.loads((a.teacher / "summary.json").read_text())["results"]["val"]["accuracy"]
    print(json.dumps({"teacher": str(a.teacher), "teacher_dev_accuracy": teacher_acc}), flush=True)
    for seed in range(a.first_seed, a.first_seed + a.seeds):
        for alpha in (float(x) for x in a.alphas.split(",")):
            name = f"sst2_student_a{alpha:g}_s{seed}" + (f"_t{a.transfer}" if transfer and alpha > 0 else "")
            extra = ({"transfer_file": str(transfer), "teacher_logits": a.teacher_logits}
                     if transfer and alpha > 0 else {})
            raw = {"name": name, "run_dir": str(WORK / name), "seed": 42 + seed,
                   "distill": {"teacher": str(a.teacher), "alpha": alpha, "temperature": 2.0, "latency_length": 64,
                               **extra},
                   "finetune": {"init": str(a.teacher), "keep_layers": [0, 2, 4], "task": "sequence",
                                "data": {"train_file": str(a.train), "val_file": str(SHARED / "sst2" / "dev.tsv"),
                                         "text_field": "sentence", "labels": ["0", "1"], "max_length": 128},
                                "optim": {"lr": 1e-4, "weight_decay": 0.01, "warmup_ratio": 0.1},
                                "loop": {"batch_size": 32, "epochs": 1, "log_every": 100, "eval_batch_size": 64}}}
            cfg = load_config(raw=raw)
            t0 = time.time()
            out = distill(cfg.distill, cfg.finetune, cfg.pretrain, cfg.model, cfg.paths, cfg.seed, name=name, overwrite=True,
                          progress=False)
            rec = out["distill"]
            print(json.dumps({"student": name, "alpha": alpha, "seed": seed, "wall_s": round(time.time() - t0, 1),
                              "trained_on": rec["student"].get("trained_on"),
                              "dev_accuracy": rec["student"]["val"]["accuracy"],
                              "of_teacher": round(rec["student"]["val"]["accuracy"] / teacher_acc, 4),
                              "non_embedding_param_ratio": rec["non_embedding_param_ratio"],
                              "speedup_batch32": rec["speedup_batch32"],
                              "speedup_batch1": round(rec["teacher"]["latency_ms_batch1"]
                                                      / rec["student"]["latency_ms_batch1"], 2),
                              "teacher_ms": [rec["teacher"]["latency_ms_batch1"], rec["teacher"]["latency_ms_batch32"]],
                              "student_ms": [rec["student"]["latency_ms_batch1"], rec["student"]["latency_ms_batch32"]]}),
                  flush=True)


if __name__ == "__main__":
    main()
