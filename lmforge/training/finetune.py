"""``lmforge finetune``: adapt a pretrained (or random) body to a labeled task.

setup (data → tokenizer → model from the starting point → freezing / LoRA → optimizer) →
loop (accumulate, clip, step, log) → validate every ``eval_every`` steps (default: each epoch)
→ keep the best model as an HF folder → final evaluation of the best model on val and test.

Outputs under ``<run>/finetune/`` (or ``finetune.out_dir``)::

    best/                 HF folder: config.json (id2label), model.safetensors, tokenizer files,
                          lmforge_task.json — loads with AutoModelFor{Sequence,Token}Classification
    checkpoints/step_N/   our state for exact resume (weights, optimizer, loop state)
    eval/<split>/         metrics.json, report.md, confusion_matrix.png of the best model
    metrics.jsonl         train/eval records; curves.png; summary.json
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lmforge.config.experiment import ExperimentConfig
from lmforge.data.labeled_files import (Example, prepared_labels, read_prepared_split, read_records, read_token_file)
from lmforge.errors import LmforgeError
from lmforge.evaluation.metrics import metric_value
from lmforge.models.hf_tasks import classifier_to_hf
from lmforge.models.lora import apply_lora, merge_lora
from lmforge.training import checkpoint as ckpt
from lmforge.training.pretrain import MetricsLog
from lmforge.training.task_data import Encoded, collate, encode_sequences, encode_words, epoch_batches, pack
from lmforge.training.task_model import build_start, load_tokenizer

SPLITS = ("train", "val", "test")


class FinetuneError(LmforgeError, RuntimeError):
    pass


def _say(msg: str) -> None:
    print(f"[finetune] {msg}", flush=True)


def out_dir_of(cfg: ExperimentConfig) -> Path:
    return Path(cfg.finetune.out_dir) if cfg.finetune.out_dir else cfg.run_path / "finetune"


def data_dir_of(cfg: ExperimentConfig) -> Path:
    return Path(cfg.finetune.data_dir) if cfg.finetune.data_dir else cfg.run_path / "data"


def load_examples(cfg: ExperimentConfig) -> dict[str, list[Example]]:
    """train/val/test examples from files or from the prepared folder (val/test may be empty)."""
    f = cfg.finetune
    out: dict[str, list[Example]] = {}
    if f.train_file:
        for split, path in zip(SPLITS, (f.train_file, f.val_file, f.test_file)):
            if path is None:
                out[split] = []
            elif f.task == "token":
                out[split] = read_token_file(path)
            else:
                out[split] = read_records(path, f.text_field, f.label_field)
    else:
        if f.task == "token":
            raise FinetuneError("finetune.task=token reads CoNLL files: set finetune.train_file (and val_file/test_file)")
        d = data_dir_of(cfg)
        for split in SPLITS:
            try:
                out[split] = read_prepared_split(d, split)
            except FileNotFoundError:
                if split == "train":
                    raise
                out[split] = []
    if not out["train"]:
        raise FinetuneError("the training set is empty" + (f" ({f.train_file})" if f.train_file else ""))
    return out


def label_names(cfg: ExperimentConfig, train: list[Example]) -> list[str]:
    f = cfg.finetune
    if f.labels:
        return list(f.labels)
    if not f.train_file and f.task == "sequence":
        declared = prepared_labels(data_dir_of(cfg))
        if declared:
            return declared
    if f.task == "token":
        tags = sorted({t for ex in train for t in ex.label} - {"O"}, key=lambda t: (t[2:], t[:2]))
        return ["O"] + tags
    return sorted({ex.label for ex in train})


def subsample(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    if n is None or n >= len(examples):
        return examples
    idx = np.sort(np.random.default_rng([seed, 7]).permutation(len(examples))[:n])
    return [examples[i] for i in idx]


def encode(cfg: ExperimentConfig, tok, specials, causal: bool, examples: list[Example], labels: list[str]) -> Encoded:
    f = cfg.finetune
    fn = encode_words if f.task == "token" else encode_sequences
    return fn(tok, examples, {n: i for i, n in enumerate(labels)}, specials, causal, f.max_length, f.on_overflow)


def class_weight_tensor(cfg: ExperimentConfig, enc: Encoded, K: int) -> torch.Tensor | None:
    f = cfg.finetune
    if f.class_weights == "none":
        return None
    if f.class_weights == "custom":
        if len(f.class_weight_values) != K:
            raise FinetuneError(f"finetune.class_weight_values has {len(f.class_weight_values)} values for {K} labels")
        return torch.tensor(f.class_weight_values, dtype=torch.float32)
    ys = np.concatenate([np.atleast_1d(np.asarray(y)) for y in enc.labels])
    counts = np.bincount(ys[ys >= 0], minlength=K).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (K * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def freeze(model, cfg: ExperimentConfig) -> None:
    f = cfg.finetune
    body = model.body
    if f.freeze_body:
        body.requires_grad_(False)
    if f.freeze_embeddings:
        body.embed.requires_grad_(False)
    if f.freeze_layers > len(body.blocks):
        raise FinetuneError(f"finetune.freeze_layers={f.freeze_layers} but the model has {len(body.blocks)} layers")
    for block in body.blocks[:f.freeze_layers]:
        block.requires_grad_(False)


def build_optimizer(model, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    """AdamW; no decay on biases, norms and embeddings; the head may have its own lr."""
    f = cfg.finetune
    groups: dict[tuple[bool, bool], list] = {}
    for mname, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_head = mname.startswith(("classifier", "pooler"))
            decay = p.ndim >= 2 and not isinstance(module, torch.nn.Embedding)
            groups.setdefault((is_head, decay), []).append(p)
    head_lr = f.head_lr if f.head_lr is not None else f.lr
    param_groups = [{"params": ps, "weight_decay": f.weight_decay if decay else 0.0,
                     "lr": head_lr if is_head else f.lr, "base_lr": head_lr if is_head else f.lr}
                    for (is_head, decay), ps in sorted(groups.items())]
    try:
        return torch.optim.AdamW(param_groups, lr=f.lr, betas=tuple(f.betas), eps=1e-8, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(param_groups, lr=f.lr, betas=tuple(f.betas), eps=1e-8)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warmup from 0, then linear/cosine decay to 0 at ``total`` (the HF Trainer schedules)."""
    if step < warmup:
        return step / max(1, warmup)
    if schedule == "constant":
        return 1.0
    frac = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * frac)))
    return max(0.0, 1.0 - frac)


def evaluate_split(model, enc: Encoded, examples: list[Example], labels: list[str], task: str, batch_size: int,
                   pad_id: int, device, progress: bool = False) -> dict:
    """Metrics of ``model`` on encoded examples (gold labels from ``examples``)."""
    from lmforge.evaluation.inference import predict_probs, word_tags
    from lmforge.evaluation.metrics import classification_metrics, entity_metrics

    if len(enc) == 0:
        raise FinetuneError("cannot evaluate an empty set")
    probs = predict_probs(model, enc, batch_size, pad_id, device, progress, desc="evaluate")
    if task == "sequence":
        m = classification_metrics(np.asarray(enc.labels), np.stack(probs), labels)
    else:
        pred, _ = word_tags(enc, probs, labels)
        missing = sum(t is None for s in pred for t in s)
        pred = [[t or "O" for t in s] for s in pred]
        gold = [list(ex.label) for ex in examples]
        m = entity_metrics(gold, pred)
        m["words_truncated_predicted_O"] = missing
        from sklearn.metrics import confusion_matrix  # word-level tag confusion (gold rows)

        m["confusion_matrix"] = confusion_matrix([t for s in gold for t in s], [t for s in pred for t in s],
                                                 labels=labels).tolist()
    m["truncated"] = enc.truncated
    return m


def finetune(cfg: ExperimentConfig, resume: bool = False, progress: bool = True) -> dict:
    f = cfg.finetune
    out_dir = out_dir_of(cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if f.threads:
        torch.set_num_threads(f.threads)
    torch.manual_seed(cfg.seed)
    examples = load_examples(cfg)
    examples["train"] = subsample(examples["train"], f.max_train_examples, cfg.seed)
    labels = label_names(cfg, examples["train"])
    if len(labels) < 2:
        raise FinetuneError(f"need at least 2 labels; the training data has {labels}")

    # -- starting point and tokenizer --------------------------------------------------------
    tok_dir = f.tokenizer
    if tok_dir is None and f.init == "random":
        index = data_dir_of(cfg) / "tokens" / "index.json"
        if index.is_file():
            rel = json.loads(index.read_text()).get("tokenizer_dir")
            tok_dir = str((index.parent / rel).resolve()) if rel else None
    vocab = 0
    if f.init == "random" and tok_dir is not None:
        from lmforge.tokenizer.train import load

        vocab = load(Path(tok_dir)).get_vocab_size()
    start = build_start(f.init, cfg.model, f.task, labels, tok_dir, vocab, f.dropout, f.classifier_dropout,
                        f.reinit_head)
    model = start.model
    tok, specials = load_tokenizer(start.tokenizer_dir)
    if f.max_length > model.cfg.max_seq_len:
        raise FinetuneError(f"finetune.max_length={f.max_length} exceeds the model's max_seq_len {model.cfg.max_seq_len}")
    enc = {s: encode(cfg, tok, specials, model.causal, examples[s], labels) for s in SPLITS}
    model.class_weights = class_weight_tensor(cfg, enc["train"], len(labels))
    freeze(model, cfg)
    if f.lora.r:
        model.requires_grad_(False)
        n = apply_lora(model.body, f.lora.targets, f.lora.r, f.lora.alpha, f.lora.dropout)
        for m in (model.classifier, model.pooler):
            if m is not None:
                m.requires_grad_(True)
        _say(f"LoRA r={f.lora.r} on {n} layers")
    model.to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total_params = sum(p.numel() for p in model.parameters())
    optimizer = build_optimizer(model, cfg)

    # -- schedule ----------------------------------------------------------------------------
    lengths = enc["train"].lengths
    n_batches = -(-len(lengths) // f.batch_size)
    steps_per_epoch = max(1, n_batches // f.grad_accum)
    total = f.max_steps or max(1, math.ceil(f.epochs * steps_per_epoch))
    warmup = math.ceil(f.warmup_ratio * total)
    eval_every = f.eval_every or steps_per_epoch
    save_every = f.save_every or eval_every
    metric = f.metric if f.metric != "auto" else ("entity_f1" if f.task == "token" else "accuracy")
    has_val = len(enc["val"]) > 0
    _say(f"{start.description}: {total_params / 1e6:.2f}M params ({trainable / 1e6:.2f}M trainable); "
         f"{len(labels)} labels; train/val/test = {len(enc['train'])}/{len(enc['val'])}/{len(enc['test'])} "
         f"(truncated at {f.max_length}: {enc['train'].truncated}/{enc['val'].truncated}/{enc['test'].truncated}); "
         f"{total} steps of {f.batch_size * f.grad_accum}, {steps_per_epoch} per epoch, on {device}")

    ckpt_dir = out_dir / "checkpoints"
    start_step, best = 0, {"value": -math.inf, "step": None, "bad_evals": 0, "metrics": None}
    if resume:
        cks = ckpt.list_checkpoints(ckpt_dir)
        if not cks:
            raise FinetuneError(f"--resume: no checkpoint in {ckpt_dir}")
        state = ckpt.load(cks[-1], model, optimizer)
        start_step, best = state["step"], state["best"]
        _say(f"resumed from {cks[-1]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(out_dir, start_step if resume else None, True)
    use_amp = device.type == "cuda" and f.precision != "fp32"
    amp_dtype = torch.bfloat16 if f.precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if use_amp and f.precision == "fp16" else None

    def autocast():
        return torch.autocast("cuda", dtype=amp_dtype) if use_amp else contextlib.nullcontext()

    use_pack = f.pack and model.cfg.pos == "learned"
    if f.pack and not use_pack:
        _say("finetune.pack needs learned positions; using padded batches")
    batch_cache: dict[int, list[np.ndarray]] = {}

    def micro_batch(g: int) -> np.ndarray:
        epoch, pos = divmod(g, n_batches)
        if epoch not in batch_cache:
            batch_cache.clear()
            batch_cache[epoch] = epoch_batches(lengths, f.batch_size, cfg.seed, epoch, f.bucket)
        return batch_cache[epoch][pos]

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start_step, desc="finetune", disable=not sys.stderr.isatty())
    model.train()
    stop_reason, t0, seen = "max_steps", time.time(), 0
    t_log = time.time()
    loss_hist: list[float] = []
    done = start_step
    best_val_full = None  # full val metrics of the best model, when computed in this process
    for step in range(start_step, total):
        torch.manual_seed((cfg.seed * 1_000_003 + 17) * 1_000_003 + step)  # dropout: a function of the step
        factor = lr_factor(step, warmup, total, f.schedule)
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * factor
        loss_sum = 0.0
        for a in range(f.grad_accum):
            idx = micro_batch(step * f.grad_accum + a)
            if use_pack:
                batch = pack(enc["train"], idx, specials.pad, f.max_length, model.causal)
            else:
                batch = collate(enc["train"], idx, specials.pad)
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast():
                _, loss = model(batch["ids"], batch["attention_mask"], batch["labels"],
                                positions=batch.get("positions"), pool_index=batch.get("pool_index"))
            scaled = loss / f.grad_accum
            (scaler.scale(scaled) if scaler else scaled).backward()
            loss_sum += loss.item()
            seen += len(idx)
        step_loss = loss_sum / f.grad_accum
        if not math.isfinite(step_loss):
            raise FinetuneError(f"non-finite loss ({step_loss}) at step {step}: lower finetune.lr (now {f.lr})")
        if scaler:
            scaler.unscale_(optimizer)
        params = [p for p in model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, f.grad_clip if f.grad_clip else float("inf"))
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        loss_hist.append(step_loss)
        if done % f.log_every == 0 or done == total:
            dt = time.time() - t_log
            log.write({"kind": "train", "step": done, "loss": float(np.mean(loss_hist)), "lr": f.lr * factor,
                       "grad_norm": float(grad_norm), "examples_per_s": seen / max(dt, 1e-9),
                       "epoch": done / steps_per_epoch})
            if bar is not None:
                bar.set_postfix(loss=f"{np.mean(loss_hist):.4f}")
            loss_hist, seen, t_log = [], 0, time.time()
        if bar is not None:
            bar.update(1)
        evaluated = False
        if has_val and (done % eval_every == 0 or done == total):
            m = evaluate_split(model, enc["val"], examples["val"], labels, f.task, f.eval_batch_size, specials.pad, device)
            evaluated = True
            value = metric_value(m, metric)
            headline = {k: m[k] for k in (metric, "loss", "accuracy", "f1_macro", "entity_f1") if k in m}
            log.write({"kind": "eval", "step": done, **headline})
            _say(f"step {done}/{total}: val " + ", ".join(f"{k} {v:.4f}" for k, v in headline.items()))
            if value > best["value"]:
                best = {"value": value, "step": done, "bad_evals": 0, "metrics": headline}
                best_val_full = m
                export(model, out_dir / "best", labels, specials, start.tokenizer_dir, cfg, {"step": done, metric: value})
            else:
                best["bad_evals"] += 1
        stop = bool(evaluated and f.early_stopping_patience and best["bad_evals"] >= f.early_stopping_patience)
        if stop:
            stop_reason = f"early stopping: no better val {metric} in {best['bad_evals']} evaluations"
        if done % save_every == 0 or done == total or stop:
            if not (ckpt_dir / f"step_{done:07d}").exists():
                ckpt.save(ckpt_dir, done, model, optimizer, {"best": best, "labels": labels, "task": f.task})
                ckpt.prune(ckpt_dir, f.keep_last, set())
        if stop:
            break
    if bar is not None:
        bar.close()
    log.close()
    train_seconds = time.time() - t0
    if not has_val:  # nothing to select on: the last model is the result
        export(model, out_dir / "best", labels, specials, start.tokenizer_dir, cfg, {"step": total})
        best["step"] = total
    last_is_best = best["step"] == done and best_val_full is not None
    results = final_evaluation(out_dir, cfg, examples, labels, device,
                               (model, specials, best_val_full) if last_is_best else None)
    summary = {"stop_reason": stop_reason, "best_step": best["step"], "selection_metric": metric,
               "best_val": best["metrics"], "train_seconds": train_seconds, "steps": total,
               "train_examples": len(enc["train"]), "labels": labels, "start": start.description,
               "truncated": {s: enc[s].truncated for s in SPLITS}, "results": results,
               "trainable_params": trainable, "params": total_params}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_curves(out_dir / "metrics.jsonl", out_dir / "curves.png", metric)
    return summary


def export(model, folder: Path, labels: list[str], specials, tokenizer_dir: Path, cfg: ExperimentConfig,
           extra: dict) -> None:
    """Write ``model`` (LoRA merged, on CPU) as an HF folder, atomically replacing ``folder``."""
    import shutil

    m = merge_lora(copy.deepcopy(model).cpu())
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    classifier_to_hf(m, tmp, labels, specials.pad, tokenizer_dir,
                     {"max_length": cfg.finetune.max_length, "pad_id": specials.pad, **extra})
    add_post_processor(tmp / "tokenizer.json", specials, m.causal)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def add_post_processor(path: Path, specials, causal: bool) -> None:
    """Make the exported tokenizer add the specials the model was trained with, so HF pipelines
    on ``best/`` see the same ids as we do (tokenizers that already have a template are kept)."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    if not path.is_file():
        return
    from tokenizers.processors import Sequence

    tok = Tokenizer.from_file(str(path))
    existing = tok.post_processor
    if existing is not None and existing.num_special_tokens_to_add(False) > 0:
        return  # e.g. BERT's [CLS] $A [SEP] template
    ids = [specials.eos] if causal else [specials.cls, specials.sep]
    if any(i is None for i in ids):
        return
    names = [tok.id_to_token(i) for i in ids]
    single = f"$A {names[0]}" if causal else f"{names[0]} $A {names[1]}"
    template = TemplateProcessing(single=single, special_tokens=list(zip(names, ids)))
    tok.post_processor = template if existing is None else Sequence([existing, template])  # keep e.g. ByteLevel offsets
    tok.save(str(path))
    # transformers 5 rebuilds the template of a generic fast tokenizer from add_bos/eos_token
    # flags, so state it there too: encoders wrap with cls/sep, decoders append eos
    conf = path.parent / "tokenizer_config.json"
    if conf.is_file():
        tc = json.loads(conf.read_text())
        if causal:
            tc.update(add_bos_token=False, add_eos_token=True, eos_token=names[0])
        else:
            tc.update(add_bos_token=True, add_eos_token=True, bos_token=names[0], eos_token=names[1])
        conf.write_text(json.dumps(tc, indent=2))


def final_evaluation(out_dir: Path, cfg: ExperimentConfig, examples: dict, labels: list[str], device,
                     in_memory=None) -> dict:
    """Evaluate the best model on val and test and write reports. When the model in memory is the
    best one (``in_memory`` = (model, specials, its full val metrics)), it is used as is and val
    is not evaluated twice; otherwise the saved ``best/`` folder is loaded as a user would."""
    from lmforge.evaluation.report import summary_table, write_report
    from lmforge.training.task_model import load_task_model

    f = cfg.finetune
    if in_memory is not None:
        model, specials, val_metrics = in_memory
        tok, _ = load_tokenizer(out_dir / "best")
    else:
        tm = load_task_model(out_dir / "best")
        model, specials, val_metrics, tok = tm.model.to(device), tm.specials, None, tm.tokenizer
    results = {}
    for split in ("val", "test"):
        if not examples[split]:
            continue
        if split == "val" and val_metrics is not None:
            m = val_metrics
        else:
            enc = encode(cfg, tok, specials, model.causal, examples[split], labels)
            m = evaluate_split(model, enc, examples[split], labels, f.task, f.eval_batch_size, specials.pad, device)
        path = write_report(out_dir / "eval" / split, m, labels,
                            f"{cfg.name}: {split}", {"model": str(out_dir / "best"), "split": split})
        results[split] = {k: m[k] for k in ("accuracy", "f1_macro", "roc_auc", "entity_f1", "entity_precision",
                                            "entity_recall", "loss", "examples") if k in m}
        _say(f"best model on {split}:\n{summary_table(m)}report: {path}")
    return results


def plot_curves(metrics: Path, out: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not metrics.exists():
        return
    recs = [json.loads(x) for x in metrics.read_text().splitlines() if x]
    tr = [(r["step"], r["loss"]) for r in recs if r["kind"] == "train"]
    ev = [(r["step"], r.get(metric, r.get("loss"))) for r in recs if r["kind"] == "eval"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    if tr:
        axes[0].plot(*zip(*tr), label="train loss")
    evl = [(r["step"], r["loss"]) for r in recs if r["kind"] == "eval" and "loss" in r]
    if evl:
        axes[0].plot(*zip(*evl), "o-", label="val loss")
    axes[0].set_xlabel("step")
    axes[0].legend()
    if ev:
        axes[1].plot(*zip(*ev), "o-")
    axes[1].set_xlabel("step")
    axes[1].set_title(f"val {metric}")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
