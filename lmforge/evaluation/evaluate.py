"""``lmforge evaluate``: metrics and a report for any fine-tuned model on any split or file, or
perplexity for a pretrained language model.

* classifier / tagger (a finetune folder or any HF ``*For{Sequence,Token}Classification``
  folder): ``--file`` (JSONL/CSV/TSV, CoNLL for taggers) or ``--data-dir`` + ``--split``;
* language model (a pretrain folder or checkpoint): perplexity on a packed split of
  ``--data-dir`` (default: the data the checkpoint was trained on is not known, so it is required).

Writes ``metrics.json``, ``report.md`` and (classification) ``confusion_matrix.png``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from lmforge.errors import ArtifactError, DataError, UsageError
from lmforge.evaluation.report import summary_table, write_report


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def evaluate_classifier(model_dir: str, file: str | None, data_dir: str | None, split: str, text_field: str,
                        label_field: str, max_length: int | None, batch_size: int, out: str | None,
                        progress: bool = True) -> tuple[dict, Path]:
    from lmforge.data.labeled_files import read_prepared_split, read_records, read_token_file
    from lmforge.training.finetune import evaluate_split
    from lmforge.training.task_data import encode_sequences, encode_words
    from lmforge.training.task_model import load_task_model

    tm = load_task_model(model_dir)
    task = tm.model.task
    if file:
        examples = read_token_file(file) if task == "token" else read_records(file, text_field, label_field)
        name = Path(file).stem
    elif data_dir:
        examples = read_prepared_split(data_dir, split)
        name = split
    else:
        raise UsageError("give --file or --data-dir (with --split)")
    if not examples:
        raise DataError(f"the evaluation set is empty ({file or f'{data_dir} split {split}'})")
    max_length = max_length or tm.meta.get("max_length") or tm.model.cfg.max_seq_len
    label_ids = {n: i for i, n in enumerate(tm.labels)}
    fn = encode_words if task == "token" else encode_sequences
    enc = fn(tm.tokenizer, examples, label_ids, tm.specials, tm.model.causal, max_length)
    device = _device()
    tm.model.to(device)
    m = evaluate_split(tm.model, enc, examples, tm.labels, task, batch_size, tm.specials.pad, device, progress)
    out_dir = Path(out) if out else tm.folder / "eval" / name
    report = write_report(out_dir, m, tm.labels, f"{tm.folder.name} on {name}",
                          {"model": str(tm.folder), "data": file or f"{data_dir} ({split})", "max_length": max_length})
    return m, report


@torch.no_grad()
def evaluate_lm(model_path: str, data_dir: str, split: str, batch_size: int, out: str | None) -> tuple[dict, Path]:
    """Mean next-token (decoder) loss and perplexity over all windows of a packed split."""
    from lmforge.data.shards import PackedDataset
    from lmforge.evaluation.metrics import perplexity_metrics
    from lmforge.training.generate import load_checkpoint_model

    model, state = load_checkpoint_model(model_path)
    if not model.causal:
        raise DataError(f"{model_path}: perplexity is defined for decoders; for an MLM encoder see the pretrain "
                         "log's val_loss / val_masked_acc")
    ds = PackedDataset(Path(data_dir) / "tokens" if (Path(data_dir) / "tokens").is_dir() else data_dir, split)
    if len(ds) == 0:
        raise DataError(f"{data_dir}: split {split!r} has no windows")
    device = _device()
    model.to(device)
    total, n_tok = 0.0, 0
    for b in range(0, len(ds), batch_size):
        ids = torch.stack([ds[i] for i in range(b, min(b + batch_size, len(ds)))]).to(device)
        _, loss = model(ids, ids)
        k = ids.numel() - ids.size(0)
        total += loss.item() * k
        n_tok += k
    m = perplexity_metrics([total / n_tok], n_tok)
    out_dir = Path(out) if out else Path(state["path"]) / "eval" / split
    report = write_report(out_dir, m, None, f"perplexity on {split}", {"model": str(state["path"]), "data": str(data_dir)})
    return m, report


def _is_lm(path: Path) -> bool:
    return (path / "state.json").is_file() or (path / "checkpoints").is_dir() and not (path / "best").is_dir()


def evaluate_cli(args: argparse.Namespace) -> int:
    path = Path(args.model)
    if not path.exists():
        raise ArtifactError(f"no model at {path}")
    if _is_lm(path):
        if not args.data_dir:
            raise UsageError("perplexity needs --data-dir (a prepared folder with packed tokens) and --split")
        m, report = evaluate_lm(str(path), args.data_dir, args.split, min(args.batch_size, 32), args.out)
    else:
        m, report = evaluate_classifier(str(path), args.file, args.data_dir, args.split, args.text_field,
                                        args.label_field, args.max_length, args.batch_size, args.out,
                                        not args.no_progress)
    print(summary_table(m), end="")
    print(f"report: {report}")
    if not math.isfinite(m.get("loss", 0.0)):
        return 1
    return 0
