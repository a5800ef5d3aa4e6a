"""Perplexity of a pretrained decoder on every window of a packed split."""

from __future__ import annotations

from pathlib import Path

import torch

from lmforge.data.shards import PackedDataset
from lmforge.errors import DataError, ModelError
from lmforge.evaluation.metrics import perplexity_metrics
from lmforge.evaluation.report import write_report
from lmforge.inference.predictor import default_device
from lmforge.layout import kind_of, tokens_dir
from lmforge.models.load import load_checkpoint_model


@torch.no_grad()
def evaluate_lm(model_path: str, data_dir: str, split: str, batch_size: int, out: str | None) -> tuple[dict, Path]:
    """Mean next-token loss and perplexity over all windows of ``split``; writes the report."""
    model, state = load_checkpoint_model(model_path)
    if not model.causal:
        raise ModelError(f"{model_path}: perplexity is defined for decoders; for an MLM encoder see the pretrain "
                         "log's val_loss / val_masked_acc")
    ds = PackedDataset(tokens_dir(data_dir) if kind_of(data_dir) == "prepared_data" else data_dir, split)
    if len(ds) == 0:
        raise DataError(f"{data_dir}: split {split!r} has no windows")
    device = default_device()
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
