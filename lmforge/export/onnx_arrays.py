"""An image or table model (a finetune folder of such a model, or its ``best/``) as a self-verified
ONNX folder, optionally with an int8 variant.

Graph signature — the model's own preprocessing is inside the graph or travels beside it, so a
server or a user reproduces it exactly:

* images: ``pixels`` uint8 [batch, C, H, W] → ``logits`` [batch, K]. The normalization fit on
  the train split is part of the graph: raw pixels go in. Images of another size are resized
  (bilinear) to (H, W) first — ``lmforge serve`` and ``predict`` do; ``lmforge_task.json`` says
  the size and channels.
* tables: ``x`` float32 [batch, F] — the output of the saved preprocessor (imputation, outlier
  clipping, scaling, one-hot columns), copied into ``preprocessor/`` — and, for ``tab_transformer``
  models with categorical columns, ``cat`` int64 [batch, G] (category codes, 0 = unknown, below each column's cardinality) →
  ``logits`` [batch, K], or ``prediction`` [batch] in the target's units for regression.

Verification, as for text (:mod:`lmforge.export.onnx`): onnxruntime against PyTorch on synthetic
batches (1, 3 and 8 rows) and, with ``--file`` (an image file, folder or glob; a CSV of rows), on
real inputs; the largest absolute output difference must be ≤ ``tolerance`` or nothing is written.
int8 (``--quantize int8``): onnxruntime's dynamic quantization, its difference reported; with a
labeled ``--file`` the accuracy (RMSE for regression) and batch-1 latency of PyTorch, onnxruntime
fp32 and int8 are measured into ``export.json`` and the model card.

Output folder: ``model.onnx``, ``model.int8.onnx``, ``lmforge_task.json`` (kind, task, labels,
inputs, image shape and normalization or the preprocessor), ``config.json`` (the saved model's
record), ``preprocessor/`` (tables), ``export.json``, ``README.md`` (model card), checksums.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from lmforge.errors import DataError
from lmforge.export.config import ExportConfig
from lmforge.export.onnx import check_tolerance, publish, quality_lines, quantize_int8, quiet, staging, worth_lines
from lmforge.inference.ort import session
from lmforge.layout import TASK_META_FILE
from lmforge.kinds import model_inputs
from lmforge.models.arrays import CONFIG_FILE, is_array_model, load_array_model
from lmforge.tasks.arrays import ArraySet, is_regression


def array_model_folder(path) -> Optional[Path]:
    """The saved image/table model ``path`` names (a finetune folder or its ``best/``), else None."""
    p = Path(path)
    for folder in (p, p / "best"):
        if folder.is_dir() and is_array_model(folder):
            return folder
    return None


def _synthetic(inputs, seed: int = 0) -> list[tuple[str, ArraySet]]:
    """Random inputs of 1, 3 and 8 rows in the ranges the graph takes."""
    rng = np.random.default_rng(seed)
    return [(f"synthetic {n} row(s)", inputs.synthetic(rng, n)) for n in (1, 3, 8)]


def _torch_run(graph: nn.Module, names: list[str]):
    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return graph(*[torch.from_numpy(feed[n]) for n in names]).numpy()
    return run


def _ort_run(path: Path, threads: Optional[int] = None):
    s = session(path, threads)
    return lambda feed: s.run(None, feed)[0]


def _diffs(run_a, run_b, batches: list[tuple[str, ArraySet]], inputs) -> list[dict]:
    rows = []
    for source, batch in batches:
        feed = inputs.feeds(batch)
        d = np.abs(run_a(feed) - run_b(feed))
        rows.append({"inputs": source, "rows": len(batch), "max_abs_diff": float(d.max()) if d.size else 0.0})
    return rows


def export_array_onnx(cfg: ExportConfig) -> dict:
    """Export, verify and (optionally) quantize an image/table model; returns the ``export.json`` record."""
    import onnx

    folder = array_model_folder(cfg.model)
    model, meta = load_array_model(folder)
    inputs = model_inputs(meta["lmforge_kind"], folder, meta)
    out = Path(cfg.out) if cfg.out else folder.parent / "export" / "onnx"
    tmp = staging(out)
    try:
        graph = inputs.graph(model.cpu().eval())
        names, output = list(inputs.signature()), inputs.output()
        example = tuple(torch.from_numpy(v) for v in inputs.feeds(_synthetic(inputs)[1][1]).values())
        batch_dim = torch.export.Dim("batch", min=1, max=1 << 16)
        t0 = time.time()
        with quiet():
            torch.onnx.export(graph, example, str(tmp / "model.onnx"), dynamo=True, verbose=False,
                              external_data=False, input_names=names, output_names=[output],
                              dynamic_shapes=tuple({0: batch_dim} for _ in names))
        onnx.checker.check_model(str(tmp / "model.onnx"))
        export_s = time.time() - t0
        labeled = _read_file(cfg, folder, meta)
        batches = _synthetic(inputs) + ([(f"{cfg.file} (first {min(64, len(labeled))})", labeled.take(
            np.arange(min(64, len(labeled)))))] if labeled is not None else [])
        reference = _torch_run(graph, names)
        rows = _diffs(_ort_run(tmp / "model.onnx"), reference, batches, inputs)
        worst = check_tolerance(tmp, rows, cfg.tolerance)
        record = {"format": "onnx", "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
                  "source": str(folder), "kind": meta["lmforge_kind"], "task": meta.get("task", "classification"),
                  "labels": meta.get("labels"), "inputs": inputs.signature(), "output": output,
                  "export_seconds": round(export_s, 2),
                  "verification": {"tolerance": cfg.tolerance, "max_abs_diff": worst, "checks": rows},
                  "files": {"model.onnx": os.path.getsize(tmp / "model.onnx")}}
        if cfg.quantize == "int8":
            method = quantize_int8(tmp / "model.onnx", tmp / "model.int8.onnx")
            q_rows = _diffs(_ort_run(tmp / "model.int8.onnx"), reference, batches, inputs)
            record["int8"] = {"method": method, "max_abs_diff": max(r["max_abs_diff"] for r in q_rows),
                              "checks": q_rows, "bytes": os.path.getsize(tmp / "model.int8.onnx")}
            record["files"]["model.int8.onnx"] = record["int8"]["bytes"]
        if labeled is not None and labeled.y is not None:
            record["quality"] = _quality(reference, tmp, labeled, meta, inputs, cfg)
        _write_task_files(folder, meta, record, tmp)
        return publish(tmp, out, record, model_card(folder, meta, inputs, record))
    except BaseException:  # a failed check, out of space, Ctrl-C: nothing half-written stays
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_file(cfg: ExportConfig, folder: Path, meta: dict) -> Optional[ArraySet]:
    """``--file`` read as predict reads it (labeled when it has labels), at most ``max_examples`` rows."""
    if not cfg.file:
        return None
    from lmforge.kinds import task

    t = task(meta["lmforge_kind"])
    try:
        data = t.read_file(cfg.file, folder, meta, need_label=True)
    except DataError:  # no labels (a flat folder, a CSV without the target): verify on the inputs only
        data = t.read_file(cfg.file, folder, meta, need_label=False)
    return data.take(np.arange(min(cfg.max_examples, len(data))))


def _scores(preds: np.ndarray, data: ArraySet, meta: dict) -> dict:
    if is_regression(meta):
        return {"rmse": float(np.sqrt(np.mean((preds - np.asarray(data.y, dtype=np.float64)) ** 2)))}
    return {"accuracy": float(np.mean(preds.argmax(1) == np.asarray(data.y)))}


def _quality(reference, folder: Path, data: ArraySet, meta: dict, inputs, cfg: ExportConfig) -> dict:
    """The metric and batch-1 latency of PyTorch fp32, onnxruntime fp32 and (if written) int8."""
    torch.set_num_threads(cfg.threads)
    sides = {"torch_fp32": reference, "onnx_fp32": _ort_run(folder / "model.onnx", cfg.threads)}
    if (folder / "model.int8.onnx").is_file():
        sides["onnx_int8"] = _ort_run(folder / "model.int8.onnx", cfg.threads)
    metric = "rmse" if is_regression(meta) else "accuracy"
    out = {"file": str(cfg.file), "examples": len(data), "metric": metric, "threads": cfg.threads}
    for name, run in sides.items():
        preds = np.concatenate([run(inputs.feeds(data.take(np.arange(lo, min(lo + 256, len(data))))))
                                for lo in range(0, len(data), 256)])
        if not is_regression(meta):
            preds = np.exp(preds - preds.max(1, keepdims=True))
        times = []
        for k in range(min(cfg.latency_examples, len(data)) + 3):
            feed = inputs.feeds(data.take(np.array([k % len(data)])))
            t = time.perf_counter()
            run(feed)
            if k >= 3:
                times.append(1000 * (time.perf_counter() - t))
        out[name] = {**_scores(preds, data, meta), "latency_ms_batch1": round(statistics.median(times), 3)}
    for name in sides:
        if name != "torch_fp32":
            out[name]["delta_points" if metric == "accuracy" else "delta"] = round(
                (100 if metric == "accuracy" else 1) * (out[name][metric] - out["torch_fp32"][metric]), 4)
    return out


def _write_task_files(folder: Path, meta: dict, record: dict, dst: Path) -> None:
    """``lmforge_task.json`` (what a server needs), the saved record, the table preprocessor."""
    task_meta = {"kind": meta["lmforge_kind"], "task": record["task"], "labels": meta.get("labels"),
                 "inputs": record["inputs"], "output": record["output"], "model": meta["model"]}
    for key in ("in_shape", "normalize", "feature_names", "target", "y_mean", "y_std"):
        if key in meta:
            task_meta[key] = meta[key]
    (dst / TASK_META_FILE).write_text(json.dumps(task_meta, indent=2))
    shutil.copy2(folder / CONFIG_FILE, dst / CONFIG_FILE)
    if (folder / "preprocessor").is_dir():
        shutil.copytree(folder / "preprocessor", dst / "preprocessor")


def model_card(folder: Path, meta: dict, inputs, record: dict) -> str:
    """A Hugging Face style model card from the export's records and the fine-tuning run's results."""
    kind, v = meta["lmforge_kind"], record["verification"]  # kind: named in the card only
    summary_file = folder.parent / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    results = summary.get("results") or {}
    tag = inputs.pipeline_tag()
    lines = ["---", "library_name: onnx", f"pipeline_tag: {tag}", "tags: [lmforge, onnx]", "---", "",
             f"# {folder.parent.parent.name if folder.name == 'best' else folder.name} (ONNX)", "",
             f"A {kind} model ({meta['model']['arch']}) exported by lmforge from `{folder}`.", "",
             "## Inputs and output", ""]
    lines += [f"- `{n}`: {t}" for n, t in record["inputs"].items()]
    lines += [f"- `{record['output']}`" + ("" if record["output"] == "prediction" else
                                           f": one logit per label ({', '.join(meta.get('labels') or [])})"), ""]
    lines += [*inputs.card_lines(), ""]
    lines += ["## Verification", "", f"onnxruntime vs PyTorch on {len(v['checks'])} input batches: max |Δ| = "
              f"{v['max_abs_diff']:.2e} (tolerance {v['tolerance']:.0e}).", ""]
    if "int8" in record:
        lines += [f"int8 (`model.int8.onnx`): max |Δ| = {record['int8']['max_abs_diff']:.3g}, "
                  f"{record['int8']['bytes'] / 1e6:.2f} MB vs {record['files']['model.onnx'] / 1e6:.2f} MB.", ""]
    if results:
        lines += ["## Evaluation (PyTorch weights, from the fine-tuning run)", "", "| split | metric | value |",
                  "| --- | --- | --- |"]
        lines += [f"| {split} | {k} | {m[k]:.4f} |" for split, m in results.items()
                  for k in ("accuracy", "f1_macro", "rmse", "r2") if isinstance(m.get(k), (int, float))]
        lines.append("")
    lines += worth_lines(summary, results) + quality_lines(record)
    lines += ["## Limitations", "", "Checked only on the data of the training run and the file above; int8 weights "
              "change the outputs slightly (figures above).", ""]
    return "\n".join(lines)
