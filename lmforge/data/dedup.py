"""Corpus-wide exact and near-duplicate detection with bounded memory.

Exact duplicates: documents whose normalized-text hashes are equal; the first (lowest
global number) is kept. Near duplicates: documents that share an LSH band key in any band
are candidates; a candidate pair counts only if its similarity reaches the threshold —
``verify: exact`` (default) re-reads the two texts and computes the true Jaccard of their
shingle sets, ``signature`` uses the MinHash estimate (cheaper, ±0.04 noise at 128
permutations, so pairs just above the threshold are missed often), ``none`` takes every LSH
candidate. Connected components of the confirmed pairs are clusters, and each cluster keeps
its first document.

Memory: the corpus text is never loaded. The index holds 8-byte values per document — the
exact hashes, one band-key column at a time and its sort order, and the component labels —
about 40 MB per million documents, plus 16 bytes per candidate pair. Signatures stay on disk
(memory-mapped) and, like the texts, are read only for candidate pairs. ``verify: exact`` adds a
working set for shingling candidate texts (1 MB batches; ~110 MB measured at 301 MB of input).
"""

from __future__ import annotations

import numpy as np

from lmforge.data.minhash import MinHasher, estimated_jaccard
from lmforge.data.unit_store import UnitStore

KEEP, EXACT_DUP, NEAR_DUP, LABEL_CONFLICT = 0, 1, 2, 3
REASONS = {EXACT_DUP: "exact_duplicate", NEAR_DUP: "near_duplicate", LABEL_CONFLICT: "label_conflict"}
CONFLICT_EXAMPLES = 5  # conflicting groups listed (ids and labels) in the manifest and report


def connected_components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Label of each node = smallest node number in its component (vectorized label propagation)."""
    label = np.arange(n, dtype=np.int64)
    if len(a) == 0:
        return label
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    while True:
        m = np.minimum(label[a], label[b])
        before = label.copy()
        np.minimum.at(label, a, m)
        np.minimum.at(label, b, m)
        # pointer jumping: follow labels to their own labels until stable
        while True:
            nxt = label[label]
            if np.array_equal(nxt, label):
                break
            label = nxt
        if np.array_equal(label, before):
            return label


def star_pairs(keys: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (first member, other member) of every group of equal keys; first = smallest id."""
    if len(keys) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((ids, keys))
    k, i = keys[order], ids[order]
    new_run = np.concatenate(([True], k[1:] != k[:-1]))
    run_first = i[np.maximum.accumulate(np.where(new_run, np.arange(len(k)), 0))]
    dup = ~new_run
    return run_first[dup], i[dup]


def exact_pairs(exact: np.ndarray, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.flatnonzero(alive)
    return star_pairs(exact[ids], ids)


def _shingle_sets(store: UnitStore, hasher: MinHasher, docs: np.ndarray, max_chars: int = 1 << 20) -> list[np.ndarray]:
    """Sorted unique shingle hashes of each document, shingled in batches of at most ``max_chars``
    characters (so the MinHash work arrays stay small whatever the number of documents)."""
    texts = store.texts(docs)
    sets: list[np.ndarray] = []
    start = 0
    while start < len(texts):
        end, chars = start, 0
        while end < len(texts) and (end == start or chars + len(texts[end]) <= max_chars):
            chars += len(texts[end])
            end += 1
        sh, owner = hasher.shingles(texts[start:end])
        bounds = np.searchsorted(owner, np.arange(end - start + 1))
        sets += [np.unique(sh[bounds[i]:bounds[i + 1]]) for i in range(end - start)]
        start = end
    return sets


def shingle_jaccard(store: UnitStore, hasher: MinHasher, a: np.ndarray, b: np.ndarray,
                    chunk: int = 4096) -> np.ndarray:
    """True Jaccard similarity of the shingle sets of document pairs (a[i], b[i]).

    Only the documents in candidate pairs are read back (by byte offset) and shingled."""
    out = np.zeros(len(a), dtype=np.float64)
    for s in range(0, len(a), chunk):
        pa, pb = a[s:s + chunk], b[s:s + chunk]
        docs = np.unique(np.concatenate([pa, pb]))
        sets = _shingle_sets(store, hasher, docs)
        pos = {int(d): i for i, d in enumerate(docs)}
        for k, (x, y) in enumerate(zip(pa.tolist(), pb.tolist())):
            A, B = sets[pos[x]], sets[pos[y]]
            inter = len(np.intersect1d(A, B, assume_unique=True))
            union = len(A) + len(B) - inter
            out[s + k] = inter / union if union else 1.0
    return out


def confirm(store: UnitStore, hasher: MinHasher, a: np.ndarray, b: np.ndarray, threshold: float, verify: str,
            chunk: int = 1 << 18) -> np.ndarray:
    """Boolean mask of candidate pairs that are near duplicates under the ``verify`` mode."""
    if verify == "none" or len(a) == 0:
        return np.ones(len(a), dtype=bool)
    if verify == "exact":
        return shingle_jaccard(store, hasher, a, b) >= threshold
    ok = np.zeros(len(a), dtype=bool)
    for s in range(0, len(a), chunk):
        ok[s:s + chunk] = estimated_jaccard(store.rows("sig", a[s:s + chunk]), store.rows("sig", b[s:s + chunk])) >= threshold
    return ok


def near_pairs(store: UnitStore, alive: np.ndarray, hasher: MinHasher, threshold: float, verify: str
               ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Confirmed near-duplicate pairs among ``alive`` documents, and candidate statistics."""
    ids = np.flatnonzero(alive)
    firsts, others = [], []
    for j in range(hasher.bands):
        col = store.column("bands", j)
        a, b = star_pairs(col[ids], ids)
        firsts.append(a)
        others.append(b)
    a = np.concatenate(firsts) if firsts else np.zeros(0, np.int64)
    b = np.concatenate(others) if others else np.zeros(0, np.int64)
    if len(a):
        pair_keys = np.unique(a * np.int64(store.n) + b)
        a, b = pair_keys // store.n, pair_keys % store.n
    stats = {"candidate_pairs": int(len(a))}
    ok = confirm(store, hasher, a, b, threshold, verify)
    a, b = a[ok], b[ok]
    stats["confirmed_pairs"] = int(len(a))
    return a, b, stats


def label_conflicts(exact_root: np.ndarray, labels: np.ndarray, policy: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact-duplicate groups whose copies carry different labels (label noise a dedup that keeps
    the first copy would hide). Returns ``(dropped, kept_member, stats)``: a mask of the copies
    ``policy`` drops — ``drop_all`` every copy, ``keep_majority`` all but the first copy with the
    group's most frequent label (every copy on a tie), ``keep_first`` all but the first — the kept
    copy of each conflicting group that keeps one (its representative), and counts with examples."""
    n = len(labels)
    dropped = np.zeros(n, dtype=bool)
    kept_member = np.full(n, -1, dtype=np.int64)  # per group root: the copy kept, or -1
    stats = {"groups": 0, "documents": 0, "dropped": 0, "policy": policy, "examples": []}
    multi = exact_root != np.arange(n)
    if not multi.any():
        return dropped, kept_member, stats
    roots = np.unique(exact_root[multi])
    members = np.flatnonzero(np.isin(exact_root, roots) & (labels != ""))
    pairs = np.unique(np.stack([exact_root[members], np.unique(labels, return_inverse=True)[1][members]]), axis=1)
    per_root = np.unique(pairs[0], return_counts=True)
    conflicting = per_root[0][per_root[1] > 1]
    if not len(conflicting):
        return dropped, kept_member, stats
    in_conflict = np.flatnonzero(np.isin(exact_root, conflicting))
    order = np.argsort(exact_root[in_conflict], kind="stable")  # members by group, in document order
    grouped = np.split(in_conflict[order], np.flatnonzero(np.diff(exact_root[in_conflict][order])) + 1)
    for docs in grouped:
        keep = -1
        if policy == "keep_first":
            keep = int(docs[0])
        elif policy == "keep_majority":
            values, counts = np.unique(labels[docs], return_counts=True)
            if (counts == counts.max()).sum() == 1:
                keep = int(docs[np.flatnonzero(labels[docs] == values[counts.argmax()])[0]])
        dropped[docs] = True
        if keep >= 0:
            dropped[keep] = False
            kept_member[exact_root[keep]] = keep
        if len(stats["examples"]) < CONFLICT_EXAMPLES:
            stats["examples"].append([int(d) for d in docs])
    stats.update(groups=len(grouped), documents=int(len(in_conflict)), dropped=int(dropped.sum()))
    return dropped, kept_member, stats


def find_duplicates(store: UnitStore, exact_on: bool, near_on: bool, hasher: MinHasher | None, threshold: float,
                    verify: str, conflicts: str = "drop_all") -> dict:
    """Return arrays ``reason`` (KEEP/EXACT_DUP/NEAR_DUP/LABEL_CONFLICT), ``dup_of`` (-1 or the
    kept document), ``dup_root`` (cluster label over exact+near pairs, dropped or not) and stats.
    Labeled copies of one text with different labels are resolved by ``conflicts`` (see
    :func:`label_conflicts`), whether or not exact dedup is on; ``stats["label_conflicts"]``
    counts them (its examples are document numbers)."""
    n = store.n
    exact = store.field("exact").astype(np.uint64)
    has_sig = store.field("has_sig").astype(bool)
    ea, eb = exact_pairs(exact, np.ones(n, dtype=bool))
    stats: dict = {"exact_duplicate_pairs": int(len(ea))}
    if hasher is not None:
        alive = has_sig.copy()
        alive[eb] = False  # an exact copy adds no new near-duplicate information
        na, nb, nstats = near_pairs(store, alive, hasher, threshold, verify)
        stats.update(nstats)
    else:
        na = nb = np.zeros(0, np.int64)
    exact_root = connected_components(n, ea, eb)
    root = connected_components(n, np.concatenate([ea, na]), np.concatenate([eb, nb]))
    reason = np.zeros(n, dtype=np.int8)
    dup_of = np.full(n, -1, dtype=np.int64)
    if exact_on:
        is_exact = exact_root != np.arange(n)
        reason[is_exact] = EXACT_DUP
        dup_of[is_exact] = exact_root[is_exact]
    labels = store.field("label").astype(str)
    conflict, kept_member, conflict_stats = label_conflicts(exact_root, labels, conflicts)
    stats["label_conflicts"] = conflict_stats
    if conflict_stats["groups"]:
        in_group = np.flatnonzero(np.isin(exact_root, exact_root[conflict]))
        reason[in_group] = KEEP  # decided below: every copy of a conflicting group is kept or a conflict
        dup_of[in_group] = -1
        reason[conflict] = LABEL_CONFLICT
        keeper = kept_member[exact_root[conflict]]
        dup_of[conflict] = keeper  # the copy kept instead (-1 when the whole group is dropped)
    if near_on:
        # cluster representatives: the first document of each exact+near component
        rep = root == np.arange(n)
        keepers = kept_member[kept_member >= 0]  # a conflicting group's kept copy stands for its group
        rep[keepers] = root[keepers] == exact_root[keepers]
        is_near = ~rep & (reason == KEEP)
        reason[is_near] = NEAR_DUP
        dup_of[is_near] = root[is_near]
    stats["exact_duplicates_dropped"] = int((reason == EXACT_DUP).sum())
    stats["near_duplicates_dropped"] = int((reason == NEAR_DUP).sum())
    stats["clusters_with_duplicates"] = int(len(np.unique(root[root != np.arange(n)])))
    return {"reason": reason, "dup_of": dup_of, "dup_root": root, "exact": exact, "has_sig": has_sig, "stats": stats}
