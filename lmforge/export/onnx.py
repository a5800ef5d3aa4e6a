"""A fine-tuned task model as a self-verified ONNX folder, optionally with an int8 variant.

Exporter: ``torch.onnx.export(dynamo=True)`` — the default since torch 2.9 and the maintained
path. Our modules export with it unchanged (no data-dependent control flow in the forward pass),
with dynamic batch and sequence axes (sequence up to the model's ``max_seq_len``); the legacy
TorchScript exporter also works for them but is deprecated, so it is not used.

Verification, at export time: the graph is run with onnxruntime on real inputs — a sample of
``--file`` when given (padded batches of varied length) — and always on at least three synthetic
shapes with padding; the largest absolute logit difference against PyTorch must be ≤ ``tol``
(1e-4 in fp32) or the export fails and writes nothing. int8: onnxruntime's dynamic quantization
(per-channel int8 weights, no calibration data needed); its logit difference is reported, not
gated, and with ``--file`` the quality change (accuracy / entity F1), size and batch-1 latency
(PyTorch fp32, onnxruntime fp32, onnxruntime int8) are measured and written to ``export.json``.

Output folder::

    model.onnx            inputs input_ids, attention_mask (int64, [batch, seq]); output logits
    model.int8.onnx       with --quantize int8
    tokenizer files, config.json, lmforge_task.json  (labels, max_length: everything to serve it)
    export.json           what was checked and measured
    README.md             model card (task, labels, metrics, verification, intended use, limits)
    lmforge_checksums.json
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lmforge import faults
from lmforge.errors import LmforgeError
from lmforge.export.config import ExportConfig
from lmforge.inference.ort import session
from lmforge.models.load import TaskModel, load_task_model
from lmforge.models.weights import write_checksums
from lmforge.swap import swap_in
from lmforge.tasks import get_task
from lmforge.tasks.batching import collate
from lmforge.tokenizer.io import copy_files


class ExportError(LmforgeError, RuntimeError):
    """The exported graph does not reproduce the model (or cannot be written)."""


class _LogitsOnly(torch.nn.Module):
    """The ONNX graph's signature: (input_ids, attention_mask) → logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask)[0]


INT8_METHOD = "onnxruntime quantize_dynamic, per-channel int8 weights, dynamic int8 activations"


def staging(out: Path) -> Path:
    """An empty ``<out>.tmp`` folder: an export is written there and renamed into place only once
    it is verified and complete (:func:`publish`)."""
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def check_tolerance(tmp: Path, rows: list[dict], tolerance: float) -> float:
    """The largest ``max_abs_diff`` of the checks; above ``tolerance`` the staging folder is
    deleted and the export fails."""
    worst = max(r["max_abs_diff"] for r in rows)
    if worst > tolerance:
        shutil.rmtree(tmp)
        bad = max(rows, key=lambda r: r["max_abs_diff"])["inputs"]
        raise ExportError(f"the ONNX graph differs from the PyTorch model by {worst:.2e} (> {tolerance:.0e}) on "
                          f"{bad}; nothing was written")
    return worst


def publish(tmp: Path, out: Path, record: dict, card: str) -> dict:
    """Write ``export.json``, the model card and checksums, then put the folder in place."""
    faults.point("export.verified")  # the graph checked, nothing of the new export published yet
    (tmp / "export.json").write_text(json.dumps(record, indent=2))
    (tmp / "README.md").write_text(card)
    write_checksums(tmp)
    swap_in(tmp, out)
    record["out"] = str(out)
    return record


@contextmanager
def quiet():
    """Python warnings and WARNING-level log lines off (the exporter's notes on torchvision ops we
    do not use, the quantizer's advice to pre-process); errors still surface."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def quantize_int8(src: Path, dst: Path) -> str:
    """Dynamic int8 quantization of the graph ``src`` into ``dst``; returns how it was done."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    return INT8_METHOD


def _check_batches(tm: TaskModel, cfg: ExportConfig, seed: int = 0) -> tuple[list[dict], Optional[dict]]:
    """Input batches to compare on: synthetic shapes (always) and padded batches of real examples
    (with ``cfg.file``). Returns (batches, the encoded examples or None)."""
    g = torch.Generator().manual_seed(seed)
    T_max = tm.model.cfg.max_seq_len
    vocab = tm.model.cfg.vocab_size
    batches = []
    for b, t in ((1, 5), (3, min(17, T_max)), (4, T_max)):  # short, odd, the longest the model takes
        ids = torch.randint(0, vocab, (b, t), generator=g)
        mask = torch.ones_like(ids)
        if b > 1:
            mask[0, t // 2:] = 0  # right padding in one row
            ids[0, t // 2:] = tm.specials.pad
        batches.append({"ids": ids, "attention_mask": mask, "source": f"synthetic {b}x{t}"})
    if not cfg.file:
        return batches, None
    task = get_task(tm.model.task)
    examples = task.read(cfg.file, cfg.text_field, cfg.label_field)[:cfg.max_examples]
    if not examples:
        raise ExportError(f"{cfg.file}: no examples to verify the export on")
    max_length = tm.meta.get("max_length") or T_max
    label_ids = {n: i for i, n in enumerate(tm.labels)}
    enc = task.encode(tm.tokenizer, examples, label_ids, tm.specials, tm.model.causal, max_length)
    for start in range(0, len(enc), 16):
        idx = np.arange(start, min(start + 16, len(enc)))
        batch = collate(enc, idx, tm.specials.pad, with_labels=False)
        batch["source"] = f"{Path(cfg.file).name}[{start}:{idx[-1] + 1}]"
        batches.append(batch)
    return batches, {"examples": examples, "enc": enc}


def _max_diff(session, wrapped: torch.nn.Module, batches: list[dict]) -> tuple[float, list[dict]]:
    import sys

    from tqdm import tqdm

    worst, rows = 0.0, []
    with torch.no_grad():
        for b in tqdm(batches, desc="verify ONNX vs PyTorch", leave=False, disable=not sys.stderr.isatty()):
            ref = wrapped(b["ids"], b["attention_mask"]).numpy()
            got = session.run(None, {"input_ids": b["ids"].numpy(), "attention_mask": b["attention_mask"].numpy()})[0]
            mask = b["attention_mask"].numpy().astype(bool)
            d = np.abs(got - ref)
            if d.ndim == 3:  # token task: padded positions are never read
                d = d[mask]
            diff = float(d.max()) if d.size else 0.0
            worst = max(worst, diff)
            rows.append({"inputs": b["source"], "shape": list(b["ids"].shape), "max_abs_diff": diff})
    return worst, rows


def _probs_by(run, enc, pad: int) -> list[np.ndarray]:
    """Softmax probabilities per example from ``run(ids, mask) -> logits`` (batches of 16)."""
    out = []
    for start in range(0, len(enc), 16):
        idx = np.arange(start, min(start + 16, len(enc)))
        batch = collate(enc, idx, pad, with_labels=False)
        logits = run(batch["ids"].numpy(), batch["attention_mask"].numpy())
        e = np.exp(logits - logits.max(-1, keepdims=True))
        p = e / e.sum(-1, keepdims=True)
        for r, i in enumerate(idx):
            out.append(p[r] if p.ndim == 2 else p[r, :len(enc.ids[i])])
    return out


def _latency_ms(run, enc, n: int, threads: int) -> float:
    """Median batch-1 latency over the first ``n`` examples (after 3 warm-up calls)."""
    torch.set_num_threads(threads)
    times = []
    for k in range(min(n, len(enc)) + 3):
        i = k % len(enc)
        ids = np.asarray(enc.ids[i])[None]
        mask = np.ones_like(ids)
        t = time.perf_counter()
        run(ids, mask)
        if k >= 3:
            times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def export_onnx(cfg: ExportConfig) -> dict:
    """Export, verify and (optionally) quantize; returns the ``export.json`` record."""
    import onnx

    tm = load_task_model(cfg.model)
    out = Path(cfg.out) if cfg.out else tm.folder.parent / "export" / "onnx"
    tmp = staging(out)
    try:
        wrapped = _LogitsOnly(tm.model.cpu().eval())
        example = (torch.zeros(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
        batch_dim, seq_dim = torch.export.Dim("batch"), torch.export.Dim("seq", min=2, max=tm.model.cfg.max_seq_len)
        t0 = time.time()
        with quiet():
            torch.onnx.export(wrapped, example, str(tmp / "model.onnx"), dynamo=True, verbose=False,
                              external_data=False,
                              input_names=["input_ids", "attention_mask"], output_names=["logits"],
                              dynamic_shapes={"input_ids": {0: batch_dim, 1: seq_dim},
                                              "attention_mask": {0: batch_dim, 1: seq_dim}})
        onnx.checker.check_model(str(tmp / "model.onnx"))
        export_s = time.time() - t0
        batches, data = _check_batches(tm, cfg)
        fp32 = session(tmp / "model.onnx")
        _, rows = _max_diff(fp32, wrapped, batches)
        worst = check_tolerance(tmp, rows, cfg.tolerance)
        record = {"format": "onnx", "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
                  "source": str(tm.folder), "task": tm.model.task, "labels": tm.labels,
                  "inputs": {"input_ids": "int64 [batch, seq]", "attention_mask": "int64 [batch, seq]"},
                  "max_seq_len": tm.model.cfg.max_seq_len, "export_seconds": round(export_s, 2),
                  "verification": {"tolerance": cfg.tolerance, "max_abs_logit_diff": worst, "checks": rows},
                  "files": {"model.onnx": os.path.getsize(tmp / "model.onnx")}}
        if cfg.quantize == "int8":
            method = quantize_int8(tmp / "model.onnx", tmp / "model.int8.onnx")
            q_worst, q_rows = _max_diff(session(tmp / "model.int8.onnx"), wrapped, batches)
            record["int8"] = {"method": method,
                              "max_abs_logit_diff": q_worst, "checks": q_rows,
                              "bytes": os.path.getsize(tmp / "model.int8.onnx")}
            record["files"]["model.int8.onnx"] = record["int8"]["bytes"]
        if data is not None:
            record["quality"] = _quality(tm, data, tmp, cfg)
        _copy_model_files(tm, tmp)
        return publish(tmp, out, record, model_card(tm, record))
    except BaseException:  # out of space, a failed check, Ctrl-C: give the space back
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _quality(tm: TaskModel, data: dict, folder: Path, cfg: ExportConfig) -> dict:
    """Metric, size and batch-1 latency of PyTorch fp32, onnxruntime fp32 and (if present) int8."""
    task = get_task(tm.model.task)
    enc, examples = data["enc"], data["examples"]
    key = task.default_metric

    def torch_run(ids, mask):
        with torch.no_grad():
            return tm.model(torch.from_numpy(ids), torch.from_numpy(mask))[0].numpy()

    sides = {"torch_fp32": torch_run}
    for name, file in (("onnx_fp32", "model.onnx"), ("onnx_int8", "model.int8.onnx")):
        if (folder / file).is_file():
            s = session(folder / file, cfg.threads)
            sides[name] = lambda ids, mask, s=s: s.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    out = {"file": str(cfg.file), "examples": len(examples), "metric": key, "threads": cfg.threads}
    for name, run in sides.items():
        m = task.score(_probs_by(run, enc, tm.specials.pad), enc, examples, tm.labels)
        out[name] = {key: m[key], "latency_ms_batch1": round(_latency_ms(run, enc, cfg.latency_examples, cfg.threads), 3)}
    base = out["torch_fp32"]
    for name in sides:
        if name != "torch_fp32":
            out[name]["delta_points"] = round(100 * (out[name][key] - base[key]), 3)
            out[name]["speedup_vs_torch"] = round(base["latency_ms_batch1"] / out[name]["latency_ms_batch1"], 3)
    return out


def _copy_model_files(tm: TaskModel, dst: Path) -> None:
    copy_files(tm.folder, dst)
    for name in ("config.json", "lmforge_task.json"):
        if (tm.folder / name).is_file():
            shutil.copy2(tm.folder / name, dst / name)


def _training_summary(tm: TaskModel) -> dict:
    """The fine-tuning run's ``summary.json`` (beside ``best/``), if there is one."""
    summary = tm.folder.parent / "summary.json"
    try:
        return json.loads(summary.read_text()) if summary.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def worth_lines(summary: dict, results: dict) -> list[str]:
    """What the pretraining and the neural model bought: the random-init comparison and the
    classical baselines the fine-tuning run recorded."""
    from lmforge.evaluation.baselines import baseline_lines
    from lmforge.evaluation.comparison import comparison_lines

    lines = []
    if summary.get("comparison"):
        lines += comparison_lines(summary["comparison"]) + [""]
    for split in ("test", "val"):
        if summary.get("baselines") and split in results:
            lines += baseline_lines(summary["baselines"], split, results[split])
            break
    return lines


def quality_lines(record: dict) -> list[str]:
    """The model card's table of the export's measured quality and latency per side (if measured)."""
    if "quality" not in record:
        return []
    q = record["quality"]
    return [f"## Quality on `{q['file']}` ({q['examples']} examples)", "",
            f"| side | {q['metric']} | batch-1 latency (ms, {q['threads']} threads) |", "| --- | --- | --- |",
            *[f"| {k} | {q[k][q['metric']]:.4f} | {q[k]['latency_ms_batch1']:.3f} |"
              for k in ("torch_fp32", "onnx_fp32", "onnx_int8") if k in q], ""]


def model_card(tm: TaskModel, record: dict) -> str:
    """A Hugging Face style model card from the export's own records (and, when the model comes
    from a fine-tuning run, that run's evaluation as ``model-index`` results)."""
    meta = tm.meta
    v = record["verification"]
    pipeline_tag = get_task(tm.model.task).pipeline_tag
    name = tm.folder.parent.parent.name if tm.folder.parent.name == "finetune" else (tm.folder.parent.name
                                                                                   or tm.folder.name)
    summary = _training_summary(tm)
    results = summary.get("results") or {}
    keys = ("accuracy", "f1_macro", "roc_auc", "entity_f1", "entity_precision", "entity_recall")
    front = []
    if results:
        front = ["model-index:", f"- name: {json.dumps(name)}", "  results:"]
        for split, m in results.items():
            scored = [(k, m[k]) for k in keys if isinstance(m.get(k), (int, float))]
            if not scored:
                continue
            front += [f"  - task: {{type: {pipeline_tag}}}",
                      f"    dataset: {{name: {json.dumps(f'{split} split of the fine-tuning data')}, type: custom, "
                      f"split: {split}}}", "    metrics:"]
            front += [f"    - {{type: {k}, value: {round(float(val), 4)}, name: {json.dumps(f'{split} {k}')}}}"
                      for k, val in scored]
    lines = ["---", "library_name: onnx", f"pipeline_tag: {pipeline_tag}", "tags: [lmforge, onnx]", *front, "---",
             "", f"# {name} (ONNX)", "",
             f"A {tm.model.task} classifier exported by lmforge from `{tm.folder}`.", "",
             "## Model", "",
             f"- task: {tm.model.task}; labels: {', '.join(tm.labels)}",
             f"- body: {tm.model.cfg.arch}, {tm.model.cfg.n_layer} layers, d_model {tm.model.cfg.d_model}, "
             f"max {tm.model.cfg.max_seq_len} tokens (inputs are cut to {meta.get('max_length', tm.model.cfg.max_seq_len)})",
             f"- training step of the exported weights: {meta.get('step', 'unknown')}", "",
             "## Verification", "",
             f"onnxruntime vs PyTorch on {len(v['checks'])} input batches: max |Δ logit| = {v['max_abs_logit_diff']:.2e} "
             f"(tolerance {v['tolerance']:.0e}).", ""]
    if "int8" in record:
        lines += [f"int8 (`model.int8.onnx`): max |Δ logit| = {record['int8']['max_abs_logit_diff']:.3g}, "
                  f"{record['int8']['bytes'] / 1e6:.1f} MB vs {record['files']['model.onnx'] / 1e6:.1f} MB.", ""]
    if results:
        lines += ["## Evaluation (PyTorch weights, from the fine-tuning run)", "",
                  "| split | " + " | ".join(k for k in keys if any(k in m for m in results.values())) + " | examples |",
                  "| --- |" + " --- |" * (sum(any(k in m for m in results.values()) for k in keys) + 1)]
        for split, m in results.items():
            lines.append(f"| {split} | " + " | ".join(
                f"{m[k]:.4f}" if isinstance(m.get(k), (int, float)) else "n/a"
                for k in keys if any(k in mm for mm in results.values())) + f" | {m.get('examples', 'n/a')} |")
        lines.append("")
    lines += worth_lines(summary, results)
    lines += quality_lines(record)
    lines += ["## Use", "", "Tokenize with the tokenizer in this folder (it adds the specials the model was trained with), "
              "feed `input_ids` and `attention_mask` (int64), take the softmax of `logits`.", "",
              "## Limitations", "",
              "Trained and checked only on the data named in the training run; texts longer than the maximum length "
              "are truncated; int8 weights change the outputs slightly (figures above).", ""]
    return "\n".join(lines)
