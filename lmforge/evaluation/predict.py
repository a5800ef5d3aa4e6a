"""``lmforge predict``: labels with probabilities (classifiers) or tagged entities (taggers) for
every record of a file, as JSONL — one output line per input record, with its source line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

import torch

from lmforge.errors import DataError


def predict_records(model_dir: str, file: str, text_field: str = "text", max_length: int | None = None,
                    batch_size: int = 128, progress: bool = True) -> Iterator[dict]:
    from lmforge.data.labeled_files import read_records, read_token_file
    from lmforge.evaluation.inference import entities, predict_probs, word_tags
    from lmforge.training.task_data import encode_sequences, encode_words
    from lmforge.training.task_model import load_task_model

    tm = load_task_model(model_dir)
    task = tm.model.task
    examples = read_token_file(file, need_label=False) if task == "token" else \
        read_records(file, text_field, "label", need_label=False)
    if not examples:
        raise DataError(f"{file}: no records to predict")
    max_length = max_length or tm.meta.get("max_length") or tm.model.cfg.max_seq_len
    fn = encode_words if task == "token" else encode_sequences
    enc = fn(tm.tokenizer, examples, None, tm.specials, tm.model.causal, max_length)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tm.model.to(device)
    probs = predict_probs(tm.model, enc, batch_size, tm.specials.pad, device, progress)
    if task == "sequence":
        for ex, p, cut in zip(examples, probs, enc.was_truncated):
            k = int(p.argmax())
            yield {"line": ex.line, "label": tm.labels[k], "score": float(p[k]),
                   "probs": {name: round(float(v), 6) for name, v in zip(tm.labels, p)},
                   "truncated": cut}
    else:
        tags, confs = word_tags(enc, probs, tm.labels)
        for ex, t, c in zip(examples, tags, confs):
            yield {"line": ex.line, "words": ex.text, "tags": [x or "O" for x in t],
                   "scores": [round(x, 6) for x in c], "entities": entities(ex.text, t),
                   "words_truncated": sum(x is None for x in t)}


def predict_cli(args: argparse.Namespace) -> int:
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    n = 0
    try:
        for rec in predict_records(args.model, args.file, args.text_field, args.max_length, args.batch_size,
                                   not args.no_progress):
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    finally:
        if args.out:
            out.close()
    if args.out:
        print(f"{n} predictions → {Path(args.out)}", file=sys.stderr)
    return 0
