"""``lmforge data prepare``: the whole data-preparation flow, top to bottom.

    plan units → [ingest: read, clean, filter, fingerprint]  (per unit, parallel)
               → dedup + split plan                          (corpus-wide, bounded memory)
               → [write splits, augment train]               (per unit, parallel)
               → tokenizer (train on the train split, or load)
               → [tokenize]                                  (per unit, parallel)
               → pack into shards → manifest.json + report.md

Everything lands under ``<run>/data/`` (``<run>/tokenizer/`` for the tokenizer); see the
README for the layout. Per-unit stages leave completion markers, so a rerun with the same
config skips finished units.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from lmforge import faults
from lmforge.config.schema import to_dict
from lmforge.kinds import own_prepare
from lmforge.data.config import DataConfig, effective_filter
from lmforge.data.dedup import KEEP, REASONS, find_duplicates
from lmforge.data.document import StepStats
from lmforge.data.drops import say as _say, say_step, say_total, warn as _warn
from lmforge.data.executor import LocalExecutor
from lmforge.data.ingest import IngestContext, ingest_unit, leak_threshold, make_hasher
from lmforge.data.pack import TOKEN_BINS, PackContext, merge, tokenize_unit
from lmforge.data.sources import SourceError, WorkUnit, check_readable, plan_units, stamp_units
from lmforge.data.split import SPLITS, TRAIN, assign_splits, components, resolve_leaks
from lmforge.data.unit_store import UnitStore
from lmforge.errors import LmforgeError, UsageError
from lmforge.layout import RunPaths, ensure_dir, splits_dir, tokens_dir
from lmforge.models.weights import sha256
from lmforge.data.write_splits import CHAR_BINS, SplitContext, write_unit
from lmforge.tokenizer import io as tok_io
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.tokenizer import train as tok_train


if TYPE_CHECKING:
    from lmforge.data.ray_executor import RayExecutor

Executor = Union[LocalExecutor, "RayExecutor"]  # the same map(...) / close() / workers / peak_rss_mb


class PipelineError(LmforgeError, RuntimeError):
    """The pipeline cannot produce a usable dataset (nothing kept, empty train split, ...)."""


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepared_with(out: Path, data: DataConfig, tokenizer: TokenizerConfig, seed: int) -> Optional[dict]:
    """The manifest of text data already prepared in ``out`` from exactly this config and these input
    files (same config hash; every local input with the recorded size and sha256), else None."""
    try:
        m = json.loads((Path(out) / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if m.get("config_hash") != _hash({"data": to_dict(data), "tokenizer": to_dict(tokenizer), "seed": seed}):
        return None
    for entry in m.get("inputs", []):
        path = entry.get("path")
        if not path or not entry.get("sha256") or entry.get("files"):  # builtins: the config hash covers them
            continue
        if not os.path.isfile(path) or os.path.getsize(path) != entry.get("bytes") or sha256(path) != entry["sha256"]:
            return None
    return m


def _file_checksums(units: list[WorkUnit]) -> list[dict]:
    """Path, size and sha256 of every input file (local files; remote ones get size only)."""
    seen: dict[str, dict] = {}
    for u in units:
        if u.format == "builtin":
            key = u.path
            entry = seen.setdefault(key, {"path": key, "files": 0, "bytes": 0, "sha256": hashlib.sha256()})
            for f in u.files or []:
                entry["files"] += 1
                entry["bytes"] += os.path.getsize(f)
                entry["sha256"].update(Path(f).read_bytes())
            continue
        if u.path in seen:
            continue
        entry = {"path": u.path, "format": u.format}
        if os.path.exists(u.path):
            entry.update(bytes=os.path.getsize(u.path), sha256=sha256(u.path))
        else:
            entry.update(bytes=u.size, sha256=None, note="remote file: checksum not computed")
        seen[u.path] = entry
    out = []
    for e in seen.values():
        if not isinstance(e.get("sha256"), (str, type(None))):
            e["sha256"] = e["sha256"].hexdigest()
        out.append(e)
    return out


def _merge_steps(results: list[dict]) -> dict[str, StepStats]:
    steps: dict[str, StepStats] = {}
    for r in results:
        for name, d in r["steps"].items():
            steps.setdefault(name, StepStats(name)).merge(StepStats.from_json(name, d))
    return steps


def tokenizer_stats(tok, split_dir: Path, unk_id, per_split: int = 2000, top: int = 25) -> dict:
    """On the first ``per_split`` documents of each split: tokens per whitespace word, the share
    of unknown tokens, and (train) the most frequent tokens — what the report shows."""
    out: dict = {}
    for split in SPLITS:
        texts = []
        for f in sorted((split_dir / split).glob("*.jsonl")):
            with open(f, encoding="utf-8") as fh:
                for line in fh:
                    texts.append(json.loads(line)["text"])
                    if len(texts) >= per_split:
                        break
            if len(texts) >= per_split:
                break
        if not texts:
            continue
        encs = tok.encode_batch(texts, add_special_tokens=False)
        n_tok = sum(len(e.ids) for e in encs)
        n_words = sum(len(t.split()) for t in texts)
        n_unk = sum(e.ids.count(unk_id) for e in encs) if unk_id is not None else 0
        out[split] = {"documents": len(texts), "tokens_per_word": round(n_tok / max(n_words, 1), 3),
                      "unknown_rate": round(n_unk / max(n_tok, 1), 5)}
        if split == "train":
            counts = Counter(i for e in encs for i in e.ids)
            out["top_tokens"] = [[tok.id_to_token(i), n] for i, n in counts.most_common(top)]
    return out


def conflict_record(store: UnitStore, stats: dict) -> dict:
    """Label-conflict counts for the manifest, the examples' document numbers turned into ids and labels."""
    examples = [{"ids": [str(x) for x in store.gather("id", docs)], "labels": [str(x) for x in store.gather("label", docs)]}
                for docs in (np.asarray(e, dtype=np.int64) for e in stats["examples"])]
    return {**stats, "examples": examples}


def say_drops(steps: dict[str, StepStats], reject_dir: Path) -> None:
    """One console line per step that dropped something (its reasons, largest first), and a
    warning for a step that dropped more than ``DROP_WARNING`` of its input."""
    for name, st in steps.items():
        top = st.dropped.most_common(1)[0][0] if st.dropped else ""
        hint = {"read": ("labels outside data.labels: expected if data.labels picks a subset on purpose"
                         if top == "label_not_declared" else "check the inputs, text_field/label_field and data.labels"),
                "filter": "check data.filter", "clean": "check data.clean", "dedup": "check data.dedup"}.get(name, "")
        say_step(name, st.read, st.kept, st.dropped, f"{reject_dir}/", hint)


def prepare_kind(data: DataConfig, paths: RunPaths, *, seed: int, progress: bool = True, world_size: int = 1,
                 executor: str = "local") -> dict:
    """``data.kind: image`` or ``tabular``: their own flows (:mod:`lmforge.data.images.prepare`,
    :mod:`lmforge.data.tabular.prepare`) into the same ``<run>/data/`` folder, with a manifest,
    a report and every rejected record kept with its reason."""
    if world_size > 1:
        raise PipelineError(f"--world-size: data.kind: {data.kind} prepares in one process (the text flow alone "
                            "is split across ranks)")
    if executor != "local":
        raise PipelineError(f"--executor {executor}: data.kind: {data.kind} prepares in one process (the text flow "
                            "alone runs on Ray); leave out --executor")
    out = ensure_dir(paths.data, "data")
    return own_prepare(data.kind)(data, seed, out, progress)


EXECUTORS = ("local", "ray")


def check_executor(kind: str, address: str | None, world_size: int) -> None:
    """Every problem with the executor settings, in one :class:`UsageError`, before any work starts."""
    problems = []
    if kind not in EXECUTORS:
        problems.append(f"--executor: {kind!r} is not an executor (choose from {', '.join(EXECUTORS)})")
    if address is not None and kind != "ray":
        problems.append("--address names a Ray cluster: use it with --executor ray")
    if kind == "ray" and world_size > 1:
        problems.append("--world-size/--rank: with --executor ray, Ray spreads the units over the cluster; "
                        "leave out --world-size and --rank")
    if problems:
        raise UsageError("; ".join(problems))


def make_executor(kind: str, workers: int, progress: bool, address: str | None = None) -> Executor:
    """``local``: a process pool of ``workers`` processes; ``ray``: one Ray task per unit, on a
    local Ray instance of ``workers`` CPUs or on the cluster at ``address``."""
    check_executor(kind, address, 1)
    if kind == "ray":
        from lmforge.data.ray_executor import RayExecutor

        return RayExecutor(workers, progress=progress, address=address)
    return LocalExecutor(workers, progress=progress)


def frame_ids(framing: str, special: dict, labeled: bool) -> tuple[str, int | None, int | None]:
    """(framing, the id every window starts with or None, the id that ends each document) for
    ``data.pack.framing``; ``auto`` outside a full config (no model.arch to go by) is ``eos``."""
    framing = "eos" if framing == "auto" else framing
    if labeled:  # labeled examples are wrapped by the fine-tuning task, not here
        return framing, None, None
    if framing == "cls_sep":
        missing = [k for k in ("cls", "sep") if special.get(k) is None]
        if missing:
            raise PipelineError(f"data.pack.framing: cls_sep needs the tokenizer's {' and '.join(missing)} token(s) "
                                f"(tokenizer.special_tokens.{missing[0]}); or set data.pack.framing: eos")
        return framing, special["cls"], special["sep"]
    eos = special.get("eos") if special.get("eos") is not None else special.get("sep")
    if eos is None:
        raise PipelineError("tokenizer has no end-of-document token: set tokenizer.special_tokens.eos to one of its tokens")
    return framing, None, eos


def framing_record(framing: str, row_start: int | None, doc_end: int, special: dict, add_bos: bool) -> dict:
    """How the windows are framed, for the manifest and the report (names beside ids)."""
    name = {v: k for k, v in special.items() if v is not None}
    if framing == "cls_sep":
        text = (f"every window starts with <{name[row_start]}> (id {row_start}), each document ends with "
                f"<{name[doc_end]}> (id {doc_end}): what an encoder's fine-tuning wraps each example with")
    else:
        text = (("each document starts with BOS, " if add_bos else "")
                + f"documents are joined by <{name.get(doc_end, doc_end)}> (id {doc_end}): what a decoder's "
                "fine-tuning appends")
    return {"kind": framing, "row_start_id": row_start, "doc_end_id": doc_end, "text": text}


def prepare(data: DataConfig, tokenizer: TokenizerConfig, paths: RunPaths, *, seed: int, workers: int,
            name: str, progress: bool = True, rank: int = 0, world_size: int = 1, executor: str = "local",
            address: str | None = None) -> dict:
    """Run the whole flow into ``paths.data`` (and the tokenizer into ``paths.tokenizer``) with
    ``workers`` processes. With ``world_size > 1`` only the per-unit ingest of this rank's units
    (``unit.index % world_size == rank``) runs, so several machines sharing ``run_dir`` can split
    the heaviest stage; a final run without ranks reuses their completion markers and finishes.
    ``executor="ray"`` runs the per-unit stages as Ray tasks (a local Ray instance, or the cluster
    at ``address``) instead; the corpus-wide steps stay in this process."""
    check_executor(executor, address, world_size)
    if own_prepare(data.kind) is not None:
        return prepare_kind(data, paths, seed=seed, progress=progress, world_size=world_size, executor=executor)
    if executor == "ray":  # tasks may run in another working directory, or on another node
        paths = replace(paths, root=paths.root.resolve())
    ex = make_executor(executor, workers, progress, address)
    try:
        return _prepare_text(data, tokenizer, paths, ex, seed=seed, name=name, rank=rank, world_size=world_size)
    finally:
        ex.close()


@dataclass
class _TextFlow:
    """What the text flow's named steps share: the settings, the executor, the work folders, and the
    per-step counts and timings that end up in the manifest."""

    data: DataConfig
    tokenizer: TokenizerConfig
    paths: RunPaths
    ex: Executor
    seed: int
    labeled: bool
    fingerprints: bool
    hasher: object
    work: Path
    reject_dir: Path
    timings: dict = field(default_factory=dict)
    steps: dict = field(default_factory=dict)  # StepStats by step name, in flow order


def _prepare_text(data: DataConfig, tokenizer: TokenizerConfig, paths: RunPaths, ex: Executor, *, seed: int,
                  name: str, rank: int, world_size: int) -> dict:
    """The text flow, top to bottom, as named steps — plan, ingest (clean + filter), dedup and split,
    write splits (+ augment), tokenizer, tokenize and pack, manifest — their per-unit stages run by ``ex``."""
    t_start = time.time()
    flow = _start(data, tokenizer, paths, ex, seed)
    units, inputs = _plan(flow)
    if world_size > 1:  # this rank's share of the heaviest stage only; a final run without ranks finishes
        return _ingest_share(flow, units, rank, world_size)
    r1, n_docs = _ingest(flow, units)
    corpus = _dedup_and_split(flow, units, r1, n_docs)
    written = _write_splits(flow, units, corpus["kept"])
    tok, tok_info, special = _tokenizer(flow, units, written["chars"]["train"])
    packed = _tokenize_and_pack(flow, units, tok, tok_info, special, written)
    faults.point("manifest.before")
    flow.timings["total"] = time.time() - t_start
    manifest = _manifest(flow, name, inputs, units, corpus, written, packed, tok_info, special)
    out = paths.data
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    from lmforge.data.report import write_report

    write_report(out, manifest)
    dropped_all: Counter = Counter()
    for st in flow.steps.values():
        dropped_all.update(st.dropped)
    say_total(flow.steps["read"].read, corpus["kept"], dropped_all, f"{flow.reject_dir}/")
    _say(f"done in {flow.timings['total']:.1f}s → {out}/manifest.json, {out}/report.md")
    return manifest


def _start(data: DataConfig, tokenizer: TokenizerConfig, paths: RunPaths, ex: Executor, seed: int) -> _TextFlow:
    """Work folders, the effective filter for labeled or unlabeled text, the near-duplicate hasher."""
    out = paths.data
    work, reject_dir = out / "work", out / "rejected"
    for d in (work, reject_dir):
        ensure_dir(d, "data")
    labeled = any(s.label_field or s.builtin == "stdlib_packages" for s in data.sources)
    if labeled and data.split.by == "position":
        raise PipelineError("data.split.by: position cuts documents into pieces and is for unlabeled text; "
                            "labeled examples must go whole to one split (use by: document)")
    data = replace(data, filter=effective_filter(data.filter, labeled))
    if labeled and data.filter.web_quality == "auto":
        _say("labeled data: the web-quality repetition filters are off (filter.web_quality: on to use them)")
    fingerprints = data.dedup.near or data.split.leak_check
    return _TextFlow(data, tokenizer, paths, ex, seed, labeled, fingerprints,
                     make_hasher(data, seed) if fingerprints else None, work, reject_dir)


def _plan(flow: _TextFlow) -> tuple[list[WorkUnit], list[dict]]:
    """The work units of the sources (readable, stamped) and the inputs' checksums."""
    t = time.time()
    units = plan_units(flow.data)
    check_readable(units)
    stamp_units(units)
    if not units:
        raise SourceError("data.sources: the inputs hold no files")
    inputs = _file_checksums(units)
    flow.timings["plan"] = time.time() - t
    _say(f"{len(units)} work unit(s) from {len(inputs)} input(s), {sum(u.size for u in units) / 1e6:.1f} MB, "
         f"{flow.ex.workers} worker(s)")
    return units, inputs


def _ingest_context(flow: _TextFlow) -> tuple[IngestContext, str]:
    d = flow.data
    h_ingest = _hash([to_dict(x) for x in (d.sources, d.labels, d.strict, d.max_record_bytes, d.clean, d.filter, d.dedup)]
                     + [flow.seed, flow.fingerprints, d.split.leak_check, leak_threshold(d)])
    return IngestContext(d, flow.seed, flow.work / "ingest", flow.reject_dir, flow.fingerprints), h_ingest


def _ingest_share(flow: _TextFlow, units: list[WorkUnit], rank: int, world_size: int) -> dict:
    ictx, h_ingest = _ingest_context(flow)
    mine = [u for u in units if u.index % world_size == rank]
    flow.ex.map(ingest_unit, mine, ictx, flow.work / "ingest", h_ingest, f"ingest {rank}/{world_size}")
    _say(f"rank {rank}/{world_size}: ingested {len(mine)} of {len(units)} units; "
         "run again without --world-size to finish")
    return {"rank": rank, "world_size": world_size, "units": [u.name for u in mine]}


def _ingest(flow: _TextFlow, units: list[WorkUnit]) -> tuple[list[dict], int]:
    """Read, clean and filter every unit; the per-step drops said, files that gave nothing named."""
    t = time.time()
    ictx, h_ingest = _ingest_context(flow)
    r1 = flow.ex.map(ingest_unit, units, ictx, flow.work / "ingest", h_ingest, "ingest")
    flow.steps.update(_merge_steps(r1))
    flow.timings["ingest"] = time.time() - t
    n_docs = sum(r["docs"] for r in r1)
    _say(f"ingest: read {flow.steps['read'].read} records, {n_docs} documents kept after clean+filter "
         f"({flow.timings['ingest']:.1f}s)")
    say_drops(flow.steps, flow.reject_dir)
    per_file: Counter = Counter()
    binary = set()  # files skipped as binary were already named by a warning of their own
    for u, r in zip(units, r1):
        if u.format != "builtin":
            per_file[u.path] += r["docs"]
            if (r.get("steps", {}).get("read", {}).get("dropped") or {}).get("binary_file"):
                binary.add(u.path)
    for path, n in per_file.items():
        if n == 0 and path not in binary:
            _warn(f"{path} contributed no document (every record dropped; reasons in {flow.reject_dir}/)")
    if n_docs == 0:
        reasons = Counter()
        for s in flow.steps.values():
            reasons.update(s.dropped)
        top = ", ".join(f"{k}={v}" for k, v in reasons.most_common(5)) or "no records were read"
        raise PipelineError(f"the pipeline kept no documents (dropped: {top}); see {flow.reject_dir}/ for each record")
    return r1, n_docs


def _dedup_and_split(flow: _TextFlow, units: list[WorkUnit], r1: list[dict], n_docs: int) -> dict:
    """Corpus-wide: exact/near duplicates and label conflicts, splits by duplicate component, the leak
    check; each unit's plan written to ``work/plan/``. Returns kept count, leak record, conflicts."""
    t, data = time.time(), flow.data
    store = UnitStore(flow.work / "ingest", [u.name for u in units], [r["docs"] for r in r1])
    dup = find_duplicates(store, data.dedup.exact, data.dedup.near, flow.hasher, data.dedup.threshold,
                          data.dedup.verify, data.dedup.label_conflicts)
    faults.point("dedup.done")
    reason = dup["reason"]
    kept = reason == KEEP
    dedup_stats = StepStats("dedup")
    dedup_stats.read, dedup_stats.kept = n_docs, int(kept.sum())
    for code, rname in REASONS.items():
        if (reason == code).any():
            dedup_stats.dropped[rname] = int((reason == code).sum())
    conflicts = conflict_record(store, dup["stats"].pop("label_conflicts"))
    dedup_stats.extra.update(dup["stats"])
    flow.steps["dedup"] = dedup_stats
    comp = components(store.n, dup["dup_root"], store.field("group").astype(np.uint64), kept)
    stratify = data.split.stratify if data.split.stratify is not None else flow.labeled
    leak = None
    if data.split.by == "position":  # every kept document goes whole to stage 2, which cuts it
        split = np.where(kept, TRAIN, -1).astype(np.int8)
    else:
        split = assign_splits(kept, comp, dup["exact"], store.field("label"), data.split.val, data.split.test,
                              stratify, flow.seed)
        if data.split.leak_check:
            leak = resolve_leaks(store, data, flow.seed, split, comp, kept, dup, flow.hasher)
    _write_plan(flow.work / "plan", units, store, dup, split, reason)
    flow.timings["dedup_split"] = time.time() - t
    _say_dedup(flow, dedup_stats, leak, conflicts)
    return {"kept": dedup_stats.kept, "leak": leak, "conflicts": conflicts}


def _write_plan(plan_dir: Path, units: list[WorkUnit], store: UnitStore, dup: dict, split, reason) -> None:
    """Per unit: each document's split, drop reason and the id of the copy it duplicates."""
    plan_dir.mkdir(parents=True, exist_ok=True)
    for i, u in enumerate(units):
        a, b = store.offsets[i], store.offsets[i + 1]
        dup_of = dup["dup_of"][a:b]
        dup_of_id = np.full(b - a, "", dtype=object)
        dropped = np.flatnonzero(dup_of >= 0)
        if len(dropped):  # ids of the kept representatives, read only where needed
            dup_of_id[dropped] = store.gather("id", dup_of[dropped])
        np.savez(plan_dir / f"{u.name}.npz", split=split[a:b], reason=reason[a:b],
                 dup_of_id=dup_of_id.astype(str), first_doc=a)
        faults.point("plan.unit")


def _say_dedup(flow: _TextFlow, dedup_stats: StepStats, leak: Optional[dict], conflicts: dict) -> None:
    if flow.data.split.by == "position":
        leak_msg = "n/a (split by position)"
    elif leak is None:
        leak_msg = "off"
    else:
        leak_msg = (f"{leak['found']} found, {leak['moved_docs']} document(s) moved into train, {leak['total']} left"
                    if leak["found"] else "0")
    _say(f"dedup: {dedup_stats.kept} kept, {dict(dedup_stats.dropped)} dropped; leak check: {leak_msg} "
         f"({flow.timings['dedup_split']:.1f}s)")
    say_drops({"dedup": dedup_stats}, flow.reject_dir)
    if conflicts["groups"]:
        _warn(f"{conflicts['groups']:,} text(s) appear with different labels ({conflicts['documents']:,} copies); "
              f"data.dedup.label_conflicts={conflicts['policy']} dropped {conflicts['dropped']:,} of them "
              f"(e.g. {conflicts['examples'][0]['ids']} labeled {conflicts['examples'][0]['labels']}); "
              f"each dropped copy is in {flow.reject_dir}/")


def _write_splits(flow: _TextFlow, units: list[WorkUnit], n_kept: int) -> dict:
    """Every kept document written to its split (training records augmented when asked); returns
    documents, characters, length histograms and label counts per split, and the augmented count."""
    t, data = time.time(), flow.data
    split_dir = splits_dir(flow.paths.data)
    sctx = SplitContext(data, flow.seed, flow.work / "ingest", flow.work / "plan", split_dir, flow.reject_dir)
    r2 = flow.ex.map(write_unit, units, sctx, flow.work / "split", _hash([to_dict(data), flow.seed]), "split")
    docs, chars = Counter(), Counter()
    char_hist = {s: np.zeros(len(CHAR_BINS) - 1, dtype=np.int64) for s in SPLITS}
    labels: dict[str, Counter] = {s: Counter() for s in SPLITS}
    augmented = 0
    for r in r2:
        docs.update(r["docs"])
        chars.update(r["chars"])
        augmented += r["augmented"]
        for s in SPLITS:
            labels[s].update(r["labels"].get(s, {}))
            char_hist[s] += np.asarray(r["char_hist"][s], dtype=np.int64)
    split_stats = StepStats("split")
    split_stats.read = split_stats.kept = n_kept
    split_stats.extra.update({f"{s}_docs": docs[s] - (augmented if s == "train" else 0) for s in SPLITS})
    flow.steps["split"] = split_stats
    if data.augment.enabled:
        aug = StepStats("augment")
        aug.read = aug.kept = docs["train"] - augmented
        aug.extra["augmented_records_added"] = augmented
        flow.steps["augment"] = aug
    flow.timings["split"] = time.time() - t
    if data.labels:
        empty = [lb for lb in data.labels if not labels["train"].get(lb)]
        if empty:
            _warn(f"declared label(s) {empty} have no training example (data.labels lists {len(data.labels)}); "
                  "the model cannot learn them")
    if docs["train"] == 0:
        raise PipelineError("the train split is empty: too few documents for the requested val/test fractions "
                            f"(kept {n_kept}; data.split.val={data.split.val}, data.split.test={data.split.test})")
    _say(f"split: {dict(docs)} documents ({augmented} augmented)")
    return {"dir": split_dir, "docs": docs, "chars": chars, "char_hist": char_hist, "labels": labels}


def _tokenizer(flow: _TextFlow, units: list[WorkUnit], train_chars: int):
    """The tokenizer — loaded from ``tokenizer.path`` or trained on a sample of the train split — copied
    into the run; returns (tokenizer, its record for the manifest, special token ids)."""
    t, tokenizer = time.time(), flow.tokenizer
    tok_dir = flow.paths.tokenizer
    if tokenizer.path:
        from lmforge.models.load import resolve_init

        tok_path = resolve_init(tokenizer.path)  # "minilm": the shipped checkpoint's tokenizer
        tok = tok_io.load(tok_path)
        src_dir = Path(tok_path) if Path(tok_path).is_dir() else None
        tok_io.copy_files(tok_path, tok_dir)
        tok_info = {"trained": False, "source": str(tokenizer.path)}
        special = tok_io.special_ids(tok, src_dir, tokenizer)
    else:
        split_dir = splits_dir(flow.paths.data)

        def train_docs():
            for u in units:
                with open(split_dir / "train" / f"{u.name}.jsonl", encoding="utf-8") as fh:
                    for line in fh:
                        yield json.loads(line)

        texts = tok_train.sample_texts(train_docs(), train_chars, tokenizer.max_train_chars, flow.seed)
        tok_info = tok_train.train(tokenizer, texts, tok_dir)
        faults.point("tokenizer.trained")
        tok = tok_io.load(tok_dir)
        special = tok_io.special_ids(tok, tok_dir, tokenizer)
    flow.timings["tokenizer"] = time.time() - t
    _say(f"tokenizer: vocab {tok.get_vocab_size(with_added_tokens=True)} "
         f"({'trained' if tok_info['trained'] else 'loaded'}, {flow.timings['tokenizer']:.1f}s)")
    return tok, tok_info, special


def _tokenize_and_pack(flow: _TextFlow, units: list[WorkUnit], tok, tok_info: dict, special: dict,
                       written: dict) -> dict:
    """Token ids of every split — packed into fixed windows (unlabeled text, framed as fine-tuning
    frames it) or one example per row (labeled) — merged into ``tokens/``; returns the totals and index."""
    t, data, out = time.time(), flow.data, flow.paths.data
    tok_dir = flow.paths.tokenizer
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    framing, row_start, eos = frame_ids(data.pack.framing, special, flow.labeled)
    tok_info.update(vocab_size=vocab_size, special_ids=special, doc_separator_id=eos)
    pctx = PackContext(tok_dir / "tokenizer.json", written["dir"], flow.work / "tokens", flow.labeled,
                       special.get("bos") if framing == "eos" else None, eos if eos is not None else -1, vocab_size,
                       data.pack, row_start)
    h_pack = _hash([to_dict(data), to_dict(flow.tokenizer), flow.seed, vocab_size])
    r4 = flow.ex.map(tokenize_unit, units, pctx, flow.work / "tokens_done", h_pack, "tokenize")
    label_names = None
    if flow.labeled:
        label_names = list(data.labels) if data.labels else sorted({lb for s in SPLITS for lb in written["labels"][s]})
    index = merge(units, pctx, tokens_dir(out), label_names, special, tokenizer_dir=os.path.relpath(tok_dir, tokens_dir(out)))
    pack_stats = StepStats("pack")
    totals = {s: {"docs": sum(r[s]["docs"] for r in r4), "tokens": sum(r[s]["tokens"] for r in r4),
                  "truncated": sum(r[s]["truncated"] for r in r4),
                  "length_hist": np.sum([r[s]["length_hist"] for r in r4], axis=0).tolist()} for s in SPLITS}
    pack_stats.read = pack_stats.kept = sum(v["docs"] for v in totals.values())
    pack_stats.extra["truncated_examples"] = sum(v["truncated"] for v in totals.values())
    if not flow.labeled:
        pack_stats.extra["dropped_tail_tokens"] = sum(index["splits"][s]["dropped_tail_tokens"] for s in SPLITS)
    flow.steps["pack"] = pack_stats
    flow.timings["tokenize_pack"] = time.time() - t
    tok_info["chars_per_token_train"] = round(written["chars"]["train"] / max(totals["train"]["tokens"], 1), 3)
    tok_info["sample_stats"] = tokenizer_stats(tok, written["dir"], special.get("unk"))
    per_split = ", ".join(f"{s}={totals[s]['tokens']}" for s in SPLITS)
    _say(f"pack: {per_split} tokens ({flow.timings['tokenize_pack']:.1f}s)")
    return {"totals": totals, "index": index, "framing": (framing, row_start, eos)}


def _manifest(flow: _TextFlow, name: str, inputs: list[dict], units: list[WorkUnit], corpus: dict, written: dict,
              packed: dict, tok_info: dict, special: dict) -> dict:
    """``manifest.json``: the config and its hash, inputs, every step's counts, splits, leak check,
    label conflicts, tokenizer, framing, shards, timings and peak memory."""
    data, tokenizer, seed, hasher = flow.data, flow.tokenizer, flow.seed, flow.hasher
    totals, index = packed["totals"], packed["index"]
    framing, row_start, eos = packed["framing"]
    return {
        "format": "lmforge-data-manifest-v1",
        "name": name,
        "config_hash": _hash({"data": to_dict(data), "tokenizer": to_dict(tokenizer), "seed": seed}),
        "config": {"seed": seed, "data": to_dict(data), "tokenizer": to_dict(tokenizer)},
        "inputs": inputs,
        "units": len(units),
        "steps": {k: v.to_json() for k, v in flow.steps.items()},
        "splits": {s: {"docs": written["docs"][s], "chars": written["chars"][s], "tokens": totals[s]["tokens"],
                       "truncated": totals[s]["truncated"], "labels": dict(sorted(written["labels"][s].items())),
                       "char_length_hist": written["char_hist"][s].tolist(),
                       "token_length_hist": totals[s]["length_hist"]} for s in SPLITS},
        "histogram_bins": {"chars": CHAR_BINS, "tokens": TOKEN_BINS},
        "leak_check": corpus["leak"],
        "label_conflicts": corpus["conflicts"] if flow.labeled else None,
        "tokenizer": tok_info,
        "framing": None if flow.labeled else framing_record(framing, row_start, eos, special, data.pack.add_bos),
        "shards": {"dir": "tokens", "index": "tokens/index.json", "kind": index["kind"], "dtype": index["dtype"],
                   "seq_len": index.get("seq_len"), "splits": {s: {k: v for k, v in index["splits"][s].items()
                                                                    if k != "shards"} for s in SPLITS}},
        "dedup_index": {"bands": hasher.bands if hasher else None, "rows": hasher.rows if hasher else None,
                        "num_perm": data.dedup.num_perm},
        "timings_s": {k: round(v, 2) for k, v in flow.timings.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_workers_mb": flow.ex.peak_rss_mb,  # max VmHWM of the processes that ran tasks (None: all reused)
    }
