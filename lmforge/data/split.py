"""Deterministic train/val/test assignment with no leakage, and the leak check.

Documents that must stay together — members of one duplicate cluster (exact or near, kept
or not) and records sharing a group key — form one component; a component goes to one split
whole. Components are ordered by a seeded hash of their first document's content and filled
into val, then test, then train until each split holds its fraction of the documents; with
stratification this is done per label, so every split sees the label mix of the whole.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from lmforge.data.config import DataConfig
from lmforge.data.dedup import connected_components, shingle_jaccard, star_pairs
from lmforge.data.minhash import MinHasher, _mix
from lmforge.data.unit_store import UnitStore
from lmforge.errors import DataError

SPLITS = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2


def group_pairs(group: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.flatnonzero(kept & (group != 0))
    return star_pairs(group[ids], ids)


def assign_splits(kept: np.ndarray, component: np.ndarray, exact: np.ndarray, labels: np.ndarray,
                  val: float, test: float, stratify: bool, seed: int) -> np.ndarray:
    """Split id per document (-1 for documents not kept)."""
    n = len(kept)
    split = np.full(n, -1, dtype=np.int8)
    ids = np.flatnonzero(kept)
    if len(ids) == 0:
        return split
    comp = component[ids]
    roots, inverse, sizes = np.unique(comp, return_inverse=True, return_counts=True)
    with np.errstate(over="ignore"):
        score = _mix(exact[roots].astype(np.uint64) ^ _mix(np.full(len(roots), np.uint64(seed) + np.uint64(1))))
    strata = labels[roots] if stratify else np.zeros(len(roots), dtype=labels.dtype if len(labels) else "<U1")
    comp_split = np.zeros(len(roots), dtype=np.int8)
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        members = members[np.argsort(score[members], kind="stable")]
        total = sizes[members].sum()
        n_val, n_test = round(val * total), round(test * total)
        before = np.concatenate(([0], np.cumsum(sizes[members])[:-1]))
        comp_split[members] = np.where(before < n_val, VAL, np.where(before < n_val + n_test, TEST, TRAIN))
    split[ids] = comp_split[inverse]
    return split


PAIRS = (("val", "train"), ("test", "train"), ("val", "test"))


def _near_leaks(store: UnitStore, a_ids: np.ndarray, b_ids: np.ndarray, bands: int, hasher: MinHasher,
                threshold: float, max_matches: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a doc, b doc, true Jaccard) for documents of ``a_ids`` that share a leak band key with one
    of ``b_ids`` and reach ``threshold`` on the true Jaccard of their shingles (first match each)."""
    leaked = np.zeros(len(a_ids), dtype=bool)
    partner = np.full(len(a_ids), -1, dtype=np.int64)
    sim = np.zeros(len(a_ids))
    for j in range(bands):
        col = store.column("leakbands", j)
        bk = col[b_ids]
        order = np.argsort(bk, kind="stable")
        bk_sorted, b_sorted = bk[order], b_ids[order]
        lo = np.searchsorted(bk_sorted, col[a_ids], side="left")
        hi = np.searchsorted(bk_sorted, col[a_ids], side="right")
        for k in range(max_matches):
            hit = (lo + k < hi) & ~leaked
            if not hit.any():
                break
            qa, qb = a_ids[hit], b_sorted[lo[hit] + k]
            js = shingle_jaccard(store, hasher, qa, qb)
            ok = js >= threshold
            rows = np.flatnonzero(hit)[ok]
            leaked[rows], partner[rows], sim[rows] = True, qb[ok], js[ok]
    return a_ids[leaked], partner[leaked], sim[leaked]


def leak_check(store: UnitStore, split: np.ndarray, exact: np.ndarray, has_sig: np.ndarray, hasher: MinHasher | None,
               leak_bands: int, threshold: float, max_matches: int = 4) -> dict:
    """Val/test documents with an exact copy or a near duplicate (true Jaccard ≥ ``threshold``)
    in train, and val documents with one in test.

    Near candidates come from the leak check's own band keys (``leakbands``: a MinHash with other
    permutations than dedup's, banded for recall at ``threshold``), so a pair dedup's index missed
    is still found; every candidate is confirmed on the true Jaccard. Returns counts per kind and
    split pair, ``total``, and ``pairs``: ``(doc, other doc, kind, jaccard)`` for every leak."""
    out: dict = {}
    pairs: list[tuple[int, int, str, float]] = []
    for a_name, b_name in PAIRS:
        a_ids = np.flatnonzero(split == SPLITS.index(a_name))
        b_ids = np.flatnonzero(split == SPLITS.index(b_name))
        hit = np.isin(exact[a_ids], exact[b_ids])
        if hit.any():  # each exact copy's partner: the lowest-numbered b document with its hash
            b_hash = exact[b_ids]
            order = np.argsort(b_hash, kind="stable")  # b_ids ascend, so equal hashes keep id order
            partner = b_ids[order[np.searchsorted(b_hash[order], exact[a_ids[hit]])]]
            pairs += [(int(d), int(p), "exact", 1.0) for d, p in zip(a_ids[hit], partner)]
        out[f"exact_{a_name}_in_{b_name}"] = int(hit.sum())
        if hasher is None or not leak_bands:
            continue
        a_near = a_ids[has_sig[a_ids] & ~hit]
        b_near = b_ids[has_sig[b_ids]]
        found = 0
        if len(a_near) and len(b_near):
            da, db, js = _near_leaks(store, a_near, b_near, leak_bands, hasher, threshold, max_matches)
            pairs += [(int(x), int(y), "near", round(float(j), 4)) for x, y, j in zip(da, db, js)]
            found = len(da)
        out[f"near_{a_name}_in_{b_name}"] = found
    out["total"] = len(pairs)
    out["pairs"] = pairs
    return out


def move_leaks(split: np.ndarray, component: np.ndarray, kept: np.ndarray, pairs: list) -> int:
    """Put the val/test side of each leak (both sides of a val↔test leak), with its whole
    component (duplicate cluster and group), into train; returns how many documents moved."""
    docs = [a for a, *_ in pairs] + [b for a, b, *_ in pairs if split[b] != TRAIN]
    comps = np.unique(component[np.asarray(docs, dtype=np.int64)])
    moving = kept & np.isin(component, comps) & (split != TRAIN)
    split[moving] = TRAIN
    return int(moving.sum())


def resolve_leaks(store: UnitStore, data: DataConfig, seed: int, split: np.ndarray, comp: np.ndarray,
                  kept: np.ndarray, dup: dict, hasher) -> dict:
    """Run the leak check and apply ``split.on_leak`` (``split`` is changed in place by ``move``).
    The record: the counts left in the written splits (``total``, target 0), what was ``found``
    before moving, how many documents moved, and every leak found with both ids and the Jaccard."""
    from lmforge.data.ingest import leak_threshold, make_leak_hasher

    thr = leak_threshold(data)
    lh = make_leak_hasher(data, seed)

    def check() -> dict:
        return leak_check(store, split, dup["exact"], dup["has_sig"], hasher, lh.bands, thr)

    first = last = check()
    before = split.copy()
    moved = rounds = 0
    if first["total"] and data.split.on_leak == "fail":
        raise DataError(f"split.on_leak=fail: {first['total']} val/test document(s) duplicate others across "
                            f"splits, e.g. {_describe_leaks(store, before, first['pairs'][:3])}; set split.on_leak: "
                            "move to put them into train, or report to keep them and only count them")
    while last["total"] and data.split.on_leak == "move" and rounds < 10:
        moved += move_leaks(split, comp, kept, last["pairs"])
        rounds += 1
        last = check()
    if last["total"] and data.split.on_leak == "move":
        raise DataError(f"split.on_leak=move: {last['total']} leak(s) left after {rounds} rounds of moving")
    shown = first["pairs"][:100]
    return {**{k: v for k, v in last.items() if k != "pairs"}, "found": first["total"],
            "found_by_kind": {k: v for k, v in first.items() if k not in ("pairs", "total")},
            "moved_docs": moved, "on_leak": data.split.on_leak, "threshold": thr,
            "index": {"num_perm": lh.num_perm, "bands": lh.bands, "rows": lh.rows, "independent_of_dedup": True},
            "pairs": _leak_rows(store, before, shown), "pairs_shown": len(shown)}


def _leak_rows(store: UnitStore, split: np.ndarray, pairs: list) -> list[dict]:
    if not pairs:
        return []
    ids = store.gather("id", np.array([d for p in pairs for d in p[:2]], dtype=np.int64))
    return [{"id": ids[2 * i], "split": SPLITS[split[a]], "duplicates": ids[2 * i + 1], "in": SPLITS[split[b]],
             "kind": kind, "jaccard": j} for i, (a, b, kind, j) in enumerate(pairs)]


def _describe_leaks(store: UnitStore, split: np.ndarray, pairs: list) -> str:
    return "; ".join(f"{r['split']} document {r['id']!r} ~ {r['in']} document {r['duplicates']!r} ({r['kind']}, "
                     f"Jaccard {r['jaccard']})" for r in _leak_rows(store, split, pairs))


def components(n: int, dup_root: np.ndarray, group: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Components over duplicate clusters and shared group keys."""
    ga, gb = group_pairs(group, kept)
    others = np.flatnonzero(dup_root != np.arange(n))
    return connected_components(n, np.concatenate([ga, dup_root[others]]), np.concatenate([gb, others]))


# -- rows of one table or folder (images, tables, audio): a seeded split, stratified by label -----

def _half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def split_rows(n: int, groups: Optional[list[str]], val: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """Seeded split of rows 0..n-1; with ``groups`` each group (label) is split in the same
    proportions, and keeps at least one train row. Each split's rows stay in file order."""
    rng = np.random.default_rng(seed)
    keys = np.zeros(n, dtype=object) if groups is None else np.asarray(groups, dtype=object)
    out: dict[str, list] = {s: [] for s in SPLITS}
    for key in sorted(set(keys.tolist()), key=str):
        idx = rng.permutation(np.flatnonzero(keys == key))
        n_test, n_val = _half_up(len(idx) * test), _half_up(len(idx) * val)
        excess = n_test + n_val - (len(idx) - 1)
        if excess > 0:  # keep a train row
            cut = min(excess, n_val)
            n_val, n_test = n_val - cut, n_test - (excess - cut)
        out["test"] += idx[:n_test].tolist()
        out["val"] += idx[n_test:n_test + n_val].tolist()
        out["train"] += idx[n_test + n_val:].tolist()
    return {s: np.sort(np.asarray(v, dtype=np.int64)) for s, v in out.items()}
