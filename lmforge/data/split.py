"""Deterministic train/val/test assignment with no leakage, and the leak check.

Documents that must stay together — members of one duplicate cluster (exact or near, kept
or not) and records sharing a group key — form one component; a component goes to one split
whole. Components are ordered by a seeded hash of their first document's content and filled
into val, then test, then train until each split holds its fraction of the documents; with
stratification this is done per label, so every split sees the label mix of the whole.
"""

from __future__ import annotations

import numpy as np

from lmforge.data.dedup import confirm, connected_components, star_pairs
from lmforge.data.minhash import MinHasher, _mix
from lmforge.data.unit_store import UnitStore

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


def leak_check(store: UnitStore, split: np.ndarray, exact: np.ndarray, has_sig: np.ndarray,
               hasher: MinHasher | None, threshold: float, verify: str, max_matches: int = 4) -> dict:
    """Count val/test documents with an exact or near duplicate in train, and val↔test pairs."""
    out = {}
    pairs = [("val", "train"), ("test", "train"), ("val", "test")]
    for a_name, b_name in pairs:
        a_ids = np.flatnonzero(split == SPLITS.index(a_name))
        b_ids = np.flatnonzero(split == SPLITS.index(b_name))
        out[f"exact_{a_name}_in_{b_name}"] = int(np.isin(exact[a_ids], exact[b_ids]).sum())
        if hasher is None:
            continue
        a_ids = a_ids[has_sig[a_ids]]
        b_ids = b_ids[has_sig[b_ids]]
        leaked = np.zeros(len(a_ids), dtype=bool)
        if len(a_ids) and len(b_ids):
            for j in range(hasher.bands):
                col = store.column("bands", j)
                bk = col[b_ids]
                order = np.argsort(bk, kind="stable")
                bk_sorted, b_sorted = bk[order], b_ids[order]
                lo = np.searchsorted(bk_sorted, col[a_ids], side="left")
                hi = np.searchsorted(bk_sorted, col[a_ids], side="right")
                for k in range(max_matches):
                    hit = (lo + k < hi) & ~leaked
                    if not hit.any():
                        break
                    qa = a_ids[hit]
                    qb = b_sorted[lo[hit] + k]
                    ok = confirm(store, hasher, qa, qb, threshold, verify)
                    leaked[np.flatnonzero(hit)[ok]] = True
        out[f"near_{a_name}_in_{b_name}"] = int(leaked.sum())
    out["total"] = int(sum(v for v in out.values()))
    return out


def components(n: int, dup_root: np.ndarray, group: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Components over duplicate clusters and shared group keys."""
    ga, gb = group_pairs(group, kept)
    others = np.flatnonzero(dup_root != np.arange(n))
    return connected_components(n, np.concatenate([ga, dup_root[others]]), np.concatenate([gb, others]))
