"""``lmforge finetune``: adapt a pretrained (or random) model to a labeled task — text, images or tables.

One linear recipe and one loop for every kind of data. The kind's setup (:mod:`lmforge.kinds` picks
it: :mod:`lmforge.training.text_setup` or :mod:`lmforge.training.array_setup`) supplies the
model, optimizer, micro-batches, loss, validation pass and best-model writer; this file owns what
must behave the same for all of them: resume or fresh-start guard → loop (seed per step,
accumulate, clip, step, log) → validate every ``loop.eval_every`` steps (default: each epoch),
keep the best model, stop early, stop cleanly on Ctrl-C, write exact-resume checkpoints → summary
→ the kind's final evaluation of the best model on val and test.

Outputs under ``<run>/finetune/`` (or ``finetune.out_dir``)::

    best/                 text: HF folder (config.json with id2label, model.safetensors, tokenizer files,
                          lmforge_task.json, lmforge_checksums.json) that loads with
                          AutoModelFor{Sequence,Token}Classification; images/tables: config.json (kind,
                          model, labels, normalization), model.safetensors, preprocessor/ (tables)
    checkpoints/step_N/   our state for exact resume (weights, optimizer, loop state, config)
    eval/<split>/         metrics.json, report.md, confusion_matrix.png, ... of the best model
    metrics.jsonl         train/eval records; curves.png; summary.json; config.yaml
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Callable, Optional

import numpy as np
import torch

from lmforge.config.schema import to_dict
from lmforge.data.labeled_files import Example
from lmforge.errors import Interrupted, TrainingError
from lmforge.evaluation.metrics import metric_value
from lmforge.kinds import finetune_setup
from lmforge.layout import RunPaths, ensure_dir
from lmforge.models.config import ModelConfig
from lmforge.swap import recover
from lmforge.training import checkpoint as ckpt
from lmforge.training.early_stopping import Best
from lmforge.training.finetune_config import FinetuneConfig
from lmforge.training.finetune_setup import FinetuneSetup, say as _say
from lmforge.training.interrupt import StopRequest
from lmforge.training.metric_logging import MetricsLog, eta, write_config
from lmforge.training.optim import apply_lr
from lmforge.training.plots import plot_curves
from lmforge.training.precision import Precision
from lmforge.training.schedules import WarmupDecay
from lmforge.training.text_setup import LossFactory

OnEval = Callable[[int, dict], bool]  # (step, validation metrics) -> stop now?
RESUME_SAFE = ("finetune.loop.eval_every", "finetune.loop.eval_batch_size", "finetune.loop.save_every",
               "finetune.loop.keep_last", "finetune.loop.log_every", "finetune.loop.early_stopping_patience",
               "finetune.loop.threads", "finetune.out_dir", "finetune.data.test_file")


def finetune(ft: FinetuneConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int, *, name: str = "finetune",
             resume: bool = False, overwrite: bool = False, resume_changed: bool = False, progress: bool = True,
             on_eval: Optional[OnEval] = None, loss: Optional[LossFactory] = None, unlabeled: Optional[list[Example]] = None) -> dict:
    """Run fine-tuning; returns the summary (also written to ``summary.json``). ``loss`` replaces
    the cross-entropy of a text task (distillation passes its teacher-aware loss here);
    ``unlabeled`` examples join the training set with no label (-100: only a loss that uses a
    teacher learns from them)."""
    with StopRequest() as stop:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if ft.loop.threads:
            torch.set_num_threads(ft.loop.threads)
        torch.manual_seed(seed)
        setup = finetune_setup(ft.task)(ft, model_cfg, paths, seed, device, name, loss, unlabeled)
        _say(setup.describe)
        return _finetune(setup, ft, model_cfg, paths, seed, stop, device, resume, overwrite, resume_changed, progress,
                         on_eval)


def _finetune(setup: FinetuneSetup, ft: FinetuneConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int,
              stop: StopRequest, device, resume: bool, overwrite: bool, resume_changed: bool, progress: bool,
              on_eval: Optional[OnEval]) -> dict:
    out, L = paths.finetune, ft.loop
    # -- resume, or refuse to mix with an earlier run's checkpoints -----------------------------
    config = {"finetune": to_dict(ft), "model": to_dict(model_cfg), "seed": seed}
    best = Best("max", L.early_stopping_patience)
    recover(out.best)  # a best/ a crash left mid-swap is put back before anything reads it
    start_step = ckpt.start_or_resume(out, setup.model, setup.optimizer, best, config, resume=resume,
                                      overwrite=overwrite, resume_changed=resume_changed, safe_keys=RESUME_SAFE,
                                      say=_say)
    ensure_dir(out.root, "finetune output")
    write_config(out.root, config)
    log = MetricsLog(out.metrics, out.tensorboard, start_step if resume else None)
    t0 = time.time()
    stop_reason, done, best_val_full = _loop(setup, ft, seed, stop, device, start_step, best, log, progress, on_eval,
                                             out, config)
    log.close()
    summary = {"stop_reason": stop_reason, "best_step": best.step, "selection_metric": setup.metric,
               "best_val": best.metrics, "train_seconds": time.time() - t0, "steps": setup.total, "steps_done": done,
               **setup.summary}
    if stop_reason.startswith("interrupted"):
        out.summary.write_text(json.dumps(summary, indent=2))
        raise Interrupted(f"interrupted at step {done}")

    # -- the result: the best model (the last one without a validation set), evaluated ---------
    if setup.evaluate is None:
        setup.save_best(setup.total, {})
        best.step = setup.total
    summary["best_step"] = best.step
    in_memory = best_val_full if best.step == done else None
    summary.update(setup.final(best.step, in_memory))
    out.summary.write_text(json.dumps(summary, indent=2))
    plot_curves(out.metrics, out.curves, "Fine-tuning loss", "loss", setup.metric)
    return summary


def _loop(setup: FinetuneSetup, ft: FinetuneConfig, seed: int, stop: StopRequest, device, start_step: int, best: Best,
          log: MetricsLog, progress: bool, on_eval: Optional[OnEval], out, config: dict):
    """Steps ``start_step`` … ``total``; returns (stop reason, steps done, full val metrics of the best model
    when it was validated in this process)."""
    L, O, total = ft.loop, ft.optim, setup.total
    schedule = WarmupDecay(math.ceil(O.warmup_ratio * total), total, O.schedule, 0.0, ramp="from_zero")
    eval_every = L.eval_every or setup.steps_per_epoch
    save_every = L.save_every or (eval_every if setup.evaluate is not None else total)  # no val: no per-epoch saves
    precision = Precision(device, L.precision)
    bar = _bar(progress, total, start_step)
    setup.model.train()
    stop_reason, done, best_val_full, seen, t_log = "max_steps", start_step, None, 0, time.time()
    loss_hist: list[float] = []
    for step in range(start_step, total):
        torch.manual_seed((seed * 1_000_003 + 17) * 1_000_003 + step)  # dropout: a function of the step
        lr = apply_lr(setup.optimizer, schedule, step)
        step_loss, n = _accumulate(setup, step, L.grad_accum, precision)
        if not math.isfinite(step_loss):
            raise TrainingError(f"non-finite loss ({step_loss}) at step {step}: lower finetune.optim.lr (now {O.lr})")
        grad_norm = precision.step(setup.optimizer, setup.trainable, O.grad_clip)  # clip, step, zero the gradients
        done, seen = step + 1, seen + n
        loss_hist.append(step_loss)
        if done % L.log_every == 0 or done == total:
            _log_train(log, bar, done, total, loss_hist, lr, grad_norm, seen, time.time() - t_log, setup.steps_per_epoch)
            loss_hist, seen, t_log = [], 0, time.time()
        if bar is not None:
            bar.update(1)
        finished = False
        if setup.evaluate is not None and (done % eval_every == 0 or done == total):
            m, stop_reason_now = _validate(setup, best, log, done, total, on_eval)
            best_val_full = m if best.step == done else best_val_full
            if stop_reason_now:
                stop_reason, finished = stop_reason_now, True
        if stop.requested:
            stop_reason, finished = f"interrupted ({stop.signal_name}) at step {done}", True
        if done % save_every == 0 or done == total or finished:
            ckpt.save(out.checkpoints, done, setup.model, setup.optimizer,
                      {"best": best.state_dict(), **setup.checkpoint_extra, "config": config})
            ckpt.prune(out.checkpoints, L.keep_last)
        if finished:
            break
    if bar is not None:
        bar.close()
    return stop_reason, done, best_val_full


def _accumulate(setup: FinetuneSetup, step: int, grad_accum: int, precision: Precision) -> tuple[float, int]:
    """Forward and backward over the step's micro-batches; returns (mean logged loss, examples seen)."""
    loss_sum, seen = 0.0, 0
    for a in range(grad_accum):
        idx = setup.micro_batch(step * grad_accum + a)
        with precision.autocast():
            losses = setup.train_loss(idx, step, a)
        if losses is None:
            continue
        precision.backward(losses[0] / grad_accum)
        loss_sum += losses[1].item()
        seen += len(idx)
    return loss_sum / grad_accum, seen


def _validate(setup: FinetuneSetup, best: Best, log: MetricsLog, done: int, total: int,
              on_eval: Optional[OnEval]) -> tuple[dict, Optional[str]]:
    """One validation: log it, keep the model when it is the best so far; returns (metrics, why to stop or None)."""
    m = setup.evaluate()
    value = metric_value(m, setup.metric)
    headline = {k: m[k] for k in dict.fromkeys((setup.metric, *setup.headline_keys)) if m.get(k) is not None}
    log.write({"kind": "eval", "step": done, **headline})
    _say(f"step {done}/{total}: val " + ", ".join(f"{k} {v:.4f}" for k, v in headline.items()))
    if best.update(value, done, headline):
        setup.save_best(done, {setup.metric: value})
    if best.should_stop:
        return m, f"early stopping: no better val {setup.metric} in {best.bad_evals} evaluations"
    if on_eval is not None and on_eval(done, headline):
        return m, "stopped by on_eval"
    return m, None


def _bar(progress: bool, total: int, start_step: int):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start_step, desc="finetune", disable=not sys.stderr.isatty())


def _log_train(log: MetricsLog, bar, done: int, total: int, loss_hist: list[float], lr: float, grad_norm, seen: int,
               dt: float, steps_per_epoch: int) -> None:
    log.write({"kind": "train", "step": done, "loss": float(np.mean(loss_hist)), "lr": lr,
               "grad_norm": float(grad_norm), "examples_per_s": seen / max(dt, 1e-9), "epoch": done / steps_per_epoch})
    if bar is not None and not bar.disable:
        bar.set_postfix(loss=f"{np.mean(loss_hist):.4f}")
    else:  # no bar (no terminal, or --no-progress): plain lines instead
        steps_logged = max(1, len(loss_hist))
        _say(f"step {done}/{total}: loss {np.mean(loss_hist):.4f}, lr {lr:.2e}, {1000 * dt / steps_logged:.0f} ms/step, "
             f"{seen / max(dt, 1e-9):,.0f} examples/s, ETA {eta((total - done) * dt / steps_logged)}")
