"""Image and table fine-tuning (``finetune.task: image | tabular``) as the one loop sees it.

Setup: prepared splits (arrays) → the model for ``model.arch`` (or an earlier image/table model
to start from) → optimizer (AdamW or SGD, L1/L2 penalties); batches are shuffled per epoch and
augmented on the fly (images), seeded by (seed, step); the best model is saved with what it needs
to be used alone (labels, normalization, the table preprocessor) and evaluated at the end,
loaded back from disk as a user would.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lmforge.errors import DataError, TrainingError
from lmforge.evaluation.array_report import write_array_report
from lmforge.evaluation.report import summary_table
from lmforge.layout import RunPaths
from lmforge.models.arrays import load_array_model, save_array_model
from lmforge.models.config import ModelConfig
from lmforge.tasks import get_task
from lmforge.tasks.arrays import ArraySet, check_finite, is_regression, loss_of, predict_set, prepared_manifest, score
from lmforge.training.finetune_config import FinetuneConfig
from lmforge.training.finetune_setup import FinetuneSetup, say as _say
from lmforge.training.optim import build_optimizer, param_groups, penalty

SPLITS = ("train", "val", "test")


def check_config(ft: FinetuneConfig, model_cfg: ModelConfig, task) -> None:
    """The model must be one this kind trains (text-only finetune keys are refused by the config schema)."""
    if model_cfg.arch not in task.archs:
        raise TrainingError(f"model.arch: {model_cfg.arch} does not fit finetune.task: {ft.task}; "
                            f"use one of {', '.join(task.archs)}")


def load_sets(task, data_dir: Path, max_train: Optional[int], seed: int) -> dict[str, ArraySet]:
    """The prepared splits (val/test may be empty), the train split cut to a seeded subset."""
    prepared_manifest(data_dir, task.name)  # the prepared folder holds this kind of data
    sets: dict[str, ArraySet] = {}
    for split in SPLITS:
        try:
            sets[split] = task.load(data_dir, split)
        except FileNotFoundError:
            if split == "train":
                raise DataError(f"{data_dir}: no prepared train split; run lmforge data prepare first") from None
            sets[split] = ArraySet({}, None)
    if max_train and max_train < len(sets["train"]):
        keep = np.sort(np.random.default_rng([seed, 7]).permutation(len(sets["train"]))[:max_train])
        sets["train"] = sets["train"].take(keep)
    if len(sets["train"]) == 0:
        raise DataError(f"{data_dir}: the train split is empty")
    return sets


def selection_metric(requested: str, task, meta: dict) -> str:
    regression = is_regression(meta)
    metric = ("rmse" if regression else task.default_metric) if requested == "auto" else requested
    if regression != (metric in ("rmse", "mae", "r2", "loss")):
        raise TrainingError(f"finetune.loop.metric: {metric} does not fit a {meta['task']} target; "
                            f"use {'rmse, mae, r2 or loss' if regression else 'accuracy, f1_macro, roc_auc or loss'}")
    return metric


def array_setup(ft: FinetuneConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int, device: torch.device, name: str,
                loss_factory=None, unlabeled=None, d=None) -> FinetuneSetup:
    """The image/table side of the loop (see the module docstring)."""
    if loss_factory is not None or unlabeled:
        raise TrainingError(f"distillation fine-tunes text models; finetune.task is {ft.task}")
    O, L = ft.optim, ft.loop
    out, data_dir = paths.finetune, paths.finetune_data
    task = get_task(ft.task)
    check_config(ft, model_cfg, task)
    sets = load_sets(task, data_dir, ft.data.max_train_examples, seed)
    train = sets["train"]
    meta = task.meta(data_dir, train)
    check_finite(sets, list(meta.get("feature_names") or []), data_dir)
    metric = selection_metric(L.metric, task, meta)
    model = task.build_model(model_cfg, meta)
    start = "random initialization"
    if ft.init != "random":
        model, start = warm_start(model, ft.init, meta)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    groups, decayed = param_groups(model, O.lr, O.weight_decay if O.optimizer == "adamw" else 0.0,
                                   head_lr=O.head_lr, head_prefixes=("head",))
    optimizer = build_optimizer(groups, O.optimizer, O.lr, tuple(O.betas), momentum=O.momentum)
    steps_per_epoch = max(1, -(-len(train) // (L.batch_size * L.grad_accum)))
    total = L.max_steps or max(1, math.ceil(L.epochs * steps_per_epoch))
    augmenting = bool(meta.get("augment", {}).get("enabled"))
    order: dict[int, np.ndarray] = {}

    def micro_batch(g: int) -> np.ndarray:  # g-th micro-batch of the run: a function of (seed, epoch)
        epoch, pos = divmod(g, steps_per_epoch * L.grad_accum)
        if epoch not in order:
            order.clear()
            order[epoch] = np.random.default_rng([seed, epoch]).permutation(len(train))
        return np.sort(order[epoch][pos * L.batch_size:(pos + 1) * L.batch_size])

    def train_loss(idx: np.ndarray, step: int, micro: int):
        if len(idx) < 2:  # an epoch's last batch of one row: batch norm cannot train on it
            return None
        batch = train.take(idx)
        gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + step * 131 + micro) if augmenting else None
        out_ = task.forward(model, task.tensors(batch, meta, device, augment=gen))
        loss = loss_of(out_, torch.from_numpy(np.asarray(batch.y)).to(device), meta)
        return loss + penalty(decayed, O.l1, O.l2), loss

    def evaluate() -> dict:
        return score(predict_set(task, model, sets["val"], meta, L.eval_batch_size, device), sets["val"], meta)

    def save_best(step: int, extra: dict) -> None:
        save_array_model(model, out.best, model_cfg, {**meta, "step": step, **extra})
        copy_preprocessor(data_dir, out.best)

    describe = (f"{model_cfg.arch} from {start}: {n_params / 1e6:.3f}M params; "
                + (f"regression of {meta.get('target')}" if is_regression(meta) else f"{len(meta['labels'])} labels")
                + f"; train/val/test = {len(train)}/{len(sets['val'])}/{len(sets['test'])}; {total} steps of "
                f"{L.batch_size * L.grad_accum}, {steps_per_epoch} per epoch, on {device}"
                + ("; augmenting training batches" if augmenting else ""))
    return FinetuneSetup(
        model=model, optimizer=optimizer, trainable=params, total=total, steps_per_epoch=steps_per_epoch,
        micro_batch=micro_batch, train_loss=train_loss, evaluate=evaluate if len(sets["val"]) else None,
        headline_keys=("loss", "accuracy", "rmse", "r2"), metric=metric, save_best=save_best,
        final=lambda best_step, _val: {"results": final_evaluation(out, name, task, sets, meta, L.eval_batch_size,
                                                                   device)},
        describe=describe, checkpoint_extra={"labels": meta.get("labels"), "task": ft.task},
        summary={"train_examples": len(train), "labels": meta.get("labels"), "task": meta["task"],
                 "arch": model_cfg.arch, "start": start, "params": n_params})


def final_evaluation(out, name: str, task, sets: dict[str, ArraySet], meta: dict, batch_size: int, device) -> dict:
    """The saved best model, loaded as a user would, on val and test; reports written."""
    best_model, _ = load_array_model(out.best)
    best_model.to(device)
    results = {}
    for split in ("val", "test"):
        if len(sets[split]) == 0:
            continue
        preds = predict_set(task, best_model, sets[split], meta, batch_size, device)
        m = score(preds, sets[split], meta)
        path = write_array_report(out.eval(split), m, meta, sets[split], preds, f"{name}: {split}",
                                  {"model": str(out.best), "split": split})
        keys = ("accuracy", "f1_macro", "roc_auc", "rmse", "mae", "r2", "loss", "examples")
        results[split] = {k: m[k] for k in keys if k in m}
        _say(f"best model on {split}:\n{summary_table(m)}report: {path}")
    return results


def warm_start(model: torch.nn.Module, init: str, meta: dict):
    """Weights of an earlier image/table model of the same architecture (its head too when the
    outputs match; otherwise the head stays new, as a pretrained body is used)."""
    from lmforge.models.arrays import is_array_model

    folder = Path(init)
    folder = folder / "best" if (folder / "best").is_dir() else folder
    if not is_array_model(folder):
        raise TrainingError(f"finetune.init: {init} is not an image/table model folder (a finetune output or its "
                            "best/); images and tables start from 'random' or such a folder")
    other, _ = load_array_model(folder)
    own = model.state_dict()
    state = {k: v for k, v in other.state_dict().items() if k in own and own[k].shape == v.shape}
    if not state:
        raise TrainingError(f"finetune.init: {folder} has no weights of this model's shapes (another model.arch?)")
    model.load_state_dict(state, strict=False)
    return model, f"{folder} ({len(state)}/{len(own)} tensors)"


def copy_preprocessor(data_dir: Path, best: Path) -> None:
    """Tables: the fitted preprocessor travels with the model (predict on raw CSV rows)."""
    src = Path(data_dir) / "tabular" / "preprocessor"
    if src.is_dir():
        dst = best / "preprocessor"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
