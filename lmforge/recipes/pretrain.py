"""``lmforge pretrain``: train a decoder (CLM) or encoder (MLM) from scratch on packed shards.

One linear recipe over the training library: setup (devices, data, objective, model, optimizer,
resume or fresh-start guard) → loop (accumulate, clip, step, log) → validate every
``eval_every`` → checkpoint (best, every ``save_every``, at the end, on early stop or on
SIGINT/SIGTERM) → summary and loss curve. Outputs: see :class:`lmforge.layout.TrainPaths`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Optional

import torch
from torch import nn

from lmforge.config.schema import to_dict
from lmforge.data.shards import PackedDataset
from lmforge.errors import Interrupted, TrainingError
from lmforge.layout import CHECKPOINT_TOKENIZER, RunPaths, checkpoint_name, ensure_dir, tokenizer_of_tokens
from lmforge.models.config import ModelConfig
from lmforge.models.transformer import LanguageModel
from lmforge.tokenizer.io import copy_files
from lmforge.training import checkpoint as ckpt
from lmforge.training.config import PretrainConfig
from lmforge.training.distributed import (Dist, all_reduce_mean, all_reduce_sum, any_rank, barrier, full_value,
                                          grad_sync, rank_memory, setup, teardown, wrap)
from lmforge.training.early_stopping import Best
from lmforge.training.embedding_health import band_cosines, output_cosine, token_ranks
from lmforge.training.average_init import average_first_layer
from lmforge.training.embedding_init import init_from_cooccurrence, row_iter
from lmforge.training.flops import detect_peak, flops_per_token
from lmforge.training.interrupt import StopRequest
from lmforge.training.metric_logging import MetricsLog, eta, write_config
from lmforge.training.objectives import build_objective
from lmforge.training.optim import apply_lr, build_optimizer, param_groups, penalty
from lmforge.training.plots import plot_curves
from lmforge.training.precision import Precision
from lmforge.training.sampling import BatchPlan
from lmforge.training.schedules import WarmupDecay
from lmforge.training.sharded_checkpoint import ShardedSaver

OnEval = Callable[[int, dict], bool]  # (step, validation metrics) -> stop now?
# (student logits, input ids, the objective's loss) -> the loss to minimize (distillation adds a teacher term)
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
StartFn = Callable[[LanguageModel], None]  # fills a freshly built model's weights (a student from its teacher)

# keys that may change between a run and its --resume without breaking the exact continuation
RESUME_SAFE = ("pretrain.eval_every", "pretrain.eval_batches", "pretrain.save_every", "pretrain.keep_last",
               "pretrain.log_every", "pretrain.early_stopping_patience", "pretrain.threads", "pretrain.compile",
               "pretrain.out_dir", "pretrain.data_dir", "pretrain.peak_flops", "pretrain.nonfinite", "pretrain.sample_tokens",
               # how the global batch is laid out and how the model is spread over the ranks: free to
               # change as long as the global batch (checked as ``global_batch``) stays the same
               "pretrain.batch_size", "pretrain.grad_accum", "pretrain.parallel", "pretrain.cpu_offload",
               "pretrain.activation_checkpointing", "pretrain.async_save")


def resume_safe_keys(p: PretrainConfig) -> tuple[str, ...]:
    """RESUME_SAFE, plus ``max_steps`` when the LR schedule does not depend on it (``decay_steps``
    set, or a constant schedule): then a longer run continues exactly where the shorter one was."""
    return RESUME_SAFE + (("pretrain.max_steps",) if p.decay_steps or p.schedule == "constant" else ())


MANY_EPOCHS = 4  # passes over the corpus above which pretraining warns (repeated tokens lose value)
COLLAPSED = 0.99  # output_cos above which the body gives one vector for every input: warned at each evaluation


def _say(msg: str) -> None:
    print(f"[pretrain] {msg}", flush=True)


def _quiet(msg: str) -> None:  # ranks other than 0 say nothing
    pass


def _tokenizer(data_dir):
    from lmforge.tokenizer.io import load_folder

    tok_dir = tokenizer_of_tokens(data_dir)
    return load_folder(tok_dir)[0] if tok_dir is not None and tok_dir.is_dir() else None


@torch.no_grad()
def sample_text(model: LanguageModel, val: PackedDataset, tokenizer, n: int, prompt_tokens: int = 8) -> dict | None:
    """Greedy continuation of the first ``prompt_tokens`` of validation window 0: how the model's
    text changes over training, at almost no cost. Under FSDP every rank calls it (each forward
    gathers the shards); ranks without a ``tokenizer`` get None."""
    from lmforge.inference.generate import generate

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = val[0][:prompt_tokens][None].to(device)
    out = generate(model, ids, n, temperature=0.0)[0].tolist()
    model.train(was_training)
    if tokenizer is None:
        return None
    return {"prompt": tokenizer.decode(out[:prompt_tokens]), "text": tokenizer.decode(out[prompt_tokens:])}


def build_model_for_data(model_cfg: ModelConfig, objective, index: dict, seq_len: int) -> LanguageModel:
    """The objective's model, checked against the tokenizer, the window length and the objective."""
    vocab = index["vocab_size"]
    if model_cfg.vocab_size and model_cfg.vocab_size != vocab:
        raise TrainingError(f"model.vocab_size={model_cfg.vocab_size} does not match the tokenizer's vocabulary "
                            f"({vocab}); set model.vocab_size: 0 to take it from the tokenizer")
    if seq_len > model_cfg.max_seq_len:
        raise TrainingError(f"data windows have seq_len {seq_len} but model.max_seq_len is {model_cfg.max_seq_len}; "
                            f"raise model.max_seq_len to at least {seq_len}")
    if model_cfg.arch != objective.arch:
        raise TrainingError(f"pretrain.objective={objective.name} needs model.arch={objective.arch}; got {model_cfg.arch}")
    return objective.build_model(replace(model_cfg, vocab_size=vocab))


def load_init_body(init: str, vocab_size: int) -> nn.Module:
    """The body to continue pretraining from (``pretrain.init``): an HF BERT/GPT-2 folder or
    ``minilm``, or one of our pretrain folders / checkpoints. Refused when its vocabulary is not the
    data's tokenizer's (the data must be prepared with ``tokenizer.path`` set to its tokenizer)."""
    from pathlib import Path

    from lmforge.layout import kind_of
    from lmforge.models.load import load_checkpoint_model, resolve_init

    path = Path(resolve_init(init))
    if not path.exists():
        raise TrainingError(f"pretrain.init: {path} does not exist (give an HF model folder, 'minilm', or a pretrain "
                            "folder / checkpoint of ours)")
    kind = kind_of(path)
    if kind in ("checkpoint", "pretrain"):
        body = load_checkpoint_model(path, prefer="best")[0].body
    elif kind == "hf_model":
        from lmforge.models.hf_tasks import load_hf_start

        body = load_hf_start(path)[0]
    else:
        raise TrainingError(f"pretrain.init: {path} is a {kind}; give an HF model folder, 'minilm', or a pretrain "
                            "folder / checkpoint of ours")
    if body.cfg.vocab_size != vocab_size:
        raise TrainingError(f"pretrain.init: {path} has a vocabulary of {body.cfg.vocab_size} tokens but the data was "
                            f"tokenized with {vocab_size}; prepare it with the checkpoint's tokenizer "
                            f"(tokenizer.path: {path})")
    return body


@torch.no_grad()
def validate(net: nn.Module, val: PackedDataset, objective, p: PretrainConfig, d: Dist, precision: Precision) -> dict:
    """Mean batch loss over the first ``eval_batches`` batches of val (fixed masks for MLM).

    Ranks take batches in turn and all run the same number of forwards (FSDP's forward is a
    collective): a rank past the end runs batch 0 again and does not count it."""
    net.eval()
    n = min(len(val), p.eval_batches * p.batch_size)
    if n == 0:
        net.train()
        return {}
    raw = net.module if hasattr(net, "module") else net
    rounds = -(-n // (p.batch_size * d.world))
    with torch.random.fork_rng(devices=[d.device] if d.device.type == "cuda" else []):
        torch.manual_seed(p.eval_batches)  # rtd samples replacements: the same draws at every evaluation
        loss_sum, batches, correct, total = _validate_rounds(raw, val, objective, p, d, precision, n, rounds)
    sums = all_reduce_sum(torch.stack([loss_sum, torch.tensor(float(batches), device=d.device)]), d)
    loss = (sums[0] / sums[1]).item()
    net.train()
    ppl = {} if objective.name == "rtd" else {"val_ppl": math.exp(min(loss, 50))}  # rtd's loss is a weighted sum
    return {"val_loss": loss, **ppl, **objective.eval_extra(correct, total)}


def _validate_rounds(raw, val, objective, p: PretrainConfig, d: Dist, precision: Precision, n: int, rounds: int):
    loss_sum, batches, correct, total = torch.zeros((), device=d.device), 0, 0, 0
    for r in range(rounds):
        b = (r * d.world + d.rank) * p.batch_size
        counted = b < n
        b = b if counted else 0
        ids = torch.stack([val[i] for i in range(b, min(b + p.batch_size, n))]).to(d.device)
        inputs, labels = objective.eval_batch(ids, b)
        inputs, labels = inputs.to(d.device), labels.to(d.device)
        with precision.autocast():
            logits, loss = raw(inputs, labels)
        if counted:
            loss_sum, batches = loss_sum + loss.float(), batches + 1
            c, t = objective.eval_counts(logits, labels)
            correct, total = correct + c, total + t
    return loss_sum, batches, correct, total


def pretrain(p: PretrainConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int, *, resume: bool = False,
             overwrite: bool = False, resume_changed: bool = False, progress: bool = True,
             on_eval: Optional[OnEval] = None, loss: Optional[LossFn] = None, start: Optional[StartFn] = None,
             name: str = "pretrain") -> dict:
    """Run pretraining; returns the summary (also written to ``summary.json``).

    ``loss`` replaces the objective's loss in training (validation always reports the objective's);
    ``start`` fills the weights of a fresh model (not of a resumed one: its checkpoint does)."""
    if not model_cfg.is_text:
        raise TrainingError(f"model.arch: {model_cfg.arch} is an image/table model; pretraining is for text "
                            "(decoder, encoder) — images and tables train with lmforge finetune")
    d = setup()
    try:
        with StopRequest() as stop:
            summary = _pretrain(p, model_cfg, paths, seed, d, stop, resume, overwrite, resume_changed, progress, on_eval,
                                loss, start, name)
        barrier(d)
        return summary
    finally:
        teardown(d)


def _pretrain(p: PretrainConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int, d: Dist, stop: StopRequest,
              resume: bool, overwrite: bool, resume_changed: bool, progress: bool, on_eval: Optional[OnEval],
              loss_fn: Optional[LossFn], start: Optional[StartFn], name: str) -> dict:
    out, data_dir = paths.pretrain, paths.pretrain_tokens
    _set_threads(p, d)

    # -- data, objective, model, optimizer -----------------------------------------------------
    train, val = PackedDataset(data_dir, "train"), PackedDataset(data_dir, "val")
    special = train.index["special_ids"]
    objective = build_objective(p.objective, special, train.index["vocab_size"], p.mlm_probability, seed,
                                p.rtd_generator_ratio, p.rtd_weight)
    torch.manual_seed(seed)  # same initial weights on every rank
    model, model_cfg, embedding_start = _starting_model(p, model_cfg, objective, train, seed, d, start, resume)
    model = model.to(d.device)
    n_params = sum(x.numel() for x in model.parameters())
    # the module the loop calls; under FSDP ``model`` itself, sharded in place — so the optimizer
    # is built after this, over the sharded parameters
    net = wrap(model, d, p.parallel, p.compile, precision=p.precision, cpu_offload=p.cpu_offload,
               activation_checkpointing=p.activation_checkpointing)
    groups, decayed = param_groups(model, p.lr, p.weight_decay,
                                   decay_embeddings=p.decay_embeddings or p.decay_norms_biases_embeddings,
                                   decay_norms_biases=p.decay_norms_biases_embeddings)
    optimizer = build_optimizer(groups, p.optimizer, p.lr, tuple(p.betas), momentum=p.momentum)

    # -- resume, or refuse to mix with an earlier run's checkpoints -----------------------------
    plan = BatchPlan(train, p.batch_size, p.grad_accum, d.world, d.rank, seed)
    # global_batch is compared on resume: the per-process batch, accumulation and world size may
    # change (2 ranks -> 1 rank with grad_accum x 2) only if the global batch stays the same
    config = {"pretrain": to_dict(p), "model": to_dict(model_cfg), "seed": seed, "global_batch": plan.global_batch}
    best = Best("min", p.early_stopping_patience)
    start_step = ckpt.start_or_resume(out, model, optimizer, best, config, resume=resume, overwrite=overwrite,
                                      resume_changed=resume_changed, safe_keys=resume_safe_keys(p),
                                      say=_say if d.main else _quiet, main=d.main)
    if d.main:
        ensure_dir(out.root, "pretrain output")
        write_config(out.root, config)
        tok = tokenizer_of_tokens(data_dir)
        if tok is not None and tok.is_dir():
            copy_files(tok, out.tokenizer)  # a pretrain folder is self-contained
    log = MetricsLog(out.metrics, out.tensorboard, start_step if resume else None, d.main)
    precision = Precision(d.device, p.precision)
    # tokens per step as throughput counts them: positions trained on — for a causal LM the window
    # minus its last token (nothing follows it), for MLM every position the encoder reads
    tokens_per_step = plan.global_batch * (train.seq_len - 1 if model.causal else train.seq_len)
    peak = p.peak_flops or detect_peak(d.device)
    _announce(p, model_cfg, n_params, len(train), train.seq_len, plan.global_batch, tokens_per_step, d, start_step, peak)
    run = _Run(p=p, d=d, model=model, net=net, optimizer=optimizer, best=best, log=log, plan=plan, objective=objective,
               precision=precision, decayed=decayed, loss_fn=loss_fn, tokens_per_step=tokens_per_step,
               fpt=flops_per_token(model.cfg, n_params, train.seq_len), peak=peak, val=val,
               ranks=token_ranks(train, train.index["vocab_size"], [v for v in special.values() if v is not None]),
               probe=torch.stack([val[i] for i in range(min(len(val), 8))]).to(d.device) if len(val) >= 2 else None,
               tokenizer=_tokenizer(data_dir) if d.main and p.sample_tokens and model.causal else None,
               saver=None, state={"model": asdict(model.cfg), "tokenizer_dir": CHECKPOINT_TOKENIZER,
                                  "objective": p.objective, "seed": seed, "config": config}, out=out)
    if p.parallel == "fsdp":  # checkpoints in DCP shards (also with one process: they reshard)
        run.saver = ShardedSaver(out.checkpoints, d, p.async_save, on_complete=run.prune)
    if p.objective == "rtd":  # what load_checkpoint_model needs to rebuild generator + discriminator
        run.state["rtd"] = {"generator_ratio": p.rtd_generator_ratio, "disc_weight": p.rtd_weight}

    t_start = time.time()
    stop_reason, done = _loop(run, seed, start_step, stop, progress, on_eval, name)
    if p.max_steps == 0 and start_step == 0:  # initialization only: the starting model, evaluated and saved
        ev = run.evaluate(0)
        if ev:
            best.update(ev["val_loss"], 0)
        run.save(0)
    if run.saver is not None:
        run.saver.finish()  # the last checkpoint, if still being written in the background
    log.close()
    summary = _summary(run, stop_reason, done, time.time() - t_start, n_params, embedding_start)
    if d.main:
        out.summary.write_text(json.dumps(summary, indent=2))
        plot_curves(out.metrics, out.loss_curve, "Pretraining loss", "val_loss")
        _say(f"done ({stop_reason}); best val loss {best.value:.4f} at {summary['best']['name']}; "
             f"metrics {out.metrics}")
    if stop_reason.startswith("interrupted"):
        raise Interrupted(f"interrupted at step {done}")
    return summary


def _set_threads(p: PretrainConfig, d: Dist) -> None:
    """``pretrain.threads``, or the cores shared out between the ranks of one CPU machine."""
    if p.threads:
        torch.set_num_threads(p.threads)
    elif d.device.type == "cpu" and d.world > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // d.world))


def _summary(run: "_Run", stop_reason: str, done: int, seconds: float, n_params: int, embedding_start: dict) -> dict:
    best, p, d = run.best, run.p, run.d
    return {"stop_reason": stop_reason,
            "best": {"val_loss": best.value, "name": checkpoint_name(best.step) if best.step is not None else None,
                     "step": best.step, "bad_evals": best.bad_evals},
            "last_train_loss": run.last_loss, "skipped_steps": run.skipped, "steps": done,
            "wall_seconds_this_process": round(seconds, 1), "tokens_seen": done * run.tokens_per_step,
            "params": n_params, "non_embedding_params": run.model.num_params(non_embedding=True),
            "parallel": p.parallel if d.enabled else "none", "world_size": d.world,
            "memory_per_rank": rank_memory(run.model, run.optimizer, d),
            # mean pairwise cosine of input embeddings by training-frequency rank band, and of the
            # body's output over the positions of 8 validation windows, at the last validation
            # (near 1 = those tokens / every input collapsed onto one direction)
            "embedding_health": run.health, "embedding_init": embedding_start}


def _starting_model(p: PretrainConfig, model_cfg: ModelConfig, objective, train: PackedDataset, seed: int, d: Dist,
                    start: Optional[StartFn], resume: bool):
    """The objective's model — from ``pretrain.init``'s body, ``start``, or fresh (token table from
    co-occurrence when asked) — with the embeddings frozen when asked; returns (model, its config, how the
    token table started)."""
    special = train.index["special_ids"]
    init_body = None
    if p.init:  # continued pretraining: the checkpoint's body and shape, checked against this data
        init_body = load_init_body(p.init, train.index["vocab_size"])
        model_cfg = replace(init_body.cfg, dropout=model_cfg.dropout, tie_embeddings=model_cfg.tie_embeddings)
    model = build_model_for_data(model_cfg, objective, train.index, train.seq_len)
    if init_body is not None:
        model.body.load_state_dict(init_body.state_dict())
        if d.main:
            _say(f"continuing from {p.init}: {model_cfg.arch}, {model_cfg.n_layer} layers, d_model {model_cfg.d_model} "
                 "(the model section is ignored; a new objective head)")
    if p.embedding_init == "cooccurrence" and init_body is None and start is None and not resume:
        info = init_from_cooccurrence(
            model.body.embed.tok.weight, row_iter(train), p.embedding_window,
            {i for i in (train.index.get("doc_end_id"),) if i is not None},
            {v for v in special.values() if v is not None},
            p.embedding_max_tokens, seed)
        embedding_start = info
        if d.main:
            _say(f"token embeddings from co-occurrence: {info.get('vocab_rows', 0):,} of {info.get('of_vocab', 0):,} "
                 f"rows from {info['tokens']:,} train tokens, window {p.embedding_window} ({info.get('seconds', 0)} s)"
                 + (f"; skipped: {info['skipped']}" if "skipped" in info else ""))
    elif resume:
        embedding_start = {"kind": p.embedding_init, "note": "set at the start of the run this one resumes"}
    else:
        embedding_start = {"kind": "random" if init_body is None and start is None else "from the start model"}
    if p.first_layer == "average" and init_body is None and start is None and not resume:
        embedding_start = {**embedding_start, "first_layer": average_first_layer(model.body)}
        if d.main:
            _say("first attention layer set to average over the text (the pooler sees the bag of token vectors)")
    if start is not None:
        start(model)  # before the optimizer and DDP see the parameters; a resume overwrites them below
    if p.freeze_embeddings:
        model.body.embed.tok.weight.requires_grad_(False)
    return model, model_cfg, embedding_start


def _announce(p: PretrainConfig, model_cfg: ModelConfig, n_params: int, n_windows: int, seq_len: int, global_batch: int,
              tokens_per_step: int, d: Dist, start_step: int, peak) -> None:
    """What is about to run, and the warnings a user should see before it does."""
    if not d.main:
        return
    epochs = p.max_steps * global_batch / max(n_windows, 1)
    if epochs > MANY_EPOCHS:
        _say(f"warning: {p.max_steps} steps of {global_batch} windows are {epochs:.1f} epochs of the "
             f"{n_windows} training windows: every window is seen ~{epochs:.0f} times, and repeated data beyond "
             f"~{MANY_EPOCHS} epochs teaches less and less (more text, or fewer steps)")
    _say(f"{model_cfg.arch} {n_params / 1e6:.2f}M params, {n_windows} train windows of {seq_len}, "
         f"global batch {global_batch} ({tokens_per_step} tokens), {d.world} process(es) on {d.device}"
         + (f" ({p.parallel})" if d.enabled else "") + ", "
         f"steps {start_step}→{p.max_steps}")
    if peak and not p.peak_flops and d.device.type == "cpu":
        _say(f"MFU is an estimate against an assumed CPU peak of {peak / 1e9:.0f} GFLOP/s "
             "(set pretrain.peak_flops to your machine's)")


@dataclass
class _Run:
    """What the loop's pieces share: the model and its optimizer, data, logging, and running figures."""

    p: PretrainConfig
    d: Dist
    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    best: Best
    log: MetricsLog
    plan: BatchPlan
    objective: object
    precision: Precision
    decayed: list
    loss_fn: Optional[LossFn]
    tokens_per_step: int
    fpt: float
    peak: Optional[float]
    val: PackedDataset
    ranks: object
    probe: Optional[torch.Tensor]
    tokenizer: object
    saver: Optional[ShardedSaver]
    state: dict  # what every checkpoint records besides the weights (and "best", added at each save)
    out: object
    health: dict = field(default_factory=dict)
    last_loss: float = float("nan")
    skipped: int = 0

    def prune(self, step: int) -> None:
        keep = [checkpoint_name(self.best.step)] if self.best.step is not None else []
        ckpt.prune(self.out.checkpoints, self.p.keep_last, keep)

    def save(self, step: int) -> None:
        state = {"best": self.best.state_dict(), **self.state}
        if self.saver is not None:  # every rank writes its shards; pruned once complete
            self.saver.save(step, self.model, self.optimizer, state)
        elif self.d.main:
            ckpt.save(self.out.checkpoints, step, self.model, self.optimizer, state)
            self.prune(step)

    def evaluate(self, step: int) -> dict:
        """Validation metrics and the embedding-health figures, logged; warns when the body collapsed."""
        p, d = self.p, self.d
        ev = validate(self.net, self.val, self.objective, p, d, self.precision)
        if not ev:
            return ev
        ev.update(band_cosines(self.model.body.embed.tok.weight, self.ranks))
        if self.probe is not None:
            ev["output_cos"] = output_cosine(self.model.body, self.probe)
            if d.main and ev["output_cos"] > COLLAPSED:
                _say(f"warning: the body's output has collapsed (output_cos {ev['output_cos']:.4f}: one vector "
                     "for every token of every input); fine-tuning from this checkpoint will not learn"
                     + (" — the discriminator is stuck at its prior (val_replaced_recall "
                        f"{ev.get('val_replaced_recall', 0):.3f})" if p.objective == "rtd" else ""))
        self.log.write({"kind": "eval", "step": step, **ev})
        self.health = {k: v for k, v in ev.items() if k.startswith(("emb_cos", "output_cos"))}
        return ev


def _loop(run: _Run, seed: int, start_step: int, stop: StopRequest, progress: bool, on_eval: Optional[OnEval],
          name: str) -> tuple[str, int]:
    """Steps ``start_step`` … ``max_steps``; returns (stop reason, steps done)."""
    p, d = run.p, run.d
    bar = None
    if d.main and progress:
        from tqdm import tqdm

        bar = tqdm(total=p.max_steps, initial=start_step, desc=name, disable=not sys.stderr.isatty())
    schedule = WarmupDecay(p.warmup_steps, p.decay_steps or p.max_steps, p.schedule, p.min_lr, ramp="nanogpt")
    trainable = [x for x in run.model.parameters() if x.requires_grad]
    run.net.train()
    rate = {"t": time.time(), "tokens": 0, "wait": 0.0}  # since the last logged step
    stop_reason, done = "max_steps", start_step
    for step in range(start_step, p.max_steps):
        lr = apply_lr(run.optimizer, schedule, step)
        step_loss = _accumulate(run, seed, step, rate)
        if not torch.isfinite(step_loss):
            if p.nonfinite == "stop":
                raise TrainingError(f"non-finite loss ({step_loss.item()}) at step {step}: lower pretrain.lr "
                                    f"(now {lr:.2e}), enable grad_clip, or set pretrain.nonfinite: skip")
            Precision.skip(run.optimizer)
            run.skipped += 1
            continue
        grad_norm = full_value(run.precision.step(run.optimizer, trainable, p.grad_clip))
        rate["tokens"] += run.tokens_per_step
        done = step + 1
        if done % p.log_every == 0 or done == p.max_steps:
            _log_train(run, bar, done, step_loss.item(), lr, grad_norm, rate)
        if bar is not None:
            bar.update(1)
        t_aside = time.time()  # validation and checkpoints are not training time: kept out of the next rate
        improved, why = _validate(run, done, step_loss, on_eval) if done % p.eval_every == 0 or done == p.max_steps \
            else (False, None)
        if any_rank(stop.requested, d):
            why = f"interrupted ({stop.signal_name or 'signal'}) at step {done}"
        if improved or why or done % p.save_every == 0 or done == p.max_steps:
            run.save(done)
        rate["t"] += time.time() - t_aside
        if why:
            stop_reason = why
            break
    if bar is not None:
        bar.close()
    return stop_reason, done


def _accumulate(run: _Run, seed: int, step: int, rate: dict) -> torch.Tensor:
    """Forward and backward over the step's micro-batches; returns the step's loss, averaged over ranks."""
    p, d = run.p, run.d
    loss_sum = torch.zeros((), device=d.device)
    for a in range(p.grad_accum):
        # micro-batch ``slot`` of the global batch (see BatchPlan): its samples, MLM masks and
        # dropout are functions of (seed, step, slot) alone — so resume needs no RNG state and
        # 2 ranks x accum 1 compute what 1 rank x accum 2 does
        slot = a * d.world + d.rank
        torch.manual_seed((seed * 1_000_003 + slot) * 1_000_003 + step)
        tw = time.time()
        inputs, labels = run.objective.train_batch(run.plan.batch(step, a), step, slot, 0)
        inputs, labels = inputs.to(d.device, non_blocking=True), labels.to(d.device, non_blocking=True)
        rate["wait"] += time.time() - tw
        with grad_sync(run.net, a == p.grad_accum - 1):
            with run.precision.autocast():
                logits, loss = run.net(inputs, labels)
                if run.loss_fn is not None:
                    loss = run.loss_fn(logits, inputs, loss)
                loss = loss + penalty(run.decayed, p.l1, p.l2)
            run.precision.backward(loss / p.grad_accum)
        loss_sum += loss.detach()
    return all_reduce_mean(loss_sum / p.grad_accum, d)


def _log_train(run: _Run, bar, done: int, loss: float, lr: float, grad_norm, rate: dict) -> None:
    p, d = run.p, run.d
    run.last_loss = loss
    dt = time.time() - rate["t"]
    tps = rate["tokens"] / max(dt, 1e-9)
    ms = 1000 * dt / max(rate["tokens"] / run.tokens_per_step, 1)
    run.log.write({"kind": "train", "step": done, "loss": loss, "lr": lr, "grad_norm": float(grad_norm),
                   "tokens_per_s": tps, "ms_per_step": ms, "mfu": (tps * run.fpt / (run.peak * d.world)) if run.peak else None,
                   "data_wait_s": rate["wait"], "epoch": run.plan.epoch_of(done), "skipped_steps": run.skipped})
    if bar is not None and not bar.disable:
        bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tps:,.0f}")
    elif d.main:  # no bar (no terminal, or --no-progress): plain lines instead
        _say(f"step {done}/{p.max_steps}: loss {loss:.4f}, lr {lr:.2e}, {ms:.0f} ms/step, "
             f"{tps:,.0f} tokens/s, ETA {eta((p.max_steps - done) * ms / 1000)}")
    rate.update(t=time.time(), tokens=0, wait=0.0)


def _validate(run: _Run, done: int, step_loss: torch.Tensor, on_eval: Optional[OnEval]) -> tuple[bool, Optional[str]]:
    """One validation (with a text sample for decoders); returns (a new best?, why to stop or None)."""
    p, d = run.p, run.d
    ev = run.evaluate(done)
    if not ev:
        return False, None
    if p.sample_tokens and run.model.causal and len(run.val) and (run.tokenizer is not None or run.saver is not None):
        sample = sample_text(run.model, run.val, run.tokenizer, p.sample_tokens)
        if sample is not None:
            run.log.write({"kind": "sample", "step": done, **sample})
    if d.main:
        _say(f"step {done}: train loss {step_loss.item():.4f}, " + ", ".join(f"{k} {v:.4f}" for k, v in ev.items()))
    improved = run.best.update(ev["val_loss"], done)
    if run.best.should_stop:
        return improved, f"early stopping: no val improvement in {run.best.bad_evals} evals"
    if on_eval is not None and on_eval(done, ev):
        return improved, "stopped by on_eval"
    return improved, None
