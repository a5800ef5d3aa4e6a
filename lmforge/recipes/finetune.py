"""``lmforge finetune``: adapt a pretrained (or random) model to a labeled task — text, images or tables.

One linear recipe and one loop for every kind of data. The kind's setup (:mod:`lmforge.kinds` picks
it: :mod:`lmforge.training.text_setup` or :mod:`lmforge.training.array_setup`) supplies the
model, optimizer, micro-batches, loss, validation pass and best-model writer; this file owns what
must behave the same for all of them: resume or fresh-start guard → loop (seed per step,
accumulate, clip, step, log) → validate every ``loop.eval_every`` steps (default: each epoch),
keep the best model, stop early, stop cleanly on Ctrl-C, write exact-resume checkpoints → summary
→ the kind's final evaluation of the best model on val and test.

Several processes (``torchrun --nproc_per_node N -m lmforge finetune``, text tasks): DDP. Every rank
draws the same global batch (``loop.batch_size`` examples, which must split evenly over the ranks) and
takes every N-th example of it; each rank's loss is scaled by its share of the batch's loss units
(examples, or labeled tokens for token tasks), so the averaged gradient is the one-process gradient
even for a short last batch, and the logged loss is the global mean. Every rank validates (lockstep:
the same best step and early stop everywhere, no broadcast needed); only rank 0 writes checkpoints,
the best model, logs and reports, and only rank 0 prints.

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

import contextlib
import json
import math
import os
import sys
import time
from typing import Callable, Optional

import numpy as np
import torch

from lmforge.config.errors import ConfigError
from lmforge.config.schema import to_dict
from lmforge.data.labeled_files import Example
from lmforge.errors import Interrupted, TrainingError, UsageError
from lmforge.evaluation.metrics import metric_value
from lmforge.kinds import finetune_setup, is_array_task
from lmforge.layout import RunPaths, ensure_dir
from lmforge.models.config import ModelConfig
from lmforge.swap import recover
from lmforge.training import checkpoint as ckpt
from lmforge.training.distributed import Dist, all_reduce_sum, any_rank, barrier, grad_sync, teardown
from lmforge.training.distributed import setup as join_ranks
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
    d = join_ranks()  # one process unless started by torchrun
    try:
        with StopRequest() as stop, _quiet_unless(d.main):
            _check_ranks(ft, d, loss, unlabeled)
            if ft.loop.threads:
                torch.set_num_threads(ft.loop.threads)
            elif d.enabled and d.device.type == "cpu":  # the cores shared out between the ranks
                torch.set_num_threads(max(1, torch.get_num_threads() // d.world))
            torch.manual_seed(seed)  # the same random init on every rank
            setup = finetune_setup(ft.task)(ft, model_cfg, paths, seed, d.device, name, loss, unlabeled, d)
            _say(setup.describe + (f"; {d.world} processes (ddp), {ft.loop.batch_size // d.world} examples each per "
                                   "micro-batch" if d.enabled else ""))
            summary = _finetune(setup, ft, model_cfg, paths, seed, stop, d, resume, overwrite, resume_changed,
                                progress, on_eval)
        barrier(d)
        return summary
    finally:
        teardown(d)


def _check_ranks(ft: FinetuneConfig, d: Dist, loss, unlabeled) -> None:
    """What several processes cannot do, said before anything loads."""
    if not d.enabled:
        return
    if is_array_task(ft.task):
        raise UsageError(f"finetune.task: {ft.task} fine-tunes on one process (image and table models are small); "
                         "run it without torchrun")
    if loss is not None or unlabeled:
        raise UsageError("distillation runs on one process; run it without torchrun")
    if ft.loop.batch_size % d.world:
        fit = -(-ft.loop.batch_size // d.world) * d.world
        raise ConfigError([("finetune.loop.batch_size",
                            f"{ft.loop.batch_size} examples do not split evenly over {d.world} processes: use a "
                            f"multiple of {d.world} (e.g. {fit}), or another number of processes")])


@contextlib.contextmanager
def _quiet_unless(main: bool):
    """Ranks other than 0 print nothing (errors still reach stderr)."""
    if main:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def _finetune(setup: FinetuneSetup, ft: FinetuneConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int,
              stop: StopRequest, d: Dist, resume: bool, overwrite: bool, resume_changed: bool, progress: bool,
              on_eval: Optional[OnEval]) -> dict:
    out, L = paths.finetune, ft.loop
    # -- resume, or refuse to mix with an earlier run's checkpoints -----------------------------
    config = {"finetune": to_dict(ft), "model": to_dict(model_cfg), "seed": seed}
    best = Best("max", L.early_stopping_patience)
    if d.main:
        recover(out.best)  # a best/ a crash left mid-swap is put back before anything reads it
    start_step = ckpt.start_or_resume(out, setup.model, setup.optimizer, best, config, resume=resume,
                                      overwrite=overwrite, resume_changed=resume_changed, safe_keys=RESUME_SAFE,
                                      say=_say, main=d.main)
    barrier(d)  # rank 0 may have cleared an earlier run's checkpoints
    if d.main:
        ensure_dir(out.root, "finetune output")
        write_config(out.root, config)
    log = MetricsLog(out.metrics, out.tensorboard, start_step if resume else None, enabled=d.main)
    t0 = time.time()
    stop_reason, done, best_val_full = _loop(setup, ft, seed, stop, d, start_step, best, log, progress and d.main,
                                             on_eval, out, config)
    log.close()
    summary = {"stop_reason": stop_reason, "best_step": best.step, "selection_metric": setup.metric,
               "best_val": best.metrics, "train_seconds": time.time() - t0, "steps": setup.total, "steps_done": done,
               "world_size": d.world, "parallel": "ddp" if d.enabled else "none", **setup.summary}
    if stop_reason.startswith("interrupted"):
        if d.main:
            out.summary.write_text(json.dumps(summary, indent=2))
        raise Interrupted(f"interrupted at step {done}")

    # -- the result: the best model (the last one without a validation set), evaluated ---------
    if setup.evaluate is None:
        if d.main:
            setup.save_best(setup.total, {})
        best.step = setup.total
    summary["best_step"] = best.step
    if d.main:  # the other ranks hold the same weights: one evaluation, one set of reports
        in_memory = best_val_full if best.step == done else None
        summary.update(setup.final(best.step, in_memory))
        out.summary.write_text(json.dumps(summary, indent=2))
        plot_curves(out.metrics, out.curves, "Fine-tuning loss", "loss", setup.metric)
    return summary


def _loop(setup: FinetuneSetup, ft: FinetuneConfig, seed: int, stop: StopRequest, d: Dist, start_step: int, best: Best,
          log: MetricsLog, progress: bool, on_eval: Optional[OnEval], out, config: dict):
    """Steps ``start_step`` … ``total``; returns (stop reason, steps done, full val metrics of the best model
    when it was validated in this process)."""
    L, O, total = ft.loop, ft.optim, setup.total
    schedule = WarmupDecay(math.ceil(O.warmup_ratio * total), total, O.schedule, 0.0, ramp="from_zero")
    eval_every = L.eval_every or setup.steps_per_epoch
    save_every = L.save_every or (eval_every if setup.evaluate is not None else total)  # no val: no per-epoch saves
    precision = Precision(d.device, L.precision)
    bar = _bar(progress, total, start_step)
    setup.model.train()
    stop_reason, done, best_val_full, seen, t_log = "max_steps", start_step, None, 0, time.time()
    loss_hist: list[float] = []
    for step in range(start_step, total):
        torch.manual_seed((seed * 1_000_003 + 17) * 1_000_003 + step)  # dropout: a function of the step
        lr = apply_lr(setup.optimizer, schedule, step)
        step_loss, n = _accumulate(setup, step, L.grad_accum, precision, d)
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
            m, stop_reason_now = _validate(setup, best, log, done, total, on_eval, d.main)
            best_val_full = m if best.step == done else best_val_full
            if stop_reason_now:
                stop_reason, finished = stop_reason_now, True
        if any_rank(stop.requested, d):  # every rank stops at the same step
            stop_reason, finished = f"interrupted ({stop.signal_name or 'on another rank'}) at step {done}", True
        if d.main and (done % save_every == 0 or done == total or finished):
            ckpt.save(out.checkpoints, done, setup.model, setup.optimizer,
                      {"best": best.state_dict(), **setup.checkpoint_extra, "config": config})
            ckpt.prune(out.checkpoints, L.keep_last)
        if finished:
            break
    if bar is not None:
        bar.close()
    return stop_reason, done, best_val_full


def _accumulate(setup: FinetuneSetup, step: int, grad_accum: int, precision: Precision, d: Dist) -> tuple[float, int]:
    """Forward and backward over the step's micro-batches (this rank's share of each); returns (mean
    logged loss over all ranks, examples seen)."""
    loss_sum, seen = 0.0, 0
    for a in range(grad_accum):
        idx = setup.micro_batch(step * grad_accum + a)
        mine = idx[d.rank::d.world]
        with grad_sync(setup.net or setup.model, a == grad_accum - 1):
            with precision.autocast():  # a rank left without examples runs one with weight 0 (DDP needs its backward)
                losses = setup.train_loss(mine if len(mine) else idx[:1], step, a)
            if losses is None:
                continue
            loss, logged = losses[0], float(losses[1].detach())
            if d.enabled:
                units = (float(losses[2]) if len(losses) > 2 else float(len(mine))) if len(mine) else 0.0
                total = all_reduce_sum(torch.tensor([units, logged * units], dtype=torch.float64, device=d.device), d)
                loss = loss * (units * d.world / float(total[0]))  # DDP averages: this makes it the global mean
                logged = float(total[1] / total[0])
            precision.backward(loss / grad_accum)
        loss_sum += logged
        seen += len(idx)
    return loss_sum / grad_accum, seen


def _validate(setup: FinetuneSetup, best: Best, log: MetricsLog, done: int, total: int,
              on_eval: Optional[OnEval], main: bool = True) -> tuple[dict, Optional[str]]:
    """One validation (on every rank: the same weights give the same decision): log it, keep the model
    when it is the best so far (rank 0 writes it); returns (metrics, why to stop or None)."""
    m = setup.evaluate()
    value = metric_value(m, setup.metric)
    headline = {k: m[k] for k in dict.fromkeys((setup.metric, *setup.headline_keys)) if m.get(k) is not None}
    log.write({"kind": "eval", "step": done, **headline})
    _say(f"step {done}/{total}: val " + ", ".join(f"{k} {v:.4f}" for k, v in headline.items()))
    if best.update(value, done, headline) and main:
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
