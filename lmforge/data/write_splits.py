"""Stage 2, per work unit: route each surviving document to its split (and augment train).

With ``split.by: position`` every kept document is cut into consecutive train / val / test
pieces instead (:func:`cut_by_position`); the config refuses augmentation with it.

Reads ``work/ingest/unit_NNNNN.docs.jsonl`` and the unit's plan (``work/plan/unit_NNNNN.npz``:
split per document, -1 if dropped, and the reason and representative of each drop). Writes
``splits/<split>/unit_NNNNN.jsonl`` and appends dropped duplicates to
``rejected/unit_NNNNN.dedup.jsonl`` with the id of the document that was kept instead.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmforge.data.augment import Augmenter
from lmforge.data.config import DataConfig
from lmforge.data.dedup import REASONS
from lmforge.data.sources import WorkUnit
from lmforge.data.split import SPLITS, TRAIN


CHAR_BINS = [0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536, 1 << 40]  # char-length histogram edges


@dataclass
class SplitContext:
    cfg: DataConfig
    seed: int
    ingest_dir: Path
    plan_dir: Path
    split_dir: Path
    reject_dir: Path


def cut_by_position(doc: dict, val: float, test: float) -> list[tuple[str, dict]]:
    """``split.by: position``: the document's first ``int(n * (1 - val - test))`` characters go to
    train, then val up to ``int(n * (1 - test))``, the rest to test (nanoGPT's
    ``data[:int(n*0.9)]`` / ``data[int(n*0.9):]`` for val 0.1). Empty pieces are not written;
    each piece keeps the document's fields with ``id#split`` and its character offset in ``meta``."""
    text = doc["text"]
    n = len(text)
    cuts = (0, int(n * (1 - val - test)), int(n * (1 - test)), n)
    out = []
    for k, name in enumerate(SPLITS):
        a, b = cuts[k], cuts[k + 1]
        if b > a:
            out.append((name, dict(doc, text=text[a:b], id=f"{doc['id']}#{name}",
                                   meta={**doc.get("meta", {}), "from": doc["id"], "char_offset": a})))
    return out


def write_unit(unit: WorkUnit, ctx: SplitContext) -> dict:
    plan = np.load(ctx.plan_dir / f"{unit.name}.npz")
    split, reason, dup_of_id = plan["split"], plan["reason"], plan["dup_of_id"]
    first_doc = int(plan["first_doc"])
    aug = Augmenter(ctx.cfg.augment, ctx.seed) if ctx.cfg.augment.enabled else None
    outs = {}
    for name in SPLITS:
        (ctx.split_dir / name).mkdir(parents=True, exist_ok=True)
        outs[name] = open(ctx.split_dir / name / f"{unit.name}.jsonl", "w", encoding="utf-8")
    docs = Counter()
    chars = Counter()
    lengths: dict[str, list[int]] = {s: [] for s in SPLITS}
    labels: dict[str, Counter] = {s: Counter() for s in SPLITS}
    augmented = 0
    rejected = 0
    with open(ctx.reject_dir / f"{unit.name}.dedup.jsonl", "w", encoding="utf-8") as rej, \
            open(ctx.ingest_dir / f"{unit.name}.docs.jsonl", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            d = json.loads(line)
            if split[i] < 0:
                rej.write(json.dumps({"source": d["source"], "line": d["line"], "reason": REASONS[int(reason[i])],
                                      "id": d["id"], "duplicate_of": str(dup_of_id[i]),
                                      "snippet": d["text"][:200]}, ensure_ascii=False) + "\n")
                rejected += 1
                continue
            if ctx.cfg.split.by == "position":
                for name, part in cut_by_position(d, ctx.cfg.split.val, ctx.cfg.split.test):
                    outs[name].write(json.dumps(part, ensure_ascii=False) + "\n")
                    docs[name] += 1
                    chars[name] += len(part["text"])
                    lengths[name].append(len(part["text"]))
                continue
            name = SPLITS[split[i]]
            outs[name].write(line)
            docs[name] += 1
            chars[name] += len(d["text"])
            lengths[name].append(len(d["text"]))
            if d.get("label") is not None:
                labels[name][d["label"]] += 1
            if aug is not None and split[i] == TRAIN:
                for c in range(ctx.cfg.augment.copies):
                    new = dict(d, text=aug.augment(d["text"], first_doc + i, c), id=f"{d['id']}#aug{c}",
                               meta={**d.get("meta", {}), "augmented": True, "augmented_from": d["id"]})
                    outs[name].write(json.dumps(new, ensure_ascii=False) + "\n")
                    docs[name] += 1
                    chars[name] += len(new["text"])
                    augmented += 1
                    if d.get("label") is not None:
                        labels[name][d["label"]] += 1
    for f in outs.values():
        f.close()
    return {"docs": dict(docs), "chars": dict(chars), "labels": {k: dict(v) for k, v in labels.items()},
            "augmented": augmented, "dedup_rejected": rejected,
            "char_hist": {s: np.histogram(lengths[s], bins=CHAR_BINS)[0].tolist() for s in SPLITS}}
