"""``lmforge evaluate``: metrics and a report for any fine-tuned model on any split or file, or
perplexity for a pretrained language model.

* classifier / tagger (a finetune folder or any HF ``*For{Sequence,Token}Classification``
  folder): ``file`` (JSONL/CSV/TSV, CoNLL for taggers) or ``data_dir`` + ``split``;
* language model (a pretrain folder or checkpoint): perplexity on a packed split of ``data_dir``
  (required: a checkpoint does not record which data it was trained on).

Writes ``metrics.json``, ``report.md`` and (classification) ``confusion_matrix.png``.
"""

from __future__ import annotations

from pathlib import Path

from lmforge.errors import ArtifactError, DataError, UsageError
from lmforge.evaluation.classify import evaluate_task
from lmforge.evaluation.config import EvaluateConfig
from lmforge.evaluation.perplexity import evaluate_lm
from lmforge.evaluation.report import write_report
from lmforge.inference.predictor import default_device
from lmforge.layout import default_eval_dir, kind_of
from lmforge.models.load import load_task_model
from lmforge.tasks import get_task


def evaluate_classifier(cfg: EvaluateConfig, progress: bool = True) -> tuple[dict, Path]:
    """Metrics and report of a task model on ``cfg.file`` or a split of ``cfg.data_dir``."""

    tm = load_task_model(cfg.model)
    task = get_task(tm.model.task)
    if cfg.file:
        examples = task.read(cfg.file, cfg.text_field, cfg.label_field)
        name = Path(cfg.file).stem
    elif cfg.data_dir:
        examples = task.read_prepared(Path(cfg.data_dir), cfg.split)
        name = cfg.split
    else:
        raise UsageError("give --file or --data-dir (with --split)")
    if not examples:
        raise DataError(f"the evaluation set is empty ({cfg.file or f'{cfg.data_dir} split {cfg.split}'})")
    max_length = cfg.max_length or tm.meta.get("max_length") or tm.model.cfg.max_seq_len
    label_ids = {n: i for i, n in enumerate(tm.labels)}
    enc = task.encode(tm.tokenizer, examples, label_ids, tm.specials, tm.model.causal, max_length)
    device = default_device()
    tm.model.to(device)
    m = evaluate_task(tm.model, task, enc, examples, tm.labels, cfg.batch_size, tm.specials.pad, device, progress)
    out_dir = Path(cfg.out) if cfg.out else default_eval_dir(tm.folder, name)
    report = write_report(out_dir, m, tm.labels, f"{tm.folder.name} on {name}",
                          {"model": str(tm.folder), "data": cfg.file or f"{cfg.data_dir} ({cfg.split})",
                           "max_length": max_length})
    return m, report


def evaluate(cfg: EvaluateConfig, progress: bool = True) -> tuple[dict, Path]:
    """Dispatch on what ``cfg.model`` is (see :func:`lmforge.layout.kind_of`)."""
    path = Path(cfg.model)
    if not path.exists():
        raise ArtifactError(f"no model at {path}")
    folder = path / "best" if kind_of(path) == "finetune" else path
    if kind_of(folder) == "array_model":  # an image or table model
        from lmforge.evaluation.evaluate_arrays import evaluate_array_model

        return evaluate_array_model(folder, cfg.file, cfg.data_dir, cfg.split, cfg.batch_size, cfg.out)
    if kind_of(path) in ("checkpoint", "pretrain"):
        if not cfg.data_dir:
            raise UsageError("perplexity needs --data-dir (a prepared folder with packed tokens) and --split")
        return evaluate_lm(str(path), cfg.data_dir, cfg.split, min(cfg.batch_size, 32), cfg.out)
    return evaluate_classifier(cfg, progress)
