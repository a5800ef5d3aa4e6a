"""Near-duplicate recall of the LSH banding: planted pairs at known true Jaccard.

    python benchmarks/bench_lsh_recall.py [--pairs 3000] [--seeds 3]

Each pair is a random 200-word document and a copy with words substituted (and one appended)
until its true word-5-gram Jaccard lies in a bin of [0.80, 1.0). For each bin the share of
pairs that share an LSH band key (i.e. become candidates; candidates are then verified on the
true Jaccard, so recall is decided here) is reported for the banding in use and for the
alternatives given, over several MinHash seeds. Also the share of pairs that only
share half their words (that become candidates), the cost side of more recall.
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np

from lmforge.data.minhash import MinHasher, exact_shingle_jaccard

WORDS = [f"w{i}" for i in range(5000)]


def planted(rng: random.Random, n_pairs: int, h: MinHasher) -> tuple[list[str], list[str], np.ndarray]:
    a_s, b_s, js = [], [], []
    while len(a_s) < n_pairs:
        a = [rng.choice(WORDS) for _ in range(200)]
        b = list(a)
        for _ in range(rng.randrange(1, 9)):
            b[rng.randrange(len(b))] = rng.choice(WORDS)
        b.append(rng.choice(WORDS))
        j = exact_shingle_jaccard(h, " ".join(a), " ".join(b))
        if j >= 0.8:
            a_s.append(" ".join(a))
            b_s.append(" ".join(b))
            js.append(j)
    return a_s, b_s, np.array(js)


def candidates(h: MinHasher, a: list[str], b: list[str]) -> np.ndarray:
    ka = h.band_keys(h.signatures(a)[0])
    kb = h.band_keys(h.signatures(b)[0])
    return (ka == kb).any(axis=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--bandings", default="default,11x11", help="default, or BxR")
    a = ap.parse_args()
    rng = random.Random(0)
    ref = MinHasher(128, 5, seed=0)
    xa, xb, js = planted(rng, a.pairs, ref)
    unrelated_a = [" ".join(rng.choice(WORDS) for _ in range(200)) for _ in range(500)]
    unrelated_b = [" ".join(x.split()[:100] + [rng.choice(WORDS) for _ in range(100)]) for x in unrelated_a]  # half the words shared (a third or so of the 5-grams)
    bins = [(0.80, 0.83), (0.83, 0.86), (0.86, 0.90), (0.90, 0.95), (0.95, 1.0)]
    for banding in a.bandings.split(","):
        rows = []
        for seed in range(a.seeds):
            if banding == "default":
                h = MinHasher(128, 5, seed=seed, threshold=0.8)
            else:
                b, r = map(int, banding.split("x"))
                h = MinHasher(128, 5, seed=seed, bands=b)
            got = candidates(h, xa, xb)
            fp = candidates(h, unrelated_a, unrelated_b).mean()
            rows.append((h.bands, h.rows, got, fp))
        out = {"banding": banding, "bands": rows[0][0], "rows": rows[0][1], "pairs": len(js),
               "recall_all": [round(float(r[2].mean()), 4) for r in rows],
               "missed": [int((~r[2]).sum()) for r in rows],
               "candidate_rate_at_j033": [round(float(r[3]), 4) for r in rows]}
        for lo, hi in bins:
            sel = (js >= lo) & (js < hi)
            out[f"recall_{lo:.2f}-{hi:.2f} (n={int(sel.sum())})"] = [round(float(r[2][sel].mean()), 4) for r in rows]
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
