"""``lmforge finetune``: adapt a pretrained (or random) body to a labeled task.

One linear recipe over the training library: setup (examples → labels → starting point and its
tokenizer → encoding → freezing / LoRA → optimizer → resume or fresh-start guard) → loop
(accumulate, clip, step, log) → validate every ``loop.eval_every`` steps (default: each epoch) →
keep the best model as an HF folder → final evaluation of the best model on val and test.
The task (sequence or token classification) is an object from :mod:`lmforge.tasks`.

Outputs under ``<run>/finetune/`` (or ``finetune.out_dir``)::

    best/                 HF folder: config.json (id2label), model.safetensors, tokenizer files,
                          lmforge_task.json, lmforge_checksums.json — loads with
                          AutoModelFor{Sequence,Token}Classification
    checkpoints/step_N/   our state for exact resume (weights, optimizer, loop state, config)
    eval/<split>/         metrics.json, report.md, confusion_matrix.png of the best model
    metrics.jsonl         train/eval records; curves.png; summary.json
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from lmforge.config.schema import to_dict
from lmforge.data.labeled_files import Example, prepared_labels
from lmforge.errors import DataError, Interrupted, ModelError, TrainingError
from lmforge.evaluation.classify import evaluate_task
from lmforge.evaluation.metrics import metric_value
from lmforge.evaluation.baselines import baseline_lines, text_baselines
from lmforge.evaluation.report import summary_table, write_report
from lmforge.export.hf import export_task_model
from lmforge.layout import RunPaths, ensure_dir, tokenizer_of_tokens, tokens_dir
from lmforge.models.config import ModelConfig
from lmforge.models.heads import keep_layers
from lmforge.models.hf_interop import config_to_hf
from lmforge.models.load import load_task_model
from lmforge.models.lora import apply_lora
from lmforge.tasks import Task, get_task
from lmforge.tasks.batching import collate, pack, row_length
from lmforge.tasks.encoding import Encoded
from lmforge.tokenizer.io import load_for_model
from lmforge.swap import recover
from lmforge.training import checkpoint as ckpt
from lmforge.training.early_stopping import Best
from lmforge.training.finetune_config import FinetuneConfig, PeftConfig
from lmforge.training.interrupt import StopRequest
from lmforge.training.losses import class_weights, classification_loss
from lmforge.training.metric_logging import MetricsLog, eta, write_config
from lmforge.training.optim import apply_lr, build_optimizer, param_groups
from lmforge.training.plots import plot_curves
from lmforge.training.precision import Precision
from lmforge.training.sampling import epoch_batches
from lmforge.training.schedules import WarmupDecay
from lmforge.training.starts import start_from

SPLITS = ("train", "val", "test")
OnEval = Callable[[int, dict], bool]  # (step, validation metrics) -> stop now?
LossFn = Callable[[torch.Tensor, dict], torch.Tensor]  # (logits, batch on the device) -> loss
# (labels, device, the encoded training set) -> the loss of this run; batches carry "index": the
# positions of their examples in that set (distillation looks up cached teacher logits with it)
LossFactory = Callable[[list[str], torch.device, Encoded], LossFn]
RESUME_SAFE = ("finetune.loop.eval_every", "finetune.loop.eval_batch_size", "finetune.loop.save_every",
               "finetune.loop.keep_last", "finetune.loop.log_every", "finetune.loop.early_stopping_patience",
               "finetune.loop.threads", "finetune.out_dir", "finetune.data.test_file")


def _say(msg: str) -> None:
    print(f"[finetune] {msg}", flush=True)


def load_examples(ft: FinetuneConfig, task: Task, data_dir: Path) -> dict[str, list[Example]]:
    """train/val/test examples from files or from the prepared folder (val/test may be empty)."""
    f = ft.data
    out: dict[str, list[Example]] = {}
    if f.train_file:
        for split, path in zip(SPLITS, (f.train_file, f.val_file, f.test_file)):
            out[split] = [] if path is None else task.read(path, f.text_field, f.label_field, header=f.csv_header)
    else:
        for split in SPLITS:
            try:
                out[split] = task.read_prepared(data_dir, split)
            except FileNotFoundError:
                if split == "train":
                    raise
                out[split] = []
    if not out["train"]:
        raise DataError("the training set is empty" + (f" ({f.train_file})" if f.train_file else ""))
    return out


def subsample(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    """A seeded random subset of ``n`` examples, in file order (all when ``n`` is None or larger)."""
    if n is None or n >= len(examples):
        return examples
    idx = np.sort(np.random.default_rng([seed, 7]).permutation(len(examples))[:n])
    return [examples[i] for i in idx]


def freeze(model, peft: PeftConfig) -> None:
    """Freeze what ``peft`` names; with LoRA, only the adapters and the head train."""
    body = model.body
    if peft.freeze_body:
        body.requires_grad_(False)
    if peft.freeze_embeddings:
        body.embed.requires_grad_(False)
    if peft.freeze_layers > len(body.blocks):
        raise TrainingError(f"finetune.peft.freeze_layers={peft.freeze_layers} but the model has "
                            f"{len(body.blocks)} layers")
    for block in body.blocks[:peft.freeze_layers]:
        block.requires_grad_(False)
    if peft.lora.r:
        model.requires_grad_(False)
        n = apply_lora(model.body, peft.lora.targets, peft.lora.r, peft.lora.alpha, peft.lora.dropout)
        for m in (model.classifier, model.pooler):
            if m is not None:
                m.requires_grad_(True)
        _say(f"LoRA r={peft.lora.r} on {n} layers")


def _say_tokenizer(ft: FinetuneConfig, used: Path, prepared: Optional[Path]) -> None:
    """Which tokenizer reads the examples, and why (the prepared data may carry another one)."""
    why = ("finetune.tokenizer" if ft.tokenizer else "the prepared data's, for a random start" if ft.init == "random"
           else "the starting model's: the ids it was trained on")
    note = ""
    same = lambda a, b: (a / "tokenizer.json").is_file() and (b / "tokenizer.json").is_file() and (  # noqa: E731
        (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes())
    if prepared is not None and prepared.is_dir() and Path(used).resolve() != prepared.resolve() \
            and not same(Path(used), prepared):
        note = (f"; the prepared data's own tokenizer ({prepared}) is not used — the texts are re-tokenized for "
                "the model")
    _say(f"tokenizer: {used} ({why}){note}")


def finetune(ft: FinetuneConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int, *, name: str = "finetune",
             resume: bool = False, overwrite: bool = False, resume_changed: bool = False, progress: bool = True,
             on_eval: Optional[OnEval] = None, loss: Optional[LossFactory] = None,
             unlabeled: Optional[list[Example]] = None) -> dict:
    """Run fine-tuning; returns the summary (also written to ``summary.json``). ``loss`` replaces
    the cross-entropy (distillation passes its teacher-aware loss here); ``unlabeled`` examples
    join the training set with no label (-100: only a loss that uses a teacher learns from them)."""
    with StopRequest() as stop:
        return _finetune(ft, model_cfg, paths, seed, name, stop, resume, overwrite, resume_changed, progress, on_eval,
                         loss, unlabeled or [])


def _finetune(ft: FinetuneConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int, name: str, stop: StopRequest,
              resume: bool, overwrite: bool, resume_changed: bool, progress: bool, on_eval: Optional[OnEval],
              loss_factory: Optional[LossFactory], unlabeled: list[Example]) -> dict:
    D, O, L = ft.data, ft.optim, ft.loop
    out = paths.finetune
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if L.threads:
        torch.set_num_threads(L.threads)
    torch.manual_seed(seed)
    task = get_task(ft.task)

    # -- examples, labels, starting point, tokenizer, encoding ----------------------------------
    examples = load_examples(ft, task, paths.finetune_data)
    examples["train"] = subsample(examples["train"], D.max_train_examples, seed)
    declared = D.labels or (prepared_labels(paths.finetune_data) if not D.train_file else None)
    labels = task.label_names(examples["train"], declared)
    if len(labels) < 2:
        raise DataError(f"need at least 2 labels; the training data has {labels}")
    if unlabeled and loss_factory is None:
        raise TrainingError("unlabeled training examples need a loss that learns from them (distillation)")
    n_labeled = len(examples["train"])
    examples["train"] = examples["train"] + unlabeled
    tok_dir = Path(ft.tokenizer) if ft.tokenizer else None
    if tok_dir is None and ft.init == "random":
        tok_dir = tokenizer_of_tokens(tokens_dir(paths.finetune_data))
    start = start_from(ft, model_cfg, labels, tok_dir)
    model = start.model
    if ft.keep_layers is not None:
        keep_layers(model, ft.keep_layers)
    try:  # the best model is written as a Hugging Face folder: say so now, not after training
        config_to_hf(model.cfg)
    except ModelError as exc:
        raise TrainingError(f"cannot fine-tune from {start.description}: {exc}, and fine-tuning writes its best "
                            "model as a Hugging Face folder (best/); start from a body of one of those shapes") from None
    tok, specials = load_for_model(start.tokenizer_dir)
    _say_tokenizer(ft, start.tokenizer_dir, None if D.train_file else tokenizer_of_tokens(tokens_dir(paths.finetune_data)))
    if D.max_length > model.cfg.max_seq_len:
        raise TrainingError(f"finetune.data.max_length={D.max_length} exceeds the model's max_seq_len "
                            f"{model.cfg.max_seq_len}")
    label_ids = {n: i for i, n in enumerate(labels)}
    enc = {s: task.encode(tok, examples[s], label_ids, specials, model.causal, D.max_length, D.on_overflow)
           for s in SPLITS}
    weights = class_weights(ft.class_weights, ft.class_weight_values, enc["train"].labels, len(labels))
    loss_fn: LossFn = (loss_factory(labels, device, enc["train"]) if loss_factory is not None
                       else lambda logits, batch: classification_loss(logits, batch["labels"], weights))
    freeze(model, ft.peft)
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable, n_params = sum(p.numel() for p in trainable), sum(p.numel() for p in model.parameters())
    groups, _ = param_groups(model, O.lr, O.weight_decay, head_lr=O.head_lr, head_prefixes=("classifier", "pooler"),
                             decay_embeddings=O.decay_embeddings)
    optimizer = build_optimizer(groups, "adamw", O.lr, tuple(O.betas), eps=1e-8)

    # -- schedule ------------------------------------------------------------------------------
    lengths = enc["train"].lengths
    n_batches = -(-len(lengths) // L.batch_size)
    steps_per_epoch = max(1, n_batches // L.grad_accum)
    total = L.max_steps or max(1, math.ceil(L.epochs * steps_per_epoch))
    schedule = WarmupDecay(math.ceil(O.warmup_ratio * total), total, O.schedule, 0.0, ramp="from_zero")
    has_val = len(enc["val"]) > 0
    eval_every = L.eval_every or steps_per_epoch
    save_every = L.save_every or (eval_every if has_val else total)  # no validation: no per-epoch checkpoints
    metric = ft.selection_metric()
    _say(f"{start.description}: {n_params / 1e6:.2f}M params ({n_trainable / 1e6:.2f}M trainable); "
         f"{len(labels)} labels; train/val/test = {n_labeled}"
         + (f" (+{len(unlabeled)} unlabeled)" if unlabeled else "")
         + f"/{len(enc['val'])}/{len(enc['test'])} "
         f"(truncated at {D.max_length}: {enc['train'].truncated}/{enc['val'].truncated}/{enc['test'].truncated}); "
         f"{total} steps of {L.batch_size * L.grad_accum}, {steps_per_epoch} per epoch, on {device}")

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
    use_pack = D.pack and model.cfg.pos == "learned"
    if D.pack and not use_pack:
        _say("finetune.data.pack needs learned positions; using padded batches")
    batch_cache: dict[int, list[np.ndarray]] = {}

    def micro_batch(g: int) -> np.ndarray:
        epoch, pos = divmod(g, n_batches)
        if epoch not in batch_cache:
            batch_cache.clear()
            batch_cache[epoch] = epoch_batches(lengths, L.batch_size, seed, epoch, D.bucket)
        return batch_cache[epoch][pos]

    def export_best(step: int, extra: dict) -> None:
        export_task_model(model, out.best, labels, specials, start.tokenizer_dir,
                          {"max_length": D.max_length, "step": step, **extra})

    # -- the loop ------------------------------------------------------------------------------
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start_step, desc="finetune", disable=not sys.stderr.isatty())
    model.train()
    stop_reason, t0, seen, t_log = "max_steps", time.time(), 0, time.time()
    loss_hist: list[float] = []
    done = start_step
    best_val_full = None  # full val metrics of the best model, when computed in this process
    for step in range(start_step, total):
        torch.manual_seed((seed * 1_000_003 + 17) * 1_000_003 + step)  # dropout: a function of the step
        lr = apply_lr(optimizer, schedule, step)
        loss_sum = 0.0
        for a in range(L.grad_accum):
            idx = micro_batch(step * L.grad_accum + a)
            batch = pack(enc["train"], idx, specials.pad, row_length(lengths[idx].tolist(), D.max_length, model.cfg.d_model),
                         model.causal) if use_pack \
                else collate(enc["train"], idx, specials.pad)
            batch["index"] = torch.as_tensor(idx)
            batch = {k: v.to(device) for k, v in batch.items()}
            with precision.autocast():
                logits, _ = model(batch["ids"], batch["attention_mask"], positions=batch.get("positions"),
                                  pool_index=batch.get("pool_index"))
                loss = loss_fn(logits, batch)
            precision.backward(loss / L.grad_accum)
            loss_sum += loss.item()
            seen += len(idx)
        step_loss = loss_sum / L.grad_accum
        if not math.isfinite(step_loss):
            raise TrainingError(f"non-finite loss ({step_loss}) at step {step}: lower finetune.optim.lr (now {O.lr})")
        grad_norm = precision.step(optimizer, trainable, O.grad_clip)
        done = step + 1
        loss_hist.append(step_loss)
        if done % L.log_every == 0 or done == total:
            dt = time.time() - t_log
            log.write({"kind": "train", "step": done, "loss": float(np.mean(loss_hist)), "lr": lr,
                       "grad_norm": float(grad_norm), "examples_per_s": seen / max(dt, 1e-9),
                       "epoch": done / steps_per_epoch})
            if bar is not None and not bar.disable:
                bar.set_postfix(loss=f"{np.mean(loss_hist):.4f}")
            else:  # no bar (no terminal, or --no-progress): plain lines instead
                steps_logged = max(1, len(loss_hist))
                left = (total - done) * dt / steps_logged
                _say(f"step {done}/{total}: loss {np.mean(loss_hist):.4f}, lr {lr:.2e}, "
                     f"{1000 * dt / steps_logged:.0f} ms/step, {seen / max(dt, 1e-9):,.0f} examples/s, "
                     f"ETA {eta(left)}")
            loss_hist, seen, t_log = [], 0, time.time()
        if bar is not None:
            bar.update(1)
        finished = False
        if has_val and (done % eval_every == 0 or done == total):
            m = evaluate_task(model, task, enc["val"], examples["val"], labels, L.eval_batch_size, specials.pad, device)
            value = metric_value(m, metric)
            headline = {k: m[k] for k in (metric, "loss", "accuracy", "f1_macro", "entity_f1") if k in m}
            log.write({"kind": "eval", "step": done, **headline})
            _say(f"step {done}/{total}: val " + ", ".join(f"{k} {v:.4f}" for k, v in headline.items()))
            if best.update(value, done, headline):
                best_val_full = m
                export_best(done, {metric: value})
            if best.should_stop:
                stop_reason, finished = f"early stopping: no better val {metric} in {best.bad_evals} evaluations", True
            elif on_eval is not None and on_eval(done, headline):
                stop_reason, finished = "stopped by on_eval", True
        if stop.requested:
            stop_reason, finished = f"interrupted ({stop.signal_name}) at step {done}", True
        if done % save_every == 0 or done == total or finished:
            ckpt.save(out.checkpoints, done, model, optimizer,
                      {"best": best.state_dict(), "labels": labels, "task": ft.task, "config": config})
            ckpt.prune(out.checkpoints, L.keep_last)
        if finished:
            break
    if bar is not None:
        bar.close()
    log.close()
    train_seconds = time.time() - t0
    summary = {"stop_reason": stop_reason, "best_step": best.step, "selection_metric": metric,
               "best_val": best.metrics, "train_seconds": train_seconds, "steps": total, "steps_done": done,
               "train_examples": n_labeled, "unlabeled_examples": len(unlabeled), "labels": labels, "start": start.description,
               "truncated": {s: enc[s].truncated for s in SPLITS}, "trainable_params": n_trainable,
               "params": n_params}
    if stop_reason.startswith("interrupted"):
        out.summary.write_text(json.dumps(summary, indent=2))
        raise Interrupted(f"interrupted at step {done}")

    # -- the result: the best model (the last one without a validation set), evaluated ---------
    if not has_val:
        export_best(total, {})
        best.step = total
    last_is_best = best.step == done and best_val_full is not None
    summary["best_step"] = best.step
    baselines = classical_baselines(task, examples) if ft.baselines else {}
    if baselines:
        summary["baselines"] = baselines
    summary["results"] = final_evaluation(out, name, task, examples, labels, D.max_length, L.eval_batch_size, device,
                                          (model, tok, specials, best_val_full) if last_is_best else None, baselines)
    out.summary.write_text(json.dumps(summary, indent=2))
    plot_curves(out.metrics, out.curves, "Fine-tuning loss", "loss", metric)
    return summary


def classical_baselines(task: Task, examples: dict) -> dict:
    """Majority class and TF-IDF + logistic regression on the same training split (text
    classification only), scored on val and test."""
    labeled = {s: [e for e in examples[s] if e.label is not None] for s in ("train", "val", "test")}
    if task.name != "sequence" or not labeled["train"]:
        return {}
    t = time.time()
    b = text_baselines([e.text for e in labeled["train"]], [e.label for e in labeled["train"]],
                       {s: ([e.text for e in labeled[s]], [e.label for e in labeled[s]]) for s in ("val", "test")})
    if "tfidf_logreg" in b:
        scores = ", ".join(f"{s} {b['tfidf_logreg'][s]['accuracy']:.4f}" for s in ("val", "test") if s in b["tfidf_logreg"])
        _say(f"baseline TF-IDF + logistic regression (C={b['tfidf_logreg']['C']}): accuracy {scores} "
             f"({time.time() - t:.1f}s)")
    return b


def final_evaluation(out, name: str, task: Task, examples: dict, labels: list[str], max_length: int,
                     batch_size: int, device, in_memory=None, baselines: Optional[dict] = None) -> dict:
    """Evaluate the best model on val and test and write reports. When the model in memory is the
    best one (``in_memory`` = (model, tokenizer, specials, its full val metrics)), it is used as is
    and val is not evaluated twice; otherwise the saved ``best/`` folder is loaded as a user would."""
    if in_memory is not None:
        model, tok, specials, val_metrics = in_memory
    else:
        tm = load_task_model(out.best)
        model, tok, specials, val_metrics = tm.model.to(device), tm.tokenizer, tm.specials, None
    label_ids = {n: i for i, n in enumerate(labels)}
    results = {}
    for split in ("val", "test"):
        if not examples[split]:
            continue
        if split == "val" and val_metrics is not None:
            m = val_metrics
        else:
            enc = task.encode(tok, examples[split], label_ids, specials, model.causal, max_length)
            m = evaluate_task(model, task, enc, examples[split], labels, batch_size, specials.pad, device)
        path = write_report(out.eval(split), m, labels, f"{name}: {split}", {"model": str(out.best), "split": split},
                            baseline_lines(baselines or {}, split, m))
        results[split] = {k: m[k] for k in ("accuracy", "f1_macro", "roc_auc", "entity_f1", "entity_precision",
                                            "entity_recall", "loss", "examples") if k in m}
        _say(f"best model on {split}:\n{summary_table(m)}report: {path}")
    return results
