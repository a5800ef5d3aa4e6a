"""``data prepare`` for ``data.kind: image``, top to bottom.

    read every source → reject unlabeled / undeclared labels / wrong shapes
      → exact (+ perceptual) dedup, before the split → seeded stratified split
      → cross-split leak check (split.on_leak) → normalizer fit on train only
      → images/ store + manifest.json + rejected/images.jsonl + report.md + samples.png
        (+ augment_grid.png)

Each record read is either kept (in exactly one split) or rejected with a reason:
``counts.read == counts.kept + sum(counts.rejected_by_reason)``.
"""

from __future__ import annotations

import hashlib
import json
import resource
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from lmforge.models.weights import sha256
from lmforge.config.schema import to_dict
from lmforge.data.config import DataConfig
from lmforge.data.drops import say as drops_say, say_step, say_total
from lmforge.data.images.dedup import content_hashes, dhash, exact_duplicates, find_leaks, near_duplicates, summarize_leaks
from lmforge.data.images.normalize import Normalizer
from lmforge.data.images.read import Rejected, detect_format, read_batches, source_name
from lmforge.data.images.grid import write_previews
from lmforge.data.images.store import write_index, write_split
from lmforge.data.split import SPLITS, TRAIN, assign_splits
from lmforge.errors import DataError, writing
from lmforge.layout import ensure_dir


def label_order(seen: set[str], declared: list[str] | None, named: list[str] | None = None) -> list[str]:
    """Label names in id order: the declared order (``data.labels``), else the sources' ``label_names``
    order (so ids stay the files' integers) when every label seen is named there, else sorted
    (numeric-looking names by value)."""
    if declared:
        return list(declared)
    if named and seen <= set(named):
        return list(dict.fromkeys(named))
    numeric = all(s.lstrip("-").isdigit() for s in seen)
    return sorted(seen, key=lambda s: (int(s),) if numeric else (s,))


def source_entry(src) -> dict:
    """Path and sha256 of each local file of a source (a folder: one digest over its files)."""
    fmt = detect_format(src)
    if fmt == "builtin":
        import sklearn

        return {"builtin": src.builtin, "format": fmt, "scikit_learn": sklearn.__version__}
    entry: dict = {"path": str(src.path), "format": fmt}
    p = Path(src.path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        h = hashlib.sha256()
        for f in files:
            h.update(str(f.relative_to(p)).encode() + b"\0" + sha256(f).encode())
        entry.update(files=len(files), bytes=sum(f.stat().st_size for f in files), sha256=h.hexdigest())
    else:
        entry.update(bytes=p.stat().st_size, sha256=sha256(p))
    if src.labels:
        entry["labels"] = {"path": str(src.labels), "bytes": Path(src.labels).stat().st_size,
                           "sha256": sha256(Path(src.labels))}
    return entry


class _Rejects:
    """Counts rejections by reason and writes each to ``rejected/images.jsonl`` (or stops, in strict mode)."""

    def __init__(self, path: Path, strict: bool):
        self.path, self.strict, self.by_reason = path, strict, Counter()
        self.f = open(path, "w", encoding="utf-8")

    def add(self, r: Rejected) -> None:
        if self.strict:
            self.f.close()
            raise DataError(f"{r.id}: {r.reason}: {r.detail} (data.strict: true stops at the first bad record; "
                            "set it to false to reject and count such records)")
        self.by_reason[r.reason] += 1
        with writing(self.path):
            self.f.write(json.dumps(asdict(r)) + "\n")


def _read_all(data: DataConfig, rejects: _Rejects, warnings: list[str], say) -> tuple:
    """All usable records: uint8 (N, C, H, W) images, label texts, ids, source index; and the count read."""
    cfg, declared = data.image, set(data.labels or [])
    chunks, labels, ids, src_of = [], [], [], []
    shape, first, read = None, None, 0
    for k, src in enumerate(cfg.sources):
        name, n0, r0 = source_name(src), read, sum(rejects.by_reason.values())
        src_cfg = replace(cfg, channels=shape[0]) if shape is not None and cfg.channels is None else cfg
        for item in read_batches(src, src_cfg, warnings):
            if isinstance(item, Rejected):
                read += 1
                rejects.add(item)
                continue
            read += len(item.ids)
            if shape is None:
                shape, first = item.images.shape[1:], item.ids[0]
            keep = np.ones(len(item.ids), dtype=bool)
            for i, (rid, lab) in enumerate(zip(item.ids, item.labels)):
                why = ("wrong_shape", f"shape {tuple(item.images.shape[1:])} (C, H, W) while the first image {first} is "
                       f"{tuple(shape)}; set data.image.size (and channels) to convert all images") \
                    if item.images.shape[1:] != shape else ("no_label", "the record has no label") if lab is None else \
                    ("unknown_label", f"label {lab!r} is not in data.labels") if declared and lab not in declared else None
                if why:
                    keep[i] = False
                    rejects.add(Rejected(item.source, rid, *why))
            if keep.any():
                chunks.append(item.images if keep.all() else item.images[keep])
                labels += [lab for lab, k_ in zip(item.labels, keep) if k_]
                ids += [rid for rid, k_ in zip(item.ids, keep) if k_]
                src_of.append(np.full(int(keep.sum()), k, dtype=np.int32))
        say(f"{name}: {read - n0:,} record(s) read, {sum(rejects.by_reason.values()) - r0:,} rejected")
    if not chunks:
        raise DataError(f"data.image.sources: no usable image in {read:,} record(s) read; rejected by reason: "
                        f"{dict(rejects.by_reason) or 'none'} (each one is in {rejects.path})")
    images = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)  # (N, C, H, W)
    return images, labels, ids, np.concatenate(src_of), read


def _dedup(images, ids, src_of, names, cfg, rejects) -> tuple[np.ndarray, np.ndarray, dict]:
    """(keep mask, content hashes, stats): exact then perceptual duplicates, first one kept."""
    n = len(images)
    hashes = content_hashes(images)
    keep = np.ones(n, dtype=bool)
    stats = {"exact": {"enabled": cfg.exact, "removed": 0},
             "perceptual": {"enabled": cfg.perceptual, "max_hamming": cfg.max_hamming,
                            "max_pixel_diff": cfg.max_pixel_diff, "removed": 0}}
    if cfg.exact:
        rep = exact_duplicates(images, hashes)
        for i in np.flatnonzero(rep != np.arange(n)).tolist():
            keep[i] = False
            rejects.add(Rejected(names[src_of[i]], ids[i], "duplicate", f"identical pixels to {ids[rep[i]]}"))
        stats["exact"]["removed"] = int(n - keep.sum())
    if cfg.perceptual:
        idx = np.flatnonzero(keep)
        rep, dist = near_duplicates(images[idx], dhash(images[idx]), cfg.max_hamming, cfg.max_pixel_diff)
        for j in np.flatnonzero(rep != np.arange(len(idx))).tolist():
            i, r = idx[j], idx[rep[j]]
            keep[i] = False
            rejects.add(Rejected(names[src_of[i]], ids[i], "near_duplicate",
                                 f"near duplicate of {ids[r]} (dHash {dist[j]} bit(s) apart)"))
        stats["perceptual"]["removed"] = int(len(idx) - keep[idx].sum())
    return keep, hashes, stats


def assign(data: DataConfig, src_of: np.ndarray, hashes: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Split id per kept image (0 train, 1 val, 2 test): a source's ``split`` pins all its images;
    the others get the seeded split (by content hash), stratified by label by default."""
    pins = np.array([SPLITS.index(s.split) if s.split else -1 for s in data.image.sources], dtype=np.int8)
    split = pins[src_of]
    free = split < 0
    if free.any():
        stratify = True if data.split.stratify is None else data.split.stratify
        n = int(free.sum())
        split[free] = assign_splits(np.ones(n, bool), np.arange(n), hashes[free], labels[free],
                                    data.split.val, data.split.test, stratify, seed)
    return split


def _resolve_leaks(data: DataConfig, split: np.ndarray, pinned: np.ndarray, images: np.ndarray, ids: list[str]) -> dict:
    """The leak check, and ``split.on_leak``: ``move`` puts the val/test side of each leak (both
    sides of a val↔test leak) into train and checks again (``split`` changes in place). Images of a
    source with its own ``split`` (``pinned``) never move: their leaks stay, counted in ``left``."""
    cfg = data.image.dedup

    def check():
        rows = {s: np.flatnonzero(split == k) for k, s in enumerate(SPLITS)}
        found = find_leaks({s: images[r] for s, r in rows.items()}, cfg.max_hamming, cfg.max_pixel_diff)
        return rows, found, sum(len(f["rows"]) for f in found.values())

    rows, found, total = check()
    first = summarize_leaks(found, {s: [ids[i] for i in r] for s, r in rows.items()})
    if total and data.split.on_leak == "fail":
        what = "; ".join(f"{k}: {v['exact']} exact, {v['near']} near (e.g. {v['examples'][0][0]} ~ {v['examples'][0][1]})"
                         for k, v in first.items() if v["examples"])
        raise DataError(f"split.on_leak=fail: {total} val/test image(s) duplicate others across splits ({what}); "
                        "set split.on_leak: move to put them into train, or report to keep them and only count them")
    moved = rounds = 0
    while total and data.split.on_leak == "move" and rounds < 10:
        before = moved
        for (a, b), f in found.items():
            movers = [rows[a][f["rows"]]] + ([rows[b][f["partner"]]] if b != "train" else [])
            for m in movers:
                m = m[~pinned[m] & (split[m] != TRAIN)]
                moved += len(m)
                split[m] = TRAIN
        rounds += 1
        if moved == before:
            break
        rows, found, total = check()
    return {"found": first, "on_leak": data.split.on_leak, "moved_to_train": moved, "left": total,
            "max_hamming": cfg.max_hamming, "max_pixel_diff": cfg.max_pixel_diff}


def write_report(out: Path, m: dict) -> Path:
    """``report.md``: counts, class balance per split, normalization, dedup, leaks, rejections."""
    c, splits = m["counts"], list(m["splits"])
    lines = [f"# Image data: {c['kept']:,} of {c['read']:,} records kept", "",
             f"Shape (C, H, W): {tuple(m['shape'])}; {len(m['labels'])} classes; "
             + ", ".join(f"{s}: {n:,}" for s, n in m["splits"].items()), "",
             "## Class balance", "", "| label | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for lab in m["labels"]:
        lines.append(f"| {lab} | " + " | ".join(
            f"{m['class_counts'][s][lab]:,} ({m['class_counts'][s][lab] / max(1, m['splits'][s]):.1%})" for s in splits) + " |")
    nz = m["normalize"]
    fmt = lambda v: "[" + ", ".join(f"{x:.4f}" for x in v) + "]" if v else "-"  # noqa: E731
    lines += ["", "## Normalization", "", f"{nz['kind']}: (pixels / 255 - mean) / std with mean {fmt(nz['mean'])}, "
              f"std {fmt(nz['std'])}; the train split's pixels: mean {fmt(nz['pixel_mean'])}, std {fmt(nz['pixel_std'])}",
              "", "## Duplicates and leaks", "",
              f"Removed before the split: {m['dedup']['exact']['removed']:,} exact, "
              f"{m['dedup']['perceptual']['removed']:,} near (perceptual {'on' if m['dedup']['perceptual']['enabled'] else 'off'})."]
    if m["leaks"]:
        found = "; ".join(f"{k}: {v['exact']} exact, {v['near']} near" for k, v in m["leaks"]["found"].items())
        lines.append(f"Across splits: {found or 'none'}; on_leak={m['leaks']['on_leak']}: "
                     f"{m['leaks']['moved_to_train']} moved to train, {m['leaks']['left']} left.")
    lines += ["", "## Rejected records", "", "| reason | records |", "|---|---:|"]
    lines += [f"| {r} | {n:,} |" for r, n in c["rejected_by_reason"].items()] or ["| (none) | 0 |"]
    lines += ["", f"Each one is listed in `{m['rejected']}`."]
    lines += [""] + [f"![{p}]({p})" for p in m.get("previews", [])]
    if m["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in m["warnings"]]
    path = out / "report.md"
    with writing(path):
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def prepare_images(data: DataConfig, seed: int, out: Path, progress: bool = True) -> dict:
    """Prepare ``data.image`` into ``out`` (the prepared data folder); returns the manifest."""
    t0, timings = time.time(), {}
    say = drops_say  # results, printed with or without progress bars
    cfg = data.image
    if not cfg.sources:
        raise DataError("data.image.sources: no image source (give an IDX file, a class folder, .npz/.npy or builtin: digits)")
    out = ensure_dir(Path(out), "data")
    rejects = _Rejects(ensure_dir(out / "rejected", "data") / "images.jsonl", data.strict)
    warnings: list[str] = []
    names = [source_name(s) for s in cfg.sources]
    try:
        images, label_txt, ids, src_of, read = _read_all(data, rejects, warnings, say)
        timings["read"] = time.time() - t0
        t = time.time()
        keep, hashes, dedup_stats = _dedup(images, ids, src_of, names, cfg.dedup, rejects)
        timings["dedup"] = time.time() - t
    finally:
        rejects.f.close()
    say(f"dedup: {dedup_stats['exact']['removed']:,} exact and {dedup_stats['perceptual']['removed']:,} near "
        f"duplicate(s) removed")
    idx = np.flatnonzero(keep)
    if not keep.all():
        images, hashes = images[idx], hashes[idx]
    ids = [ids[i] for i in idx.tolist()]
    named = [n for src in cfg.sources for n in (src.label_names or [])]
    label_names = label_order({label_txt[i] for i in idx.tolist()}, data.labels, named)
    lookup = {s: k for k, s in enumerate(label_names)}
    labels = np.array([lookup[label_txt[i]] for i in idx.tolist()], dtype=np.int64)
    del label_txt

    t = time.time()
    src_of = src_of[idx]
    split = assign(data, src_of, hashes, labels, seed)
    pinned = np.array([s.split is not None for s in cfg.sources])[src_of]
    leaks = _resolve_leaks(data, split, pinned, images, ids) if data.split.leak_check else None
    timings["split_and_leaks"] = time.time() - t
    rows = {s: np.flatnonzero(split == k) for k, s in enumerate(SPLITS)}
    if not len(rows["train"]):
        raise DataError(f"the train split is empty ({len(images)} image(s) kept; split.val={data.split.val}, "
                        f"split.test={data.split.test}): add data or lower the fractions")
    say("split: " + ", ".join(f"{s} {len(r):,}" for s, r in rows.items())
        + ("" if leaks is None else f"; leaks across splits: {leaks['moved_to_train']} moved to train, {leaks['left']} left"))

    t = time.time()
    kept, shape = int(len(images)), [int(v) for v in images.shape[1:]]
    parts = {s: images[r] for s, r in rows.items()}  # (n_split, C, H, W) each
    del images
    normalizer = Normalizer(cfg.normalize).fit(parts["train"])  # train only: val/test stay unseen
    entries = {s: write_split(out, s, parts[s], labels[r], [ids[i] for i in r.tolist()]) for s, r in rows.items()}
    write_index(out, shape, label_names, entries)
    timings["normalize_and_write"] = time.time() - t

    manifest = {
        "kind": "image", "shape": shape, "labels": label_names,
        "splits": {s: int(len(r)) for s, r in rows.items()},
        "class_counts": {s: {n: int(c) for n, c in zip(label_names, np.bincount(labels[r], minlength=len(label_names)))}
                         for s, r in rows.items()},
        "counts": {"read": read, "kept": kept, "rejected": sum(rejects.by_reason.values()),
                   "rejected_by_reason": dict(rejects.by_reason.most_common())},
        "normalize": normalizer.to_dict(), "augment": to_dict(cfg.augment), "dedup": dedup_stats, "leaks": leaks,
        "sources": [source_entry(s) for s in cfg.sources], "store": "images/index.json",
        "rejected": "rejected/images.jsonl", "warnings": warnings, "seed": seed, "config": to_dict(data),
    }
    assert read == kept + manifest["counts"]["rejected"], (read, kept, manifest["counts"])
    t = time.time()
    manifest["previews"] = write_previews(out, parts["train"], labels[rows["train"]], label_names, cfg.augment, seed)
    timings["previews"] = time.time() - t
    timings["total"] = time.time() - t0
    manifest["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    manifest["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    with writing(out / "manifest.json"):
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    write_report(out, manifest)
    by_reason = Counter(manifest["counts"]["rejected_by_reason"])
    say_step("read + dedup", read, kept, by_reason, rejects.path, "check data.image.sources and data.image.dedup")
    say_total(read, kept, by_reason, rejects.path, "images")
    say(f"{kept:,} image(s) of shape {tuple(manifest['shape'])} in {len(label_names)} classes written to {out} "
        f"in {timings['total']:.1f}s")
    return manifest
