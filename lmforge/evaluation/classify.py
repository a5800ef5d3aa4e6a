"""Metrics of a task model on encoded examples: the one evaluation path that fine-tuning
validation, the final evaluation and ``lmforge evaluate`` share."""

from __future__ import annotations

from lmforge.data.labeled_files import Example
from lmforge.errors import DataError
from lmforge.inference.predictor import predict_probs
from lmforge.tasks import Task
from lmforge.tasks.encoding import Encoded


def evaluate_task(model, task: Task, enc: Encoded, examples: list[Example], labels: list[str], batch_size: int,
                  pad_id: int, device, progress: bool = False) -> dict:
    """Metrics of ``model`` on ``enc`` (gold labels from ``examples``), plus the truncation count."""
    if len(enc) == 0:
        raise DataError("cannot evaluate an empty set")
    probs = predict_probs(model, enc, batch_size, pad_id, device, progress, desc="evaluate")
    m = task.score(probs, enc, examples, labels)
    m["truncated"] = enc.truncated
    return m
