"""Image and table models behind the server: request items in, predictions out, in one batched call.

Backends: ``torch`` (a finetune folder of an image/table model, or its ``best/``) and ``onnx`` (an
``lmforge export`` folder of one). What a request item is and how it becomes the model's input is
the kind's ``inputs`` entry (:mod:`lmforge.inference.image_inputs`: decoded and resized images;
:mod:`lmforge.inference.table_inputs`: rows typed and run through the saved preprocessor, every bad
cell a warning on its row) — the same code ``lmforge predict`` and ``lmforge export`` use.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lmforge.errors import ArtifactError
from lmforge.export.onnx_arrays import array_model_folder
from lmforge.inference.ort import session as ort_session
from lmforge.kinds import array_kinds, model_inputs, task
from lmforge.layout import TASK_META_FILE
from lmforge.models.arrays import CONFIG_FILE, load_array_model, read_array_config
from lmforge.serving.config import ServeConfig
from lmforge.tasks.arrays import ArraySet, format_predictions, is_regression, outputs_to_predictions


def array_source(cfg: ServeConfig) -> Optional[Path]:
    """The image/table model folder ``cfg`` serves, or None when it is not one."""
    folder = Path(cfg.model)
    if cfg.backend == "onnx":
        meta = folder / TASK_META_FILE
        kind = json.loads(meta.read_text()).get("kind") if meta.is_file() else None
        return folder if kind in array_kinds() else None  # a text export's "kind" is no data kind
    return array_model_folder(folder)


class ArrayRunner:
    """``predict(items) -> list[dict]``; items as :attr:`inputs` ``.item()`` makes them."""

    def __init__(self, cfg: ServeConfig, folder: Path):
        # default: one core left to the event loop, which decodes and answers every request (measured on
        # 2 cores, Fashion-MNIST CNN, 16 concurrent: 788 requests/s with 1 model thread, 514 with 2)
        threads = cfg.threads or max(1, (os.cpu_count() or 1) - 1)
        torch.set_num_threads(threads)
        cfg = replace(cfg, threads=threads)
        self.backend, self.folder = cfg.backend, folder
        if cfg.backend == "onnx":
            graph = folder / cfg.onnx_file
            if not graph.is_file() or not (folder / CONFIG_FILE).is_file():
                raise ArtifactError(f"{folder}: no {cfg.onnx_file} or {CONFIG_FILE}; run `lmforge export` again")
            self.meta = read_array_config(folder)
            self.inputs = model_inputs(self.meta["lmforge_kind"], folder, self.meta)
            s = ort_session(graph, cfg.threads)
            self._outputs = lambda batch: s.run(None, self.inputs.feeds(batch))[0]
            self._in_target_units = True  # a regression graph already gives the target's units
        else:
            model, self.meta = load_array_model(folder)
            self.inputs = model_inputs(self.meta["lmforge_kind"], folder, self.meta)
            t = task(self.meta["lmforge_kind"])

            def outputs(batch: ArraySet) -> np.ndarray:
                with torch.no_grad():
                    return t.forward(model, t.tensors(batch, self.meta, torch.device("cpu"))).float().numpy()

            self._outputs = outputs
            self._in_target_units = False
        self.kind = self.meta["lmforge_kind"]

    def info(self) -> dict:
        return {"kind": self.kind, "task": self.meta.get("task", "classification"),
                "labels": self.meta.get("labels") or [], "backend": self.backend, "model": str(self.folder),
                "arch": self.meta["model"]["arch"], **self.inputs.info()}

    def predict(self, items: list) -> list[dict]:
        batch, warnings = self.inputs.batch(items)
        out = self._outputs(batch)
        if is_regression(self.meta) and self._in_target_units:
            preds = out.reshape(-1)
        else:
            preds = outputs_to_predictions(torch.from_numpy(out), self.meta)
        results = []
        for rec, notes in zip(format_predictions(preds, batch, self.meta), warnings):
            rec = {k: v for k, v in rec.items() if k not in ("row", "id")}
            results.append({**rec, **({"warnings": notes} if notes else {})})
        return results
