"""What a table model takes outside training — in an ONNX graph, in a server request, in a smoke
request — and how raw rows become it (the kind registry's ``inputs`` entry for tables).

The graph takes the saved preprocessor's output: ``x`` float32 (B, F) (imputed, clipped, scaled,
one-hot columns) and, for a ``tab_transformer`` with categorical columns, ``cat`` int64 (B, G)
(category codes, 0 = unknown); regression graphs give the prediction in the target's units. The
preprocessor folder travels with every export. Request rows are typed per declared column and go
through that preprocessor with the code ``lmforge predict`` uses on CSV files; every cell that did
not parse, every category the model never saw and every missing cell is a warning on its row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from lmforge.errors import InputError
from lmforge.tasks.arrays import ArraySet, is_regression


class RowsToOutputs(nn.Module):
    """Preprocessed features (and category codes) → logits, or the prediction in the target's units."""

    def __init__(self, model: nn.Module, meta: dict, uses_cat: bool):
        super().__init__()
        self.model, self.uses_cat = model, uses_cat
        self.regression = is_regression(meta)
        self.y_mean, self.y_std = float(meta.get("y_mean", 0.0)), float(meta.get("y_std", 1.0))

    def forward(self, x: torch.Tensor, cat: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.model(x, cat if self.uses_cat else None)
        return out.squeeze(-1) * self.y_std + self.y_mean if self.regression else out


class TableInputs:
    field = "rows"  # what a /v1/classify request lists
    uploads = False

    def __init__(self, folder: Path, meta: dict):
        from lmforge.data.tabular.preprocess import TabularPreprocessor
        from lmforge.data.tabular.read import declared_columns

        self.meta = meta
        self.uses_cat = meta["model"]["arch"] == "tab_transformer" and bool(meta.get("cat_cardinalities"))
        self.pre = TabularPreprocessor.load(Path(folder) / "preprocessor")
        self.columns = {c: r for c, r in declared_columns(self.pre.cfg.columns).items() if r != "target"}

    # -- the ONNX graph ----------------------------------------------------------------------------
    def graph(self, model: nn.Module) -> nn.Module:
        return RowsToOutputs(model, self.meta, self.uses_cat).eval()

    def signature(self) -> dict[str, str]:
        out = {"x": f"float32 [batch, {self.meta['n_features']}]"}
        if self.uses_cat:
            out["cat"] = f"int64 [batch, {len(self.meta['cat_cardinalities'])}]"
        return out

    def output(self) -> str:
        return "prediction" if is_regression(self.meta) else "logits"

    def feeds(self, batch: ArraySet) -> dict[str, np.ndarray]:
        out = {"x": np.ascontiguousarray(batch.inputs["x"], dtype=np.float32)}
        if self.uses_cat:
            out["cat"] = np.ascontiguousarray(batch.inputs["cat"], dtype=np.int64)
        return out

    def synthetic(self, rng: np.random.Generator, n: int) -> ArraySet:
        cards = self.meta.get("cat_cardinalities") or []
        cat = (np.stack([rng.integers(0, k, n) for k in cards], 1) if cards else np.zeros((n, 0))).astype(np.int64)
        return ArraySet({"x": rng.standard_normal((n, self.meta["n_features"])).astype(np.float32), "cat": cat}, None)

    def pipeline_tag(self) -> str:
        return "tabular-regression" if is_regression(self.meta) else "tabular-classification"

    def card_lines(self) -> list[str]:
        return ["Feed rows through `preprocessor/` (lmforge's fitted TabularPreprocessor: the imputation, scaling and "
                "encoding of training); `lmforge serve` on this folder takes raw rows by column name."]

    # -- requests ----------------------------------------------------------------------------------
    def info(self) -> dict:
        return {"columns": self.columns}

    def item(self, raw: dict) -> dict:
        for key in raw:
            if key not in self.columns:
                raise InputError(f"{key!r} is not a column of this model; it reads {', '.join(self.columns)}", key)
        return raw

    def batch(self, rows: list[dict]) -> tuple[ArraySet, list[list[dict]]]:
        """Raw rows → the preprocessor's arrays, with each row's cell problems."""
        import pandas as pd

        from lmforge.data.tabular.read import is_missing, typed_frame
        from lmforge.tasks.tabular import cell_problems

        frame, _ = typed_frame(rows, self.columns)  # every row typed at once, as a file's rows are
        parsed = [c for c, role in self.columns.items() if role in ("numeric", "dates")]
        notes = []
        for i, row in enumerate(rows):  # a given cell that came out missing did not parse
            not_parsed = {c: {"count": 1} for c in parsed if not is_missing(row.get(c)) and pd.isna(frame[c].iat[i])}
            problems = cell_problems(not_parsed, frame.iloc[[i]], self.pre)
            notes.append([{"column": col, "problem": what} for col, counts in sorted(problems.items()) for what in counts])
        arrays = self.pre.transform(frame, lines=list(range(len(rows))))
        return ArraySet({"x": arrays.x.astype(np.float32), "cat": arrays.cat.astype(np.int64)}, None), notes

    @staticmethod
    def smoke_payload(data_dir: Path) -> Optional[dict]:
        """A row with every cell missing: imputed, and the answer says so."""
        return {"rows": [{}]}
