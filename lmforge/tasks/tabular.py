"""Classification or regression on a prepared table (``data.kind: tabular``).

Rows are already imputed, clipped, scaled and encoded by the preprocessor fit on the train split
(:mod:`lmforge.data.tabular.preprocess`); a saved model carries a copy of that preprocessor, so
``predict`` on a raw CSV applies exactly the same steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lmforge.tasks.arrays import ArraySet, prepared_manifest, target_stats


class TabularTask:
    name = "tabular"
    archs = ("linear", "mlp", "tab_transformer")
    default_metric = "accuracy"  # regression: rmse (see lmforge.recipes.finetune_arrays)
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
        from lmforge.models.tabular import build_tabular_model
        from lmforge.tasks.arrays import num_outputs

        return build_tabular_model(model_cfg, meta["n_features"], meta["n_numeric"], meta["cat_cardinalities"],
                                   num_outputs(meta))

    def tensors(self, batch: ArraySet, meta: dict, device: torch.device,
                augment: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
        return {"x": torch.from_numpy(np.asarray(batch.inputs["x"])).to(device),
                "cat": torch.from_numpy(np.asarray(batch.inputs["cat"])).to(device)}

    def forward(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(inputs["x"], inputs["cat"])
