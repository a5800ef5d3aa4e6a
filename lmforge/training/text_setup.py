"""Text fine-tuning (sequence and token classification) as the one loop sees it.

Setup: examples (files or a prepared folder) → labels → starting point and its tokenizer →
encoding → freezing / LoRA → optimizer; batches are packed several examples to a row (learned
positions) or padded; the best model is written as a Hugging Face folder and evaluated at the end
on val and test, beside the classical baselines fitted on the same split.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from lmforge.data.labeled_files import Example, prepared_labels
from lmforge.errors import DataError, ModelError, TrainingError
from lmforge.evaluation.baselines import baseline_lines, text_baselines
from lmforge.evaluation.classify import evaluate_task
from lmforge.evaluation.report import summary_table, write_report
from lmforge.export.hf import export_task_model
from lmforge.layout import RunPaths, tokenizer_of_tokens, tokens_dir
from lmforge.models.config import ModelConfig
from lmforge.models.heads import keep_layers
from lmforge.models.hf_interop import config_to_hf
from lmforge.models.load import load_task_model
from lmforge.models.lora import apply_lora
from lmforge.tasks import Task, get_task
from lmforge.tasks.batching import collate, pack, row_length
from lmforge.tasks.encoding import Encoded
from lmforge.tokenizer.io import load_for_model
from lmforge.training.finetune_config import FinetuneConfig, PeftConfig
from lmforge.training.distributed import Dist, wrap
from lmforge.training.finetune_setup import FinetuneSetup, say as _say
from lmforge.training.losses import class_weights, classification_loss
from lmforge.training.optim import build_optimizer, param_groups
from lmforge.training.sampling import epoch_batches
from lmforge.training.starts import start_from

SPLITS = ("train", "val", "test")
LossFn = Callable[[torch.Tensor, dict], torch.Tensor]  # (logits, batch on the device) -> loss
# (labels, device, the encoded training set) -> the loss of this run; batches carry "index": the
# positions of their examples in that set (distillation looks up cached teacher logits with it)
LossFactory = Callable[[list[str], torch.device, Encoded], LossFn]


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


def say_tokenizer(ft: FinetuneConfig, used: Path, prepared: Optional[Path]) -> None:
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


def _starting_model(ft: FinetuneConfig, model_cfg: ModelConfig, paths: RunPaths, labels: list[str]):
    """The starting point (with its tokenizer), cut to ``keep_layers``, checked to export as HF."""
    tok_dir = Path(ft.tokenizer) if ft.tokenizer else None
    if tok_dir is None and ft.init == "random":
        tok_dir = tokenizer_of_tokens(tokens_dir(paths.finetune_data))
    start = start_from(ft, model_cfg, labels, tok_dir)
    if ft.keep_layers is not None:
        keep_layers(start.model, ft.keep_layers)
    try:  # the best model is written as a Hugging Face folder: say so now, not after training
        config_to_hf(start.model.cfg)
    except ModelError as exc:
        raise TrainingError(f"cannot fine-tune from {start.description}: {exc}, and fine-tuning writes its best "
                            "model as a Hugging Face folder (best/); start from a body of one of those shapes") from None
    return start


def _optimizer(model, ft: FinetuneConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; the new head (pooler + classifier) at ``optim.head_lr``."""
    O = ft.optim
    groups = param_groups(model, O.lr, O.weight_decay, head_lr=O.head_lr, decay_embeddings=O.decay_embeddings,
                          head_prefixes=("classifier", "pooler"))[0]
    return build_optimizer(groups, "adamw", O.lr, tuple(O.betas), eps=1e-8)


def _batches(lengths: np.ndarray, batch_size: int, seed: int, bucket: bool):
    """g -> the indices of the run's g-th micro-batch (a function of seed and epoch: exact resume)."""
    n_batches = -(-len(lengths) // batch_size)
    cache: dict[int, list[np.ndarray]] = {}

    def micro_batch(g: int) -> np.ndarray:
        epoch, pos = divmod(g, n_batches)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = epoch_batches(lengths, batch_size, seed, epoch, bucket)
        return cache[epoch][pos]

    return micro_batch


def _examples_and_labels(ft: FinetuneConfig, task: Task, paths: RunPaths, seed: int):
    """The splits' examples (train cut to ``max_train_examples``) and the label names in id order."""
    D = ft.data
    examples = load_examples(ft, task, paths.finetune_data)
    examples["train"] = subsample(examples["train"], D.max_train_examples, seed)
    labels = task.label_names(examples["train"], D.labels or (prepared_labels(paths.finetune_data)
                                                             if not D.train_file else None))
    if len(labels) < 2:
        raise DataError(f"need at least 2 labels; the training data has {labels}")
    return examples, labels


def text_setup(ft: FinetuneConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int, device: torch.device, name: str,
               loss_factory: Optional[LossFactory] = None, unlabeled: Optional[list[Example]] = None,
               d: Optional[Dist] = None) -> FinetuneSetup:
    """The text task's side of the loop (see the module docstring). ``loss_factory`` replaces the
    cross-entropy (distillation); ``unlabeled`` examples join the training set with label -100."""
    D, L = ft.data, ft.loop
    task, unlabeled = get_task(ft.task), unlabeled or []
    if unlabeled and loss_factory is None:
        raise TrainingError("unlabeled training examples need a loss that learns from them (distillation)")
    examples, labels = _examples_and_labels(ft, task, paths, seed)
    n_labeled, examples["train"] = len(examples["train"]), examples["train"] + unlabeled
    start = _starting_model(ft, model_cfg, paths, labels)
    model, (tok, specials) = start.model, load_for_model(start.tokenizer_dir)
    say_tokenizer(ft, start.tokenizer_dir, None if D.train_file else tokenizer_of_tokens(tokens_dir(paths.finetune_data)))
    if D.max_length > model.cfg.max_seq_len:
        raise TrainingError(f"finetune.data.max_length={D.max_length} exceeds the model's max_seq_len "
                            f"{model.cfg.max_seq_len}")
    label_ids = {n: i for i, n in enumerate(labels)}
    enc = {s: task.encode(tok, examples[s], label_ids, specials, model.causal, D.max_length, D.on_overflow)
           for s in SPLITS}
    weights = class_weights(ft.class_weights, ft.class_weight_values, enc["train"].labels, len(labels))
    loss_fn = (loss_factory(labels, device, enc["train"]) if loss_factory is not None
               else lambda logits, batch: classification_loss(logits, batch["labels"], weights))
    freeze(model, ft.peft)
    model.to(device)
    net = wrap(model, d or Dist(device=device))  # DDP under torchrun, the model itself otherwise
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable, n_params = sum(p.numel() for p in trainable), sum(p.numel() for p in model.parameters())
    optimizer = _optimizer(model, ft)

    lengths = enc["train"].lengths
    n_batches = -(-len(lengths) // L.batch_size)
    steps_per_epoch = max(1, n_batches // L.grad_accum)
    total = L.max_steps or max(1, math.ceil(L.epochs * steps_per_epoch))
    use_pack = D.pack and model.cfg.pos == "learned"
    if D.pack and not use_pack:
        _say("finetune.data.pack needs learned positions; using padded batches")
    micro_batch = _batches(lengths, L.batch_size, seed, D.bucket)

    def train_loss(idx: np.ndarray, step: int, micro: int):
        batch = pack(enc["train"], idx, specials.pad, row_length(lengths[idx].tolist(), D.max_length, model.cfg.d_model),
                     model.causal) if use_pack else collate(enc["train"], idx, specials.pad)
        batch["index"] = torch.as_tensor(idx)
        batch = {k: v.to(device) for k, v in batch.items()}
        logits, _ = net(batch["ids"], batch["attention_mask"], positions=batch.get("positions"),
                        pool_index=batch.get("pool_index"))
        loss = loss_fn(logits, batch)
        scored = batch["labels"] != -100  # the units the mean is over (weighted when classes are)
        units = weights.to(device)[batch["labels"][scored]].sum() if weights is not None else scored.sum()
        return loss, loss, units

    def evaluate() -> dict:
        return evaluate_task(model, task, enc["val"], examples["val"], labels, L.eval_batch_size, specials.pad, device)

    def save_best(step: int, extra: dict) -> None:
        export_task_model(model, paths.finetune.best, labels, specials, start.tokenizer_dir,
                          {"max_length": D.max_length, "step": step, **extra})

    def final(best_step: int, val_in_memory: Optional[dict]) -> dict:
        baselines = classical_baselines(task, examples) if ft.baselines else {}
        results = final_evaluation(paths.finetune, name, task, examples, labels, D.max_length, L.eval_batch_size,
                                   device, (model, tok, specials, val_in_memory) if val_in_memory else None, baselines)
        return {"results": results, **({"baselines": baselines} if baselines else {})}

    describe = (f"{start.description}: {n_params / 1e6:.2f}M params ({n_trainable / 1e6:.2f}M trainable); "
                f"{len(labels)} labels; train/val/test = {n_labeled}"
                + (f" (+{len(unlabeled)} unlabeled)" if unlabeled else "")
                + f"/{len(enc['val'])}/{len(enc['test'])} (truncated at {D.max_length}: {enc['train'].truncated}/"
                f"{enc['val'].truncated}/{enc['test'].truncated}); {total} steps of {L.batch_size * L.grad_accum}, "
                f"{steps_per_epoch} per epoch, on {device}")
    return FinetuneSetup(
        model=model, optimizer=optimizer, trainable=trainable, total=total, steps_per_epoch=steps_per_epoch,
        micro_batch=micro_batch, train_loss=train_loss, evaluate=evaluate if len(enc["val"]) else None,
        headline_keys=("loss", "accuracy", "f1_macro", "entity_f1"), metric=ft.selection_metric(),
        save_best=save_best, final=final, describe=describe,
        checkpoint_extra={"labels": labels, "task": ft.task}, net=net,
        summary={"train_examples": n_labeled, "unlabeled_examples": len(unlabeled), "labels": labels,
                 "start": start.description, "truncated": {s: enc[s].truncated for s in SPLITS},
                 "trainable_params": n_trainable, "params": n_params})


def classical_baselines(task: Task, examples: dict) -> dict:
    """Majority class and TF-IDF + logistic regression on the same training split (text
    classification only), scored on val and test."""
    labeled = {s: [e for e in examples[s] if e.label is not None] for s in ("train", "val", "test")}
    if not task.has_baselines or not labeled["train"]:
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
