#!/usr/bin/env python
"""Build a deterministic JSONL benchmark corpus with planted exact and near duplicates.

    python benchmarks/make_corpus.py --mb 300 --out benchmarks/work/corpus_300mb.jsonl

Base documents are composed from the public text under /work/shared/data (Tiny Shakespeare
lines, SST-2 sentences, AG News titles and descriptions, CoNLL-2003 sentences): each document
is a sequence of short runs of consecutive items taken from random places of random sources,
cut to a log-uniform target length (default 200 chars .. 10 KB), then perturbed so that
documents are unique: a few percent of the words are replaced by random vocabulary words, and
some documents get whitespace noise (double spaces, tabs, trailing spaces), typographic or
mojibake apostrophes (ftfy repairs them), or NFD-decomposed accented words (NFC recomposes
them) — so the cleaning step has real work to do.

Then duplicates are planted at random positions (the final corpus is shuffled):

* exact: ``--exact-frac`` of the base documents get a verbatim copy;
* near: ``--near-frac`` of the base documents get a copy with a few random word edits
  (replacements, deletions, insertions), as many as keep the true word-5-gram Jaccard with the
  original >= ``--min-jaccard`` (computed exactly with :mod:`shingles`, stored per pair).

Each original is used for at most one copy, and copies are never copied again. Output: the
corpus (``{"id", "text"}`` per line) and ``<out>.truth.json`` with the planted pairs
(original id, copy id, kind, jaccard, edits) and the corpus statistics.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shingles import jaccard_sets, shingle_set  # noqa: E402

DATA = Path("/work/shared/data")
_SPLIT_WS = re.compile(r"(\s+)")
ACCENTED = ["café", "naïve", "résumé", "façade", "jalapeño", "über", "déjà", "coöperate", "piñata", "señor",
            "crème", "brûlée", "fiancée", "Zoë", "Ångström", "Gödel", "Müller", "São", "Bogotá", "Kraków"]


# -- sources ------------------------------------------------------------------------------------

def load_sources(data_dir: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (items in source order, joiner used inside a run)."""
    csv.field_size_limit(1 << 24)
    out: dict[str, tuple[list[str], str]] = {}
    lines = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").split("\n")
    out["shakespeare"] = ([ln for ln in lines if ln.strip()], "\n")

    sst = []
    for name in ("train.tsv", "dev.tsv"):
        with open(data_dir / "sst2" / name, encoding="utf-8", newline="") as f:
            r = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(r)  # header
            sst.extend(row[0].strip() for row in r if row and row[0].strip())
    out["sst2"] = (sst, " ")

    ag = []
    with open(data_dir / "ag_news" / "test.csv", encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 3:
                ag.append(row[1].strip())  # title
                ag.append(row[2].replace("\\", "\n").strip())  # description ('\' stands for a newline)
    with open(data_dir / "ag_news" / "train_subset_10k.tsv", encoding="utf-8", newline="") as f:
        ag.extend(row[0].strip() for row in csv.reader(f, delimiter="\t") if row and row[0].strip())
    out["ag_news"] = ([x for x in ag if x], " ")

    conll = []
    for name in ("train.txt", "valid.txt", "test.txt"):
        sent: list[str] = []
        with open(data_dir / "conll2003" / name, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    if sent:
                        conll.append(" ".join(sent))
                    sent = []
                elif not line.startswith("-DOCSTART-"):
                    sent.append(line.split(" ")[0])
        if sent:
            conll.append(" ".join(sent))
    out["conll2003"] = (conll, " ")
    return out


# -- documents ------------------------------------------------------------------------------------

class Composer:
    def __init__(self, sources: dict[str, tuple[list[str], str]], rng: np.random.Generator,
                 min_chars: int, max_chars: int):
        self.rng = rng
        self.names = list(sources)
        self.items = [sources[n][0] for n in self.names]
        self.joiners = [sources[n][1] for n in self.names]
        sizes = np.array([sum(len(x) for x in it) for it in self.items], dtype=float)
        self.p = sizes / sizes.sum()  # pick a source in proportion to its text
        self.min_chars, self.max_chars = min_chars, max_chars
        vocab = sorted({w for it in self.items for x in it for w in x.split() if w.isalpha()})
        self.vocab = np.array(vocab, dtype=object)

    def random_words(self, k: int) -> list[str]:
        return list(self.vocab[self.rng.integers(0, len(self.vocab), size=k)])

    def compose(self) -> str:
        rng = self.rng
        target = int(np.exp(rng.uniform(np.log(self.min_chars), np.log(self.max_chars))))
        parts: list[str] = []
        n = 0
        while n < target:
            s = int(rng.choice(len(self.items), p=self.p))
            items = self.items[s]
            start = int(rng.integers(0, len(items)))
            run = items[start:start + int(rng.integers(1, 9))]
            chunk = self.joiners[s].join(run)
            if parts:
                sep = ("\n\n", "\n", " ")[int(rng.choice(3, p=(0.25, 0.15, 0.6)))]
                parts.append(sep)
                n += len(sep)
            parts.append(chunk)
            n += len(chunk)
        text = "".join(parts)
        if len(text) > target:  # cut at the last whitespace before the target length
            cut = text.rfind(" ", self.min_chars, target)
            text = text[:cut] if cut > 0 else text[:target]
        return self.perturb(text.strip())

    def perturb(self, text: str) -> str:
        rng = self.rng
        toks = _SPLIT_WS.split(text)  # words at even positions, whitespace at odd ones
        n_words = (len(toks) + 1) // 2
        rate = rng.uniform(0.03, 0.10)
        hit = np.flatnonzero(rng.random(n_words) < rate)
        for i, w in zip(hit, self.random_words(len(hit))):
            toks[2 * i] = w
        if rng.random() < 0.05:  # capitalisation noise
            for i in rng.integers(0, n_words, size=max(1, n_words // 20)):
                toks[2 * i] = toks[2 * i].upper()
        if rng.random() < 0.05:  # accented words, decomposed (NFD): NFC normalization recomposes them
            for i in rng.integers(0, n_words, size=max(1, n_words // 50)):
                toks[2 * i] = unicodedata.normalize("NFD", ACCENTED[int(rng.integers(len(ACCENTED)))])
        if rng.random() < 0.10:  # whitespace noise: double spaces, tabs, trailing spaces
            for j in range(1, len(toks), 2):
                if toks[j] == " " and rng.random() < 0.05:
                    toks[j] = ("  ", " \t", "   ")[int(rng.integers(3))]
                elif toks[j].startswith("\n") and rng.random() < 0.5:
                    toks[j] = "  " + toks[j]
        text = "".join(toks)
        r = rng.random()
        if r < 0.02:
            text = text.replace("'", "\u2019")  # typographic apostrophe
        elif r < 0.04:
            text = text.replace("'", "\u00e2\u20ac\u2122")  # mojibake of U+2019 (UTF-8 read as cp1252)
        return text


def near_copy(text: str, comp: Composer, rng: np.random.Generator, min_j: float, max_edits: int,
              orig_sh: set) -> tuple[str, float, int] | None:
    """A copy with k random word edits, k as large as keeps Jaccard >= min_j (k <= max_edits)."""
    toks = _SPLIT_WS.split(text)
    n_words = (len(toks) + 1) // 2
    if n_words < 8:
        return None
    k = int(rng.integers(1, max_edits + 1))
    while k >= 1:
        words = toks[0::2]
        seps = toks[1::2] + [""]
        ops = rng.integers(0, 3, size=k)  # 0 replace, 1 delete, 2 insert
        pos = rng.choice(n_words, size=k, replace=False)
        new_words = comp.random_words(k)
        edit_at = dict(zip(pos.tolist(), zip(ops.tolist(), new_words)))
        out: list[str] = []
        for i, (w, s) in enumerate(zip(words, seps)):
            e = edit_at.get(i)
            if e is None:
                out += [w, s]
            elif e[0] == 0:
                out += [e[1], s]
            elif e[0] == 1:
                if i == len(words) - 1 and out:  # deleting the last word: drop the separator before it
                    out[-1] = ""
                else:
                    out.append("")  # word and its following separator go
            else:
                out += [e[1], " ", w, s]
        copy = "".join(out).strip()
        j = jaccard_sets(orig_sh, shingle_set(copy))
        if j >= min_j and copy != text:
            return copy, j, k
        k -= 1
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=300, help="approximate size of the output JSONL in MB (1e6 bytes)")
    ap.add_argument("--out", required=True, help="output .jsonl path")
    ap.add_argument("--truth", default=None, help="ground-truth JSON (default: <out without .jsonl>.truth.json)")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--exact-frac", type=float, default=0.05)
    ap.add_argument("--near-frac", type=float, default=0.05)
    ap.add_argument("--min-jaccard", type=float, default=0.8)
    ap.add_argument("--max-edits", type=int, default=8)
    ap.add_argument("--min-chars", type=int, default=200)
    ap.add_argument("--max-chars", type=int, default=10_000)
    ap.add_argument("--data-dir", default=str(DATA))
    args = ap.parse_args(argv)

    t0 = time.time()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    truth_path = Path(args.truth) if args.truth else out.with_name(out.name.removesuffix(".jsonl") + ".truth.json")
    rng = np.random.default_rng(args.seed)
    comp = Composer(load_sources(Path(args.data_dir)), rng, args.min_chars, args.max_chars)

    # base documents: stop when base + expected copies reach the requested size
    target = args.mb * 1e6
    copy_share = args.exact_frac + args.near_frac
    texts: list[str] = []
    nbytes = 0
    while nbytes * (1 + copy_share) < target:
        t = comp.compose()
        texts.append(t)
        nbytes += len(json.dumps(t, ensure_ascii=False).encode()) + 30  # + id and keys
    n_base = len(texts)

    # planted duplicates: originals drawn without replacement
    order = rng.permutation(n_base)
    n_exact = round(args.exact_frac * n_base)
    n_near = round(args.near_frac * n_base)
    exact_src = order[:n_exact]
    pool = order[n_exact:]
    copies: list[tuple[int, str, str, float, int]] = []  # (original index, copy text, kind, jaccard, edits)
    for i in exact_src.tolist():
        copies.append((i, texts[i], "exact", 1.0, 0))
    made = skipped = 0
    for i in pool.tolist():
        if made == n_near:
            break
        r = near_copy(texts[i], comp, rng, args.min_jaccard, args.max_edits, shingle_set(texts[i]))
        if r is None:
            skipped += 1
            continue
        copies.append((i, r[0], "near", r[1], r[2]))
        made += 1

    # ids, then a seeded shuffle so copies land at random positions (before or after the original)
    all_texts = texts + [c[1] for c in copies]
    ids = [f"doc{j:08d}" for j in range(len(all_texts))]
    perm = rng.permutation(len(all_texts))
    written = 0
    with open(out, "w", encoding="utf-8") as fh:
        for j in perm.tolist():
            line = json.dumps({"id": ids[j], "text": all_texts[j]}, ensure_ascii=False) + "\n"
            fh.write(line)
            written += len(line.encode())
    lengths = np.array([len(t) for t in all_texts])
    jac = np.array([c[3] for c in copies if c[2] == "near"])
    truth = {
        "corpus": str(out), "bytes": written, "docs": len(all_texts), "base_docs": n_base, "seed": args.seed,
        "params": {k: v for k, v in vars(args).items() if k not in ("out", "truth")},
        "chars": {"min": int(lengths.min()), "median": int(np.median(lengths)), "mean": float(lengths.mean()),
                  "max": int(lengths.max())},
        "planted": {"exact": n_exact, "near": made, "near_originals_skipped_too_short": skipped,
                    "near_jaccard": {"min": float(jac.min()) if len(jac) else None,
                                     "median": float(np.median(jac)) if len(jac) else None,
                                     "hist_0.8_0.85_0.9_0.95_1": np.histogram(jac, bins=[0.8, 0.85, 0.9, 0.95, 1.0001])[0].tolist()
                                     if len(jac) else []}},
        "pairs": [{"original": ids[c[0]], "copy": ids[n_base + k], "kind": c[2], "jaccard": round(c[3], 6),
                   "edits": c[4]} for k, c in enumerate(copies)],
    }
    truth_path.write_text(json.dumps(truth, indent=1))
    print(f"wrote {out} ({written / 1e6:.1f} MB, {len(all_texts)} docs: {n_base} base + {n_exact} exact + {made} near "
          f"copies) and {truth_path} in {time.time() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
