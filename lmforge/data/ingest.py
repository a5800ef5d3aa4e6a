"""Stage 1, per work unit: read → clean → filter → fingerprint.

Writes, for unit ``unit_NNNNN`` under ``work/ingest/``:

* ``unit_NNNNN.docs.jsonl`` — the surviving documents, in order (see :class:`Document`);
* ``unit_NNNNN.fp.npz`` — per document: ``exact`` (xxh64 of lowercased, space-collapsed
  text), ``n_chars``, ``n_words``, ``has_sig``, ``group`` (xxh64 of the group key, 0 if none)
  ``label`` (string, "" if none), ``id`` and ``offset`` (byte offset of its line in docs.jsonl);
* ``unit_NNNNN.sig.npy`` (n, num_perm) uint32 MinHash signatures and ``unit_NNNNN.bands.npy``
  (n, bands) uint64 LSH keys, when near-dedup or the leak check is on;
* ``unit_NNNNN.leakbands.npy`` (n, bands) uint64 LSH keys of the leak check's own MinHash
  (other permutations, banded at the leak threshold), when the leak check is on;
* ``rejected/unit_NNNNN.jsonl`` — every record dropped here, with source, line and reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash

from lmforge import faults
from lmforge.data.clean import Cleaner
from lmforge.data.config import DataConfig
from lmforge.data.document import RejectWriter
from lmforge.data.filters import QualityFilter
from lmforge.data.minhash import MinHasher
from lmforge.data.readers import UnitReader
from lmforge.data.sources import WorkUnit, check_unchanged

BATCH_DOCS = 2048
BATCH_CHARS = 1 << 20  # bounds the MinHash work arrays (about 40 bytes per character)


@dataclass
class IngestContext:
    cfg: DataConfig
    seed: int
    work_dir: Path
    reject_dir: Path
    fingerprints: bool  # compute MinHash signatures and band keys


def make_hasher(cfg: DataConfig, seed: int) -> MinHasher:
    d = cfg.dedup
    return MinHasher(d.num_perm, d.ngram, seed, d.bands, d.threshold)


LEAK_PERM = 64  # permutations of the leak check's own MinHash (its band keys: 12 x 5 at 0.8)
LEAK_SEED = 0x1EA4  # added to the run's seed: the leak check draws permutations of its own


def leak_threshold(cfg: DataConfig) -> float:
    return cfg.split.leak_threshold if cfg.split.leak_threshold is not None else cfg.dedup.threshold


def make_leak_hasher(cfg: DataConfig, seed: int) -> MinHasher:
    """The leak check's MinHash: other permutations over the same shingles, banded for recall at
    the leak threshold, so a pair that dedup's index missed is caught independently."""
    return MinHasher(LEAK_PERM, cfg.dedup.ngram, seed + LEAK_SEED, None, leak_threshold(cfg))


def exact_key(text: str) -> int:
    return xxhash.xxh64_intdigest(" ".join(text.lower().split()).encode("utf-8", "surrogatepass"))


def ingest_unit(unit: WorkUnit, ctx: IngestContext) -> dict:
    cfg = ctx.cfg
    src = cfg.sources[unit.source_index]
    rejects = RejectWriter(ctx.reject_dir / f"{unit.name}.jsonl", strict=cfg.strict)
    reader = UnitReader(unit, src, cfg, rejects)
    cleaner = Cleaner(cfg.clean)
    qfilter = QualityFilter(cfg.filter)
    hasher = make_hasher(cfg, ctx.seed) if ctx.fingerprints else None
    leak_hasher = make_leak_hasher(cfg, ctx.seed) if ctx.fingerprints and cfg.split.leak_check else None
    base = ctx.work_dir / unit.name
    exact, n_chars, n_words, group, labels, ids = [], [], [], [], [], []
    sigs, bands, leak_bands, has_sig = [], [], [], []
    batch: list[str] = []
    batch_chars = 0

    def flush() -> None:
        nonlocal batch, batch_chars
        if hasher is not None and batch:
            shingles = hasher.shingles(batch)
            s, h = hasher.signatures(batch, shingles)
            sigs.append(s)
            has_sig.append(h)
            bands.append(hasher.band_keys(s))
            if leak_hasher is not None:
                leak_bands.append(leak_hasher.band_keys(leak_hasher.signatures(batch, shingles)[0]))
        batch, batch_chars = [], 0

    offsets: list[int] = []
    pos = 0
    with open(f"{base}.docs.jsonl", "wb") as out:
        for doc in reader.documents():
            cleaned = cleaner(doc)
            if cleaned is None:
                rejects.write("empty_after_clean", doc.source, doc.line, None)
                continue
            reason = qfilter.reason(doc.text)
            if reason is not None:
                qfilter.stats.drop(reason)
                rejects.write(reason, doc.source, doc.line, doc.text)
                continue
            qfilter.stats.keep()
            line = (json.dumps(doc.to_json(), ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")
            out.write(line)
            offsets.append(pos)
            pos += len(line)
            exact.append(exact_key(doc.text))
            n_chars.append(len(doc.text))
            n_words.append(len(doc.text.split()))
            group.append(xxhash.xxh64_intdigest(doc.group.encode("utf-8", "surrogatepass")) if doc.group is not None else 0)
            labels.append(doc.label if doc.label is not None else "")
            ids.append(doc.id)
            batch.append(doc.text)
            batch_chars += len(doc.text)
            if len(offsets) == 2:
                faults.point("ingest.mid_unit")  # a unit's docs.jsonl half written
            if len(batch) >= BATCH_DOCS or batch_chars >= BATCH_CHARS:
                flush()
    flush()
    rejects.close()
    check_unchanged(unit)  # before the marker: a unit read from a moving file is never counted as done
    n = len(exact)
    np.savez(f"{base}.fp.npz", exact=np.array(exact, dtype=np.uint64), n_chars=np.array(n_chars, dtype=np.int64),
             n_words=np.array(n_words, dtype=np.int64), group=np.array(group, dtype=np.uint64),
             label=np.array(labels, dtype=str) if labels else np.zeros(0, dtype="<U1"),
             id=np.array(ids, dtype=str) if ids else np.zeros(0, dtype="<U1"),
             offset=np.array(offsets, dtype=np.int64),
             has_sig=np.concatenate(has_sig) if has_sig else np.ones(n, dtype=bool))
    if hasher is not None:
        np.save(f"{base}.sig.npy", np.concatenate(sigs) if sigs else np.zeros((0, hasher.num_perm), np.uint32))
        np.save(f"{base}.bands.npy", np.concatenate(bands) if bands else np.zeros((0, hasher.bands), np.uint64))
    if leak_hasher is not None:
        np.save(f"{base}.leakbands.npy",
                np.concatenate(leak_bands) if leak_bands else np.zeros((0, leak_hasher.bands), np.uint64))
    return {"unit": unit.name, "docs": n, "steps": {
        "read": reader.stats.to_json(), "clean": cleaner.stats.to_json(), "filter": qfilter.stats.to_json()}}
