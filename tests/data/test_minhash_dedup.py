"""MinHash signatures, LSH banding, connected components and corpus-wide duplicate finding."""

import random

import numpy as np
import pytest

from lmforge.data.dedup import EXACT_DUP, KEEP, NEAR_DUP, connected_components, find_duplicates, star_pairs
from lmforge.data.minhash import MinHasher, estimated_jaccard, exact_shingle_jaccard, recall_bands, candidate_probability
from lmforge.data.unit_store import UnitStore

WORDS = [f"w{i}" for i in range(2000)]


def doc(rng, n=120):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def edit(rng, text, k):
    w = text.split()
    for _ in range(k):
        w[rng.randrange(len(w))] = rng.choice(WORDS)
    return " ".join(w)


def test_signature_estimates_jaccard():
    rng = random.Random(0)
    h = MinHasher(num_perm=256, ngram=5, seed=1)
    for k in (1, 3, 8, 20):
        a = doc(rng)
        b = edit(rng, a, k)
        sig, has = h.signatures([a, b])
        assert has.all()
        true = exact_shingle_jaccard(h, a, b)
        assert abs(estimated_jaccard(sig[0], sig[1]) - true) < 0.1, (k, true)


def test_signature_is_deterministic_and_batch_independent():
    rng = random.Random(1)
    texts = [doc(rng, rng.randrange(1, 40)) for _ in range(50)] + ["", "hello", "Hello, WORLD!"]
    h = MinHasher(64, 5, seed=7)
    s_all, has_all = h.signatures(texts)
    s_one = np.concatenate([h.signatures([t])[0] for t in texts])
    assert np.array_equal(s_all, s_one)
    assert not has_all[-3] and has_all[-2] and has_all[-1]
    assert np.array_equal(s_all, MinHasher(64, 5, seed=7).signatures(texts)[0])
    assert not np.array_equal(s_all, MinHasher(64, 5, seed=8).signatures(texts)[0])
    # normalization: case and punctuation do not change the shingles
    assert np.array_equal(h.signatures(["Hello, world"])[0], h.signatures(["hello world"])[0])


def test_recall_bands_reach_the_recall_with_the_longest_bands():
    for t in (0.5, 0.7, 0.8, 0.9):
        for perm in (64, 128, 256):
            b, r = recall_bands(t, perm)
            assert b * r <= perm and candidate_probability(t, b, r) >= 0.99
            longer = r + 1
            assert candidate_probability(t, perm // longer, longer) < 0.99  # r is the largest that works
    assert recall_bands(0.8, 128) == (21, 6)


def test_planted_near_duplicates_become_candidates():
    """Pairs at true Jaccard 0.80-0.95 (the band that 11 x 11 missed a third of at 0.80-0.83)."""
    rng = random.Random(5)
    h = MinHasher(128, 5, seed=2, threshold=0.8)
    pairs = []
    while len(pairs) < 300:
        a = doc(rng, 200)
        b = edit(rng, a, rng.randrange(1, 8)) + " " + rng.choice(WORDS)
        if 0.8 <= exact_shingle_jaccard(h, a, b) < 0.95:
            pairs.append((a, b))
    ka = h.band_keys(h.signatures([a for a, _ in pairs])[0])
    kb = h.band_keys(h.signatures([b for _, b in pairs])[0])
    assert (ka == kb).any(axis=1).mean() >= 0.995


def test_star_pairs_and_components():
    keys = np.array([5, 3, 5, 9, 3, 5], dtype=np.uint64)
    ids = np.arange(6)
    a, b = star_pairs(keys, ids)
    assert sorted(zip(a.tolist(), b.tolist())) == [(0, 2), (0, 5), (1, 4)]
    lab = connected_components(7, np.array([0, 2, 5, 4]), np.array([2, 5, 6, 1]))
    assert lab.tolist() == [0, 1, 0, 3, 1, 0, 0]


def _store(tmp_path, texts_per_unit, hasher):
    import json

    from lmforge.data.ingest import exact_key

    names, counts = [], []
    for u, texts in enumerate(texts_per_unit):
        name = f"unit_{u:05d}"
        sig, has = hasher.signatures(texts)
        np.save(tmp_path / f"{name}.sig.npy", sig)
        np.save(tmp_path / f"{name}.bands.npy", hasher.band_keys(sig))
        lines = [(json.dumps({"text": t}) + "\n").encode() for t in texts]
        (tmp_path / f"{name}.docs.jsonl").write_bytes(b"".join(lines))
        np.savez(tmp_path / f"{name}.fp.npz", exact=np.array([exact_key(t) for t in texts], dtype=np.uint64),
                 has_sig=has, offset=np.cumsum([0] + [len(x) for x in lines[:-1]]),
                 label=np.array([""] * len(texts)))  # unlabeled, as ingest writes it
        names.append(name)
        counts.append(len(texts))
    return UnitStore(tmp_path, names, counts)


@pytest.mark.parametrize("verify", ["exact", "signature", "none"])
def test_find_duplicates_across_units(tmp_path, verify):
    rng = random.Random(3)
    base = [doc(rng) for _ in range(40)]
    near = edit(rng, base[5], 2)  # Jaccard ~0.85
    far = edit(rng, base[6], 40)  # unrelated by now
    unit0 = base[:20]
    unit1 = base[20:] + [base[3].upper(), near, far]  # exact (after normalization), near, not a dup
    h = MinHasher(128, 5, seed=0, threshold=0.7)
    store = _store(tmp_path, [unit0, unit1], h)
    out = find_duplicates(store, True, True, h, 0.7, verify)
    reason, dup_of = out["reason"], out["dup_of"]
    assert reason[40] == EXACT_DUP and dup_of[40] == 3
    assert reason[41] == NEAR_DUP and dup_of[41] == 5
    assert reason[42] == KEEP
    assert (reason[:40] == KEEP).all()


def test_exact_verification_uses_true_jaccard(tmp_path):
    from lmforge.data.dedup import shingle_jaccard

    rng = random.Random(9)
    texts = [doc(rng, 200) for _ in range(3)]
    texts.append(edit(rng, texts[0], 4))
    h = MinHasher(64, 5, seed=0)
    store = _store(tmp_path, [texts], h)
    got = shingle_jaccard(store, h, np.array([0, 0, 1]), np.array([3, 1, 2]))
    want = [exact_shingle_jaccard(h, texts[0], texts[3]), exact_shingle_jaccard(h, texts[0], texts[1]),
            exact_shingle_jaccard(h, texts[1], texts[2])]
    assert np.allclose(got, want) and got[0] > 0.8 and got[1] < 0.05
