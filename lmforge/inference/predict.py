"""``lmforge predict``: labels with probabilities (classifiers) or tagged entities (taggers) for
every record of a file, as JSONL — one output line per input record, with its source line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

from lmforge.errors import DataError
from lmforge.inference.config import PredictConfig
from lmforge.inference.predictor import default_device, predict_probs
from lmforge.models.load import load_task_model
from lmforge.tasks import get_task


def predict_records(cfg: PredictConfig, progress: bool = True) -> Iterator[dict]:
    """One prediction record per input record of ``cfg.file``, in input order."""
    from lmforge.layout import kind_of

    folder = Path(cfg.model) / "best" if kind_of(cfg.model) == "finetune" else Path(cfg.model)
    if kind_of(folder) == "array_model":  # an image or table model
        from lmforge.evaluation.evaluate_arrays import predict_array_records

        yield from predict_array_records(folder, cfg.file, cfg.batch_size, cfg.strict)
        return
    tm = load_task_model(cfg.model)
    task = get_task(tm.model.task)
    if cfg.id_field and not task.whole_text:
        raise DataError("--id-field is for classifiers' JSONL/CSV/TSV inputs; taggers' outputs carry the line")
    examples = (task.read(cfg.file, cfg.text_field, "label", need_label=False, id_field=cfg.id_field)
                if cfg.id_field else task.read(cfg.file, cfg.text_field, "label", need_label=False))
    if not examples:
        raise DataError(f"{cfg.file}: no records to predict")
    max_length = cfg.max_length or tm.meta.get("max_length") or tm.model.cfg.max_seq_len
    enc = task.encode(tm.tokenizer, examples, None, tm.specials, tm.model.causal, max_length)
    device = default_device()
    tm.model.to(device)
    probs = predict_probs(tm.model, enc, cfg.batch_size, tm.specials.pad, device, progress)
    for ex, rec in zip(examples, task.format(examples, enc, probs, tm.labels)):
        if ex.id is not None:
            rec = {"id": ex.id, **rec}
        if cfg.with_text:
            rec["text"] = ex.text
        yield rec


def predict(cfg: PredictConfig, progress: bool = True) -> int:
    """Write the predictions (``cfg.out`` or stdout); returns how many were written."""
    out = open(cfg.out, "w", encoding="utf-8") if cfg.out else sys.stdout
    n = 0
    try:
        for rec in predict_records(cfg, progress):
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    finally:
        if cfg.out:
            out.close()
    if cfg.out:
        print(f"{n} predictions → {Path(cfg.out)}", file=sys.stderr)
    return n
