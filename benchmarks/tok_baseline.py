#!/usr/bin/env python
"""Raw ``tokenizers`` speed over texts already in memory: the floor for a tokenize+pack stage.

    python benchmarks/tok_baseline.py --splits-dir RUN/data/splits --tokenizer tokenizer.json [--threads 2]

Loads every text of ``<splits-dir>/{train,val,test}/*.jsonl`` (the documents lmforge tokenized;
loading is not timed), then times, with ``RAYON_NUM_THREADS=--threads`` in this one process:

* ``encode_batch``       ``Tokenizer.encode_batch(batch, add_special_tokens=False)``
* ``encode_batch_fast``  the same with ``encode_batch_fast`` (no offsets)
* ``fast_plus_flatten``  ``encode_batch_fast`` + EOS per document + ``np.fromiter`` into one
                         uint16 array per batch (what packing needs at least, without I/O)

in batches of ``--batch`` documents, each ``--repeat`` times (best time kept). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits-dir", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--only-train", action="store_true")
    args = ap.parse_args(argv)
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    from itertools import chain

    import numpy as np
    from tokenizers import Tokenizer

    t = time.time()
    texts: list[str] = []
    splits = ("train",) if args.only_train else ("train", "val", "test")
    for s in splits:
        for f in sorted((Path(args.splits_dir) / s).glob("*.jsonl")):
            with open(f, encoding="utf-8") as fh:
                texts.extend(json.loads(line)["text"] for line in fh)
    load_s = time.time() - t
    tok = Tokenizer.from_file(args.tokenizer)
    eos = tok.token_to_id("</s>")
    tok.encode_batch_fast(texts[:64], add_special_tokens=False)  # warm the thread pool
    B = args.batch

    def run_batch():
        n = 0
        for i in range(0, len(texts), B):
            n += sum(len(e.ids) for e in tok.encode_batch(texts[i:i + B], add_special_tokens=False))
        return n

    def run_fast():
        n = 0
        for i in range(0, len(texts), B):
            n += sum(len(e.ids) for e in tok.encode_batch_fast(texts[i:i + B], add_special_tokens=False))
        return n

    def run_flatten():
        n = 0
        for i in range(0, len(texts), B):
            encs = tok.encode_batch_fast(texts[i:i + B], add_special_tokens=False)
            flat = np.fromiter(chain.from_iterable(chain.from_iterable((e.ids, (eos,)) for e in encs)), dtype=np.uint16)
            n += len(flat)
        return n

    res = {"docs": len(texts), "chars": sum(len(x) for x in texts), "splits": list(splits), "load_s": round(load_s, 2),
           "threads": args.threads, "batch": B}
    for name, fn in (("encode_batch_fast", run_fast), ("encode_batch", run_batch), ("fast_plus_flatten", run_flatten)):
        best = None
        for _ in range(args.repeat):
            t = time.time()
            n = fn()
            dt = time.time() - t
            best = dt if best is None else min(best, dt)
        res[f"{name}_s"] = round(best, 3)
        res[f"{name}_tokens"] = n
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
