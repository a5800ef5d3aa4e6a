"""Tasks on array data (images, tables): what the array recipe, ``evaluate`` and ``predict`` need.

Text tasks turn examples into token ids; array tasks read a prepared split as arrays
(:class:`ArraySet`), turn a batch of rows into model inputs, and score outputs. Two of them
implement the protocol below: :mod:`lmforge.tasks.image` and :mod:`lmforge.tasks.tabular`.
The fine-tune loop and its setup (:mod:`lmforge.training.array_setup`) never branch on which one they hold.

Model outputs are (B, K) logits for classification and (B, 1) standardized values for
regression; :func:`outputs_to_predictions` turns them into probabilities or target values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.errors import DataError
from lmforge.evaluation.metrics import classification_curves, classification_metrics, regression_metrics


@dataclass
class ArraySet:
    """One split as arrays. ``inputs`` by name (images: ``x`` uint8 (N, C, H, W); tables: ``x``
    float32 (N, F) and ``cat`` int64 (N, G)); ``y`` class ids (N,) or target values (N,), or None
    for unlabeled data; ``ids`` the source id of each row."""

    inputs: dict[str, np.ndarray]
    y: Optional[np.ndarray]
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def take(self, idx: np.ndarray) -> "ArraySet":
        return ArraySet({k: v[idx] for k, v in self.inputs.items()}, None if self.y is None else self.y[idx],
                        [self.ids[i] for i in idx] if self.ids else [])


class ArrayTask(Protocol):
    name: str  # finetune.task and the ``lmforge_kind`` of a saved model
    archs: tuple[str, ...]  # model.arch values that fit this data
    default_metric: str
    metrics: frozenset[str]

    def load(self, data_dir: Path, split: str) -> ArraySet:
        """A split of a prepared folder (``data prepare`` with this data kind)."""

    def meta(self, data_dir: Path, train: ArraySet) -> dict:
        """What a saved model must carry to be used alone: labels, shapes, normalization, ..."""

    def build_model(self, model_cfg, meta: dict) -> torch.nn.Module: ...

    def tensors(self, batch: ArraySet, meta: dict, device: torch.device,
                augment: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
        """Model inputs of a batch (normalized; augmented when a generator is given)."""

    def forward(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def read_file(self, path: str, folder: Path, meta: dict, need_label: bool, strict: bool = False) -> ArraySet:
        """Rows of a raw file or folder (what a user has) in the saved model's form — images
        resized, tables through the preprocessor saved in ``folder``; unusable ones reported
        (``strict``: tables refuse cells that would be imputed or encoded as unknown)."""


def require_path(path: str) -> None:
    """A raw file or folder given to evaluate/predict must exist (said plainly, before any format guess)."""
    if not Path(path).exists():
        from lmforge.errors import ArtifactError

        raise ArtifactError(f"{path}: no such file or folder")


def is_regression(meta: dict) -> bool:
    return meta.get("task") == "regression"


def num_outputs(meta: dict) -> int:
    return 1 if is_regression(meta) else len(meta["labels"])


def target_stats(y: np.ndarray) -> dict:
    """Mean and std of a regression target (train split): the model learns standardized values."""
    y = np.asarray(y, dtype=np.float64)
    std = float(y.std())
    return {"y_mean": float(y.mean()), "y_std": std if std > 0 else 1.0}


def loss_of(out: torch.Tensor, y: torch.Tensor, meta: dict) -> torch.Tensor:
    """Cross-entropy on logits, or MSE on standardized targets."""
    if is_regression(meta):
        target = (y.float() - meta["y_mean"]) / meta["y_std"]
        return F.mse_loss(out.float().squeeze(-1), target)
    return F.cross_entropy(out.float(), y.long())


def outputs_to_predictions(out: torch.Tensor, meta: dict) -> np.ndarray:
    """Probabilities (N, K), or target values (N,) in the target's units."""
    if is_regression(meta):
        return out.float().squeeze(-1).cpu().numpy() * meta["y_std"] + meta["y_mean"]
    return torch.softmax(out.float(), -1).cpu().numpy()


@torch.no_grad()
def predict_set(task: ArrayTask, model: torch.nn.Module, data: ArraySet, meta: dict, batch_size: int,
                device: torch.device) -> np.ndarray:
    """Predictions for every row of ``data`` in eval mode (the model's mode is restored after)."""
    was_training = model.training
    model.eval()
    preds = []
    for lo in range(0, len(data), batch_size):
        batch = data.take(np.arange(lo, min(lo + batch_size, len(data))))
        preds.append(outputs_to_predictions(task.forward(model, task.tensors(batch, meta, device)), meta))
    model.train(was_training)
    return np.concatenate(preds) if preds else np.zeros((0,))


def score(preds: np.ndarray, data: ArraySet, meta: dict) -> dict:
    """Classification: accuracy, P/R/F1, ROC-AUC, confusion matrix, curves and the most confident
    mistakes (row positions, for image grids). Regression: RMSE, MAE, R²."""
    if data.y is None:
        raise DataError("no gold labels to score against")
    if is_regression(meta):
        return regression_metrics(np.asarray(data.y, dtype=np.float64), preds.astype(np.float64))
    labels = meta["labels"]
    y = np.asarray(data.y, dtype=np.int64)
    m = classification_metrics(y, preds, labels)
    m.update(classification_curves(y, preds, labels))
    wrong = np.flatnonzero(preds.argmax(1) != y)
    worst = wrong[np.argsort(-preds[wrong].max(1), kind="stable")][:32]
    m["confident_mistakes"] = [{"row": int(i), "id": data.ids[i] if data.ids else str(i), "gold": labels[y[i]],
                                "predicted": labels[int(preds[i].argmax())],
                                "confidence": round(float(preds[i].max()), 4)} for i in worst]
    return m


def format_predictions(preds: np.ndarray, data: ArraySet, meta: dict) -> Iterator[dict]:
    """One JSON-ready record per row: label + score + probabilities, or the predicted value."""
    for i in range(len(data)):
        rec = {"id": data.ids[i]} if data.ids else {"row": i}
        if is_regression(meta):
            rec["prediction"] = float(preds[i])
        else:
            k = int(preds[i].argmax())
            rec.update({"label": meta["labels"][k], "score": float(preds[i][k]),
                        "probs": {n: round(float(v), 6) for n, v in zip(meta["labels"], preds[i])}})
        yield rec


def prepared_manifest(data_dir: Path, kind: str) -> dict:
    """The manifest of a prepared folder, which must hold ``kind`` data (named error otherwise)."""
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise DataError(f"{data_dir} is not a prepared data folder (no manifest.json): run lmforge data prepare first")
    man = json.loads(path.read_text())
    if man.get("kind", "text") != kind:
        raise DataError(f"{data_dir} holds {man.get('kind', 'text')} data, but finetune.task is {kind}: "
                        f"prepare it with data.kind: {kind}, or set finetune.task to match")
    return man


def check_finite(sets: dict[str, ArraySet], names: list[str], data_dir) -> None:
    """Refuse, before the first step, float inputs with NaN/inf cells (tables prepared with
    ``missing.strategy: none``): the loss would be NaN at step 0. Names the split, columns and counts."""
    for split, s in sets.items():
        for key, x in s.inputs.items():
            if len(x) == 0 or not np.issubdtype(x.dtype, np.floating):
                continue
            bad = ~np.isfinite(x)
            if not bad.any():
                continue
            per_col = bad.reshape(len(x), -1).sum(axis=0)
            cols = [(names[j] if j < len(names) else f"column {j}", int(n)) for j, n in enumerate(per_col) if n]
            shown = ", ".join(f"{c} ({n})" for c, n in cols[:8]) + (f", {len(cols) - 8} more" if len(cols) > 8 else "")
            raise DataError(f"{data_dir}: the {split} split has {int(bad.sum())} missing (NaN/inf) input value(s) in "
                            f"{len(cols)} column(s): {shown}; a model cannot train on them — choose an imputer "
                            "(data.tabular.missing.strategy: median, knn, ...) and prepare the data again")

