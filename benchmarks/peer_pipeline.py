#!/usr/bin/env python
"""The peer data pipeline, built from off-the-shelf parts, with per-stage timings.

    python benchmarks/peer_pipeline.py --corpus C.jsonl --out DIR --tokenizer tokenizer.json [--workers 2]

Stages (each timed; the budget is ``--workers`` processes throughout):

1. ``load``        Hugging Face ``datasets.load_dataset("json")`` → Arrow cache (fresh cache dir).
2. ``clean``       ``Dataset.map(num_proc=W, batched=True)``: ftfy ``fix_text`` (NFC) + whitespace
                   normalization (same rules as lmforge: collapse spaces, trim lines, at most one
                   blank line), plus an xxh64 key of the lowercased, space-collapsed text.
3. ``exact_dedup`` keep the first document of each key (numpy over the key column), drop empty
                   texts: ``Dataset.filter(num_proc=W)``.
4. ``handoff``     write the survivors as W Parquet files for datatrove.
5. ``minhash_*``   datatrove MinHash: signatures (W tasks) → buckets (14 tasks, W workers) →
                   cluster (1 task) → filter (W tasks), ``LocalPipelineExecutor``; 5-gram shingles,
                   14 buckets × 8 hashes (datatrove's defaults), 64-bit xxhash.
6. ``tokenize_pack`` HF ``tokenizers`` ``encode_batch_fast`` (Rayon, W threads) over the kept
                   documents, EOS after each, train/val/test by a hash of the id, written into
                   per-split ``numpy.memmap`` files cut into ``--seq-len`` windows (tail dropped).

Afterwards (not timed) it writes ``drops.jsonl`` — one line per document removed as an exact
or near duplicate, with the id of the document kept in its place — for the quality check.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANKS = re.compile(r"\n{3,}")


def normalize_whitespace(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub(" ", text)
    text = "\n".join(part.strip() for part in text.split("\n"))
    return _BLANKS.sub("\n\n", text).strip()


def clean_batch(batch: dict) -> dict:
    import ftfy
    import xxhash

    texts, keys, ok = [], [], []
    for t in batch["text"]:
        t = normalize_whitespace(ftfy.fix_text(t, normalization="NFC"))
        texts.append(t)
        keys.append(xxhash.xxh64_intdigest(" ".join(t.lower().split()).encode("utf-8", "surrogatepass"))
                    & 0x7FFFFFFFFFFFFFFF)  # Arrow int64
        ok.append(bool(t))
    return {"text": texts, "ekey": keys, "nonempty": ok}


def vm_hwm_mb() -> float:
    """Peak RSS of this process so far (VmHWM: unlike ru_maxrss it is not inherited across fork+exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return -1.0


def keep_rows(batch: dict, indices: list[int], keep) -> list[bool]:
    return keep[indices].tolist()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True, help="work folder (emptied first)")
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--val", type=float, default=0.01)
    ap.add_argument("--test", type=float, default=0.01)
    ap.add_argument("--eos", default="</s>")
    ap.add_argument("--word-tokenizer", choices=["spacy", "whitespace"], default="spacy",
                    help="datatrove MinHash word tokenizer: its English default (spaCy blank 'en') or a plain split")
    ap.add_argument("--extra-site", default=str(HERE / "work" / "peer_site"),
                    help="folder appended to sys.path (where spaCy was installed for datatrove)")
    ap.add_argument("--xxhash3-site", default=str(HERE / "work" / "peer_xxhash3"),
                    help="folder put FIRST on sys.path holding xxhash<4: datatrove 0.10.1's default MinHash hash "
                         "calls xxh64_intdigest(str), which xxhash>=4 rejects (datatrove[processing] pins xxhash<4)")
    ap.add_argument("--dt-hash", choices=["xxhash", "sha1"], default="xxhash", help="datatrove MinHash hash function")
    args = ap.parse_args(argv)

    W = args.workers
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    os.environ["HF_DATASETS_CACHE"] = str(out / "hf_cache")
    os.environ["RAYON_NUM_THREADS"] = str(W)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    # make the extra site (spaCy) and this folder importable here and in datatrove's forkserver workers
    extra = [p for p in (args.extra_site, str(HERE)) if p and Path(p).is_dir()]
    for p in extra:
        if p not in sys.path:
            sys.path.append(p)
    first = [args.xxhash3_site] if args.dt_hash == "xxhash" and Path(args.xxhash3_site).is_dir() else []
    if "xxhash" in sys.modules and first:
        raise SystemExit("xxhash was imported before --xxhash3-site could be put first on sys.path")
    sys.path[:0] = first
    os.environ["PYTHONPATH"] = os.pathsep.join(first + [os.environ.get("PYTHONPATH", "")] + extra).strip(os.pathsep)

    import numpy as np
    import datasets
    from datasets import load_dataset

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    timings: dict[str, float] = {}
    counts: dict[str, int] = {}
    hwm: dict[str, float] = {}  # main process VmHWM after each stage
    t_all = time.time()

    # 1. load -----------------------------------------------------------------------------------
    t = time.time()
    ds = load_dataset("json", data_files=args.corpus, split="train", cache_dir=str(out / "hf_cache"))
    timings["load"] = time.time() - t
    hwm["load"] = vm_hwm_mb()
    counts["docs_in"] = len(ds)

    # 2. clean ------------------------------------------------------------------------------------
    t = time.time()
    ds = ds.map(clean_batch, batched=True, batch_size=256, num_proc=W)
    timings["clean"] = time.time() - t
    hwm["clean"] = vm_hwm_mb()

    # 3. exact dedup --------------------------------------------------------------------------------
    t = time.time()
    keys = ds.data.column("ekey").to_numpy()
    nonempty = ds.data.column("nonempty").to_numpy(zero_copy_only=False)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    keep = np.zeros(len(keys), dtype=bool)
    keep[first] = True
    keep &= nonempty
    ds_clean = ds
    ds = ds.filter(keep_rows, with_indices=True, batched=True, num_proc=W, fn_kwargs={"keep": keep})
    timings["exact_dedup"] = time.time() - t
    hwm["exact_dedup"] = vm_hwm_mb()
    counts["after_exact"] = len(ds)

    # 4. hand-off to datatrove ----------------------------------------------------------------------
    t = time.time()
    dt_in = out / "dt_input"
    dt_in.mkdir()
    ds_out = ds.remove_columns(["ekey", "nonempty"])
    for i in range(W):
        ds_out.shard(num_shards=W, index=i, contiguous=True).to_parquet(str(dt_in / f"{i:05d}.parquet"))
    timings["handoff"] = time.time() - t
    hwm["handoff"] = vm_hwm_mb()

    # 5. datatrove MinHash ---------------------------------------------------------------------------
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    if args.word_tokenizer == "whitespace":
        from peer_wordtok import SplitWordTokenizer

        language = SplitWordTokenizer()
    else:
        language = "en"
    from datatrove.utils.hashing import HashConfig

    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8,
                        hash_config=HashConfig(precision=64, hash_fc=args.dt_hash))
    mh = out / "minhash"
    logs = out / "dt_logs"

    def run(name, pipeline, tasks, workers):
        t0 = time.time()
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=workers,
                              logging_dir=str(logs / name)).run()
        timings[f"minhash_{name}"] = time.time() - t0
        hwm[f"minhash_{name}"] = vm_hwm_mb()

    def reader():
        return ParquetReader(str(dt_in), text_key="text", id_key="id")

    run("signatures", [reader(), MinhashDedupSignature(output_folder=str(mh / "sigs"), config=cfg, language=language)],
        W, W)
    run("buckets", [MinhashDedupBuckets(input_folder=str(mh / "sigs"), output_folder=str(mh / "buckets"), config=cfg)],
        cfg.num_buckets, W)
    run("cluster", [MinhashDedupCluster(input_folder=str(mh / "buckets"), output_folder=str(mh / "remove"), config=cfg,
                                        save_cluster_id=True)], 1, 1)
    run("filter", [reader(),
                   MinhashDedupFilter(input_folder=str(mh / "remove"), load_cluster_ids=True,
                                      exclusion_writer=ParquetWriter(str(out / "dt_removed"))),
                   ParquetWriter(str(out / "dt_kept"))], W, W)

    # 6. tokenize + pack --------------------------------------------------------------------------------
    t = time.time()
    # datasets' map/filter(num_proc=...) set TOKENIZERS_PARALLELISM=false through os.environ (so putenv) and
    # "restore" it by rebinding os.environ to a saved copy, which leaves the C-level environment at "false":
    # the Rust tokenizers library then encodes on one thread in this process. Set it again (calls putenv).
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    import pyarrow.parquet as pq
    import xxhash
    from itertools import chain

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(args.tokenizer)
    eos = tok.token_to_id(args.eos)
    dtype = np.uint16 if tok.get_vocab_size(with_added_tokens=True) <= 1 << 16 else np.uint32
    kept_files = sorted((out / "dt_kept").glob("*.parquet"))
    cap = os.path.getsize(args.corpus) + counts["docs_in"] + 1  # tokens <= UTF-8 bytes (+1 EOS per doc)
    tok_dir = out / "tokens"
    tok_dir.mkdir()
    splits = ("train", "val", "test")
    mm = {s: np.memmap(tok_dir / f"{s}.bin", dtype=dtype, mode="w+", shape=(cap,)) for s in splits}
    pos = {s: 0 for s in splits}
    docs = {s: 0 for s in splits}
    cut_val = int(args.val * (1 << 32))
    cut_test = int((args.val + args.test) * (1 << 32))
    sub = {"read": 0.0, "encode": 0.0, "assign_flatten_write": 0.0}
    for f in kept_files:
        batches = pq.ParquetFile(f).iter_batches(batch_size=1024, columns=["id", "text"])
        while True:
            t0 = time.time()
            rb = next(batches, None)
            if rb is None:
                break
            ids = rb.column(0).to_pylist()
            texts = rb.column(1).to_pylist()
            t1 = time.time()
            encs = tok.encode_batch_fast(texts, add_special_tokens=False)
            t2 = time.time()
            groups = {s: [] for s in splits}
            for i, e in zip(ids, encs):
                h = xxhash.xxh32_intdigest(i.encode("utf-8"))
                s = "val" if h < cut_val else ("test" if h < cut_test else "train")
                groups[s].append(e.ids)
                groups[s].append([eos])
            for s, g in groups.items():
                if not g:
                    continue
                flat = np.fromiter(chain.from_iterable(g), dtype=dtype)
                mm[s][pos[s]:pos[s] + len(flat)] = flat
                pos[s] += len(flat)
                docs[s] += len(g) // 2
            t3 = time.time()
            sub["read"] += t1 - t0
            sub["encode"] += t2 - t1
            sub["assign_flatten_write"] += t3 - t2
    windows = {}
    for s in splits:
        mm[s].flush()
        del mm[s]
        n_win = pos[s] // args.seq_len
        windows[s] = n_win
        with open(tok_dir / f"{s}.bin", "r+b") as fh:
            fh.truncate(n_win * args.seq_len * np.dtype(dtype).itemsize)
        if n_win:  # the packed view a trainer would open
            np.memmap(tok_dir / f"{s}.bin", dtype=dtype, mode="r").reshape(n_win, args.seq_len)
    timings["tokenize_pack"] = time.time() - t
    timings.update({f"tokenize_pack.{k}": v for k, v in sub.items()})
    hwm["tokenize_pack"] = vm_hwm_mb()
    timings["total"] = time.time() - t_all
    counts.update({f"{s}_docs": docs[s] for s in splits})
    counts.update({f"{s}_tokens": pos[s] for s in splits})
    counts.update({f"{s}_windows": windows[s] for s in splits})
    counts["after_near"] = sum(docs.values())
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    # -- not timed: drops for the quality check -----------------------------------------------------
    t = time.time()
    all_ids = ds_clean.data.column("id").to_pylist()
    with open(out / "drops.jsonl", "w", encoding="utf-8") as fh:
        for i in np.flatnonzero(~keep).tolist():
            if not nonempty[i]:
                continue
            fh.write(json.dumps({"id": all_ids[i], "duplicate_of": all_ids[first[inverse[i]]],
                                 "reason": "exact_duplicate"}) + "\n")
        rep = {}  # cluster id -> kept document
        for f in kept_files:
            tab = pq.read_table(f, columns=["id", "metadata"]).to_pylist()
            for r in tab:
                cid = (r.get("metadata") or {}).get("minhash_cluster_id", -1)
                if cid is not None and cid >= 0:
                    rep[cid] = r["id"]
        for f in sorted((out / "dt_removed").glob("*.parquet")):
            for r in pq.read_table(f, columns=["id", "metadata"]).to_pylist():
                cid = (r.get("metadata") or {}).get("minhash_cluster_id", -1)
                fh.write(json.dumps({"id": r["id"], "duplicate_of": rep.get(cid), "reason": "near_duplicate"}) + "\n")
    result = {"timings_s": {k: round(v, 3) for k, v in timings.items()}, "counts": counts,
              "peak_rss_mb": round(rss_self, 1), "peak_rss_children_mb": round(rss_children, 1),
              "main_vm_hwm_after_stage_mb": hwm,
              "word_tokenizer": args.word_tokenizer, "dt_hash": args.dt_hash, "workers": W,
              "xxhash_version": __import__("xxhash").VERSION, "drops_written_s": round(time.time() - t, 2)}
    (out / "peer_result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
