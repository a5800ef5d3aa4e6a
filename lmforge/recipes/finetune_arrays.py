"""``lmforge finetune`` on images and tables (``finetune.task: image | tabular``).

The same command, config section and training library as text fine-tuning (optimizer groups,
warmup/decay schedule, L1/L2 penalties, exact-resume checkpoints, best-model selection, early
stopping, metrics log, curves), over array data instead of token ids. One linear recipe:
setup (prepared splits → model for ``model.arch`` → optimizer) → loop (shuffle per epoch, augment
training batches on the fly, step, log) → validate every ``loop.eval_every`` steps (default: each
epoch) → keep the best model → final evaluation of the saved best model on val and test.

Outputs under ``<run>/finetune/`` (or ``finetune.out_dir``)::

    best/                 config.json (kind, model, labels, normalization / preprocessor facts),
                          model.safetensors, lmforge_checksums.json, preprocessor/ (tables)
    checkpoints/step_N/   exact-resume state
    eval/<split>/         metrics.json, report.md, confusion_matrix.png, mistakes.png (images),
                          residuals.png (regression)
    metrics.jsonl, curves.png, summary.json, config.yaml
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from lmforge.config.schema import to_dict
from lmforge.errors import DataError, Interrupted, TrainingError
from lmforge.evaluation.array_report import write_array_report
from lmforge.evaluation.metrics import metric_value
from lmforge.evaluation.report import summary_table
from lmforge.layout import RunPaths, ensure_dir
from lmforge.models.arrays import load_array_model, save_array_model
from lmforge.models.config import ModelConfig
from lmforge.tasks import get_array_task
from lmforge.tasks.arrays import ArraySet, check_finite, is_regression, loss_of, predict_set, prepared_manifest, score
from lmforge.swap import recover
from lmforge.training import checkpoint as ckpt
from lmforge.training.early_stopping import Best
from lmforge.training.finetune_config import FinetuneConfig
from lmforge.training.interrupt import StopRequest
from lmforge.training.metric_logging import MetricsLog, eta, write_config
from lmforge.training.optim import apply_lr, build_optimizer, param_groups, penalty
from lmforge.training.plots import plot_curves
from lmforge.training.precision import Precision
from lmforge.training.schedules import WarmupDecay

SPLITS = ("train", "val", "test")
OnEval = Callable[[int, dict], bool]
RESUME_SAFE = ("finetune.loop.eval_every", "finetune.loop.eval_batch_size", "finetune.loop.save_every",
               "finetune.loop.keep_last", "finetune.loop.log_every", "finetune.loop.early_stopping_patience",
               "finetune.loop.threads", "finetune.out_dir")
UNUSED = {"data.train_file": "tables and images are read from the prepared folder (finetune.data.data_dir)",
          "peft.lora.r": "LoRA adapts Transformer projections of text models", "keep_layers": "text models only"}


def _say(msg: str) -> None:
    print(f"[finetune] {msg}", flush=True)


def check_config(ft: FinetuneConfig, model_cfg: ModelConfig, task) -> None:
    """Refuse what this recipe would silently ignore, naming the key."""
    if model_cfg.arch not in task.archs:
        raise TrainingError(f"model.arch: {model_cfg.arch} does not fit finetune.task: {ft.task}; "
                            f"use one of {', '.join(task.archs)}")
    used = {"data.train_file": ft.data.train_file, "peft.lora.r": ft.peft.lora.r, "keep_layers": ft.keep_layers}
    for key, value in used.items():
        if value:
            raise TrainingError(f"finetune.{key} is not used by finetune.task: {ft.task} ({UNUSED[key]}); remove it")


def finetune_arrays(ft: FinetuneConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int, *,
                    name: str = "finetune", resume: bool = False, overwrite: bool = False,
                    resume_changed: bool = False, progress: bool = True, on_eval: Optional[OnEval] = None) -> dict:
    """Train an image or table model; returns the summary (also written to ``summary.json``)."""
    with StopRequest() as stop:
        return _run(ft, model_cfg, paths, seed, name, stop, resume, overwrite, resume_changed, progress, on_eval)


def _run(ft: FinetuneConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int, name: str, stop: StopRequest,
         resume: bool, overwrite: bool, resume_changed: bool, progress: bool, on_eval: Optional[OnEval]) -> dict:
    O, L = ft.optim, ft.loop
    out, data_dir = paths.finetune, paths.finetune_data
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if L.threads:
        torch.set_num_threads(L.threads)
    torch.manual_seed(seed)
    task = get_array_task(ft.task)
    check_config(ft, model_cfg, task)

    # -- data, model, optimizer ----------------------------------------------------------------
    prepared_manifest(data_dir, task.name)  # the prepared folder holds this kind of data
    sets: dict[str, ArraySet] = {}
    for split in SPLITS:
        try:
            sets[split] = task.load(data_dir, split)
        except FileNotFoundError:
            if split == "train":
                raise DataError(f"{data_dir}: no prepared train split; run lmforge data prepare first") from None
            sets[split] = ArraySet({}, None)
    train = sets["train"]
    if ft.data.max_train_examples and ft.data.max_train_examples < len(train):
        keep = np.sort(np.random.default_rng([seed, 7]).permutation(len(train))[:ft.data.max_train_examples])
        train = sets["train"] = train.take(keep)
    if len(train) == 0:
        raise DataError(f"{data_dir}: the train split is empty")
    meta = task.meta(data_dir, train)
    check_finite(sets, list(meta.get("feature_names") or []), data_dir)
    regression = is_regression(meta)
    metric = ("rmse" if regression else task.default_metric) if L.metric == "auto" else L.metric
    if regression != (metric in ("rmse", "mae", "r2", "loss")):
        raise TrainingError(f"finetune.loop.metric: {metric} does not fit a {meta['task']} target; "
                            f"use {'rmse, mae, r2 or loss' if regression else 'accuracy, f1_macro, roc_auc or loss'}")
    model = task.build_model(model_cfg, meta)
    start = "random initialization"
    if ft.init != "random":
        model, start = _warm_start(model, ft.init, meta)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    groups, decayed = param_groups(model, O.lr, O.weight_decay if O.optimizer == "adamw" else 0.0,
                                   head_lr=O.head_lr, head_prefixes=("head",))
    optimizer = build_optimizer(groups, O.optimizer, O.lr, tuple(O.betas), momentum=O.momentum)
    steps_per_epoch = max(1, -(-len(train) // (L.batch_size * L.grad_accum)))
    total = L.max_steps or max(1, math.ceil(L.epochs * steps_per_epoch))
    schedule = WarmupDecay(math.ceil(O.warmup_ratio * total), total, O.schedule, 0.0, ramp="from_zero")
    has_val = len(sets["val"]) > 0
    eval_every = L.eval_every or steps_per_epoch
    save_every = L.save_every or (eval_every if has_val else total)
    augmenting = bool(meta.get("augment", {}).get("enabled"))
    _say(f"{model_cfg.arch} from {start}: {n_params / 1e6:.3f}M params; "
         + (f"regression of {meta.get('target')}" if regression else f"{len(meta['labels'])} labels")
         + f"; train/val/test = {len(train)}/{len(sets['val'])}/{len(sets['test'])}; {total} steps of "
         f"{L.batch_size * L.grad_accum}, {steps_per_epoch} per epoch, on {device}"
         + ("; augmenting training batches" if augmenting else ""))

    # -- resume, or refuse to mix with an earlier run's checkpoints -----------------------------
    config = {"finetune": to_dict(ft), "model": to_dict(model_cfg), "seed": seed}
    best = Best("max", L.early_stopping_patience)
    recover(out.best)  # a best/ a crash left mid-swap is put back before anything reads it
    start_step = ckpt.start_or_resume(out, model, optimizer, best, config, resume=resume, overwrite=overwrite,
                                      resume_changed=resume_changed, safe_keys=RESUME_SAFE, say=_say)
    ensure_dir(out.root, "finetune output")
    write_config(out.root, config)
    log = MetricsLog(out.metrics, out.tensorboard, start_step if resume else None)
    precision = Precision(device, L.precision)
    order: dict[int, np.ndarray] = {}

    def micro_batch(g: int) -> np.ndarray:  # g-th micro-batch of the run: a function of (seed, epoch)
        epoch, pos = divmod(g, steps_per_epoch * L.grad_accum)
        if epoch not in order:
            order.clear()
            order[epoch] = np.random.default_rng([seed, epoch]).permutation(len(train))
        return np.sort(order[epoch][pos * L.batch_size:(pos + 1) * L.batch_size])

    # -- the loop ------------------------------------------------------------------------------
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start_step, desc="finetune", disable=not sys.stderr.isatty())
    model.train()
    stop_reason, t0, t_log, seen, done = "max_steps", time.time(), time.time(), 0, start_step
    loss_hist: list[float] = []
    for step in range(start_step, total):
        torch.manual_seed((seed * 1_000_003 + 17) * 1_000_003 + step)  # dropout: a function of the step
        lr = apply_lr(optimizer, schedule, step)
        loss_sum = 0.0
        for a in range(L.grad_accum):
            idx = micro_batch(step * L.grad_accum + a)
            if len(idx) < 2:  # an epoch's last batch of one row: batch norm cannot train on it
                continue
            batch = train.take(idx)
            gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + step * 131 + a) if augmenting else None
            with precision.autocast():
                out_ = task.forward(model, task.tensors(batch, meta, device, augment=gen))
                loss = loss_of(out_, torch.from_numpy(np.asarray(batch.y)).to(device), meta)
            precision.backward((loss + penalty(decayed, O.l1, O.l2)) / L.grad_accum)
            loss_sum += loss.item()
            seen += len(idx)
        step_loss = loss_sum / L.grad_accum
        if not math.isfinite(step_loss):
            raise TrainingError(f"non-finite loss ({step_loss}) at step {step}: lower finetune.optim.lr (now {O.lr})")
        grad_norm = precision.step(optimizer, params, O.grad_clip)  # clip, step, zero the gradients
        done = step + 1
        loss_hist.append(step_loss)
        if done % L.log_every == 0 or done == total:
            dt = time.time() - t_log
            log.write({"kind": "train", "step": done, "loss": float(np.mean(loss_hist)), "lr": lr,
                       "grad_norm": float(grad_norm), "examples_per_s": seen / max(dt, 1e-9),
                       "epoch": done / steps_per_epoch})
            if bar is not None and not bar.disable:
                bar.set_postfix(loss=f"{np.mean(loss_hist):.4f}")
            else:
                left = (total - done) * dt / max(1, len(loss_hist))
                _say(f"step {done}/{total}: loss {np.mean(loss_hist):.4f}, lr {lr:.2e}, "
                     f"{seen / max(dt, 1e-9):,.0f} examples/s, ETA {eta(left)}")
            loss_hist, seen, t_log = [], 0, time.time()
        if bar is not None:
            bar.update(1)
        finished = False
        if has_val and (done % eval_every == 0 or done == total):
            m = score(predict_set(task, model, sets["val"], meta, L.eval_batch_size, device), sets["val"], meta)
            value = metric_value(m, metric)
            headline = {k: m[k] for k in dict.fromkeys((metric, "loss", "accuracy", "rmse", "r2")) if m.get(k) is not None}
            log.write({"kind": "eval", "step": done, **headline})
            _say(f"step {done}/{total}: val " + ", ".join(f"{k} {v:.4f}" for k, v in headline.items()))
            if best.update(value, done, headline):
                save_array_model(model, out.best, model_cfg, {**meta, "step": done, metric: m[metric]})
                _copy_preprocessor(data_dir, out.best)
            if best.should_stop:
                stop_reason, finished = f"early stopping: no better val {metric} in {best.bad_evals} evaluations", True
            elif on_eval is not None and on_eval(done, headline):
                stop_reason, finished = "stopped by on_eval", True
        if stop.requested:
            stop_reason, finished = f"interrupted ({stop.signal_name}) at step {done}", True
        if done % save_every == 0 or done == total or finished:
            ckpt.save(out.checkpoints, done, model, optimizer,
                      {"best": best.state_dict(), "labels": meta.get("labels"), "task": ft.task, "config": config})
            ckpt.prune(out.checkpoints, L.keep_last)
        if finished:
            break
    if bar is not None:
        bar.close()
    log.close()
    summary = {"stop_reason": stop_reason, "best_step": best.step, "selection_metric": metric,
               "best_val": best.metrics, "train_seconds": time.time() - t0, "steps": total, "steps_done": done,
               "train_examples": len(train), "labels": meta.get("labels"), "task": meta["task"],
               "arch": model_cfg.arch, "start": start, "params": n_params}
    if stop_reason.startswith("interrupted"):
        out.summary.write_text(json.dumps(summary, indent=2))
        raise Interrupted(f"interrupted at step {done}")
    if not has_val:
        save_array_model(model, out.best, model_cfg, {**meta, "step": total})
        _copy_preprocessor(data_dir, out.best)
        summary["best_step"] = total

    # -- the result: the saved best model, loaded as a user would, on val and test -------------
    best_model, _ = load_array_model(out.best)
    best_model.to(device)
    summary["results"] = {}
    for split in ("val", "test"):
        if len(sets[split]) == 0:
            continue
        preds = predict_set(task, best_model, sets[split], meta, L.eval_batch_size, device)
        m = score(preds, sets[split], meta)
        path = write_array_report(out.eval(split), m, meta, sets[split], preds, f"{name}: {split}",
                                  {"model": str(out.best), "split": split})
        keys = ("accuracy", "f1_macro", "roc_auc", "rmse", "mae", "r2", "loss", "examples")
        summary["results"][split] = {k: m[k] for k in keys if k in m}
        _say(f"best model on {split}:\n{summary_table(m)}report: {path}")
    out.summary.write_text(json.dumps(summary, indent=2))
    plot_curves(out.metrics, out.curves, "Training loss", "loss", metric)
    return summary


def _warm_start(model: torch.nn.Module, init: str, meta: dict):
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


def _copy_preprocessor(data_dir: Path, best: Path) -> None:
    """Tables: the fitted preprocessor travels with the model (predict on raw CSV rows)."""
    src = Path(data_dir) / "tabular" / "preprocessor"
    if src.is_dir():
        dst = best / "preprocessor"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
