"""Classification or regression on a prepared table (``data.kind: tabular``).

Rows are already imputed, clipped, scaled and encoded by the preprocessor fit on the train split
(:mod:`lmforge.data.tabular.preprocess`); a saved model carries a copy of that preprocessor, so
``predict`` on a raw CSV applies exactly the same steps.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lmforge.errors import DataError
from lmforge.tasks.arrays import ArraySet, prepared_manifest, require_path, target_stats


class TabularTask:
    name = "tabular"
    archs = ("linear", "mlp", "tab_transformer")
    default_metric = "accuracy"  # regression: rmse (see lmforge.training.array_setup)
    metrics = frozenset({"accuracy", "f1_macro", "f1_micro", "f1_weighted", "roc_auc", "rmse", "mae", "r2"})

    def load(self, data_dir: Path, split: str) -> ArraySet:
        from lmforge.data.tabular.prepare import load_split

        a = load_split(Path(data_dir), split)
        return ArraySet({"x": np.asarray(a.x, dtype=np.float32), "cat": np.asarray(a.cat, dtype=np.int64)},
                        None if a.y is None else np.asarray(a.y), list(a.ids))

    def meta(self, data_dir: Path, train: ArraySet) -> dict:
        man = prepared_manifest(data_dir, "tabular")
        meta = {"kind": "tabular", "task": man["task"], "labels": list(man.get("labels") or []),
                "target": man.get("target"), "feature_names": list(man["feature_names"]),
                "n_features": int(train.inputs["x"].shape[1]), "n_numeric": int(man["n_numeric"]),
                "cat_cardinalities": [int(c) for c in man["cat_cardinalities"]]}
        if man["task"] == "regression":
            meta.update(target_stats(train.y))
        meta["num_outputs"] = 1 if man["task"] == "regression" else len(meta["labels"])
        return meta

    def build_model(self, model_cfg, meta: dict) -> torch.nn.Module:
        from lmforge.models.tabular import tabular_model_from_record

        return tabular_model_from_record(model_cfg, meta)

    def tensors(self, batch: ArraySet, meta: dict, device: torch.device,
                augment: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
        return {"x": torch.from_numpy(np.asarray(batch.inputs["x"])).to(device),
                "cat": torch.from_numpy(np.asarray(batch.inputs["cat"])).to(device)}

    def forward(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(inputs["x"], inputs["cat"])

    def read_file(self, path: str, folder: Path, meta: dict, need_label: bool, strict: bool = False) -> ArraySet:
        """Rows of a raw table through the model's saved preprocessor. Every cell that does not parse,
        every category the model never saw and every missing cell is counted per column and said (they
        are imputed or encoded as unknown); ``strict`` refuses such a file instead."""
        from lmforge.data.tabular.config import TableSourceConfig
        from lmforge.data.tabular.preprocess import TabularPreprocessor
        from lmforge.data.tabular.read import read_table

        require_path(path)
        pre = TabularPreprocessor.load(folder / "preprocessor")
        columns = pre.cfg.columns if need_label else replace(pre.cfg.columns, target=None)  # predict: no target needed
        # rows without the id column are fine: their ids are their line numbers
        got = read_table(TableSourceConfig(path=str(path)), columns, optional=(columns.id,) if columns.id else ())
        for r in got.rejected[:5]:
            print(f"[evaluate] {path} line {r.get('line')}: {r.get('reason')} ({r.get('detail')}) — row not used", flush=True)
        if len(got.frame) == 0:
            raise DataError(f"{path}: no usable rows")
        frame = got.frame.drop(columns=got.absent)
        if need_label:
            frame = frame[frame[meta["target"]].notna()]
        _say_cell_problems(path, cell_problems(got.type_errors, frame, pre), strict)
        arrays = pre.transform(frame.drop(columns=[meta["target"]]) if not need_label and meta["target"] in frame
                               else frame, lines=[int(v) for v in np.asarray(got.lines)[frame.index]])
        if need_label and meta["task"] == "classification" and (arrays.y < 0).any():
            unknown = sorted({str(v) for v, k in zip(frame[meta["target"]], arrays.y) if k < 0})
            raise DataError(f"{path}: labels the model does not know: {unknown[:10]} (it knows {meta['labels']})")
        return ArraySet({"x": arrays.x.astype(np.float32), "cat": arrays.cat.astype(np.int64)},
                        None if arrays.y is None else np.asarray(arrays.y), list(arrays.ids))


def cell_problems(type_errors: dict, frame, pre) -> dict[str, dict[str, int]]:
    """Per input column: cells that did not parse (``not_parsed``, read as missing), categories the
    model never saw in training (``unseen_category``) and empty cells (``missing``), counted."""
    import pandas as pd

    out: dict[str, dict[str, int]] = {}
    for col, e in type_errors.items():
        out.setdefault(col, {})["not_parsed"] = int(e["count"])
    for col in pre.numeric_raw + pre.categorical + pre.dates.columns:
        if col not in frame:
            continue
        n_missing = int(frame[col].isna().sum()) - out.get(col, {}).get("not_parsed", 0)
        if n_missing > 0:
            out.setdefault(col, {})["missing"] = n_missing
    for col in pre.categorical:
        if col in frame:
            known = set(pre.encoder.categories.get(col, []))
            unseen = sum(1 for v in frame[col] if v is not None and not pd.isna(v) and str(v) not in known)
            if unseen:
                out.setdefault(col, {})["unseen_category"] = unseen
    return out


def _say_cell_problems(path: str, problems: dict[str, dict[str, int]], strict: bool) -> None:
    if not problems:
        return
    what = {"not_parsed": "cell(s) that do not parse (read as missing, then imputed)",
            "unseen_category": "category value(s) the model never saw (encoded as unknown)",
            "missing": "missing cell(s) (imputed)"}
    lines = [f"column {col!r}: " + ", ".join(f"{n} {what[k]}" for k, n in counts.items())
             for col, counts in sorted(problems.items())]
    if strict:
        raise DataError(f"{path}: --strict: " + "; ".join(lines))
    for line in lines:
        print(f"[predict] warning: {path}: {line}", file=sys.stderr, flush=True)
