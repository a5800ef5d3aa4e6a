"""``lmforge data prepare`` for ``data.kind: tabular``, top to bottom.

    read every source → reject rows without a usable target → seeded (stratified) split
    → drop_row rejections → fit the preprocessor on train → transform every split → write

Everything lands under ``out`` (``<run>/data/``)::

    manifest.json            task, labels, features, counts, missingness, type errors, config, sources
    report.md                the same, readable; missingness.png next to it
    rejected/rows.jsonl      one JSON per rejected row: source, line, reason, detail
    tabular/{train,val,test}.npz   x (N, F) float32, cat (N, G) int64, y, ids, lines
    tabular/preprocessor/    preprocessor.json + train.parquet (see preprocess.py)

Counts add up: ``counts.read == counts.kept + sum(counts.rejected_by_reason)``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from lmforge.config.schema import to_dict
from lmforge.data import drops
from lmforge.data.config import DataConfig
from lmforge.data.split import split_rows
from lmforge.data.tabular.impute import columns_to_drop, strategy_for
from lmforge.data.tabular.preprocess import TabularArrays, TabularPreprocessor, resolve_task, to_float
from lmforge.data.tabular.read import ReadResult, read_table
from lmforge.data.tabular.report import write_missingness_plot, write_report
from lmforge.errors import ArtifactError, DataError, writing
from lmforge.layout import ensure_dir

SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"

KIND = "tabular"  # this flow's name in the kind registry (lmforge.kinds) and in the manifests it writes


def _merge(results: list[ReadResult]) -> tuple[pd.DataFrame, np.ndarray, list[str], ReadResult]:
    """All sources as one frame (RangeIndex), with each row's line and source, and the merged bookkeeping."""
    total = ReadResult(pd.DataFrame(), np.zeros(0, dtype=np.int64), [])
    for r in results:
        total.rejected += r.rejected
        total.files += r.files
        total.ignored_columns += [c for c in r.ignored_columns if c not in total.ignored_columns]
        for col, e in r.type_errors.items():
            t = total.type_errors.setdefault(col, {"count": 0, "examples": []})
            t["count"] += e["count"]
            t["examples"] = (t["examples"] + e["examples"])[:5]
    frame = pd.concat([r.frame for r in results], ignore_index=True)
    lines = np.concatenate([r.lines for r in results])
    sources = [s for r in results for s in r.sources]
    return frame, lines, sources, total


def _missing_counts(frame: pd.DataFrame, columns: list[str]) -> dict[str, int]:
    return {c: int(frame[c].isna().sum()) for c in columns}


def _missing_after(frame: pd.DataFrame, pre: TabularPreprocessor) -> dict[str, int]:
    out = {c: int(frame[c].isna().sum()) for c in pre.numeric_raw + pre.categorical}
    for c in pre.dates.columns:
        out[c] = int(frame[[f"{c}_{p}" for p in ("year", "month", "day", "weekday")]].isna().any(axis=1).sum())
    return out


def _save_arrays(path: Path, a: TabularArrays) -> None:
    with writing(path):
        np.savez(path, x=a.x, cat=a.cat, y=a.y, ids=np.asarray(a.ids, dtype=str),
                 lines=np.asarray(a.lines, dtype=np.int64))


def prepare_tabular(data: DataConfig, seed: int, out: Path, progress: bool = True) -> dict:
    """Prepare ``data.tabular`` into ``out``; returns the manifest (also written to ``out/manifest.json``)."""
    say = drops.say  # results, printed with or without progress bars
    tab, cols, target = data.tabular, data.tabular.columns, data.tabular.columns.target
    out = ensure_dir(Path(out), "data")
    frame, lines, sources, info = _read_sources(data)
    rejected = list(info.rejected)
    n_read = len(frame) + len(rejected)

    # ---- rows without a usable target --------------------------------------------------------------
    task = "classification" if data.labels and tab.task == "auto" else resolve_task(tab.task, frame[target])
    where = out / "rejected" / "rows.jsonl"
    drops.say_step("read", n_read, len(frame), Counter(r["reason"] for r in rejected), where,
                   "check the file's columns and quoting")
    keep = _usable_targets(frame, lines, sources, task, data, rejected)
    drops.say_step("target", len(keep), int(keep.sum()), Counter(r["reason"] for r in rejected[len(info.rejected):]),
                   where, f"check columns.target ({target!r}) and data.labels")
    frame, lines = frame[keep].reset_index(drop=True), lines[keep]
    sources = [s for s, k in zip(sources, keep) if k]

    # ---- split --------------------------------------------------------------------------------------
    stratify = task == "classification" and data.split.stratify is not False
    groups = [str(v) for v in frame[target]] if stratify else None
    parts = split_rows(len(frame), groups, data.split.val, data.split.test, seed)
    features = cols.numeric + cols.categorical + cols.dates
    dropped = columns_to_drop(frame.iloc[parts["train"]], features, tab.missing.drop_column_above)
    missing_before = {s: _missing_counts(frame.iloc[idx], features) for s, idx in parts.items()}
    rows_before = {s: len(idx) for s, idx in parts.items()}

    # ---- drop_row: rows missing a cell of a drop_row column ---------------------------------------
    drop_cols = [c for c in features if c not in dropped and strategy_for(tab.missing, c, c in cols.numeric) == "drop_row"]
    n_before_drop_row = len(rejected)
    parts = _drop_rows_missing(frame, parts, drop_cols, sources, lines, rejected)
    drops.say_step("drop_row", sum(rows_before.values()), sum(len(p) for p in parts.values()),
                   Counter(r["reason"] for r in rejected[n_before_drop_row:]), where,
                   "missing.strategy drop_row removes every row with a missing cell; an imputer keeps them "
                   "(data.tabular.missing.strategy: median, knn, ...)")
    reasons = Counter(r["reason"] for r in rejected)
    if len(parts["train"]) == 0:
        raise DataError(f"the train split is empty: {n_read} rows read, {len(frame)} with a target, rejected: "
                        f"{dict(reasons) or 'none'}; fix the input or the settings that reject rows "
                        "(data.split fractions, missing.strategy drop_row, data.labels)")
    say("split: " + ", ".join(f"{s} {len(parts[s])}" for s in SPLITS) + (f" (stratified by {target!r})" if stratify else ""))

    # ---- fit on train, transform every split ---------------------------------------------------------
    interpolated = [c for c in features if c not in dropped and strategy_for(tab.missing, c, c in cols.numeric) == "interpolate"]
    if interpolated and not cols.order:
        drops.warn(f"missing.strategy interpolate on {interpolated} without data.tabular.columns.order: values are "
                   "interpolated along the file's row order; name the time or sequence column in columns.order")
    pre = TabularPreprocessor(tab, seed, task=task, labels=data.labels).fit(frame.iloc[parts["train"]], drop=dropped)
    if pre.task == "classification":  # a label left only in val/test (its train rows were dropped): not learnable
        parts = _drop_unlearnable_labels(frame, parts, pre.labels, target, sources, lines, rejected)
        reasons = Counter(r["reason"] for r in rejected)
    say(f"fit on train ({len(parts['train'])} rows): task {pre.task}, impute {tab.missing.strategy}, outliers "
        f"{tab.outliers}, scaling {tab.scaling}, {tab.categorical_encoding} → {len(pre.feature_names)} features"
        + (f"; dropped columns {dropped}" if dropped else ""))
    missing_after, splits = _write_splits(out, frame, parts, pre, cols.id, sources, lines)
    left = sum(missing_after[s].get(c, 0) for s in SPLITS for c in pre.numeric_raw + cols.dates)
    if left:
        say(f"warning: {left} numeric cells are still missing (NaN in x): missing.strategy none leaves them")

    # ---- manifest, rejected rows, report -------------------------------------------------------------
    kept = sum(splits.values())
    manifest = {
        "kind": KIND, "task": pre.task, "labels": pre.labels if pre.task == "classification" else None,
        "target": target, "seed": seed, "feature_names": pre.feature_names, "n_numeric": pre.n_numeric,
        "categorical": pre.categorical, "cat_cardinalities": pre.cat_cardinalities, "stratified": stratify,
        "splits": splits, "counts": {"read": n_read, "kept": kept, "rejected": len(rejected),
                                     "rejected_by_reason": dict(sorted(reasons.items()))},
        "rows_before_drop_row": rows_before,
        "missing_before": missing_before, "missing_after": missing_after, "type_errors": info.type_errors,
        "ignored_columns": info.ignored_columns, "dropped_columns": dropped,
        "files": {"arrays": {s: f"tabular/{s}.npz" for s in SPLITS}, "preprocessor": "tabular/preprocessor",
                  "rejected": "rejected/rows.jsonl", "report": "report.md", "missingness": "missingness.png"},
        "config": to_dict(tab), "sources": info.files}
    assert n_read == kept + len(rejected), (n_read, kept, len(rejected))
    _write_outputs(out, manifest, rejected)
    drops.say_total(n_read, kept, reasons, where, "rows")
    say(f"wrote {out / MANIFEST}")
    return manifest


def _read_sources(data: DataConfig):
    """Every table of ``data.tabular.sources`` read against the column schema and merged:
    (frame, line numbers, source per row, merge info with the rejected rows and cell parse errors)."""
    tab = data.tabular
    if not tab.columns.target:
        raise DataError("data.tabular.columns.target is not set: name the column to predict")
    if not tab.sources:
        raise DataError("data.tabular.sources is empty: add a table (- builtin: penguins, or - path: table.csv)")
    frame, lines, sources, info = _merge([read_table(src, tab.columns, strict=data.strict) for src in tab.sources])
    drops.say(f"read {len(frame) + len(info.rejected)} rows from {len(info.files)} file(s) ({len(info.rejected)} ragged "
              f"rows rejected, {sum(e['count'] for e in info.type_errors.values())} cells that do not parse)")
    return frame, lines, sources, info


def _usable_targets(frame: pd.DataFrame, lines, sources: list, task: str, data: DataConfig, rejected: list) -> np.ndarray:
    """Rows whose target is usable (True); the others are appended to ``rejected`` with the reason —
    or, with ``data.strict`` / ``missing_target: error``, refused with their file and line."""
    target = data.tabular.columns.target
    keep = np.ones(len(frame), dtype=bool)
    for i, v in enumerate(frame[target].tolist()):
        if v is None:
            reason, detail = "missing_target", f"column {target!r} is empty"
        elif task == "classification" and data.labels and v not in data.labels:
            reason, detail = "unknown_label", f"label {v!r} is not in data.labels {data.labels}"
        elif task == "regression" and np.isnan(to_float(v)):
            reason, detail = "bad_target", f"target {v!r} is not a number"
        else:
            continue
        if data.strict or (reason == "missing_target" and data.tabular.missing.missing_target == "error"):
            raise DataError(f"{sources[i]}:{lines[i]}: {detail} (set data.tabular.missing.missing_target: drop "
                            "and data.strict: false to reject such rows instead)")
        keep[i] = False
        rejected.append({"source": sources[i], "line": int(lines[i]), "reason": reason, "detail": detail})
    return keep


def _drop_rows_missing(frame: pd.DataFrame, parts: dict, drop_cols: list[str], sources: list, lines,
                       rejected: list) -> dict:
    """``missing.strategy: drop_row``: each split without the rows missing a cell of ``drop_cols``
    (appended to ``rejected``, naming the column)."""
    out = {}
    for s, idx in parts.items():
        ok = []
        for i in idx:
            bad = next((c for c in drop_cols if pd.isna(frame.at[i, c])), None)
            if bad is None:
                ok.append(i)
            else:
                rejected.append({"source": sources[i], "line": int(lines[i]), "reason": f"missing_value:{bad}",
                                 "detail": f"{bad!r} is missing (missing.strategy drop_row)"})
        out[s] = np.asarray(ok, dtype=np.int64)
    return out


def _drop_unlearnable_labels(frame: pd.DataFrame, parts: dict, labels: list, target: str, sources: list, lines,
                             rejected: list) -> dict:
    """val/test rows whose label has no train row are rejected (``unknown_label``): no model can predict it."""
    for s in ("val", "test"):
        known = np.array([frame.at[i, target] in labels for i in parts[s]], dtype=bool)
        rejected += [{"source": sources[i], "line": int(lines[i]), "reason": "unknown_label",
                      "detail": f"label {frame.at[i, target]!r} has no train row"} for i in parts[s][~known]]
        parts[s] = parts[s][known]
    return parts


def _write_splits(out: Path, frame: pd.DataFrame, parts: dict, pre, id_column, sources: list, lines):
    """Each split transformed by the preprocessor fit on train, written as ``tabular/<split>.npz``, with the
    preprocessor beside them; returns (missing cells left per split and column, rows per split)."""
    tdir = ensure_dir(out / "tabular", "tabular data")
    missing_after, splits = {}, {}
    for s, idx in parts.items():
        part = frame.iloc[idx]
        ids = [str(v) for v in part[id_column]] if id_column else [f"{sources[i]}:{lines[i]}" for i in idx]
        arrays, imputed = pre.transform_with_frame(part, lines=lines[idx].tolist(), ids=ids)  # imputed once
        _save_arrays(tdir / f"{s}.npz", arrays)
        missing_after[s] = _missing_after(imputed, pre)
        splits[s] = len(idx)
    pre.save(tdir / "preprocessor")
    return missing_after, splits


def _write_outputs(out: Path, manifest: dict, rejected: list) -> None:
    """rejected/rows.jsonl, manifest.json, missingness.png and report.md."""
    rdir = ensure_dir(out / "rejected", "rejected rows")
    with writing(rdir), open(rdir / "rows.jsonl", "w", encoding="utf-8") as fh:
        for r in rejected:
            fh.write(json.dumps(r) + "\n")
    with writing(out):
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
        write_missingness_plot(out / "missingness.png", manifest)
        write_report(out / "report.md", manifest)


def load_manifest(data_dir: str | Path) -> dict:
    """The manifest of a prepared tabular data folder."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"no {MANIFEST} in {data_dir}; run `lmforge data prepare` with data.kind: tabular")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("kind") != KIND:
        raise ArtifactError(f"{path} describes {manifest.get('kind', 'text')!r} data, not a prepared table")
    return manifest


def load_split(data_dir: str | Path, split: str) -> TabularArrays:
    """One split's arrays, as written by :func:`prepare_tabular`."""
    path = Path(data_dir) / "tabular" / f"{split}.npz"
    if not path.is_file():
        raise ArtifactError(f"no split {split!r} at {path} (splits: {', '.join(SPLITS)}); "
                            "run `lmforge data prepare` with data.kind: tabular")
    with np.load(path, allow_pickle=False) as z:
        return TabularArrays(z["x"], z["cat"], z["y"], z["ids"].tolist(), z["lines"].tolist())
